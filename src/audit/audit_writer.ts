/**
 * The audit trail's writer: sessions and statements are queued in memory and written to the
 * store in batches, off the proxy's hot path. Statements, one row per query, go in with COPY:
 * on a busy machine the store's CPU competes with the proxy and the target, and COPY costs it
 * a fraction of an INSERT per row. Sessions are few and go in with one INSERT per batch.
 * close() writes everything still queued, so a clean shutdown loses nothing. When the store is
 * unreachable, batches are retried with backoff and the queue is bounded: past the bound,
 * statements are dropped and counted (and that count logged); sessions are never dropped.
 */
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type pg from 'pg';
import { from as copyFrom } from 'pg-copy-streams';
import type { Logger } from '../log/logger.js';

export interface SessionStart {
  sessionId: string;
  userId: string | null;
  email: string | null;
  provider: string | null;
  connectionName: string | null;
  loginRole: string | null;
  clientAddr: string;
  applicationName: string | null;
  startedAt: Date;
}

export interface SessionEnd {
  sessionId: string;
  endedAt: Date;
  bytesIn: number;
  bytesOut: number;
  endReason: string;
}

export interface StatementRecord {
  sessionId: string;
  seq: number;
  kind: 'simple' | 'extended' | 'function';
  text: string;
  /** Epoch milliseconds (fractional). */
  startedAtMs: number;
  durationMs: number | null;
  commandTag: string | null;
  rows: number | null;
  sqlstate: string | null;
}

const FLUSH_INTERVAL_MS = 100;
const BATCH_SIZE = 2000;
const MAX_QUEUED_STATEMENTS = 200_000;
/** Audited statement text is capped; the rest is marked as cut. */
export const MAX_STATEMENT_TEXT = 64 * 1024;

export class AuditWriter {
  private starts: SessionStart[] = [];
  private ends: SessionEnd[] = [];
  private statements: StatementRecord[] = [];
  private dropped = 0;
  private timer: NodeJS.Timeout | undefined;
  private flushing: Promise<void> | undefined;
  private failures = 0;
  private closed = false;

  constructor(
    private readonly pool: pg.Pool,
    private readonly log: Logger,
  ) {}

  sessionStarted(s: SessionStart): void {
    this.starts.push(s);
    this.schedule();
  }

  sessionEnded(s: SessionEnd): void {
    this.ends.push(s);
    this.schedule();
  }

  statement(s: StatementRecord): void {
    if (this.statements.length >= MAX_QUEUED_STATEMENTS) {
      this.dropped++;
      return;
    }
    this.statements.push(s);
    if (this.statements.length >= BATCH_SIZE) void this.flush();
    else this.schedule();
  }

  /** Records not yet written (for health and tests). */
  get backlog(): number {
    return this.starts.length + this.ends.length + this.statements.length;
  }

  private schedule(): void {
    if (this.timer || this.closed) return;
    const delay = this.failures === 0 ? FLUSH_INTERVAL_MS : Math.min(30_000, 500 * 2 ** this.failures);
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.flush();
    }, delay);
    this.timer.unref();
  }

  /** Writes what is queued now (one flush at a time). Never rejects: failures are retried. */
  flush(): Promise<void> {
    if (this.flushing) return this.flushing.then(() => (this.backlog > 0 ? this.flush() : undefined));
    this.flushing = this.writeBatch().finally(() => {
      this.flushing = undefined;
    });
    return this.flushing;
  }

  private async writeBatch(): Promise<void> {
    const starts = this.starts.splice(0);
    const statements = this.statements.splice(0, BATCH_SIZE);
    const ends = this.ends.splice(0);
    if (starts.length + statements.length + ends.length === 0) return;
    try {
      // Starts before statements and ends, so an end always finds its session row.
      if (starts.length > 0) await this.insertStarts(starts);
      if (statements.length > 0) await this.insertStatements(statements);
      if (ends.length > 0) await this.updateEnds(ends);
      this.failures = 0;
      if (this.dropped > 0) {
        this.log.error(
          { dropped: this.dropped },
          'audit queue overflowed while the store was unreachable: statements were not recorded',
        );
        this.dropped = 0;
      }
    } catch (err) {
      this.failures++;
      this.log.error(
        { err: (err as Error).message, failures: this.failures },
        'audit write failed; will retry',
      );
      // Put everything back, in order, to retry.
      this.starts.unshift(...starts);
      this.statements.unshift(...statements);
      this.ends.unshift(...ends);
    }
    if (this.backlog > 0) this.schedule();
  }

  private async insertStarts(rows: SessionStart[]): Promise<void> {
    await this.pool.query(
      `INSERT INTO pgward.session (session_id, user_id, email, provider, connection_name, login_role, client_addr,
         application_name, started_at)
       SELECT "sessionId", "userId", email, provider, "connectionName", "loginRole", "clientAddr", "applicationName",
         "startedAt"
       FROM json_to_recordset($1::json) AS r("sessionId" uuid, "userId" uuid, email text, provider text,
         "connectionName" text, "loginRole" text, "clientAddr" text, "applicationName" text, "startedAt" timestamptz)
       ON CONFLICT (session_id) DO NOTHING`,
      [JSON.stringify(rows)],
    );
  }

  /**
   * COPY is all or nothing, so a failed batch is simply retried. A batch that was written but
   * whose answer was lost comes back as a duplicate key; that one retry goes through INSERT ...
   * ON CONFLICT DO NOTHING.
   */
  private async insertStatements(rows: StatementRecord[]): Promise<void> {
    const client = await this.pool.connect();
    let broken: Error | undefined;
    try {
      await pipeline(
        Readable.from([copyText(rows)]),
        client.query(
          copyFrom(
            `COPY pgward.statement (session_id, seq, kind, text, started_at, duration_ms, command_tag, rows, sqlstate)
             FROM STDIN`,
          ),
        ),
      );
    } catch (err) {
      if ((err as { code?: string }).code !== '23505') {
        broken = err as Error;
        throw err;
      }
      await this.insertStatementsOnce(rows);
    } finally {
      client.release(broken);
    }
  }

  private async insertStatementsOnce(rows: StatementRecord[]): Promise<void> {
    await this.pool.query(
      `INSERT INTO pgward.statement (session_id, seq, kind, text, started_at, duration_ms, command_tag, rows, sqlstate)
       SELECT "sessionId", seq, kind, text, to_timestamp("startedAtMs" / 1000), "durationMs", "commandTag", rows, sqlstate
       FROM json_to_recordset($1::json) AS r("sessionId" uuid, seq int, kind text, text text, "startedAtMs" float8,
         "durationMs" float8, "commandTag" text, rows bigint, sqlstate text)
       ON CONFLICT (session_id, seq) DO NOTHING`,
      [JSON.stringify(rows)],
    );
  }

  private async updateEnds(rows: SessionEnd[]): Promise<void> {
    await this.pool.query(
      `UPDATE pgward.session s SET ended_at = e."endedAt", bytes_in = e."bytesIn", bytes_out = e."bytesOut",
         end_reason = e."endReason"
       FROM json_to_recordset($1::json)
         AS e("sessionId" uuid, "endedAt" timestamptz, "bytesIn" bigint, "bytesOut" bigint, "endReason" text)
       WHERE s.session_id = e."sessionId"`,
      [JSON.stringify(rows)],
    );
  }

  /** Resolves when no batch is being written (one may start another as it ends). */
  private async settled(): Promise<void> {
    while (this.flushing) await this.flushing;
  }

  /** Writes everything still queued; call after the proxy stopped accepting. */
  async close(): Promise<void> {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    for (let attempt = 0; attempt < 5; attempt++) {
      // A batch being written is not in the backlog any more: wait for it before deciding.
      await this.settled();
      if (this.backlog === 0) break;
      if (attempt > 0) await new Promise((resolve) => setTimeout(resolve, 200 * attempt));
      await this.flush();
    }
    await this.settled();
    if (this.backlog > 0)
      this.log.error({ backlog: this.backlog }, 'audit records could not be written before shutdown');
  }
}

/** A COPY text-format field: backslash, tab, newline and carriage return escaped; null as \N. */
function copyField(value: string | number | null): string {
  if (value === null) return '\\N';
  if (typeof value === 'number') return String(value);
  return /[\\\t\n\r]/.test(value) ? value.replace(/[\\\t\n\r]/g, (c) => COPY_ESCAPES[c]!) : value;
}

const COPY_ESCAPES: Record<string, string> = { '\\': '\\\\', '\t': '\\t', '\n': '\\n', '\r': '\\r' };

/** The ISO text of the last whole second formatted: statements come many to a second. */
let lastSecond = Number.NaN;
let lastSecondText = '';

/** Epoch milliseconds as an ISO timestamp with microseconds (UTC). */
function timestamp(ms: number): string {
  // Whole microseconds first: integers stay exact (the fraction of a float would not).
  const total = Math.round(ms * 1000);
  const second = Math.floor(total / 1e6);
  if (second !== lastSecond) {
    lastSecond = second;
    lastSecondText = new Date(second * 1000).toISOString().slice(0, -4);
  }
  return `${lastSecondText}${String(total - second * 1e6).padStart(6, '0')}Z`;
}

/** The statements as COPY text: one line per row, in the column order of insertStatements. */
function copyText(rows: StatementRecord[]): string {
  let text = '';
  for (const r of rows) {
    text += `${r.sessionId}\t${r.seq}\t${r.kind}\t${copyField(r.text)}\t${timestamp(r.startedAtMs)}\t${copyField(r.durationMs)}\t${copyField(r.commandTag)}\t${copyField(r.rows)}\t${copyField(r.sqlstate)}\n`;
  }
  return text;
}
