/**
 * The audit trail's writer: sessions and statements are queued in memory and written to the
 * store in batches, off the proxy's hot path. Statements, one row per query, are encoded as
 * binary COPY rows when they are recorded (see statement_rows.ts for why) and go in with COPY:
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
import {
  COPY_HEADER,
  COPY_TRAILER,
  type RowBatch,
  STATEMENT_COLUMNS,
  StatementRows,
} from './statement_rows.js';

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

/**
 * How long a statement waits to be written. The store pays for small batches: measured, the
 * first thousand rows of a COPY cost it about twice as much per row as the rows after them, so
 * at 10,000 statements a second on 2 cores it spent 10.5 µs per row with a 100 ms wait (batches
 * of 1,000) and 6.8 µs with 500 ms, CPU taken from the proxy and the target on a shared machine.
 */
const FLUSH_INTERVAL_MS = 500;
/** Statement bytes that start a write at once, and the most one COPY carries. */
const BATCH_BYTES = 1024 * 1024;
const MAX_BATCH_BYTES = 8 * 1024 * 1024;
/** Statement bytes kept while the store is unreachable; past this, statements are dropped. */
const MAX_QUEUED_BYTES = 64 * 1024 * 1024;
/** How often written batch ids older than a day are deleted. */
const PRUNE_INTERVAL_MS = 60 * 60 * 1000;
/** Audited statement text is capped; the rest is marked as cut. */
export const MAX_STATEMENT_TEXT = 64 * 1024;

export class AuditWriter {
  private starts: SessionStart[] = [];
  private ends: SessionEnd[] = [];
  private readonly statements = new StatementRows();
  private dropped = 0;
  /** Records written and dropped since start (for metrics); they only grow. */
  readonly totals = {
    statementsWritten: 0,
    sessionStartsWritten: 0,
    sessionEndsWritten: 0,
    statementsDropped: 0,
  };
  private timer: NodeJS.Timeout | undefined;
  private flushing: Promise<void> | undefined;
  private failures = 0;
  private closed = false;
  private prunedAt = 0;

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
    this.statements.forget(s.sessionId);
    this.schedule();
  }

  statement(s: StatementRecord): void {
    if (this.statements.bytes >= MAX_QUEUED_BYTES) {
      this.dropped++;
      this.totals.statementsDropped++;
      return;
    }
    this.statements.add(s);
    // A full batch goes at once, unless one is being written or the store is failing (backoff).
    if (this.statements.bytes >= BATCH_BYTES && !this.flushing && this.failures === 0) void this.flush();
    else this.schedule();
  }

  /** Records not yet written (for health and tests). */
  get backlog(): number {
    return this.starts.length + this.ends.length + this.statements.rows;
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
    const statements = this.statements.take(MAX_BATCH_BYTES);
    const ends = this.ends.splice(0);
    if (starts.length + statements.rows + ends.length === 0) return;
    try {
      // Starts before statements and ends, so an end always finds its session row.
      if (starts.length > 0) await this.insertStarts(starts);
      if (statements.rows > 0) await this.insertStatements(statements);
      if (ends.length > 0) await this.updateEnds(ends);
      this.failures = 0;
      this.totals.sessionStartsWritten += starts.length;
      this.totals.statementsWritten += statements.rows;
      this.totals.sessionEndsWritten += ends.length;
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
      this.statements.putBack(statements);
      this.ends.unshift(...ends);
    }
    if (this.backlog === 0) return;
    if (this.failures === 0 && this.statements.bytes >= BATCH_BYTES && !this.closed) {
      // A full batch arrived during this write: it goes next, not after the timer.
      if (this.timer) clearTimeout(this.timer);
      this.timer = undefined;
      setImmediate(() => void this.flush());
    } else this.schedule();
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
   * One transaction per batch: the batch's id, then its rows. COPY is all or nothing, so a failed
   * batch is simply retried; a batch that was written but whose answer was lost is recognised
   * on its retry by its id (23505) and counts as written. The statement table has no unique
   * index of its own: one cost the store half of its CPU per statement.
   */
  private async insertStatements(batch: RowBatch): Promise<void> {
    const client = await this.pool.connect();
    let broken: Error | undefined;
    try {
      await client.query('BEGIN');
      try {
        await client.query('INSERT INTO pgward.audit_batch (batch_id) VALUES ($1)', [batch.id]);
      } catch (err) {
        if ((err as { code?: string }).code !== '23505') throw err;
        await client.query('ROLLBACK');
        return;
      }
      if (Date.now() - this.prunedAt > PRUNE_INTERVAL_MS) {
        // Retries come within minutes; batch ids a day old will not be asked about again.
        await client.query(`DELETE FROM pgward.audit_batch WHERE written_at < now() - interval '1 day'`);
        this.prunedAt = Date.now();
      }
      await copyRows(
        client,
        `COPY pgward.statement (${STATEMENT_COLUMNS}) FROM STDIN (FORMAT binary)`,
        batch,
      );
      await client.query('COMMIT');
    } catch (err) {
      broken = err as Error;
      throw err;
    } finally {
      // A connection left mid-transaction is not reused.
      client.release(broken);
    }
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

  /**
   * Writes everything still queued, batch after batch; call after the proxy stopped accepting.
   * Gives up after five failed writes in a row (the store is gone), logging what is lost.
   */
  async close(): Promise<void> {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    let failed = 0;
    for (;;) {
      // A batch being written is not in the backlog any more: wait for it before deciding.
      await this.settled();
      if (this.backlog === 0 || failed === 5) break;
      if (failed > 0) await new Promise((resolve) => setTimeout(resolve, 200 * failed));
      await this.flush();
      // A write that worked resets the count of failures.
      failed = this.failures === 0 ? 0 : failed + 1;
    }
    await this.settled();
    if (this.backlog > 0)
      this.log.error({ backlog: this.backlog }, 'audit records could not be written before shutdown');
  }
}

/**
 * Sends a batch of binary rows through COPY ... FROM STDIN: header, the rows' parts, trailer.
 * One part at a time, each after the previous was taken: handed everything at once, the COPY
 * stream queues parts behind a full socket, and when the store refuses the COPY meanwhile it
 * later writes them to a connection it has let go of (an uncaught exception).
 */
async function copyRows(client: pg.PoolClient, sql: string, batch: RowBatch): Promise<void> {
  await pipeline(Readable.from([COPY_HEADER, ...batch.parts, COPY_TRAILER]), client.query(copyFrom(sql)));
}
