import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import path from 'node:path';
import { after, before, describe, it, mock } from 'node:test';
import type pg from 'pg';
import { AuditWriter, type StatementRecord } from '../src/audit/audit_writer.js';
import { AuditSpool } from '../src/audit/spool.js';
import { type EmbeddedCluster, startEmbeddedPostgres } from '../src/store/embedded_postgres.js';
import { migrate } from '../src/store/migrate.js';
import { createPool } from '../src/store/store.js';
import { createDatabase, startTestPostgres } from './support/postgres.js';
import { quietLog } from './support/quiet_log.js';
import { removeTempDir, tempDir } from './support/temp_dir.js';

/**
 * The pool with each client's queries passed through `intercept`, which runs the query by
 * calling `query()` (a COPY's query returns a stream, so it is passed through as it is).
 */
function interceptQueries(
  pool: pg.Pool,
  intercept: (sql: unknown, query: () => Promise<unknown>) => unknown,
): pg.Pool {
  const wrapped = Object.create(pool) as pg.Pool;
  wrapped.connect = (async () => {
    const client = await pool.connect();
    const query = client.query.bind(client) as (...args: unknown[]) => Promise<unknown>;
    return Object.assign(Object.create(client), {
      query: (...args: unknown[]) => intercept(args[0], () => query(...args)),
      release: (err?: Error) => client.release(err),
    });
  }) as unknown as pg.Pool['connect'];
  return wrapped;
}

/** The audit writer against a real store: COPY, and a batch written twice. */
describe('the audit writer', () => {
  let cluster: EmbeddedCluster;
  let pool: pg.Pool;
  before(async () => {
    cluster = await startTestPostgres();
    pool = createPool(await createDatabase(cluster));
    await migrate(pool, quietLog);
  });
  after(async () => {
    await pool?.end();
    await cluster?.close();
  });

  const statement = (sessionId: string, seq: number, text: string): StatementRecord => ({
    sessionId,
    seq,
    kind: 'simple',
    text,
    // 12:34:56.789012 UTC, plus a second per statement (each formats its own second).
    startedAtMs: Date.UTC(2026, 10, 23, 12, 34, 56 + seq, 789) + 0.012,
    durationMs: 0.5,
    commandTag: 'SELECT 1',
    rows: 1,
    sqlstate: null,
    decision: null,
    decidedBy: null,
  });

  it('writes statements byte for byte', async () => {
    const writer = new AuditWriter(pool, quietLog);
    const sessionId = randomUUID();
    const texts = ['select 1', 'a\tb\nc\\d\re', '\\N', '\\.', 'ünïcödé 🐘', "select 'naïve' -- ascii first"];
    texts.forEach((text, i) => {
      writer.statement(statement(sessionId, i + 1, text));
    });
    await writer.close();
    assert.equal(writer.backlog, 0);
    const { rows } = await pool.query<{ seq: number; text: string; at: string }>(
      `SELECT seq, text, to_char(started_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') AS at
         FROM pgward.statement WHERE session_id = $1 ORDER BY seq`,
      [sessionId],
    );
    assert.deepEqual(
      rows.map((r) => r.text),
      texts,
    );
    for (const r of rows) {
      const second = String(56 + r.seq - 60 * Math.floor((56 + r.seq) / 60)).padStart(2, '0');
      const minute = 34 + Math.floor((56 + r.seq) / 60);
      assert.equal(r.at, `2026-11-23 12:${minute}:${second}.789012`, `statement ${r.seq}`);
    }
  });

  it('writes a batch whose answer was lost only once: its retry is recognised by the batch id', async () => {
    // The store commits the batch, then the connection fails before the answer arrives.
    let lost = 0;
    const faulty = interceptQueries(pool, (sql, query) => {
      if (sql !== 'COMMIT' || lost++ > 0) return query();
      return query().then(() => {
        throw new Error('connection lost after COMMIT');
      });
    });
    const writer = new AuditWriter(faulty, quietLog);
    const sessionId = randomUUID();
    for (let seq = 1; seq <= 3; seq++) writer.statement(statement(sessionId, seq, `select ${seq}`));
    await writer.flush();
    assert.equal(lost, 1, 'the first COMMIT lost its answer');
    assert.equal(writer.backlog, 3, 'the batch waits to be retried');
    writer.statement(statement(sessionId, 4, 'select 4'));
    await writer.close();
    assert.equal(writer.backlog, 0);
    const { rows } = await pool.query<{ seq: number }>(
      'SELECT seq FROM pgward.statement WHERE session_id = $1 ORDER BY seq',
      [sessionId],
    );
    assert.deepEqual(
      rows.map((r) => r.seq),
      [1, 2, 3, 4],
    );
  });

  it('writes a full batch that arrived during a write next, without waiting for the timer', async () => {
    // The first write waits at BEGIN until released; the writer's timers are frozen, so only
    // the "full batch goes next" step can start the second write.
    let begins = 0;
    let release!: () => void;
    const gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    const gated = interceptQueries(pool, (sql, query) =>
      sql === 'BEGIN' && ++begins === 1 ? gate.then(query) : query(),
    );
    mock.timers.enable({ apis: ['setTimeout'] });
    const writer = new AuditWriter(gated, quietLog);
    const sessionId = randomUUID();
    try {
      writer.statement(statement(sessionId, 1, 'select 1'));
      const first = writer.flush();
      const text = 'x'.repeat(100_000);
      for (let seq = 2; seq <= 13; seq++) writer.statement(statement(sessionId, seq, text)); // 1.2 MB
      release();
      await first;
      for (let turns = 0; begins < 2 && turns < 10_000; turns++) await new Promise((r) => setImmediate(r));
      assert.equal(begins, 2, 'the second write started with no timer firing');
    } finally {
      mock.timers.reset();
    }
    await writer.close();
    const { rows } = await pool.query<{ n: number }>(
      'SELECT count(*)::int AS n FROM pgward.statement WHERE session_id = $1',
      [sessionId],
    );
    assert.equal(rows[0]!.n, 13);
  });

  it('writes every field as it was recorded: nulls, 64-bit row counts, SQLSTATEs, each kind', async () => {
    const writer = new AuditWriter(pool, quietLog);
    const sessionId = randomUUID();
    const base = statement(sessionId, 1, 'x');
    writer.statement({ ...base, seq: 1, kind: 'extended', durationMs: null, commandTag: null, rows: null });
    writer.statement({
      ...base,
      seq: 2,
      kind: 'function',
      rows: 2 ** 40 + 7,
      commandTag: 'SELECT 1099511627783',
    });
    writer.statement({ ...base, seq: 3, sqlstate: '22012', durationMs: 1234.567, rows: 0 });
    const decidedBy = JSON.stringify([
      { policy: 'guard', rule: 'rules[0] (deny ddl)', outcome: 'refused', message: 'no' },
    ]);
    writer.statement({ ...base, seq: 4, sqlstate: '42501', decision: 'refused', decidedBy });
    await writer.close();
    const { rows } = await pool.query(
      `SELECT seq, kind, duration_ms, command_tag, rows::text AS rows, sqlstate, decision,
              decided_by::jsonb AS "decidedBy" FROM pgward.statement
        WHERE session_id = $1 ORDER BY seq`,
      [sessionId],
    );
    assert.deepEqual(rows, [
      {
        seq: 1,
        kind: 'extended',
        duration_ms: null,
        command_tag: null,
        rows: null,
        sqlstate: null,
        decision: null,
        decidedBy: null,
      },
      {
        seq: 2,
        kind: 'function',
        duration_ms: 0.5,
        command_tag: 'SELECT 1099511627783',
        rows: '1099511627783',
        sqlstate: null,
        decision: null,
        decidedBy: null,
      },
      {
        seq: 3,
        kind: 'simple',
        duration_ms: 1234.567,
        command_tag: 'SELECT 1',
        rows: '0',
        sqlstate: '22012',
        decision: null,
        decidedBy: null,
      },
      {
        seq: 4,
        kind: 'simple',
        duration_ms: 0.5,
        command_tag: 'SELECT 1',
        rows: '1',
        sqlstate: '42501',
        decision: 'refused',
        decidedBy: JSON.parse(decidedBy),
      },
    ]);
  });

  it('keeps statements while the store refuses them, up to its bound, and writes them once it accepts', async () => {
    const writer = new AuditWriter(pool, quietLog);
    const sessionId = randomUUID();
    // The store refuses every new statement row until the constraint goes.
    await pool.query('ALTER TABLE pgward.statement ADD CONSTRAINT refuse_all CHECK (false) NOT VALID');
    try {
      const long = 'ü'.repeat(60_000); // 120,000 bytes a row: 600 rows pass the 64 MiB bound
      for (let seq = 1; seq <= 600; seq++) writer.statement(statement(sessionId, seq, `${seq} ${long}`));
      // The first megabyte went out (and was refused) while the rest arrived: the bound counts
      // what waits, so that batch comes on top once it is put back.
      await writer.flush();
      const accepted = writer.backlog;
      assert.ok(accepted > 500 && accepted < 600, `${accepted} statements kept`);
      await pool.query('ALTER TABLE pgward.statement DROP CONSTRAINT refuse_all');
      await writer.close();
      assert.equal(writer.backlog, 0);
      const { rows } = await pool.query<{ n: number; first: number; last: number }>(
        `SELECT count(*)::int AS n, min(seq) AS first, max(seq) AS last FROM pgward.statement WHERE session_id = $1`,
        [sessionId],
      );
      // The oldest are kept, in order; the newest were the ones dropped.
      assert.deepEqual(rows[0], { n: accepted, first: 1, last: accepted });
    } finally {
      await pool.query('ALTER TABLE pgward.statement DROP CONSTRAINT IF EXISTS refuse_all');
    }
  });

  it('with a spool, drops nothing past the memory bound while the store refuses: the queue moves to the spool', async () => {
    const root = tempDir('audit-bound');
    const spool = new AuditSpool(path.join(root, 'spool'), 256 * 1024 * 1024, quietLog);
    spool.open();
    const writer = new AuditWriter(pool, quietLog, { spool });
    const sessionId = randomUUID();
    await pool.query('ALTER TABLE pgward.statement ADD CONSTRAINT refuse_all CHECK (false) NOT VALID');
    try {
      const long = 'ü'.repeat(60_000); // 600 rows of 120,000 bytes: past the 64 MiB bound
      for (let seq = 1; seq <= 600; seq++) writer.statement(statement(sessionId, seq, `${seq} ${long}`));
      await writer.flush();
      assert.equal(writer.status().dropped, 0);
      await pool.query('ALTER TABLE pgward.statement DROP CONSTRAINT refuse_all');
      await writer.close();
      const { rows } = await pool.query<{ n: number; seqs: number }>(
        'SELECT count(*)::int AS n, count(DISTINCT seq)::int AS seqs FROM pgward.statement WHERE session_id = $1',
        [sessionId],
      );
      assert.deepEqual(rows[0], { n: 600, seqs: 600 });
    } finally {
      await pool.query('ALTER TABLE pgward.statement DROP CONSTRAINT IF EXISTS refuse_all');
      removeTempDir(root);
    }
  });

  it('writes thousands of statements in several batches, and close() waits for the batch in flight', async () => {
    // 4,999 statements of about 200 bytes stay under the 1 MiB that starts a write; the long
    // last one crosses it, and that write takes everything: it is in flight, with nothing left
    // queued, when close() is called. close() once returned then, and its rows were lost.
    const writer = new AuditWriter(pool, quietLog);
    const sessionId = randomUUID();
    const long = 'ü'.repeat(60_000); // 120,000 bytes in UTF-8
    for (let seq = 1; seq <= 5000; seq++) {
      writer.statement(statement(sessionId, seq, seq === 5000 ? long : `select ${seq} -- ${'x'.repeat(90)}`));
    }
    assert.equal(writer.backlog, 0, 'the last statement started a write that took everything');
    await writer.close();
    assert.equal(writer.backlog, 0);
    const { rows } = await pool.query<{ n: number; seqs: number; longest: number }>(
      `SELECT count(*)::int AS n, count(DISTINCT seq)::int AS seqs, max(length(text))::int AS longest
         FROM pgward.statement WHERE session_id = $1`,
      [sessionId],
    );
    assert.deepEqual(rows[0], { n: 5000, seqs: 5000, longest: 60_000 });
    const { rows: sample } = await pool.query<{ text: string }>(
      'SELECT text FROM pgward.statement WHERE session_id = $1 AND seq = 4999',
      [sessionId],
    );
    assert.equal(sample[0]!.text, `select 4999 -- ${'x'.repeat(90)}`);
  });
});

/** The writer against a store that is stopped and started again: the spool, and refuse mode. */
describe('the audit writer while the store is down', () => {
  const root = tempDir('audit-down');
  const dir = path.join(root, 'cluster');
  let cluster: EmbeddedCluster;
  let url: string;
  let port: number;
  before(async () => {
    cluster = await startEmbeddedPostgres({ dir, log: quietLog });
    port = cluster.port;
    url = cluster.url;
    const pool = createPool(url);
    await migrate(pool, quietLog);
    await pool.end();
  });
  after(async () => {
    await cluster?.close();
    removeTempDir(root);
  });
  const stopStore = () => cluster.close();
  const startStore = async () => {
    cluster = await startEmbeddedPostgres({ dir, log: quietLog, port });
  };

  const statement = (sessionId: string, seq: number): StatementRecord => ({
    sessionId,
    seq,
    kind: 'simple',
    text: `select ${seq}`,
    startedAtMs: Date.now(),
    durationMs: 0.5,
    commandTag: 'SELECT 1',
    rows: 1,
    sqlstate: null,
    decision: null,
    decidedBy: null,
  });
  const start = (sessionId: string) => ({
    sessionId,
    userId: null,
    email: 'viewer@example.com',
    provider: 'dev',
    connectionName: 'demo',
    loginRole: null,
    clientAddr: '127.0.0.1',
    applicationName: 'test',
    startedAt: new Date(),
  });
  const end = (sessionId: string) => ({
    sessionId,
    endedAt: new Date(),
    bytesIn: 1,
    bytesOut: 2,
    endReason: 'client closed',
  });
  async function stored(pool: pg.Pool, sessionId: string) {
    const { rows } = await pool.query<{ seqs: number[] | null; sessions: number; ended: boolean }>(
      `SELECT (SELECT array_agg(seq ORDER BY seq) FROM pgward.statement WHERE session_id = $1) AS seqs,
              (SELECT count(*)::int FROM pgward.session WHERE session_id = $1) AS sessions,
              (SELECT ended_at IS NOT NULL FROM pgward.session WHERE session_id = $1) AS ended`,
      [sessionId],
    );
    return rows[0]!;
  }

  it('spools what the store cannot take and replays it exactly once, in order, when the store is back', async () => {
    const spool = new AuditSpool(path.join(root, 'spool-1'), 64 * 1024 * 1024, quietLog);
    spool.open();
    const pool = createPool(url);
    const writer = new AuditWriter(pool, quietLog, { spool });
    const sessionId = randomUUID();
    writer.sessionStarted(start(sessionId));
    writer.statement(statement(sessionId, 1));
    await writer.flush();
    await stopStore();
    try {
      for (let seq = 2; seq <= 50; seq++) writer.statement(statement(sessionId, seq));
      writer.sessionEnded(end(sessionId));
      await writer.flush();
      assert.equal(writer.status().storeReachable, false);
      assert.equal(writer.accepting(), true, 'spool mode keeps accepting while the spool has room');
      assert.equal(writer.backlog, 0, 'nothing waits in memory: it is in the spool');
      assert.equal(spool.status().records, 50);
      // More statements while the store is down (backing off) go to the spool too.
      writer.statement(statement(sessionId, 51));
      await writer.flush();
      assert.equal(spool.status().records, 51);
    } finally {
      await startStore();
    }
    await writer.flush();
    // A second replay (as after a crash mid-replay) changes nothing.
    await writer.close();
    const check = createPool(url);
    const row = await stored(check, sessionId);
    await check.end();
    await pool.end();
    assert.deepEqual(row, {
      seqs: Array.from({ length: 51 }, (_, i) => i + 1),
      sessions: 1,
      ended: true,
    });
    assert.equal(spool.status().records, 0);
  });

  it('regression: audit records could not be written before shutdown: close() with the store down spools them, and a restart replays them', async () => {
    const spoolDir = path.join(root, 'spool-2');
    const spool = new AuditSpool(spoolDir, 64 * 1024 * 1024, quietLog);
    spool.open();
    const pool = createPool(url);
    const writer = new AuditWriter(pool, quietLog, { spool });
    const sessionId = randomUUID();
    await stopStore();
    try {
      writer.sessionStarted(start(sessionId));
      for (let seq = 1; seq <= 205; seq++) writer.statement(statement(sessionId, seq));
      writer.sessionEnded(end(sessionId));
      const began = Date.now();
      await writer.close();
      assert.ok(Date.now() - began < 5_000, 'close() does not wait for a store that is gone');
      assert.equal(writer.backlog, 0);
      assert.equal(writer.status().dropped, 0);
    } finally {
      await pool.end();
      await startStore();
    }
    // The next run finds the spool and writes it first.
    const reopened = new AuditSpool(spoolDir, 64 * 1024 * 1024, quietLog);
    reopened.open();
    assert.equal(reopened.status().records, 207);
    const pool2 = createPool(url);
    const next = new AuditWriter(pool2, quietLog, { spool: reopened });
    await next.close();
    const row = await stored(pool2, sessionId);
    await pool2.end();
    assert.deepEqual(row, { seqs: Array.from({ length: 205 }, (_, i) => i + 1), sessions: 1, ended: true });
  });

  it('regression: a session end spooled while its start was being written is not lost (the older batch goes first)', async () => {
    const pool = createPool(url);
    // The batch holding the session's start is written slowly, then fails.
    let release!: () => void;
    const gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    let failed = false;
    const slow = Object.create(pool) as pg.Pool;
    slow.connect = pool.connect.bind(pool) as pg.Pool['connect'];
    slow.query = ((...args: unknown[]) => {
      if (!failed && String(args[0]).includes('INSERT INTO pgward.session')) {
        failed = true;
        return gate.then(() => Promise.reject(new Error('Connection terminated unexpectedly')));
      }
      return (pool.query as (...a: unknown[]) => unknown)(...args);
    }) as pg.Pool['query'];
    const spool = new AuditSpool(path.join(root, 'spool-5'), 256 * 1024 * 1024, quietLog);
    spool.open();
    const writer = new AuditWriter(slow, quietLog, { spool });
    const sessionId = randomUUID();
    writer.sessionStarted(start(sessionId));
    const first = writer.flush();
    writer.sessionEnded(end(sessionId));
    // Past the memory bound while the start is in flight: the queue (with the end) is spooled.
    const long = 'ü'.repeat(60_000);
    for (let seq = 1; seq <= 600; seq++)
      writer.statement({ ...statement(sessionId, seq), text: `${seq} ${long}` });
    release();
    await first;
    await writer.close();
    assert.equal(writer.status().dropped, 0);
    const { rows } = await pool.query<{ n: number; ended: boolean }>(
      `SELECT (SELECT count(*)::int FROM pgward.statement WHERE session_id = $1) AS n,
              (SELECT ended_at IS NOT NULL FROM pgward.session WHERE session_id = $1) AS ended`,
      [sessionId],
    );
    await pool.end();
    assert.deepEqual(rows[0], { n: 600, ended: true });
  });

  it('in refuse mode stops accepting while the store is unreachable, and accepts again when it is back', async () => {
    const spool = new AuditSpool(path.join(root, 'spool-3'), 64 * 1024 * 1024, quietLog);
    spool.open();
    const pool = createPool(url);
    const writer = new AuditWriter(pool, quietLog, { spool, onStoreDown: 'refuse' });
    const sessionId = randomUUID();
    assert.equal(writer.accepting(), true);
    await stopStore();
    try {
      writer.statement(statement(sessionId, 1));
      await writer.flush();
      assert.equal(writer.accepting(), false);
      const refusal = writer.refusal();
      assert.equal(refusal.code, 'AUDIT_UNAVAILABLE');
      assert.equal(refusal.sqlstate, '57P03');
      // What it had accepted is not lost: it is spooled.
      assert.equal(spool.status().records, 1);
    } finally {
      await startStore();
    }
    // A statement in the spool mode's writer would be accepted; here the store must answer first.
    const deadline = Date.now() + 30_000;
    while (!writer.accepting() && Date.now() < deadline) {
      await writer.flush();
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    assert.equal(writer.accepting(), true);
    await writer.close();
    const row = await stored(pool, sessionId);
    await pool.end();
    assert.deepEqual(row.seqs, [1]);
  });

  it('in spool mode stops accepting when the spool is full; what does not fit waits in memory', async () => {
    const spool = new AuditSpool(path.join(root, 'spool-4'), 64 * 1024, quietLog);
    spool.open();
    const pool = createPool(url);
    const writer = new AuditWriter(pool, quietLog, { spool });
    const sessionId = randomUUID();
    await stopStore();
    try {
      for (let seq = 1; seq <= 2000; seq++)
        writer.statement({ ...statement(sessionId, seq), text: 'x'.repeat(100) });
      await writer.flush();
      assert.equal(writer.accepting(), false, 'the spool cannot take the batch');
      assert.ok(writer.backlog > 0, 'what does not fit waits in memory');
    } finally {
      await startStore();
    }
    await writer.close();
    await pool.end();
    assert.equal(writer.backlog, 0);
  });
});
