/**
 * Follows one relayed session's requests and responses to record each statement: Query text
 * (simple protocol), the text an Execute runs (extended protocol; bind parameter values are
 * never read), FunctionCalls by function, duration, command tag, rows and SQLSTATE. Pure logic:
 * the relay hands it each request it forwards and each response; responses arrive in request
 * order, so a FIFO of pending requests pairs them (protocol section "Extended Query": after an
 * error the server skips to the next Sync).
 */
import { performance } from 'node:perf_hooks';
import type { AuditDecision } from '../policy/builtin_rules.js';
import * as decode from '../wire/decode.js';
import { BE } from '../wire/protocol.js';
import type { StatementRecord } from './audit_writer.js';
import { WallClock } from './wall_clock.js';

/** A request that gets an answer: a Query, an Execute, a FunctionCall, or a Sync ending a batch. */
export type RequestKind = 'simple' | 'extended' | 'function' | 'sync';

interface Pending {
  kind: RequestKind;
  text: string;
  /** performance.now() when the request was forwarded. */
  t0: number;
  tag: string | null;
  rows: number | null;
  sqlstate: string | null;
  /** pgward refused it in place; the target reported the refusal. */
  refused: boolean;
  decision: AuditDecision | undefined;
}

/** One for all sessions: it reads the wall clock once a second. */
const wallClock = new WallClock();

export class StatementTracker {
  private seq = 0;
  private readonly pending: Pending[] = [];

  constructor(
    private readonly sessionId: string,
    private readonly emit: (record: StatementRecord, refused: boolean) => void,
  ) {}

  /** True while requests await their responses (the session is mid-query). */
  get busy(): boolean {
    return this.pending.length > 0;
  }

  /**
   * A request forwarded to the target (or answered in its place with a refusal, which the
   * target then reports in order): `text` is what is recorded.
   */
  request(kind: RequestKind, text: string, refused = false, decision?: AuditDecision): void {
    this.pending.push({
      kind,
      text,
      t0: performance.now(),
      tag: null,
      rows: null,
      sqlstate: null,
      refused,
      decision,
    });
  }

  /**
   * Changes the decision of the request being answered now (a row limit decides at the result,
   * after the request was recorded).
   */
  amend(decision: AuditDecision): void {
    const head = this.pending[0];
    if (head) head.decision = decision;
  }

  /**
   * The last `count` Syncs will get no answer: the target ignores Syncs that reach it in COPY
   * FROM STDIN mode (protocol section "COPY Operations").
   */
  forgetSyncs(count: number): void {
    for (let i = this.pending.length - 1; i >= 0 && count > 0; i--) {
      if (this.pending[i]!.kind === 'sync') {
        this.pending.splice(i, 1);
        count--;
      }
    }
  }

  private finish(entry: Pending): void {
    const now = performance.now();
    const elapsed = now - entry.t0;
    this.emit(
      {
        sessionId: this.sessionId,
        seq: ++this.seq,
        kind: entry.kind === 'sync' ? 'extended' : entry.kind,
        text: entry.text,
        // Wall-clock time, like the session's own start and end: the monotonic clock's origin
        // drifts from it over a long-running process (clock steps and slews).
        startedAtMs: wallClock.at(now) - elapsed,
        durationMs: Math.round(elapsed * 1000) / 1000,
        commandTag: entry.tag,
        rows: entry.rows,
        sqlstate: entry.sqlstate,
        decision: entry.decision?.decision ?? null,
        decidedBy: entry.decision?.decidedBy ?? null,
      },
      entry.refused,
    );
  }

  /** A message from the server, before it is forwarded. */
  onServer(type: number, message: Buffer): void {
    const head = this.pending[0];
    if (!head) return;
    switch (type) {
      case BE.COMMAND_COMPLETE:
      case BE.EMPTY_QUERY:
      case BE.PORTAL_SUSPENDED: {
        const tag =
          type === BE.COMMAND_COMPLETE
            ? decode.commandTag(message)
            : type === BE.EMPTY_QUERY
              ? ''
              : 'SUSPENDED';
        head.tag = tag;
        const rows = decode.tagRows(tag);
        if (rows !== undefined) head.rows = (head.kind === 'simple' ? (head.rows ?? 0) : 0) + rows;
        if (head.kind === 'extended') this.finish(this.pending.shift()!);
        break;
      }
      case BE.ERROR: {
        if (head.kind === 'sync') break;
        head.sqlstate = decode.errorFields(message).get('C') ?? 'XX000';
        if (head.kind === 'extended') this.finish(this.pending.shift()!);
        break;
      }
      case BE.READY_FOR_QUERY: {
        if (head.kind === 'simple' || head.kind === 'function') {
          this.finish(this.pending.shift()!);
          break;
        }
        // End of an extended batch: Executes the server skipped after an error were not run.
        while (this.pending.length > 0) {
          const entry = this.pending.shift()!;
          if (entry.kind === 'sync') break;
        }
        break;
      }
    }
  }
}
