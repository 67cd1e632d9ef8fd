import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import pg from 'pg';
import { startTestStack, type TestStack } from './support/dev_stack.js';
import { eventually } from './support/eventually.js';
import { tempDir } from './support/temp_dir.js';

const run = promisify(execFile);

describe('PostgreSQL gateway with real clients', () => {
  let t: TestStack;
  before(async () => {
    // Grants re-checked at every connect, so the tests below see each change at once.
    t = await startTestStack({ PGWARD_PG_ROLE_SYNC_SECONDS: '0' });
  });
  after(async () => {
    await t?.close();
  });

  it('psql over TLS: the person is the login role, the connection is encrypted', async () => {
    const r = await t.psql('viewer@example.com', [
      '-At',
      '-c',
      'select current_user, session_user',
      '-c',
      '\\conninfo',
    ]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^viewer@example\.com\|viewer@example\.com$/m);
    assert.match(r.stdout, /SSL connection \(protocol: TLSv1\.[23]/);
  });

  it('psql over loopback without TLS (allowed by the dev stack)', async () => {
    const r = await t.psql('viewer@example.com', ['-At', '-c', 'select count(*) from users'], {
      sslmode: 'disable',
    });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.trim(), '3');
  });

  it("application_name is the client's own, as direct; the login role names the person in the target", async () => {
    const target = new pg.Client({ connectionString: t.stack.info.target });
    await target.connect();
    const named = await t.client('viewer@example.com', { applicationName: 'reports' });
    const unnamed = await t.client('viewer@example.com', { applicationName: '' });
    try {
      assert.equal((await named.query('show application_name')).rows[0].application_name, 'reports');
      assert.equal((await unnamed.query('show application_name')).rows[0].application_name, '');
      const pid = (await named.query('select pg_backend_pid() as pid')).rows[0].pid;
      const seen = await target.query(
        'select usename, application_name from pg_stat_activity where pid = $1',
        [pid],
      );
      assert.deepEqual(seen.rows[0], { usename: 'viewer@example.com', application_name: 'reports' });
    } finally {
      await named.end();
      await unnamed.end();
      await target.end();
    }
  });

  it('viewer can read but not write; editor can write', async () => {
    const viewer = await t.psql('viewer@example.com', [
      '-c',
      "insert into users (username, email) values ('v', 'v@x')",
    ]);
    assert.notEqual(viewer.code, 0);
    assert.match(viewer.stderr, /permission denied for table users/);
    const editor = await t.psql('editor@example.com', [
      '-At',
      '-c',
      "insert into users (username, email) values ('e1', 'e1@x') returning username",
    ]);
    assert.equal(editor.code, 0, editor.stderr);
    assert.equal(editor.stdout.trim().split('\n')[0], 'e1');
  });

  it('RESET ROLE, SET ROLE and SET SESSION AUTHORIZATION do not raise privileges', async () => {
    const reset = await t.psql('viewer@example.com', [
      '-At',
      '-c',
      'reset role',
      '-c',
      'select current_user',
    ]);
    assert.equal(reset.code, 0, reset.stderr);
    assert.match(reset.stdout, /viewer@example\.com/);
    for (const role of ['app_admin', 'app_readwrite', 'pgward_admin', 'postgres']) {
      const r = await t.psql('viewer@example.com', ['-c', `set role ${role}`]);
      assert.notEqual(r.code, 0, `set role ${role} must fail`);
      assert.match(r.stderr, /permission denied to set role/);
    }
    const auth = await t.psql('viewer@example.com', ['-c', "set session authorization 'postgres'"]);
    assert.match(auth.stderr, /permission denied to set session authorization/);
    const reset2 = await t.psql('viewer@example.com', [
      '-c',
      'reset role',
      '-c',
      "insert into users (username, email) values ('r', 'r@x')",
    ]);
    assert.match(reset2.stderr, /permission denied for table users/);
  });

  it('grants exactly the mapped roles at each connect and revokes others', async () => {
    assert.equal((await t.psql('viewer@example.com', ['-c', 'select 1'])).code, 0);
    const memberships = async (client: pg.Client) =>
      (
        await client.query(
          `select g.rolname from pg_auth_members m join pg_roles g on g.oid = m.roleid
           join pg_roles u on u.oid = m.member where u.rolname = 'viewer@example.com' order by 1`,
        )
      ).rows.map((row) => row.rolname);
    // Someone with pgward's own credential grants the viewer's login role more than its groups allow...
    const password = readFileSync(path.join(t.dataDir, 'target-admin.password'), 'utf8').trim();
    const asAdmin = new pg.Client({
      connectionString: t.stack.info.target.replace(/\/\/[^@]+@/, `//pgward_admin:${password}@`),
    });
    await asAdmin.connect();
    try {
      await asAdmin.query('GRANT app_admin TO "viewer@example.com"');
      assert.deepEqual(await memberships(asAdmin), ['app_admin', 'app_readonly']);
      // ...and the next connect through pgward takes it back.
      const r = await t.psql('viewer@example.com', ['-At', '-c', 'select 1']);
      assert.equal(r.code, 0, r.stderr);
      assert.deepEqual(await memberships(asAdmin), ['app_readonly']);
    } finally {
      await asAdmin.end();
    }
  });

  it('refuses the session when the login role holds a membership pgward cannot revoke', async () => {
    const target = new pg.Client({ connectionString: t.stack.info.target });
    await target.connect();
    try {
      await target.query('GRANT app_admin TO "viewer@example.com"');
      const r = await t.psql('viewer@example.com', ['-c', 'select 1']);
      assert.notEqual(r.code, 0);
      assert.match(r.stderr, /memberships pgward cannot revoke: app_admin/);
      await target.query('REVOKE app_admin FROM "viewer@example.com"');
      assert.equal((await t.psql('viewer@example.com', ['-c', 'select 1'])).code, 0);
    } finally {
      await target.end();
    }
  });

  it('refuses the session when the login role holds privileges granted to it directly', async () => {
    const target = new pg.Client({ connectionString: t.stack.info.target });
    await target.connect();
    try {
      await target.query('GRANT SELECT ON sensitive_data TO "viewer@example.com"');
      await target.query('GRANT UPDATE (email) ON users TO "viewer@example.com"');
      const r = await t.psql('viewer@example.com', ['-c', 'select 1']);
      assert.notEqual(r.code, 0);
      assert.match(
        r.stderr,
        /privileges granted to it directly, which pgward does not manage: column users\.email, table sensitive_data/,
      );
      await target.query('REVOKE SELECT ON sensitive_data FROM "viewer@example.com"');
      await target.query('REVOKE UPDATE (email) ON users FROM "viewer@example.com"');
      assert.equal((await t.psql('viewer@example.com', ['-c', 'select 1'])).code, 0);
    } finally {
      await target.end();
    }
  });

  it('node-postgres: simple, extended, named prepared statements and pipelining', async () => {
    const client = await t.client('editor@example.com');
    try {
      assert.equal((await client.query('select 1 + 1 as two')).rows[0].two, 2);
      const { rows } = await client.query('select $1::int * 2 as doubled, $2::text as s', [21, 'x']);
      assert.deepEqual(rows[0], { doubled: 42, s: 'x' });
      for (let i = 0; i < 3; i++) {
        const r = await client.query({
          name: 'by-name',
          text: 'select username from users where id = $1',
          values: [1],
        });
        assert.equal(r.rows[0].username, 'john_doe');
      }
      // Pipelining: many queries in flight at once on one connection.
      const results = await Promise.all(
        Array.from({ length: 50 }, (_, i) => client.query('select $1::int as i', [i])),
      );
      assert.deepEqual(
        results.map((r) => r.rows[0].i),
        Array.from({ length: 50 }, (_, i) => i),
      );
      await assert.rejects(client.query('select * from no_such_table'), /does not exist/);
      assert.equal((await client.query('select 3 as ok')).rows[0].ok, 3, 'the session survives an error');
    } finally {
      await client.end();
    }
  });

  it('relays large results with backpressure', async () => {
    const client = await t.client('viewer@example.com');
    try {
      const { rows } = await client.query(
        "select g, repeat('x', 1000) as pad from generate_series(1, 20000) g",
      );
      assert.equal(rows.length, 20000);
      assert.equal(rows[19999].g, 20000);
      const big = await client.query("select repeat('y', 20 * 1024 * 1024) as blob");
      assert.equal(big.rows[0].blob.length, 20 * 1024 * 1024);
    } finally {
      await client.end();
    }
  });

  it('COPY in and out through psql', async () => {
    const dir = tempDir('copy');
    const csv = path.join(dir, 'in.csv');
    writeFileSync(csv, Array.from({ length: 500 }, (_, i) => `copy_${i},copy_${i}@example.com`).join('\n'));
    const admin = await t.psql('admin@example.com', [
      '-c',
      `\\copy users (username, email) from '${csv}' with (format csv)`,
      '-c',
      `\\copy (select username from users where username like 'copy_%' order by id) to '${path.join(dir, 'out.csv')}'`,
    ]);
    assert.equal(admin.code, 0, admin.stderr);
    assert.match(admin.stdout, /COPY 500/);
    const { stdout } = await run('wc', ['-l', path.join(dir, 'out.csv')]);
    assert.equal(Number(stdout.trim().split(' ')[0]), 500);
  });

  it('LISTEN/NOTIFY and notices reach the client', async () => {
    const listener = await t.client('viewer@example.com');
    const notifier = await t.client('editor@example.com');
    try {
      await listener.query('listen pgward_test');
      const received = new Promise<string | undefined>((resolve) =>
        listener.on('notification', (n) => resolve(n.payload)),
      );
      await notifier.query("notify pgward_test, 'hello'");
      assert.equal(await received, 'hello');
      const notice = new Promise<string | undefined>((resolve) =>
        listener.on('notice', (n) => resolve(n.message)),
      );
      await listener.query("do $$ begin raise notice 'from the target'; end $$");
      assert.equal(await notice, 'from the target');
    } finally {
      await listener.end();
      await notifier.end();
    }
  });

  it('cancels a running query with the gateway-minted key; upstream pid and secret never leak', async () => {
    const client = await t.client('viewer@example.com');
    const target = new pg.Client({ connectionString: t.stack.info.target });
    await target.connect();
    try {
      const backendPid = (await client.query('select pg_backend_pid() as pid')).rows[0].pid;
      const { processID } = client as unknown as { processID: number };
      assert.notEqual(processID, backendPid, 'the client sees pgward’s key, not the backend pid');
      const started = Date.now();
      const sleeping = client.query('select pg_sleep(30)');
      sleeping.catch(() => undefined);
      await eventually(async () => {
        const r = await target.query(
          "select 1 from pg_stat_activity where pid = $1 and query like 'select pg_sleep%'",
          [backendPid],
        );
        return r.rowCount ? true : undefined;
      }, 'the query to start');
      t.cancel(client);
      await assert.rejects(sleeping, /canceling statement due to user request/);
      assert.ok(Date.now() - started < 20_000);
      assert.equal((await client.query('select 1 as ok')).rows[0].ok, 1);
    } finally {
      await client.end();
      await target.end();
    }
  });

  it('a client that disconnects mid-query has its upstream query cancelled', async () => {
    const client = await t.client('viewer@example.com', { applicationName: 'walks-away' });
    const target = new pg.Client({ connectionString: t.stack.info.target });
    await target.connect();
    try {
      client.query('select pg_sleep(60)').catch(() => undefined);
      await eventually(async () => {
        const r = await target.query(
          "select 1 from pg_stat_activity where query = 'select pg_sleep(60)' and state = 'active'",
        );
        return r.rowCount ? true : undefined;
      }, 'the query to start');
      (client as unknown as { connection: { stream: { destroy(): void } } }).connection.stream.destroy();
      await eventually(async () => {
        const r = await target.query(
          "select 1 from pg_stat_activity where query = 'select pg_sleep(60)' and state = 'active'",
        );
        return r.rowCount === 0 ? true : undefined;
      }, 'the upstream query to stop');
    } finally {
      await target.end();
    }
  });

  it('pools upstream connections and resets them between sessions', async () => {
    const first = await t.client('editor@example.com', { applicationName: 'pool-a' });
    const pid = (await first.query('select pg_backend_pid() as pid')).rows[0].pid;
    await first.query('prepare leftover as select 1');
    await first.query('listen leftover_channel');
    await first.query("set statement_timeout = '1234ms'");
    await first.query("set datestyle = 'SQL, DMY'");
    await first.end();
    let welcome = new Map<string, string>();
    const second = await eventually(async () => {
      welcome = new Map();
      const c = await t.client('editor@example.com', {
        applicationName: 'pool-b',
        onParameter: (name, value) => welcome.set(name, value),
      });
      const p = (await c.query('select pg_backend_pid() as pid')).rows[0].pid;
      if (p === pid) return c;
      await c.end();
      return undefined;
    }, 'the pooled connection to be reused');
    try {
      // The welcome tells the parameters as they are now: after the reset, and for this client.
      assert.equal(welcome.get('application_name'), 'pool-b');
      assert.equal(welcome.get('DateStyle'), 'ISO, MDY');
      assert.ok(welcome.has('server_version'));
      assert.equal(
        (await second.query('select count(*)::int as n from pg_prepared_statements')).rows[0].n,
        0,
      );
      assert.equal(
        (await second.query('select count(*)::int as n from pg_listening_channels()')).rows[0].n,
        0,
      );
      assert.notEqual((await second.query('show statement_timeout')).rows[0].statement_timeout, '1234ms');
      assert.equal((await second.query('show application_name')).rows[0].application_name, 'pool-b');
    } finally {
      await second.end();
    }
  });

  for (const mode of ['simple', 'extended', 'prepared']) {
    it(`pgbench -M ${mode} runs through the gateway`, async () => {
      const script = path.join(tempDir('pgbench'), 'select.sql');
      writeFileSync(script, '\\set id random(1, 3)\nselect username from users where id = :id;\n');
      const { stdout } = await run(
        'pgbench',
        [
          '-n',
          '-M',
          mode,
          '-c',
          '2',
          '-j',
          '2',
          '-t',
          '50',
          '-f',
          script,
          t.url('viewer@example.com', 'demo', 'disable'),
        ],
        { env: { ...process.env, PGPASSWORD: await t.token('viewer@example.com') }, timeout: 60_000 },
      ).catch((err: { stdout?: string; stderr?: string }) => assert.fail(`${err.stdout}\n${err.stderr}`));
      assert.match(stdout, /number of transactions actually processed: 100\/100/);
    });
  }

  it('records every session and statement in the store', async () => {
    const client = await t.client('editor@example.com', { applicationName: 'audited' });
    await client.query('select $1::text as secret_param', ['hunter2-param']);
    await client.query('select 1/0').catch(() => undefined);
    await client.query("update users set email = email where username = 'john_doe'");
    // Text that the store's COPY format must escape, kept byte for byte.
    const awkward = "select 'tab\there', E'back\\\\slash \\\\N', 'cr\r' -- line\n  , 2 as \"\\\\N\"";
    await client.query(awkward);
    const started = Date.now();
    await client.end();
    await t.stack.gateway.audit.flush();
    const store = t.store();
    const session = await eventually(async () => {
      const r = await store.query(
        `select * from pgward.session where application_name = 'audited' and ended_at is not null`,
      );
      return r.rows[0];
    }, 'the session row');
    assert.equal(session.email, 'editor@example.com');
    assert.equal(session.provider, 'dev');
    assert.equal(session.connection_name, 'demo');
    assert.equal(session.login_role, 'editor@example.com');
    assert.match(session.client_addr, /127\.0\.0\.1/);
    assert.ok(Number(session.bytes_in) > 0 && Number(session.bytes_out) > 0);
    assert.equal(session.end_reason, 'client terminated');
    const { rows } = await store.query('select * from pgward.statement where session_id = $1 order by seq', [
      session.session_id,
    ]);
    const texts = rows.map((r) => r.text);
    assert.ok(texts.includes('select $1::text as secret_param'), texts.join('\n'));
    assert.ok(!JSON.stringify(rows).includes('hunter2-param'), 'bind parameters are not recorded');
    const division = rows.find((r) => r.text === 'select 1/0');
    assert.equal(division.sqlstate, '22012');
    const update = rows.find((r) => r.text.startsWith('update users'));
    assert.equal(update.command_tag, 'UPDATE 1');
    assert.equal(Number(update.rows), 1);
    assert.equal(update.kind, 'simple');
    assert.ok(rows.every((r) => r.duration_ms !== null));
    assert.ok(texts.includes(awkward), texts.join('\n'));
    const last = rows.find((r) => r.text === awkward);
    // Microseconds survive, and the time is the statement's.
    assert.ok(Math.abs(last.started_at.getTime() - started) < 5000);
    const { rows: exact } = await store.query(
      `select count(*)::int as n from pgward.statement where session_id = $1 and extract(microseconds from started_at)::int % 1000 <> 0`,
      [session.session_id],
    );
    assert.ok(exact[0].n > 0, 'sub-millisecond precision is kept');
  });
});
