/**
 * The built-in rules and caps of the relay, tried as the person they restrict, over every
 * protocol path a client has: simple Query, extended Parse/Bind/Execute (pipelined, flushed,
 * named), FunctionCall, multi-statement texts, DO blocks, transactions. The target itself
 * would allow each refused statement (a role may change its own password and settings), so a
 * refusal can only come from pgward; where PostgreSQL answers a failed statement with a given
 * sequence of messages, pgward's refusal must come in the same sequence.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { startTestStack, type TestStack } from './support/dev_stack.js';
import { eventually, passesSoon } from './support/eventually.js';
import { msg, RawSession, shape } from './support/raw_session.js';

describe('relay: built-in rules and caps on every protocol path', () => {
  let t: TestStack;
  let target: pg.Client;
  before(async () => {
    t = await startTestStack();
    target = new pg.Client({ connectionString: t.stack.info.target });
    await target.connect();
  });
  after(async () => {
    await target?.end();
    await t?.close();
  });

  const raw = (email = 'viewer@example.com') => t.raw(email);
  /** The demo target as its superuser, spoken byte by byte (what PostgreSQL itself answers). */
  const direct = async () => {
    const url = new URL(t.stack.info.target);
    return RawSession.open({
      host: url.hostname,
      port: Number(url.port),
      user: decodeURIComponent(url.username),
      database: url.pathname.slice(1),
      password: decodeURIComponent(url.password),
    });
  };
  /** Statements recorded in the audit whose text matches `like`. */
  const audited = async (like: string) => {
    await t.stack.gateway.audit.flush();
    const { rows } = await t
      .store()
      .query('select text, sqlstate, kind from pgward.statement where text like $1 order by started_at', [
        like,
      ]);
    return rows as { text: string; sqlstate: string | null; kind: string }[];
  };
  /** The login role's stored settings in the target (what ALTER ROLE ... SET would leave). */
  const storedSettings = async (role: string) =>
    (
      await target.query(
        'select s.setconfig from pg_db_role_setting s join pg_roles r on r.oid = s.setrole where r.rolname = $1',
        [role],
      )
    ).rows;

  const ROLE_CHANGES = [
    "alter role current_user password 'hunter2-simple'",
    "ALTER USER CURRENT_USER WITH ENCRYPTED PASSWORD 'hunter2-user'",
    "alter role current_user set role = 'app_admin'",
    'alter role session_user set search_path = evil',
    "alter role current_user valid until 'infinity'",
    '/* harmless */ alter /* still */ role current_user reset all',
    "select 1; alter role current_user set role = 'app_admin'",
    "do $$ begin execute 'alter role ' || quote_ident(current_user) || ' password ''hunter2-do'''; end $$",
    "do $x$ begin execute format('alter role %I set role = %L', current_user, 'app_admin'); end $x$",
    "do $$ begin alter role current_user set role = 'app_admin'; end $$",
    'grant app_admin to current_user',
    `comment on role "viewer@example.com" is 'mine now'`,
  ];

  for (const sql of ROLE_CHANGES) {
    it(`refuses through psql (simple Query): ${sql}`, async () => {
      const r = await t.psql('viewer@example.com', ['-v', 'ON_ERROR_STOP=1', '-c', sql]);
      assert.notEqual(r.code, 0);
      assert.match(r.stderr, /ERROR: {2}.*(pgward|not allowed)/);
    });
  }

  it('leaves the login role untouched after all those attempts (nothing reached the target)', async () => {
    assert.deepEqual(await storedSettings('viewer@example.com'), []);
    const { rows } = await target.query(
      "select rolvaliduntil from pg_roles where rolname = 'viewer@example.com'",
    );
    assert.notEqual(String(rows[0].rolvaliduntil), 'Infinity');
  });

  it('refuses a role change in the extended protocol (node-postgres, named statement), and the session goes on', async () => {
    const client = await t.client('viewer@example.com');
    try {
      await assert.rejects(
        client.query({ name: 'sneaky', text: "alter role current_user set role = 'app_admin'" }),
        (err: { code?: string; message: string }) =>
          err.code === '42501' && /changes a database role/.test(err.message),
      );
      assert.equal((await client.query('select 41 + 1 as n')).rows[0].n, 42);
    } finally {
      await client.end();
    }
    assert.deepEqual(await storedSettings('viewer@example.com'), []);
  });

  it('answers a refused Parse in a pipeline with the sequence PostgreSQL gives a failed Parse', async () => {
    const batch = (failing: string) => [
      msg.parse('', 'select 1'),
      msg.bind('', ''),
      msg.execute(''),
      msg.parse('', failing),
      msg.bind('', ''),
      msg.execute(''),
      msg.sync(),
    ];
    const viaPgward = await raw();
    viaPgward.send(...batch("alter role current_user password 'hunter2-pipeline'"));
    const refused = await viaPgward.untilReady();
    viaPgward.close();
    const pgDirect = await direct();
    pgDirect.send(...batch('selec 1'));
    const failed = await pgDirect.untilReady();
    pgDirect.close();
    assert.equal(shape(refused), shape(failed));
    assert.equal(shape(refused), '12DCEZ');
    assert.equal(refused.at(-2)!.fields?.get('C'), '42501');
    assert.equal(refused.at(-2)!.fields?.get('S'), 'ERROR');
    assert.equal(refused.at(-1)!.message.at(5), 'I'.charCodeAt(0));
  });

  it('reports a refused Parse at Flush, before Sync, as PostgreSQL reports a failed one', async () => {
    const session = await raw();
    session.send(msg.parse('', "alter role current_user password 'hunter2-flush'"), msg.flush());
    const early = await eventually(
      async () => (session as unknown as { answers: unknown[] }).answers.length > 0 || undefined,
      'the error before Sync',
    );
    assert.ok(early);
    session.send(msg.sync());
    const answers = await session.untilReady();
    assert.equal(shape(answers), 'EZ');
    session.close();
  });

  it('leaves a transaction aborted after a refusal, as PostgreSQL leaves it after an error', async () => {
    const session = await raw();
    session.send(msg.query('begin'));
    assert.equal(shape(await session.untilReady()), 'CZ');
    session.send(msg.query("alter role current_user set role = 'app_admin'"));
    const refused = await session.untilReady();
    assert.equal(shape(refused), 'EZ');
    assert.equal(String.fromCharCode(refused[1]!.message[5]!), 'E', 'the transaction is failed');
    session.send(msg.query('select 1'));
    const next = await session.untilReady();
    assert.equal(next[0]!.fields?.get('C'), '25P02');
    session.send(msg.query('rollback'));
    assert.equal(shape(await session.untilReady()), 'CZ');
    session.send(msg.query('select 1'));
    assert.equal(shape(await session.untilReady()), 'TDCZ');
    session.close();
  });

  it('refuses a FunctionCall of query_to_xml (OID 2924) and records it by name; allows large-object calls', async () => {
    const session = await raw('editor@example.com');
    session.send(msg.functionCall(2924, ["select 'fastpath-secret-query'", 'true', 'false', '']));
    const refused = await session.untilReady();
    assert.equal(shape(refused), 'EZ');
    assert.equal(refused[0]!.fields?.get('C'), '42501');
    assert.match(refused[0]!.fields?.get('M') ?? '', /OID 2924/);
    session.send(msg.query('begin'));
    await session.untilReady();
    session.send(msg.functionCall(957, ['-1']));
    const created = await session.untilReady();
    assert.equal(shape(created), 'VZ');
    session.send(msg.query('rollback'));
    await session.untilReady();
    session.close();
    const calls = await audited('FunctionCall%');
    assert.ok(calls.some((c) => c.text === 'FunctionCall of OID 2924' && c.sqlstate === '42501'));
    assert.ok(calls.some((c) => c.text === 'FunctionCall lo_creat (OID 957)' && c.sqlstate === null));
  });

  it('records what a named statement really runs when a second Parse of its name fails', async () => {
    const session = await raw();
    session.send(msg.parse('twice', "select 'first-text'"), msg.sync());
    assert.equal(shape(await session.untilReady()), '1Z');
    session.send(msg.parse('twice', "select 'second-text'"), msg.sync());
    const again = await session.untilReady();
    assert.equal(again[0]!.fields?.get('C'), '42P05');
    session.send(msg.bind('', 'twice'), msg.execute(''), msg.sync());
    assert.equal(shape(await session.untilReady()), '2DCZ');
    session.close();
    const runs = await audited("select '%-text'");
    assert.deepEqual(
      runs.map((r) => r.text),
      ["select 'first-text'"],
    );
  });

  it('caps prepared statements per session with 54000, and still records later statements by their text', async () => {
    const session = await raw();
    const parses = Array.from({ length: 10_001 }, (_, i) => msg.parse(`s${i}`, `select ${i}`));
    session.send(...parses, msg.sync());
    const answers = await session.untilReady(1, 60_000);
    assert.equal(answers.filter((a) => a.type === '1').length, 10_000);
    const error = answers.find((a) => a.type === 'E');
    assert.equal(error?.fields?.get('C'), '54000');
    assert.match(error?.fields?.get('M') ?? '', /too many prepared statements in this session/);
    session.send(msg.parse('', "select 'after-the-cap'"), msg.bind('', ''), msg.execute(''), msg.sync());
    assert.equal(shape(await session.untilReady()), '12DCZ');
    session.send(msg.closeStatement('s0'), msg.sync());
    assert.equal(shape(await session.untilReady()), '3Z');
    session.send(msg.parse('one-more', "select 'fits-again'"), msg.sync());
    const fits = await session.untilReady();
    assert.equal(shape(fits), '1Z', JSON.stringify([...(fits[0]?.fields ?? [])]));
    session.close();
    // The 10,001 statements before it reach the store first, in batches.
    await passesSoon(
      async () =>
        assert.deepEqual(
          (await audited("select 'after-the-cap'")).map((r) => r.text),
          ["select 'after-the-cap'"],
        ),
      'the statement after the cap in the audit',
      30_000,
    );
    assert.equal((await audited('(unknown%')).length, 0);
  });

  it('records the whole text of a statement behind 70 KiB of comment', async () => {
    const client = await t.client('viewer@example.com');
    const sql = `/* ${'x'.repeat(70 * 1024)} */ select 'tail-is-recorded' as tail`;
    try {
      assert.equal((await client.query(sql)).rows[0].tail, 'tail-is-recorded');
    } finally {
      await client.end();
    }
    const rows = await audited("%select 'tail-is-recorded' as tail");
    assert.equal(rows.length, 1);
    assert.equal(rows[0]!.text, sql);
  });

  it('refuses a statement over the recording cap (simple and extended) with 54000, and the session goes on', async () => {
    const huge = `select '${'y'.repeat(2 * 1024 * 1024)}'`;
    const session = await raw();
    session.send(msg.query(huge));
    const simple = await session.untilReady();
    assert.equal(shape(simple), 'EZ');
    assert.equal(simple[0]!.fields?.get('C'), '54000');
    session.send(msg.parse('', huge), msg.bind('', ''), msg.execute(''), msg.sync());
    const extended = await session.untilReady();
    assert.equal(shape(extended), 'EZ');
    assert.equal(extended[0]!.fields?.get('C'), '54000');
    session.send(msg.query('select 1'));
    assert.equal(shape(await session.untilReady()), 'TDCZ');
    session.close();
  });

  it('holds memory near the message cap for a 100 MB Query, not twice its size', async () => {
    const session = await raw();
    const before = process.memoryUsage();
    const size = 100 * 1024 * 1024;
    const head = Buffer.alloc(5);
    head.write('Q');
    head.writeInt32BE(size + 4, 1);
    // Over the 64 MiB message cap: refused as a protocol violation at its header.
    session.socket.write(head);
    const chunk = Buffer.alloc(1024 * 1024, 0x61);
    for (let i = 0; i < 8 && !session.closed; i++) session.socket.write(chunk);
    const answers = await session.untilClosed();
    const after = process.memoryUsage();
    assert.equal(answers[0]?.fields?.get('C'), '08P01');
    assert.ok(after.arrayBuffers - before.arrayBuffers < 32 * 1024 * 1024, 'no 100 MB buffer was held');
  });

  it('keeps password literals out of the audit and the API', async () => {
    await t.psql('viewer@example.com', ['-c', "alter role current_user password 'hunter2-audit'"]);
    const rows = await audited('%alter role current_user password%');
    assert.ok(rows.length >= 1);
    for (const row of rows) {
      assert.doesNotMatch(row.text, /hunter2/);
      assert.equal(row.sqlstate, '42501');
    }
    const { rows: all } = await t
      .store()
      .query("select count(*)::int as n from pgward.statement where text like '%hunter2%'");
    assert.equal(
      all[0].n,
      0,
      JSON.stringify(
        (await t.store().query("select text from pgward.statement where text like '%hunter2%'")).rows,
      ),
    );
    const api = await fetch(`${t.stack.info.http}/api/v1/statements?limit=500`, {
      headers: { authorization: `Bearer ${await t.token('admin@example.com')}` },
    });
    assert.equal(api.status, 200);
    assert.doesNotMatch(await api.text(), /hunter2/);
  });

  it('sends one error when the target ends a session (pg_terminate_backend), byte for byte as PostgreSQL does', async () => {
    const terminated = async (session: RawSession) => {
      session.send(msg.query('select pg_backend_pid() as pid'));
      const pidAnswer = await session.untilReady();
      const row = pidAnswer.find((a) => a.type === 'D')!.message;
      await target.query('select pg_terminate_backend($1)', [Number(row.toString('utf8', 11))]);
      return session.untilClosed();
    };
    const viaPgward = await terminated(await raw());
    const pgDirect = await terminated(await direct());
    assert.equal(shape(viaPgward), shape(pgDirect));
    const errors = viaPgward.filter((a) => a.type === 'E');
    assert.equal(errors.length, 1, 'exactly one ErrorResponse');
    assert.equal(errors[0]!.fields?.get('C'), '57P01');
    assert.equal(errors[0]!.fields?.get('S'), 'FATAL');
    assert.deepEqual(errors[0]!.message, pgDirect.find((a) => a.type === 'E')!.message, 'the same bytes');
  });

  it('counts sessions and statements by outcome in /metrics', async () => {
    const session = await raw();
    session.send(msg.query("select 'metrics-ok'"));
    await session.untilReady();
    session.send(msg.query('select 1/0'));
    await session.untilReady();
    session.send(msg.query("alter role current_user password 'hunter2-metrics'"));
    await session.untilReady();
    session.close();
    const scrape = await eventually(async () => {
      const text = await (await fetch(`${t.stack.info.http}/metrics`)).text();
      return /pgward_sessions_ended_total\{[^}]*connection="demo"[^}]*outcome="client_terminated"[^}]*\} [1-9]/.test(
        text,
      )
        ? text
        : undefined;
    }, 'the session to be counted');
    for (const outcome of ['ok', 'error', 'refused']) {
      assert.match(
        scrape,
        new RegExp(`pgward_statements_total\\{[^}]*connection="demo"[^}]*outcome="${outcome}"[^}]*\\} [1-9]`),
        outcome,
      );
    }
    assert.match(scrape, /pgward_sessions_started_total\{[^}]*connection="demo"[^}]*\} [1-9]/);
    assert.match(scrape, /pgward_connect_duration_seconds_count [1-9]/);
    assert.doesNotMatch(scrape, /hunter2|metrics-ok|viewer@example/);
  });
});
