/**
 * Policies on the wire, tried as the person they restrict, against a target that would allow
 * every refused statement (the administrator's app_admin role may drop, delete and write
 * anything), so a refusal can only come from pgward: psql, node-postgres (simple and extended,
 * named statements), raw pipelines, psycopg2, FunctionCall; read-only escapes; row limits;
 * observe mode; a policy changed through the API while sessions are open; the API and CLI.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { PolicyCatalog } from '../src/policy/policy_catalog.js';
import { validatePolicy } from '../src/policy/policy_document.js';
import { runCli } from './support/cli.js';
import { startTestStack, type TestStack } from './support/dev_stack.js';
import { passesSoon } from './support/eventually.js';
import { failure, policyAdmin } from './support/policy_admin.js';
import { quietLog } from './support/quiet_log.js';
import { msg, shape } from './support/raw_session.js';
import { tempDir } from './support/temp_dir.js';

const ADMIN = 'admin@example.com';
const VIEWER = 'viewer@example.com';

describe('policies on the wire', () => {
  let t: TestStack;
  let target: pg.Client;
  let adminToken: string;
  before(async () => {
    t = await startTestStack();
    target = new pg.Client({ connectionString: t.stack.info.target });
    await target.connect();
    adminToken = await t.token(ADMIN);
    await target.query(`
      create table if not exists public.policy_probe (id serial primary key, note text);
      grant all on public.policy_probe, public.policy_probe_id_seq to app_admin;
      insert into public.policy_probe (note) select 'row ' || g from generate_series(1, 20) g;
      create or replace function public.sneaky_write() returns int language sql as
        $$ insert into public.policy_probe (note) values ('sneaky') returning id $$;
      grant execute on function public.sneaky_write() to app_admin;`);
  });
  after(async () => {
    await target?.end();
    await t?.close();
  });

  const {
    api,
    put: putPolicy,
    drop: dropPolicy,
  } = policyAdmin(
    () => t,
    () => adminToken,
  );
  const probeCount = async () =>
    Number((await target.query('select count(*) from public.policy_probe')).rows[0].count);
  const raw = (email = ADMIN) => t.raw(email);
  const statements = async (like: string) => {
    await t.stack.gateway.audit.flush();
    const { rows } = await t
      .store()
      .query(
        'select text, sqlstate, decision, decided_by from pgward.statement where text like $1 order by started_at',
        [like],
      );
    return rows as { text: string; sqlstate: string | null; decision: string | null; decided_by: unknown }[];
  };

  const GUARD = {
    name: 'guard',
    connections: ['demo'],
    groups: ['admin'],
    rules: [
      { deny: ['ddl', 'truncate'], message: 'schema changes go through migrations' },
      { deny: 'write-without-where' },
      { deny: { functions: ['pg_read_file', 'lo_import'] } },
      { deny: { tables: ['public.sensitive_data'], access: 'write' } },
      { deny: 'multi-statement' },
    ],
  };

  describe('guardrails', () => {
    let admin: pg.Client;
    before(async () => {
      await putPolicy(GUARD);
      admin = await t.client(ADMIN);
    });
    after(async () => {
      await admin.end();
      await dropPolicy('guard');
    });

    it('refuses DDL with the rule message, POLICY_DENIED, a hint; nothing reaches the target', async () => {
      const err = await failure(admin, 'drop table public.policy_probe');
      assert.equal(err.code, '42501');
      assert.equal(err.message, 'schema changes go through migrations');
      assert.match(
        err.detail ?? '',
        /^pgward error POLICY_DENIED: policy "guard", rules\[0\] \(deny ddl, truncate\)/,
      );
      assert.ok(err.hint);
      assert.equal((await failure(admin, 'truncate public.policy_probe')).code, '42501');
      assert.equal((await probeCount()) >= 20, true, 'the table is still there, with its rows');
      const [record] = await statements('drop table public.policy_probe');
      assert.equal(record?.decision, 'refused');
      assert.equal(record?.sqlstate, '42501');
      assert.match(String(record?.decided_by), /"policy":"guard"/);
    });

    it('write-without-where through CTEs, EXPLAIN ANALYZE and DO bodies; with WHERE it runs', async () => {
      const before = await probeCount();
      for (const text of [
        'delete from public.policy_probe',
        'with d as (delete from public.policy_probe returning 1) select count(*) from d',
        'explain analyze update public.policy_probe set note = null',
        'do $$ begin delete from public.policy_probe; end $$',
        "do $$ begin execute 'delete from public.policy_probe'; end $$",
      ]) {
        assert.equal((await failure(admin, text)).code, '42501', text);
      }
      assert.equal(await probeCount(), before);
      await admin.query('update public.policy_probe set note = note where id = 1');
      assert.equal(
        (await admin.query("select 'delete from public.policy_probe' as t")).rows[0].t,
        'delete from public.policy_probe',
      );
    });

    it('functions, tables and multi-statement texts', async () => {
      assert.equal((await failure(admin, "select pg_read_file('/etc/hostname')")).code, '42501');
      assert.equal(
        (await failure(admin, "insert into public.sensitive_data (secret) values ('x')")).code,
        '42501',
      );
      await admin.query('select count(*) from public.sensitive_data');
      assert.equal((await failure(admin, 'select 1; select 2')).code, '42501');
    });

    it('extended protocol: refused at Parse, named or not, and the session goes on', async () => {
      const err = await failure(admin, 'select pg_read_file($1)', ['/etc/hostname']);
      assert.equal(err.code, '42501');
      assert.match(err.detail ?? '', /deny functions/);
      try {
        await admin.query({ name: 'nuke', text: 'delete from public.policy_probe' });
        assert.fail('named statement ran');
      } catch (e) {
        assert.equal((e as { code: string }).code, '42501');
      }
      assert.equal((await admin.query({ text: 'select $1::int as n', values: [7] })).rows[0].n, 7);
    });

    it('a pipeline: the refusal comes at its place, the rest of the batch is skipped, as PostgreSQL does', async () => {
      const s = await raw();
      const before = await probeCount();
      s.send(
        msg.parse('', 'select 1'),
        msg.bind('', ''),
        msg.execute(''),
        msg.parse('', 'delete from public.policy_probe'),
        msg.bind('', ''),
        msg.execute(''),
        msg.parse('', "insert into public.policy_probe (note) values ('after refusal')"),
        msg.bind('', ''),
        msg.execute(''),
        msg.sync(),
      );
      const answers = await s.untilReady();
      assert.equal(shape(answers), '12DCEZ');
      assert.equal(answers.find((a) => a.type === 'E')?.fields?.get('C'), '42501');
      assert.equal(await probeCount(), before, 'nothing after the refusal ran');
      s.close();
    });

    it('a refusal inside a transaction leaves it aborted, as PostgreSQL would', async () => {
      await admin.query('begin');
      assert.equal((await failure(admin, 'drop table public.policy_probe')).code, '42501');
      assert.equal((await failure(admin, 'select 1')).code, '25P02');
      await admin.query('rollback');
      await admin.query('select 1');
    });

    it('psql shows the refusal and exits with an error', async () => {
      const out = await t.psql(ADMIN, ['-c', 'drop table public.policy_probe']);
      assert.notEqual(out.code, 0);
      assert.match(out.stderr, /schema changes go through migrations/);
      assert.match(out.stderr, /POLICY_DENIED/);
    });

    it('psycopg2 gets 42501 with the message', async (ctx) => {
      const python = '/usr/bin/python3';
      const script = `
import sys, psycopg2
c = psycopg2.connect(sys.argv[1]); c.autocommit = True
cur = c.cursor()
try:
    cur.execute("drop table public.policy_probe")
    print("ran")
except psycopg2.Error as e:
    print(e.pgcode, e.diag.message_primary)
cur.execute("select %s::int", (5,)); print(cur.fetchone()[0])
`;
      const ok = await new Promise<boolean>((resolve) =>
        execFile(python, ['-c', 'import psycopg2'], (err) => resolve(!err)),
      );
      if (!ok) return ctx.skip('python3-psycopg2 is not installed');
      const dsn = `${t.url(ADMIN)}&password=${encodeURIComponent(adminToken)}`;
      const out = await new Promise<string>((resolve, reject) =>
        execFile(python, ['-c', script, dsn], (err, stdout, stderr) =>
          err ? reject(new Error(stderr)) : resolve(stdout),
        ),
      );
      assert.equal(out.trim(), '42501 schema changes go through migrations\n5');
    });

    it('people the policy does not name are not held to it', async () => {
      const viewer = await t.client(VIEWER);
      // The viewer's own database role refuses the drop: the database's error, not the policy's.
      const err = await failure(viewer, 'drop table public.policy_probe');
      assert.equal(err.code, '42501');
      assert.doesNotMatch(err.detail ?? '', /POLICY_DENIED/);
      await viewer.end();
    });
  });

  describe('prepared statements and policy changes', () => {
    it('EXECUTE is judged by what PREPARE made; a statement prepared before a policy is judged again', async () => {
      const admin = await t.client(ADMIN);
      await putPolicy({ name: 'no-writes', connections: ['demo'], rules: [{ deny: ['dcl'] }] });
      await admin.query("prepare ins as insert into public.policy_probe (note) values ('prepared')");
      await admin.query({ name: 'ins2', text: "insert into public.policy_probe (note) values ('named')" });
      await putPolicy({ name: 'no-writes', connections: ['demo'], rules: [{ deny: ['write'] }] });
      const before = await probeCount();
      await passesSoon(async () => {
        assert.equal((await failure(admin, 'execute ins')).code, '42501');
      }, 'the new policy refusing EXECUTE');
      try {
        await admin.query({ name: 'ins2', text: "insert into public.policy_probe (note) values ('named')" });
        assert.fail('the named statement ran past the new policy');
      } catch (e) {
        assert.equal((e as { code: string }).code, '42501');
      }
      assert.equal(
        (await failure(admin, "prepare ins3 as insert into public.policy_probe (note) values ('x')")).code,
        '42501',
      );
      assert.equal((await failure(admin, 'execute never_prepared')).code, '42501');
      assert.equal(await probeCount(), before);
      await dropPolicy('no-writes');
      await passesSoon(() => admin.query('execute ins'), 'EXECUTE allowed again');
      await admin.end();
    });

    it('a policy added through the API bites sessions that are already open', async () => {
      const admin = await t.client(ADMIN);
      await admin.query('create table public.live_change (a int)');
      await putPolicy({ name: 'live', connections: ['demo'], rules: [{ deny: 'ddl' }] });
      await passesSoon(async () => {
        assert.equal((await failure(admin, 'create table public.live_change2 (a int)')).code, '42501');
      }, 'the new policy refusing DDL');
      await dropPolicy('live');
      await passesSoon(() => admin.query('create table public.live_change3 (a int)'), 'DDL allowed again');
      await admin.end();
      await target.query('drop table public.live_change, public.live_change3');
    });
  });

  describe('read-only', () => {
    before(async () => {
      await putPolicy({
        name: 'read-only',
        connections: ['demo'],
        groups: ['admin'],
        rules: [{ readOnly: true }],
      });
    });
    after(async () => {
      await dropPolicy('read-only');
    });

    it('the session is read-only at the target, and RESET ALL and DISCARD ALL keep it so', async () => {
      const admin = await t.client(ADMIN);
      const show = async () =>
        (await admin.query('show default_transaction_read_only')).rows[0].default_transaction_read_only;
      assert.equal(await show(), 'on');
      await admin.query('reset all');
      assert.equal(await show(), 'on');
      await admin.query('discard all');
      assert.equal(await show(), 'on');
      // A write pgward cannot see (inside a function body) is refused by the target itself.
      const err = await failure(admin, 'select public.sneaky_write()');
      assert.equal(err.code, '25006');
      await admin.end();
    });

    it('every escape is refused', async () => {
      const admin = await t.client(ADMIN);
      const before = await probeCount();
      for (const text of [
        "insert into public.policy_probe (note) values ('x')",
        'update public.policy_probe set note = null where id = 1',
        'set default_transaction_read_only = off',
        'set session characteristics as transaction read write',
        "select set_config('default_transaction_read_only', 'off', false)",
        'begin read write',
        'start transaction read write',
        "select nextval('public.policy_probe_id_seq')",
        'select * from public.policy_probe for update',
        'create temp table t (a int)',
        "do $$ begin insert into public.policy_probe (note) values ('do'); end $$",
        'copy public.policy_probe from stdin',
      ]) {
        assert.equal((await failure(admin, text)).code, '42501', text);
      }
      await admin.query('begin');
      assert.equal((await failure(admin, 'set transaction read write')).code, '42501');
      await admin.query('rollback');
      assert.equal(await probeCount(), before);
      assert.ok((await admin.query('select count(*) from public.policy_probe')).rows[0].count);
      await admin.end();
    });

    it('startup settings are held to the same rules: read-only cannot be turned off at connect', async () => {
      const connectWith = async (options: string) => {
        const client = new pg.Client({
          host: t.stack.info.pg.host,
          port: t.stack.info.pg.port,
          user: ADMIN,
          database: 'demo',
          password: adminToken,
          ssl: { rejectUnauthorized: false },
          options,
        });
        client.on('error', () => undefined);
        try {
          await client.connect();
        } catch (err) {
          return err as { code: string; message: string };
        }
        await client.end();
        return undefined;
      };
      const off = await connectWith('-c default_transaction_read_only=off');
      assert.equal(off?.code, '22023');
      assert.match(off?.message ?? '', /read-only/);
      const lexer = await connectWith('-c standard_conforming_strings=off');
      assert.equal(lexer?.code, '22023');
      assert.equal((await connectWith('--default-transaction-read-only=0'))?.code, '22023');
      assert.equal((await connectWith('-B 100'))?.code, '22023', 'only -c settings are passed on');
      assert.equal(await connectWith('-c statement_timeout=5000'), undefined);
    });

    it('FunctionCall of a large-object function that writes is refused', async () => {
      const s = await raw();
      s.send(msg.functionCall(957, ['-1']));
      const answers = await s.untilReady();
      assert.equal(answers.find((a) => a.type === 'E')?.fields?.get('C'), '42501');
      s.close();
    });
  });

  describe('row limits', () => {
    before(async () => {
      await putPolicy({
        name: 'rows',
        connections: ['demo'],
        groups: ['admin'],
        rules: [{ limit: { rows: 5 } }],
      });
    });
    after(async () => {
      await dropPolicy('rows');
    });

    it('a result past the limit is cut off with 54000, not silently; smaller results are whole', async () => {
      const admin = await t.client(ADMIN);
      assert.equal((await admin.query('select generate_series(1, 5) g')).rows.length, 5);
      const err = await failure(admin, 'select generate_series(1, 10) g');
      assert.equal(err.code, '54000');
      assert.match(err.message, /more than 5 rows/);
      assert.match(err.detail ?? '', /POLICY_DENIED: policy "rows"/);
      assert.equal(
        (await failure(admin, 'select g from generate_series(1, 10) g where $1::int = 1', [1])).code,
        '54000',
      );
      assert.equal((await admin.query({ text: 'select $1::int as n', values: [3] })).rows[0].n, 3);
      await admin.query('begin');
      assert.equal((await failure(admin, 'select generate_series(1, 10)')).code, '54000');
      assert.equal((await failure(admin, 'select 1')).code, '25P02', 'the transaction is aborted');
      await admin.query('rollback');
      assert.equal((await failure(admin, 'select 1; select 2')).code, '0A000');
      await admin.end();
    });

    it('extended: a write returning too many rows is rolled back, and the rest of the batch skipped', async () => {
      const s = await raw();
      const before = await probeCount();
      s.send(
        msg.parse(
          '',
          "insert into public.policy_probe (note) select 'bulk' from generate_series(1, 10) returning id",
        ),
        msg.bind('', ''),
        msg.execute(''),
        msg.parse('', "insert into public.policy_probe (note) values ('after')"),
        msg.bind('', ''),
        msg.execute(''),
        msg.sync(),
      );
      const answers = await s.untilReady();
      assert.equal(
        shape(answers),
        `12${'D'.repeat(5)}EZ`,
        answers.find((a) => a.type === 'E')?.fields?.get('M'),
      );
      assert.equal(answers.find((a) => a.type === 'E')?.fields?.get('C'), '54000');
      assert.equal(await probeCount(), before, 'the implicit transaction was rolled back');
      s.send(msg.query('select 1'));
      assert.equal(shape(await s.untilReady()), 'TDCZ');
      s.close();
    });

    it('COPY TO STDOUT is counted too, and psql shows the error', async () => {
      const out = await t.psql(ADMIN, ['-c', 'copy (select generate_series(1, 10)) to stdout']);
      assert.notEqual(out.code, 0);
      assert.match(out.stderr, /more than 5 rows/);
      assert.equal(out.stdout.trim().split('\n').length, 5);
    });

    it('COPY FROM STDIN is not held up by the limit (the target waits for the data), simple and extended', async () => {
      const s = await raw();
      const before = await probeCount();
      s.send(msg.query('copy public.policy_probe (note) from stdin'));
      assert.equal(shape(await s.untilCopy()), 'G');
      s.send(msg.copyData('copied 1\ncopied 2\n'), msg.copyDone());
      assert.equal(shape(await s.untilReady()), 'CZ');
      s.send(
        msg.parse('', 'copy public.policy_probe (note) from stdin'),
        msg.bind('', ''),
        msg.execute(''),
        msg.sync(),
      );
      assert.equal(shape(await s.untilCopy()), '12G');
      // As libpq does: the Sync sent with the Execute is ignored in copy-in mode; one follows CopyDone.
      s.send(msg.copyData('copied 3\n'), msg.copyDone(), msg.sync());
      assert.equal(shape(await s.untilReady()), 'CZ');
      assert.equal(await probeCount(), before + 3);
      s.close();
    });

    it('pages fetched with Execute row counts are counted per Execute', async () => {
      const s = await raw();
      s.send(msg.query('begin'));
      await s.untilReady();
      s.send(
        msg.parse('', 'select generate_series(1, 8)'),
        msg.bind('c', ''),
        msg.execute('c', 4),
        msg.sync(),
      );
      assert.equal(shape(await s.untilReady()), '12DDDDsZ');
      s.send(msg.execute('c', 4), msg.sync());
      assert.equal(shape(await s.untilReady()), 'DDDDsZ');
      s.send(msg.query('commit'));
      await s.untilReady();
      s.close();
    });
  });

  describe('COPY FROM STDIN in the extended protocol', () => {
    it('the Syncs the target ignores in copy-in mode end no batch: statements and the audit stay in step', async () => {
      const s = await raw();
      s.send(
        msg.parse('', 'copy public.policy_probe (note) from stdin'),
        msg.bind('', ''),
        msg.execute(''),
        msg.sync(),
      );
      assert.equal(shape(await s.untilCopy()), '12G');
      s.send(msg.copyData('in step 1\n'), msg.copyDone(), msg.sync());
      assert.equal(shape(await s.untilReady()), 'CZ');
      // A Parse that fails, then one that works, in batches of their own: pgward must see the
      // same outcome as the target, batch by batch.
      s.send(msg.parse('instep', 'select no_such_column_in_step'), msg.sync());
      assert.equal(shape(await s.untilReady()), 'EZ');
      s.send(msg.parse('instep', "select 'copy then parse' as marker_in_step"), msg.sync());
      assert.equal(shape(await s.untilReady()), '1Z');
      s.send(msg.bind('', 'instep'), msg.execute(''), msg.sync());
      assert.equal(shape(await s.untilReady()), '2DCZ');
      s.close();
      const rows = await statements('%marker_in_step%');
      assert.equal(rows.length, 1);
      assert.equal(rows[0]?.sqlstate, null);
      const copies = await statements('copy public.policy_probe (note) from stdin');
      assert.ok(copies.length > 0 && copies.every((r) => r.sqlstate === null), JSON.stringify(copies));
    });
  });

  describe('observe mode', () => {
    it('records what it would refuse, and refuses nothing', async () => {
      await putPolicy({ name: 'watch', connections: ['demo'], mode: 'observe', rules: [{ deny: 'ddl' }] });
      const admin = await t.client(ADMIN);
      await passesSoon(async () => {
        await admin.query('create table if not exists public.observed_t (a int)');
        const rows = await statements('create table if not exists public.observed_t%');
        assert.equal(rows.at(-1)?.decision, 'observed');
      }, 'the observed statement in the audit');
      await target.query('drop table public.observed_t');
      await admin.query('select 42');
      const listed = await api('GET', '/api/v1/statements?decision=observed');
      assert.equal(listed.status, 200);
      assert.ok(
        (listed.body as unknown as { text: string }[]).some((s) =>
          s.text.startsWith('create table if not exists public.observed_t'),
        ),
      );
      await admin.end();
      await dropPolicy('watch');
    });
  });

  describe('API and CLI', () => {
    it('create, list, read, update, delete; problems name the field; non-administrators get 403', async () => {
      const bad = await api('PUT', '/api/v1/policies/bad', {
        connections: ['demo', 'nowhere'],
        rules: [{ deny: ['dll'] }, { limit: { rows: 0 } }],
      });
      assert.equal(bad.status, 400);
      assert.equal(bad.body['code'], 'POLICY_INVALID');
      const paths = (bad.body['errors'] as { path: string }[]).map((e) => e.path);
      assert.ok(paths.includes('rules[0].deny[0]'), JSON.stringify(bad.body));
      assert.ok(paths.includes('rules[1].limit.rows'), JSON.stringify(bad.body));
      const unknown = await api('PUT', '/api/v1/policies/bad', {
        connections: ['nowhere'],
        rules: [{ deny: 'ddl' }],
      });
      assert.deepEqual(
        (unknown.body['errors'] as { path: string }[]).map((e) => e.path),
        ['connections[0]'],
      );
      const mismatch = await api('PUT', '/api/v1/policies/one', {
        name: 'two',
        connections: ['demo'],
        rules: [{ deny: 'ddl' }],
      });
      assert.equal(mismatch.status, 400);

      await putPolicy({ name: 'crud', connections: ['demo'], groups: ['viewer'], rules: [{ deny: 'ddl' }] });
      const listed = await api('GET', '/api/v1/policies');
      assert.ok((listed.body as unknown as { name: string }[]).some((p) => p.name === 'crud'));
      const one = await api('GET', '/api/v1/policies/crud');
      assert.equal(one.body['source'], 'api');
      assert.equal(one.body['updatedBy'], ADMIN);
      await putPolicy({ name: 'crud', connections: ['demo'], mode: 'observe', rules: [{ deny: 'ddl' }] });
      assert.equal(
        ((await api('GET', '/api/v1/policies/crud')).body['document'] as { mode: string }).mode,
        'observe',
      );

      const viewerToken = await t.token(VIEWER);
      assert.equal((await api('GET', '/api/v1/policies', undefined, viewerToken)).status, 403);
      assert.equal(
        (
          await api(
            'PUT',
            '/api/v1/policies/x',
            { connections: ['demo'], rules: [{ deny: 'ddl' }] },
            viewerToken,
          )
        ).status,
        403,
      );
      assert.equal((await api('DELETE', '/api/v1/policies/crud', undefined, viewerToken)).status, 403);
      await dropPolicy('crud');
      assert.equal((await api('GET', '/api/v1/policies/crud')).status, 404);
      assert.equal((await api('DELETE', '/api/v1/policies/crud')).status, 404);

      const tried = await api('POST', '/api/v1/policies/test', {
        document: { name: 'try', connections: ['demo'], rules: [{ deny: 'write-without-where' }] },
        statements: 'select 1;\ndelete from users;',
      });
      assert.equal(tried.status, 200);
      assert.deepEqual(
        (tried.body['results'] as { decision: string }[]).map((r) => r.decision),
        ['allow', 'deny'],
      );
    });

    it('pgward admin create/get/delete policy, get statements --refused, policy test', async () => {
      const dir = tempDir('policy-cli');
      const file = path.join(dir, 'p.yaml');
      writeFileSync(
        file,
        'connections: [demo]\ngroups: [viewer]\nrules:\n  - deny: [ddl]\n    message: no ddl here\n',
      );
      const env = { PGWARD_GATEWAY: t.stack.info.http, PGWARD_TOKEN: adminToken };
      const created = await runCli(['admin', 'create', 'policy', 'from-cli', '--file', file], { env });
      assert.equal(created.code, 0, created.stderr);
      const listed = await runCli(['admin', 'get', 'policies'], { env });
      assert.match(listed.stdout, /from-cli/);
      // The person it applies to sees it in `pgward ls`.
      const mine = await runCli(['ls', '--json'], { env: { ...env, PGWARD_TOKEN: await t.token(VIEWER) } });
      assert.equal(mine.code, 0, mine.stderr);
      const demo = (JSON.parse(mine.stdout) as { name: string; policies?: { name: string }[] }[]).find(
        (c) => c.name === 'demo',
      );
      assert.deepEqual(
        demo?.policies?.map((p) => p.name),
        ['from-cli'],
      );
      const shown = await runCli(['admin', 'get', 'policies', 'from-cli', '--json'], { env });
      assert.match(shown.stdout, /no ddl here/);
      const badFile = path.join(dir, 'bad.yaml');
      writeFileSync(badFile, 'connections: [demo]\nrules:\n  - deny: [dll]\n');
      const bad = await runCli(['admin', 'create', 'policy', 'bad', '--file', badFile], { env });
      assert.notEqual(bad.code, 0);
      assert.match(bad.stderr, /rules\[0\]\.deny\[0\]/);
      const viewer = await t.client(VIEWER);
      await passesSoon(async () => {
        assert.match(
          (await failure(viewer, 'create table public.cli_refused (a int)')).message,
          /no ddl here/,
        );
      }, 'the policy made through the CLI refusing DDL');
      await viewer.end();
      await t.stack.gateway.audit.flush();
      const refused = await runCli(['admin', 'get', 'statements', '--refused', '--json'], { env });
      assert.equal(refused.code, 0, refused.stderr);
      const rows = JSON.parse(refused.stdout) as { decision: string }[];
      assert.ok(rows.length > 0 && rows.every((r) => r.decision === 'refused'), refused.stdout);
      const deleted = await runCli(['admin', 'delete', 'policy', 'from-cli'], { env });
      assert.equal(deleted.code, 0, deleted.stderr);

      const sql = path.join(dir, 'cases.sql');
      writeFileSync(sql, '-- expect: allow\nselect 1;\n-- expect: deny\ncreate table x (a int);\n');
      const passing = await runCli(['policy', 'test', file, sql, '--as', 'viewer']);
      assert.equal(passing.code, 0, passing.stdout + passing.stderr);
      assert.match(passing.stdout, /2 statements, 2 with expectations, 0 failed/);
      writeFileSync(sql, '-- expect: allow\ncreate table x (a int);\n');
      const failing = await runCli(['policy', 'test', file, sql, '--as', 'viewer']);
      assert.equal(failing.code, 1);
      assert.match(failing.stdout, /FAIL DENY/);
      const asOther = await runCli(['policy', 'test', file, sql, '--as', 'editor']);
      assert.equal(asOther.code, 0, 'the policy names viewer only');
    });

    it('configured policies are mirrored into the store; an API policy of the same name wins', async () => {
      const configured = validatePolicy({
        name: 'from-config',
        connections: ['demo'],
        rules: [{ deny: 'ddl' }],
      });
      assert.ok(configured.ok);
      const catalog = new PolicyCatalog(t.store(), [configured.document], undefined, quietLog, async () => ({
        connections: new Set(['demo']),
        isGroup: () => true,
      }));
      await catalog.start();
      assert.equal(catalog.get('from-config').source, 'config');
      await catalog.put(
        { name: 'from-config', connections: ['demo'], mode: 'observe', rules: [{ deny: 'ddl' }] },
        'test',
      );
      assert.equal(catalog.get('from-config').source, 'api');
      await assert.rejects(catalog.remove('nothing-here', 'test'), /no policy/);
      await catalog.remove('from-config', 'test');
      assert.equal(catalog.get('from-config').source, 'config');
      await assert.rejects(catalog.remove('from-config', 'test'), /configuration file/);
      catalog.close();
      await t.store().query("delete from pgward.policy where name = 'from-config'");
    });
  });
});
