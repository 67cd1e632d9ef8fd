/**
 * The audit trail's writer: sessions and statements are queued in memory and written to the
 * store in batches (one INSERT ... SELECT FROM unnest(...) per table), off the proxy's hot path.
 * close() writes everything still queued, so a clean shutdown loses nothing. When the store is
 * unreachable, batches are retried with backoff and the queue is bounded: past the bound,
 * statements are dropped and counted (and that count logged); sessions are never dropped.
 */
import type pg from 'pg';
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
  startedAt: Date;
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

  /** Writes what is queued now (one flush at a time). */
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
      if (this.closed) throw err;
    }
    if (this.backlog > 0) this.schedule();
  }

  private async insertStarts(rows: SessionStart[]): Promise<void> {
    await this.pool.query(
      `INSERT INTO pgward.session (session_id, user_id, email, provider, connection_name, login_role, client_addr,
         application_name, started_at)
       SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
         $8::text[], $9::timestamptz[])
       ON CONFLICT (session_id) DO NOTHING`,
      [
        rows.map((r) => r.sessionId),
        rows.map((r) => r.userId),
        rows.map((r) => r.email),
        rows.map((r) => r.provider),
        rows.map((r) => r.connectionName),
        rows.map((r) => r.loginRole),
        rows.map((r) => r.clientAddr),
        rows.map((r) => r.applicationName),
        rows.map((r) => r.startedAt),
      ],
    );
  }

  private async insertStatements(rows: StatementRecord[]): Promise<void> {
    await this.pool.query(
      `INSERT INTO pgward.statement (session_id, seq, kind, text, started_at, duration_ms, command_tag, rows, sqlstate)
       SELECT * FROM unnest($1::uuid[], $2::int[], $3::text[], $4::text[], $5::timestamptz[], $6::float8[],
         $7::text[], $8::bigint[], $9::text[])
       ON CONFLICT (session_id, seq) DO NOTHING`,
      [
        rows.map((r) => r.sessionId),
        rows.map((r) => r.seq),
        rows.map((r) => r.kind),
        rows.map((r) => r.text),
        rows.map((r) => r.startedAt),
        rows.map((r) => r.durationMs),
        rows.map((r) => r.commandTag),
        rows.map((r) => r.rows),
        rows.map((r) => r.sqlstate),
      ],
    );
  }

  private async updateEnds(rows: SessionEnd[]): Promise<void> {
    await this.pool.query(
      `UPDATE pgward.session s SET ended_at = e.ended_at, bytes_in = e.bytes_in, bytes_out = e.bytes_out,
         end_reason = e.end_reason
       FROM unnest($1::uuid[], $2::timestamptz[], $3::bigint[], $4::bigint[], $5::text[])
         AS e(session_id, ended_at, bytes_in, bytes_out, end_reason)
       WHERE s.session_id = e.session_id`,
      [
        rows.map((r) => r.sessionId),
        rows.map((r) => r.endedAt),
        rows.map((r) => r.bytesIn),
        rows.map((r) => r.bytesOut),
        rows.map((r) => r.endReason),
      ],
    );
  }

  /** Writes everything still queued; call after the proxy stopped accepting. */
  async close(): Promise<void> {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    for (let attempt = 0; this.backlog > 0 && attempt < 5; attempt++) {
      await this.flush().catch(() => new Promise((resolve) => setTimeout(resolve, 200 * (attempt + 1))));
    }
    if (this.backlog > 0)
      this.log.error({ backlog: this.backlog }, 'audit records could not be written before shutdown');
  }
}
