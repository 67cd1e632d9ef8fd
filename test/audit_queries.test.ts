import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import type pg from 'pg';
import { AuditQueries } from '../src/audit/audit_queries.js';
import type { EmbeddedCluster } from '../src/store/embedded_postgres.js';
import { migrate } from '../src/store/migrate.js';
import { createPool } from '../src/store/store.js';
import { createDatabase, startTestPostgres } from './support/postgres.js';
import { quietLog } from './support/quiet_log.js';

const SECOND = 1_000;
const HOUR = 3_600 * SECOND;
const DAY = 24 * HOUR;

/**
 * Listing statements newest first: the listing looks back over a short window and widens it,
 * so these statements lie seconds, hours and weeks apart, on both sides of each step.
 */
describe('listing audited statements', () => {
  let cluster: EmbeddedCluster;
  let pool: pg.Pool;
  let queries: AuditQueries;
  const now = Date.now();
  const open = randomUUID();
  const ended = randomUUID();
  /** Every statement as `session/seq`, newest first. */
  const all = ['open/1', 'open/2', 'open/3', 'ended/3', 'ended/2', 'ended/1', 'open/4', 'open/5'];
  const ages: Record<string, number> = {
    'open/1': 10 * SECOND,
    'open/2': 2 * HOUR,
    'open/3': 3 * DAY,
    'ended/3': 10 * DAY + 30 * SECOND,
    'ended/2': 10 * DAY + 40 * SECOND,
    'ended/1': 10 * DAY + 50 * SECOND,
    'open/4': 20 * DAY,
    'open/5': 35 * DAY,
  };

  before(async () => {
    cluster = await startTestPostgres();
    pool = createPool(await createDatabase(cluster));
    await migrate(pool, quietLog);
    queries = new AuditQueries(pool);
    await pool.query(
      `INSERT INTO pgward.session (session_id, client_addr, email, started_at, ended_at)
       VALUES ($1, '127.0.0.1', 'open@example.com', $2, NULL),
              ($3, '127.0.0.1', 'ended@example.com', $4, $5)`,
      [
        open,
        new Date(now - 40 * DAY),
        ended,
        new Date(now - 10 * DAY - 60 * SECOND),
        new Date(now - 10 * DAY),
      ],
    );
    for (const [name, age] of Object.entries(ages)) {
      const [session, seq] = name.split('/');
      await pool.query(
        `INSERT INTO pgward.statement (session_id, seq, kind, text, started_at)
         VALUES ($1, $2, 'simple', $3, $4)`,
        [session === 'open' ? open : ended, Number(seq), `select '${name}'`, new Date(now - age)],
      );
    }
  });
  after(async () => {
    await pool?.end();
    await cluster?.close();
  });

  const names = (rows: { sessionId: string; seq: number }[]) =>
    rows.map((r) => `${r.sessionId === open ? 'open' : 'ended'}/${r.seq}`);

  it('finds the newest first, however far back they lie', async () => {
    assert.deepEqual(names(await queries.statements({ limit: 100 })), all);
    assert.deepEqual(names(await queries.statements({ limit: 2 })), all.slice(0, 2));
    assert.deepEqual(names(await queries.statements({ limit: 4 })), all.slice(0, 4));
    assert.deepEqual(names(await queries.statements({ limit: 7 })), all.slice(0, 7));
  });

  it('keeps to the time range asked for', async () => {
    const until = new Date(now - DAY);
    assert.deepEqual(names(await queries.statements({ until, limit: 2 })), ['open/3', 'ended/3']);
    assert.deepEqual(names(await queries.statements({ until, limit: 100 })), all.slice(2));
    const since = new Date(now - 5 * DAY);
    assert.deepEqual(names(await queries.statements({ since, limit: 100 })), all.slice(0, 3));
    assert.deepEqual(
      names(await queries.statements({ since: new Date(now - 11 * DAY), until, limit: 100 })),
      all.slice(2, 6),
    );
  });

  it("lists a session's statements within its lifetime, and none of an unknown session", async () => {
    assert.deepEqual(names(await queries.statements({ sessionId: ended, limit: 100 })), [
      'ended/3',
      'ended/2',
      'ended/1',
    ]);
    assert.deepEqual(names(await queries.statements({ sessionId: open, limit: 100 })), [
      'open/1',
      'open/2',
      'open/3',
      'open/4',
      'open/5',
    ]);
    assert.deepEqual(names(await queries.statements({ sessionId: open, limit: 4 })), [
      'open/1',
      'open/2',
      'open/3',
      'open/4',
    ]);
    assert.deepEqual(await queries.statements({ sessionId: randomUUID(), limit: 100 }), []);
  });

  it('combines the window with the other filters', async () => {
    assert.deepEqual(names(await queries.statements({ email: 'ended@example.com', limit: 2 })), [
      'ended/3',
      'ended/2',
    ]);
    assert.deepEqual(names(await queries.statements({ text: "'open/5'", limit: 100 })), ['open/5']);
  });
});
