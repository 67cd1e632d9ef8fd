/**
 * A session's prepared statements and portals (extended protocol), by name: the text each one
 * runs, so that an Execute is recorded and judged by what it really runs.
 *
 * A Parse, Bind or Close takes effect only when the target confirms it (ParseComplete,
 * BindComplete, CloseComplete): a Parse of a name that exists fails, and after any error the
 * target skips to Sync, so applying them when sent would let a session make pgward believe a
 * name runs another text than it does. Until confirmed they are pending, and lookups see them
 * (a Bind usually follows its Parse before the answer comes). An ErrorResponse cancels all
 * pending ones: the target skips whatever came after the failed message.
 *
 * Bounded per session in count and bytes: past a cap a Parse or Bind is refused, never
 * remembered as unknown.
 */

/** Why a name cannot be remembered: the cap it would pass. */
export interface CapExceeded {
  what: 'prepared statements' | 'portals';
  limit: string;
}

export interface PreparedLimits {
  /** Named prepared statements one session may hold. */
  maxStatements: number;
  /** Total length of their texts (characters, as held in memory). */
  maxStatementChars: number;
  /** Named portals one session may hold open. */
  maxPortals: number;
}

export const DEFAULT_PREPARED_LIMITS: PreparedLimits = {
  maxStatements: 10_000,
  maxStatementChars: 64 * 1024 * 1024,
  maxPortals: 10_000,
};

/** An operation sent and not yet confirmed, with the batch (count of Syncs before it) it is in. */
type Pending = { batch: number } & (
  | { op: 'parse'; name: string; text: string }
  | { op: 'bind'; portal: string; text: string | undefined }
  | { op: 'close'; kind: 'S' | 'P'; name: string }
);

export class PreparedStatements {
  private readonly statements = new Map<string, string>();
  private readonly portals = new Map<string, string>();
  private statementChars = 0;
  private readonly pending: Pending[] = [];
  /** Batches sent (Sync, Query and FunctionCall each end one) and answered (ReadyForQuery). */
  private batchesSent = 0;
  private batchesDone = 0;

  constructor(private readonly limits: PreparedLimits = DEFAULT_PREPARED_LIMITS) {}

  /** Whether a Parse of `name` with `text` fits (the unnamed statement always does). */
  checkParse(name: string, text: string): CapExceeded | undefined {
    if (name === '') return undefined;
    // The unnamed statement is one slot that every unnamed Parse reuses: it is not counted.
    let count = this.statements.size - (this.statements.has('') ? 1 : 0);
    let chars = this.statementChars + text.length;
    for (const p of this.pending) {
      if (p.op !== 'parse' || p.name === '') continue;
      count++;
      chars += p.text.length;
    }
    if (!this.statements.has(name) && count >= this.limits.maxStatements)
      return { what: 'prepared statements', limit: `${this.limits.maxStatements} statements` };
    if (chars > this.limits.maxStatementChars)
      return {
        what: 'prepared statements',
        limit: `${this.limits.maxStatementChars} characters of statement text`,
      };
    return undefined;
  }

  /** Whether a Bind to portal `name` fits (the unnamed portal always does). */
  checkBind(portal: string): CapExceeded | undefined {
    if (
      portal === '' ||
      this.portals.has(portal) ||
      this.portals.size + this.pending.length < this.limits.maxPortals
    )
      return undefined;
    return { what: 'portals', limit: `${this.limits.maxPortals} portals` };
  }

  /** A Parse sent to the target: `name` will run `text` once confirmed. */
  parse(name: string, text: string): void {
    this.pending.push({ batch: this.batchesSent, op: 'parse', name, text });
  }

  /** A Bind sent to the target; returns the text the portal will run (undefined: no such statement). */
  bind(portal: string, statement: string): string | undefined {
    const text = this.statement(statement);
    this.pending.push({ batch: this.batchesSent, op: 'bind', portal, text });
    return text;
  }

  /** A Close sent to the target. */
  close(kind: 'S' | 'P', name: string): void {
    this.pending.push({ batch: this.batchesSent, op: 'close', kind, name });
  }

  /** The text a statement runs, as the target will see it once what is pending is done. */
  statement(name: string): string | undefined {
    for (let i = this.pending.length - 1; i >= 0; i--) {
      const p = this.pending[i]!;
      if (p.op === 'parse' && p.name === name) return p.text;
      if (p.op === 'close' && p.kind === 'S' && p.name === name) return undefined;
    }
    return this.statements.get(name);
  }

  /** The text a portal runs, as the target will see it once what is pending is done. */
  portal(name: string): string | undefined {
    for (let i = this.pending.length - 1; i >= 0; i--) {
      const p = this.pending[i]!;
      if (p.op === 'bind' && p.portal === name) return p.text;
      if (p.op === 'close' && p.kind === 'P' && p.name === name) return undefined;
    }
    return this.portals.get(name);
  }

  /** ParseComplete, BindComplete or CloseComplete: the oldest pending operation took effect. */
  confirmed(): void {
    const p = this.pending.shift();
    if (!p) return;
    switch (p.op) {
      case 'parse': {
        const old = this.statements.get(p.name);
        if (old !== undefined) this.statementChars -= old.length;
        this.statements.set(p.name, p.text);
        this.statementChars += p.text.length;
        break;
      }
      case 'bind':
        if (p.text === undefined) this.portals.delete(p.portal);
        else this.portals.set(p.portal, p.text);
        break;
      case 'close':
        if (p.kind === 'P') this.portals.delete(p.name);
        else {
          const old = this.statements.get(p.name);
          if (old !== undefined) {
            this.statements.delete(p.name);
            this.statementChars -= old.length;
          }
        }
        break;
    }
  }

  /** A Sync, Query or FunctionCall sent: the batch it ends will be answered by a ReadyForQuery. */
  synced(): void {
    this.batchesSent++;
  }

  /** Syncs that will get no answer after all (the target ignored them in COPY FROM STDIN mode). */
  unsynced(count: number): void {
    this.batchesSent -= count;
  }

  /** Drops what is pending in the batch being answered: the target skipped it. */
  private skipBatch(): void {
    while (this.pending.length > 0 && this.pending[0]!.batch === this.batchesDone) this.pending.shift();
  }

  /** An ErrorResponse: the target skips to Sync, so nothing pending in this batch takes effect. */
  failed(): void {
    this.skipBatch();
  }

  /**
   * ReadyForQuery: what is still pending in its batch was skipped. Outside a transaction block
   * the target has dropped every portal (they live until the end of their transaction).
   */
  ready(status: 'I' | 'T' | 'E'): void {
    this.skipBatch();
    this.batchesDone++;
    if (status === 'I') this.portals.clear();
  }

  /** DISCARD ALL or DEALLOCATE ALL ran: no prepared statement is left. */
  deallocateAll(): void {
    this.statements.clear();
    this.statementChars = 0;
  }

  /** DEALLOCATE name ran. */
  deallocate(name: string): void {
    const old = this.statements.get(name);
    if (old === undefined) return;
    this.statements.delete(name);
    this.statementChars -= old.length;
  }
}
