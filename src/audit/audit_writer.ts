/**
 * The audit trail's writer: sessions and statements are queued in memory and written to the
 * store in batches, off the proxy's hot path. Statements, one row per query, are encoded as
 * binary COPY rows when they are recorded (see statement_rows.ts for why) and go in with COPY:
 * on a busy machine the store's CPU competes with the proxy and the target, and COPY costs it
 * a fraction of an INSERT per row. Sessions are few and go in with one INSERT per batch.
 * close() writes everything still queued, so a clean shutdown loses nothing.
 *
 * When the store cannot take a batch, the batch goes to the spool (spool.ts), a file that
 * survives a crash, and every batch after it follows it there until the spool has been replayed
 * into the store, oldest first, so the store sees records in the order they happened. Retries
 * are idempotent: a statement batch carries its id (`pgward.audit_batch`), session starts are
 * inserted ON CONFLICT DO NOTHING and session ends are an UPDATE to the same values. Without a
 * spool (or when it is full) batches wait in memory, bounded: past the bound, statements are
 * dropped, counted and logged; sessions are never dropped.
 */
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type pg from 'pg';
import { from as copyFrom } from 'pg-copy-streams';
import { PgwardError } from '../errors.js';
import type { Logger } from '../log/logger.js';
import { type AuditBatch, type AuditSpool, recordsOf, type SpoolStatus } from './spool.js';
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
  /** What policies made of it: allowed, refused or observed; null when none applied. */
  decision: 'allowed' | 'refused' | 'observed' | null;
  /** JSON array of the outcomes behind `decision` (policy, rule, outcome, message). */
  decidedBy: string | null;
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

/** What to do while the store cannot take the audit (`audit.onStoreDown`). */
export type OnStoreDown = 'spool' | 'refuse';

export interface AuditWriterOptions {
  /** Where batches go while the store cannot take them (opened by the caller). */
  spool?: AuditSpool | undefined;
  /** `refuse`: accepting() is false while the store is unreachable, even with room in the spool. */
  onStoreDown?: OnStoreDown;
}

/** The writer's state, for health and metrics. */
export interface AuditStatus {
  /** Whether the store took the last write. */
  storeReachable: boolean;
  /** Whether new sessions and statements can be recorded durably (see accepting()). */
  accepting: boolean;
  onStoreDown: OnStoreDown;
  /** Records waiting in memory. */
  backlog: number;
  /** Statements dropped since start (the memory bound was reached and the spool could not take them). */
  dropped: number;
  spool: SpoolStatus | undefined;
}

export class AuditWriter {
  private starts: SessionStart[] = [];
  private ends: SessionEnd[] = [];
  private readonly statements = new StatementRows();
  /** Dropped since the last log line about it, and since start. */
  private dropped = 0;
  private droppedTotal = 0;
  /** Records written since start (for metrics); they only grow. */
  readonly totals = { statementsWritten: 0, sessionStartsWritten: 0, sessionEndsWritten: 0 };
  private timer: NodeJS.Timeout | undefined;
  private flushing: Promise<void> | undefined;
  private failures = 0;
  /** While the store fails, it is tried again from this time (ms); batches go to the spool meanwhile. */
  private retryAt = 0;
  private closed = false;
  /** Set by spoolNow(): the process is about to exit, nothing is written after it. */
  private abandoned = false;
  private prunedAt = 0;
  /** A batch taken from memory and being written to the store; whether it is in the spool too. */
  private inFlight: AuditBatch | undefined;
  private inFlightSpooled = false;
  private readonly spool: AuditSpool | undefined;
  private readonly onStoreDown: OnStoreDown;

  constructor(
    private readonly pool: pg.Pool,
    private readonly log: Logger,
    opts: AuditWriterOptions = {},
  ) {
    this.spool = opts.spool;
    this.onStoreDown = opts.onStoreDown ?? 'spool';
    // Records spooled by an earlier run go to the store first.
    if (this.spool?.pending) this.schedule();
  }

  /**
   * Whether a new session or statement can be recorded durably now. False while the store is
   * unreachable in `refuse` mode, and in `spool` mode while it is unreachable and the spool is
   * full or unusable. The connect path and the relay refuse work while it is false (see
   * refusal()), so that "every statement recorded" holds.
   */
  accepting(): boolean {
    if (this.failures === 0) return true;
    if (this.onStoreDown === 'refuse') return false;
    const spool = this.spool?.status();
    return spool?.usable === true && !spool.full;
  }

  /** The error to refuse a session or statement with while accepting() is false. */
  refusal(): PgwardError {
    return new PgwardError(
      'AUDIT_UNAVAILABLE',
      'pgward cannot record this session in its audit trail right now; try again shortly',
      {
        hint:
          this.onStoreDown === 'refuse'
            ? 'the audit store is unreachable and audit.onStoreDown is "refuse"'
            : 'the audit store is unreachable and the audit spool is full',
      },
    );
  }

  status(): AuditStatus {
    return {
      storeReachable: this.failures === 0,
      accepting: this.accepting(),
      onStoreDown: this.onStoreDown,
      backlog: this.backlog,
      dropped: this.droppedTotal,
      spool: this.spool?.status(),
    };
  }

  /** The audit's health: ok only while the store takes writes, nothing is spooled and nothing was dropped. */
  health(): { ok: boolean; detail: string; data: Record<string, number | string | boolean> } {
    const a = this.status();
    const spooled = a.spool ? `, ${a.spool.records} records (${a.spool.bytes} bytes) in the spool` : '';
    return {
      ok: a.storeReachable && a.accepting && a.dropped === 0 && (a.spool?.records ?? 0) === 0,
      detail: `${a.storeReachable ? 'writing to the store' : 'store unreachable'}, ${a.backlog} records queued${spooled}, ${a.dropped} dropped${a.accepting ? '' : ', refusing new sessions'}`,
      data: {
        storeReachable: a.storeReachable,
        accepting: a.accepting,
        onStoreDown: a.onStoreDown,
        backlog: a.backlog,
        dropped: a.dropped,
        spoolUsable: a.spool?.usable ?? false,
        spoolBytes: a.spool?.bytes ?? 0,
        spoolRecords: a.spool?.records ?? 0,
        spoolMaxBytes: a.spool?.maxBytes ?? 0,
        spoolFull: a.spool?.full ?? false,
        spoolSkippedFrames: a.spool?.skippedFrames ?? 0,
      },
    };
  }

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
    // The store is slower than the proxy (or replaying a long spool): the queue moves to the
    // spool rather than grow; the spool is replayed first, so the order holds.
    if (this.statements.bytes >= MAX_QUEUED_BYTES && this.spool && !this.abandoned) this.spoolQueued();
    if (this.statements.bytes >= MAX_QUEUED_BYTES) {
      // Never silent: counted for health, logged at the first of each run of drops and after.
      if (this.dropped++ === 0)
        this.log.error('the audit queue is full and the store is unreachable: statements are being dropped');
      this.droppedTotal++;
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
    // While the store fails, queued records still go to the spool at the usual pace.
    const spooling = this.spool?.status().usable === true;
    const delay =
      this.failures === 0 || spooling ? FLUSH_INTERVAL_MS : Math.min(30_000, 500 * 2 ** this.failures);
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
    if (this.abandoned) return;
    if (this.failures > 0 && Date.now() < this.retryAt && !this.closed) {
      // Backing off: what is queued goes to the spool, where it survives a crash.
      this.spoolQueued();
      this.schedule();
      return;
    }
    if (this.spool?.pending) {
      // Spooled batches are older than anything in memory: they go first.
      try {
        for (let frame = this.spool.next(); frame && !this.abandoned; frame = this.spool.next()) {
          await this.write(frame.batch);
          this.spool.replayed(frame);
          if (!this.spool.pending) this.log.info('the audit spool has been replayed into the store');
        }
      } catch (err) {
        this.storeFailed(err);
        this.spoolQueued();
        this.schedule();
        return;
      }
    }
    const batch = this.take();
    if (recordsOf(batch) === 0) {
      this.storeWorked();
      return;
    }
    this.inFlight = batch;
    try {
      await this.write(batch);
      this.storeWorked();
    } catch (err) {
      this.storeFailed(err);
      if (!this.abandoned && !this.inFlightSpooled && !this.spool?.append(batch)) this.putBack(batch);
    } finally {
      this.inFlight = undefined;
      this.inFlightSpooled = false;
    }
    if (this.backlog === 0 && !this.spool?.pending) return;
    if (this.failures === 0 && this.statements.bytes >= BATCH_BYTES && !this.closed) {
      // A full batch arrived during this write: it goes next, not after the timer.
      if (this.timer) clearTimeout(this.timer);
      this.timer = undefined;
      setImmediate(() => void this.flush());
    } else this.schedule();
  }

  /** Everything queued in memory, as one batch (statements up to MAX_BATCH_BYTES). */
  private take(): AuditBatch {
    return {
      starts: this.starts.splice(0),
      statements: this.statements.take(MAX_BATCH_BYTES),
      ends: this.ends.splice(0),
    };
  }

  /** Puts a batch back in front of the queue, in order, to be retried. */
  private putBack(batch: AuditBatch): void {
    this.starts.unshift(...batch.starts);
    this.statements.putBack(batch.statements);
    this.ends.unshift(...batch.ends);
  }

  /** Writes one batch; starts before statements and ends, so an end always finds its session row. */
  private async write(batch: AuditBatch): Promise<void> {
    if (batch.starts.length > 0) await this.insertStarts(batch.starts);
    if (batch.statements.rows > 0) await this.insertStatements(batch.statements);
    if (batch.ends.length > 0) await this.updateEnds(batch.ends);
    this.totals.sessionStartsWritten += batch.starts.length;
    this.totals.statementsWritten += batch.statements.rows;
    this.totals.sessionEndsWritten += batch.ends.length;
  }

  private storeWorked(): void {
    if (this.failures > 0) this.log.info('the audit store is reachable again');
    this.failures = 0;
    if (this.dropped > 0) {
      this.log.error(
        { dropped: this.dropped },
        'audit queue overflowed while the store was unreachable: statements were not recorded',
      );
      this.dropped = 0;
    }
  }

  private storeFailed(err: unknown): void {
    this.failures++;
    this.retryAt = Date.now() + Math.min(30_000, 500 * 2 ** this.failures);
    const cause = err instanceof PgwardError && err.cause instanceof Error ? err.cause : err;
    this.log.error(
      { err: (cause as Error).message, failures: this.failures, spooling: this.spool !== undefined },
      this.spool
        ? 'audit write failed; records go to the spool until the store is back'
        : 'audit write failed; will retry',
    );
  }

  /**
   * Moves what is queued in memory into the spool (while the store fails). What does not fit
   * stays in memory. Returns the records that could not be spooled.
   */
  private spoolQueued(): number {
    if (!this.spool) return this.backlog;
    // A batch being written is older than the queue: it goes first (if it lands in the store
    // as well, its replay changes nothing).
    if (this.inFlight && !this.inFlightSpooled) {
      if (!this.spool.append(this.inFlight)) return this.backlog;
      this.inFlightSpooled = true;
    }
    while (this.backlog > 0) {
      const batch = this.take();
      if (!this.spool.append(batch)) {
        this.putBack(batch);
        break;
      }
    }
    return this.backlog;
  }

  /**
   * For a shutdown out of time: synchronously spools everything queued and the batch being
   * written (which may land in the store too: retries are idempotent), and stops writing.
   * Returns the records that could not be spooled (logged as lost).
   */
  spoolNow(): number {
    this.closed = true;
    this.abandoned = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    // spoolQueued() spools the batch being written first; without a spool it counts as lost.
    if (this.inFlight && !this.spool) this.putBack(this.inFlight);
    let lost = this.spoolQueued();
    if (this.inFlight && this.spool && !this.inFlightSpooled) lost += recordsOf(this.inFlight);
    this.droppedTotal += lost;
    if (lost > 0)
      this.log.error({ records: lost }, 'audit records could not be written or spooled: they are lost');
    this.spool?.close();
    return lost;
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
        `COPY pgward.statement (${batch.columns ?? STATEMENT_COLUMNS}) FROM STDIN (FORMAT binary)`,
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
   * When the store fails, what is left goes to the spool (replayed at the next start); without
   * a spool it gives up after five failed writes in a row, logging what is lost.
   */
  async close(): Promise<void> {
    if (this.abandoned) return;
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    let failed = 0;
    for (;;) {
      // A batch being written is not in the backlog any more: wait for it before deciding.
      await this.settled();
      if ((this.backlog === 0 && !this.spool?.pending) || failed === 5) break;
      // The store is down and the spool takes the rest: no point waiting for it.
      if (failed > 0 && this.spool?.status().usable) break;
      if (failed > 0) await new Promise((resolve) => setTimeout(resolve, 200 * failed));
      await this.flush();
      // A write that worked resets the count of failures.
      failed = this.failures === 0 ? 0 : failed + 1;
    }
    await this.settled();
    const lost = this.spoolQueued();
    const spooled = this.spool?.status();
    if (spooled && spooled.records > 0)
      this.log.warn(
        { records: spooled.records, file: this.spool!.file },
        'audit records are in the spool; the next start replays them into the store',
      );
    if (lost > 0) {
      this.droppedTotal += lost;
      this.log.error({ backlog: lost }, 'audit records could not be written before shutdown');
    }
    this.spool?.close();
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
