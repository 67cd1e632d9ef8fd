/**
 * Attacks on policies, as the person they restrict: every other phrasing and protocol path of
 * what a rule refuses. The person is admin@example.com, whose database role app_admin may do
 * anything, so a refusal can only come from pgward. Each test asserts the SAFE outcome (refused,
 * rows cut, read-only kept); a test that fails is a way around a policy, kept failing on purpose
 * until the relay is fixed.
 */
import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, it } from 'node:test';
import pg from 'pg';
import { startTestStack, type TestStack } from './support/dev_stack.js';
import { passesSoon } from './support/eventually.js';
import { failure, type PgError, policyAdmin } from './support/policy_admin.js';
import { type Answer, msg, shape } from './support/raw_session.js';

const ADMIN = 'admin@example.com';

const errorOf = (answers: Answer[]) => answers.find((a) => a.type === 'E')?.fields;

describe('policy attacks', () => {
  let t: TestStack;
  let target: pg.Client;
  let adminToken: string;
  before(async () => {
    t = await startTestStack();
    target = new pg.Client({ connectionString: t.stack.info.target });
    await target.connect();
    adminToken = await t.token(ADMIN);
    await target.query(`
      create table if not exists public.attack_probe (id serial primary key, note text);
      grant all on public.attack_probe, public.attack_probe_id_seq to app_admin;
      insert into public.attack_probe (note) select 'row ' || g from generate_series(1, 20) g;
      create or replace function public.attack_sneaky() returns int language sql as
        $$ insert into public.attack_probe (note) values ('sneaky') returning id $$;
      create or replace function public.attack_noisy(g int) returns int language plpgsql as
        $$ begin raise notice 'noise %', g; return g; end $$;
      grant execute on function public.attack_sneaky(), public.attack_noisy(int) to app_admin;`);
  });
  after(async () => {
    await target?.end();
    await t?.close();
  });

  const { put: putPolicy, drop: dropPolicy } = policyAdmin(
    () => t,
    () => adminToken,
  );
  const probeCount = async () =>
    Number((await target.query('select count(*) from public.attack_probe')).rows[0].count);
  // A bypass that emptied the table must not make later tests pass for want of rows.
  beforeEach(async () => {
    await target.query(
      "insert into public.attack_probe (note) select 'refill' from generate_series(1, greatest(0, 20 - (select count(*) from public.attack_probe)::int))",
    );
  });
  /** The statement is refused by pgward (not by the target: its errors carry no pgward detail). */
  const refused = async (client: pg.Client, text: string, code = '42501') => {
    const err = await failure(client, text);
    assert.equal(err.code, code, `${text}: ${err.message}`);
    assert.match(
      err.detail ?? '',
      /pgward error/,
      `${text}: refused by the target, not pgward: ${err.message}`,
    );
  };
  const raw = () => t.raw(ADMIN, { password: adminToken });
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
      return { err: err as PgError };
    }
    return { client };
  };

  describe('guardrails (ddl, truncate, write-without-where, functions, tables, multi-statement)', () => {
    let admin: pg.Client;
    before(async () => {
      await putPolicy({
        name: 'attack-guard',
        connections: ['demo'],
        groups: ['admin'],
        rules: [
          { deny: ['ddl', 'truncate'] },
          { deny: 'write-without-where' },
          { deny: { functions: ['pg_read_file'] } },
          { deny: { tables: ['public.sensitive_data'], access: 'any' } },
          { deny: 'multi-statement' },
        ],
      });
      admin = await t.client(ADMIN);
    });
    after(async () => {
      await admin.end();
      await dropPolicy('attack-guard');
    });

    it('number shape: EXPLAIN (ANALYZE 1) runs its statement as EXPLAIN ANALYZE does', async () => {
      const before = await probeCount();
      // (ANALYZE 1) and (ANALYZE 0) share one number shape; PostgreSQL reads 1 as true and runs the DELETE.
      await refused(admin, 'explain (analyze 1) delete from public.attack_probe');
      assert.equal(await probeCount(), before, 'EXPLAIN (ANALYZE 1) deleted every row');
      await refused(admin, 'explain (analyze 1) create table public.attack_made as select 1 as a');
      await refused(admin, 'explain (analyze 1) select data from public.sensitive_data');
    });

    it('EXPLAIN ANALYZE in its other spellings is judged by what it runs', async () => {
      const before = await probeCount();
      for (const text of [
        'explain analyze delete from public.attack_probe',
        'explain (analyze) delete from public.attack_probe',
        'explain (analyze true) delete from public.attack_probe',
        'explain (analyze on) delete from public.attack_probe',
        "explain (analyze 'yes') delete from public.attack_probe",
        'explain (format json, analyze) delete from public.attack_probe',
        'EXPLAIN (ANALYZE, VERBOSE, BUFFERS) DELETE FROM public.attack_probe',
      ]) {
        await refused(admin, text);
      }
      assert.equal(await probeCount(), before);
    });

    it('write-without-where: FROM, USING, CTEs, DO bodies, PREPARE, comments, case', async () => {
      const before = await probeCount();
      for (const text of [
        'update public.attack_probe set note = note from (select 1) s',
        'delete from public.attack_probe using (select 1) s',
        'UPDATE/**/public.attack_probe/* where id = 1 */SET note = note',
        'delete from public.attack_probe -- where id = 1\n',
        'with d as (delete from public.attack_probe returning id) insert into public.attack_probe (note) select null from d where false',
        'with u as (update public.attack_probe set note = note returning 1) select count(*) from u where true',
        'do $$ begin update public.attack_probe set note = note; end $$',
        "do $$ begin execute 'delete ' || 'from public.attack_probe'; end $$",
        'do $$ begin execute $q$ do $w$ begin delete from public.attack_probe; end $w$ $q$; end $$',
        'prepare attack_del as delete from public.attack_probe',
        'delete from public."attack_probe"',
        'delete from U&"attack\\005fprobe"',
      ]) {
        await refused(admin, text);
      }
      assert.equal(await probeCount(), before);
    });

    it('functions: qualified, quoted, U&, comments, FROM, ROWS FROM, COPY, CTE, DO, PREPARE, EXECUTE params', async () => {
      for (const text of [
        'select pg_catalog."pg_read_file"(\'/etc/hostname\')',
        "SELECT PG_CATALOG.PG_READ_FILE('/etc/hostname')",
        'select U&"pg\\005fread\\005ffile"(\'/etc/hostname\')',
        "select pg_read_file/**/('/etc/hostname')",
        "select * from pg_read_file('/etc/hostname')",
        "select * from rows from (pg_read_file('/etc/hostname')) r",
        "values (pg_read_file('/etc/hostname'))",
        "copy (select pg_read_file('/etc/hostname')) to stdout",
        "with f as (select pg_read_file('/etc/hostname') x) select * from f",
        "select (select pg_read_file('/etc/hostname'))",
        "do $$ begin perform pg_read_file('/etc/hostname'); end $$",
        "do $$ begin execute 'select pg_read' || '_file(''/etc/hostname'')'; end $$",
        "prepare attack_rf as select pg_read_file('/etc/hostname')",
        "select * from public.attack_probe where note = pg_read_file('/etc/hostname')",
      ]) {
        await refused(admin, text);
      }
      // Dynamic SQL pgward cannot see is refused by the built-in rules.
      await refused(
        admin,
        "do $$ begin execute format('select %s(%L)', 'pg_read_file', '/etc/hostname'); end $$",
      );
    });

    it('tables: query_to_xml runs a read of the table held in a string', async () => {
      await refused(admin, "select query_to_xml('select data from public.sensitive_data', true, false, '')");
    });

    it('tables: table_to_xml reads a table named in a string', async () => {
      await refused(admin, "select table_to_xml('public.sensitive_data', true, false, '')");
    });

    it('tables: schema_to_xml reads every table of a schema named in a string', async () => {
      await refused(admin, "select schema_to_xml('public', true, false, '')");
    });

    it('tables: ts_stat runs a read of the table held in a string', async () => {
      await refused(admin, "select * from ts_stat('select to_tsvector(data) from public.sensitive_data')");
    });

    it('ddl: SELECT ... INTO creates a table, as CREATE TABLE AS (refused) does', async () => {
      await refused(admin, 'create table public.attack_ctas_ddl as select 1 as a');
      await refused(admin, 'select 1 as a into public.attack_select_into');
    });

    it('functions: query_to_xml runs a call held in a string', async () => {
      await refused(admin, "select query_to_xml('select pg_read_file(''/etc/hostname'')', true, false, '')");
    });

    it('tables: quoted, U&, catalog-qualified, ONLY, *, TABLE, COPY, SELECT INTO, CTE, subquery, DO, PREPARE, MERGE, LOCK, cursors', async () => {
      for (const text of [
        'select * from "public"."sensitive_data"',
        'select * from U&"sensitive\\005fdata"',
        'select * from demo.public.sensitive_data',
        'select * from only public.sensitive_data',
        'select * from public.sensitive_data *',
        'table public.sensitive_data',
        'TABLE SENSITIVE_DATA',
        'copy public.sensitive_data to stdout',
        'copy (select data from sensitive_data) to stdout',
        'select * into temp attack_leak from public.sensitive_data',
        'with s as (select * from public.sensitive_data) select * from s',
        "select (select string_agg(data, ',') from public.sensitive_data)",
        'select row_to_json(s) from public.sensitive_data s',
        'select * from public.users u join lateral (select data from public.sensitive_data d where d.user_id = u.id) x on true',
        "do $$ declare r record; begin for r in select data from public.sensitive_data loop raise notice '%', r.data; end loop; end $$",
        'prepare attack_leak as select data from public.sensitive_data',
        "do $$ declare c refcursor; r record; begin open c for execute 'select data from public.sensitive_data'; fetch c into r; raise notice '%', r.data; end $$",
        "do $$ declare r record; begin for r in execute 'select data from public.sensitive_data' loop raise notice '%', r.data; end loop; end $$",
        "do $$ declare x text; begin execute 'select string_agg(data, '','') from public.sensitive_data' into x; raise notice '%', x; end $$",
        'merge into public.attack_probe p using public.sensitive_data s on p.id = s.id when matched then update set note = s.data',
        'lock table public.sensitive_data',
        'explain analyze select * from public.sensitive_data',
      ]) {
        await refused(admin, text);
      }
      await admin.query('begin');
      await refused(admin, 'declare attack_c cursor for select data from public.sensitive_data');
      await admin.query('rollback');
    });

    it('multi-statement: separators hidden among comments, dollar quotes, empty statements', async () => {
      const before = await probeCount();
      for (const text of [
        "select 1; insert into public.attack_probe (note) values ('multi')",
        "select 1;;insert into public.attack_probe (note) values ('multi')",
        "select 1 /* ; */ ;\n-- ;\ninsert into public.attack_probe (note) values ('multi')",
        "select $x$;$x$; insert into public.attack_probe (note) values ('multi')",
        "select ';'; insert into public.attack_probe (note) values ('multi')",
        "begin; insert into public.attack_probe (note) values ('multi'); commit",
      ]) {
        await refused(admin, text);
      }
      // A Parse of several statements: PostgreSQL refuses it itself, nothing runs.
      const s = await raw();
      s.send(
        msg.parse('', "select 1; insert into public.attack_probe (note) values ('parse multi')"),
        msg.bind('', ''),
        msg.execute(''),
        msg.sync(),
      );
      assert.ok(errorOf(await s.untilReady()), 'a Parse of two statements ran');
      s.close();
      assert.equal(await probeCount(), before);
    });

    it('extended protocol: Flush instead of Sync, Describe first, named statements, pipelined batches', async () => {
      const before = await probeCount();
      const s = await raw();
      s.send(
        msg.parse('attack_s1', 'delete from public.attack_probe'),
        msg.bind('', 'attack_s1'),
        msg.describePortal(''),
        msg.execute(''),
        msg.flush(),
      );
      s.send(msg.sync());
      let answers = await s.untilReady();
      assert.equal(errorOf(answers)?.get('C'), '42501', shape(answers));
      // Two batches in one write, the second a write without WHERE.
      s.send(
        msg.parse('', 'select 1'),
        msg.bind('', ''),
        msg.execute(''),
        msg.sync(),
        msg.parse('', 'update public.attack_probe set note = note'),
        msg.bind('', ''),
        msg.execute(''),
        msg.sync(),
      );
      answers = await s.untilReady(2);
      assert.equal(errorOf(answers)?.get('C'), '42501', shape(answers));
      // A Bind of a name that pgward refused at Parse (the target never saw it) runs nothing.
      s.send(msg.bind('', 'attack_s1'), msg.execute(''), msg.sync());
      assert.ok(errorOf(await s.untilReady()));
      s.close();
      assert.equal(await probeCount(), before);
    });

    it('settings that would make PostgreSQL lex a text differently are refused, however spelled', async () => {
      for (const text of [
        "set names 'SJIS'",
        "set client_encoding = 'sjis'",
        'set "CLIENT_ENCODING" to big5',
        "select set_config('CLIENT_ENCODING', 'gbk', false)",
        'set standard_conforming_strings = 0',
        'set standard_conforming_strings = false',
        "set local standard_conforming_strings to 'off'",
        "select set_config('standard_conforming_strings', 'off', true)",
        "select set_config(lower('STANDARD_CONFORMING_STRINGS'), 'off', false)",
        "select U&\"set\\005fconfig\"('standard_conforming_strings', 'off', false)",
        "select \"set_config\"('client_encoding', 'sjis', false)",
      ]) {
        await refused(admin, text);
      }
      const sjis = new pg.Client({
        host: t.stack.info.pg.host,
        port: t.stack.info.pg.port,
        user: ADMIN,
        database: 'demo',
        password: adminToken,
        ssl: { rejectUnauthorized: false },
        client_encoding: 'SJIS',
      });
      sjis.on('error', () => undefined);
      const startup = await sjis.connect().then(
        () => undefined,
        (err: PgError) => err,
      );
      if (startup === undefined) {
        // Connected: the target must not be speaking SJIS (pgward may have kept its own UTF8).
        const encoding = (await sjis.query('show client_encoding')).rows[0].client_encoding;
        await sjis.end();
        assert.notEqual(encoding, 'SJIS', 'a client_encoding startup parameter of SJIS reached the target');
      } else {
        assert.equal(startup.code, '22023', startup.message);
      }
      for (const options of [
        '-c client_encoding=SJIS',
        '-cstandard_conforming_strings=0',
        '--client-encoding=gbk',
      ]) {
        const got = await connectWith(options);
        await got.client?.end();
        assert.equal(got.err?.code, '22023', `${options}: connected`);
      }
    });

    it('FunctionCall of pg_read_file by OID is refused', async () => {
      const oid = Number(
        (await target.query("select 'pg_catalog.pg_read_file(text)'::regprocedure::oid as oid")).rows[0].oid,
      );
      const s = await raw();
      s.send(msg.functionCall(oid, ['/etc/hostname']));
      const answers = await s.untilReady();
      assert.ok(errorOf(answers), 'the FunctionCall ran');
      assert.equal(
        answers.some((a) => a.type === 'V'),
        false,
      );
      s.close();
    });
  });

  describe('deny [write]', () => {
    let admin: pg.Client;
    before(async () => {
      await putPolicy({
        name: 'attack-nowrite',
        connections: ['demo'],
        groups: ['admin'],
        rules: [{ deny: ['write'] }],
      });
      admin = await t.client(ADMIN);
    });
    after(async () => {
      await admin.end();
      await dropPolicy('attack-nowrite');
    });

    it('writes in their other phrasings are refused', async () => {
      const before = await probeCount();
      for (const text of [
        "insert into public.attack_probe (note) values ('w')",
        "INSERT INTO public.attack_probe (id, note) VALUES (1, 'w') ON CONFLICT (id) DO UPDATE SET note = excluded.note",
        "with i as (insert into public.attack_probe (note) values ('w') returning 1) select * from i",
        "merge into public.attack_probe p using (select 1 as id) s on p.id = s.id when matched then update set note = 'w'",
        'select * into temp attack_into from public.attack_probe',
        "select nextval('public.attack_probe_id_seq')",
        "explain analyze insert into public.attack_probe (note) values ('w')",
        "do $$ begin insert into public.attack_probe (note) values ('w'); end $$",
        "do $$ begin execute 'insert into public.attack_probe (note) ' || 'values (''w'')'; end $$",
        "prepare attack_ins as insert into public.attack_probe (note) values ('w')",
        'copy public.attack_probe (note) from stdin',
        'lock table public.attack_probe',
      ]) {
        await refused(admin, text);
      }
      assert.equal(await probeCount(), before);
    });

    it('PREPARE and EXECUTE inside a DO body run a write', async () => {
      const before = await probeCount();
      await refused(
        admin,
        "do $$ begin execute 'prepare attack_dw as insert into public.attack_probe (note) values (''do-prepared'')'; execute 'execute attack_dw'; end $$",
      );
      assert.equal(await probeCount(), before, 'the DO body prepared and ran an INSERT');
    });

    it('DEALLOCATE, then a PREPARE inside a DO under a name pgward saw prepared as a read', async () => {
      const before = await probeCount();
      await admin.query('prepare attack_swap as select 1');
      await admin.query('deallocate attack_swap');
      // pgward still thinks attack_swap is `select 1`; a DO body prepares it anew as a write.
      try {
        await admin.query(
          "do $$ begin execute 'prepare attack_swap as insert into public.attack_probe (note) values (''swapped'')'; end $$",
        );
      } catch {
        // refusing the DO is the safe outcome too
      }
      try {
        await admin.query('execute attack_swap');
      } catch {
        // refused: safe
      }
      assert.equal(await probeCount(), before, 'EXECUTE ran the INSERT that the DO body prepared');
    });
  });

  describe('deny [write]: protocol Bind of a statement PREPAREd in SQL', () => {
    it('a DO body PREPAREs a write; a protocol Bind of that name runs it', async () => {
      await putPolicy({
        name: 'attack-nowrite2',
        connections: ['demo'],
        groups: ['admin'],
        rules: [{ deny: ['write'] }],
      });
      const s = await raw();
      try {
        const before = await probeCount();
        s.send(
          msg.query(
            "do $$ begin execute 'prepare attack_pb as insert into public.attack_probe (note) values (''bound'')'; end $$",
          ),
        );
        await s.untilReady();
        s.send(msg.bind('', 'attack_pb'), msg.execute(''), msg.sync());
        const answers = await s.untilReady();
        assert.equal(await probeCount(), before, `the bound SQL-prepared INSERT ran: ${shape(answers)}`);
      } finally {
        s.close();
        await dropPolicy('attack-nowrite2');
      }
    });
  });

  describe('policy changes while a session is open', () => {
    it('a statement PREPAREd before the policy, run through EXECUTE inside a DO body', async () => {
      const admin = await t.client(ADMIN);
      await admin.query('prepare attack_old_del as delete from public.attack_probe');
      await putPolicy({
        name: 'attack-late',
        connections: ['demo'],
        groups: ['admin'],
        rules: [{ deny: 'write-without-where' }],
      });
      try {
        await passesSoon(async () => {
          assert.equal((await failure(admin, 'execute attack_old_del')).code, '42501');
        }, 'the new policy refusing EXECUTE');
        const before = await probeCount();
        await refused(admin, 'explain analyze execute attack_old_del');
        await refused(admin, "do $$ begin execute 'execute attack_old_del'; end $$");
        assert.equal(await probeCount(), before, 'the DO body ran the DELETE prepared before the policy');
      } finally {
        await admin.end();
        await dropPolicy('attack-late');
      }
    });

    it('a read PREPAREd before a table policy, run through CREATE TABLE AS EXECUTE', async () => {
      const admin = await t.client(ADMIN);
      await admin.query('prepare attack_old_read as select data from public.sensitive_data');
      await putPolicy({
        name: 'attack-late-table',
        connections: ['demo'],
        groups: ['admin'],
        rules: [{ deny: { tables: ['public.sensitive_data'] } }],
      });
      try {
        await passesSoon(async () => {
          assert.equal((await failure(admin, 'execute attack_old_read')).code, '42501');
        }, 'the new policy refusing EXECUTE');
        await refused(admin, 'create table public.attack_ctas as execute attack_old_read');
      } finally {
        await admin.end();
        await dropPolicy('attack-late-table');
      }
    });

    it('a cursor WITH HOLD declared before a table policy is fetched after it', async () => {
      const admin = await t.client(ADMIN);
      await admin.query('declare attack_hold cursor with hold for select data from public.sensitive_data');
      await putPolicy({
        name: 'attack-late-cursor',
        connections: ['demo'],
        groups: ['admin'],
        rules: [{ deny: { tables: ['public.sensitive_data'], access: 'read' } }],
      });
      try {
        await passesSoon(async () => {
          assert.equal((await failure(admin, 'select data from public.sensitive_data')).code, '42501');
        }, 'the new policy refusing reads of the table');
        await refused(admin, 'fetch all from attack_hold');
      } finally {
        await admin.end();
        await dropPolicy('attack-late-cursor');
      }
    });

    it('a portal bound in an open transaction before the policy is executed after it', async () => {
      const s = await raw();
      s.send(msg.query('begin'));
      await s.untilReady();
      s.send(
        msg.parse('attack_portal_s', 'delete from public.attack_probe'),
        msg.bind('attack_portal', 'attack_portal_s'),
        msg.sync(),
      );
      assert.equal(shape(await s.untilReady()), '12Z');
      const before = await probeCount();
      await putPolicy({
        name: 'attack-late-portal',
        connections: ['demo'],
        groups: ['admin'],
        rules: [{ deny: 'write-without-where' }],
      });
      const other = await t.client(ADMIN);
      let n = 0;
      try {
        // A PREPARE is refused once the policy applies (and harmless before: it runs nothing).
        await passesSoon(async () => {
          n++;
          assert.equal(
            (await failure(other, `prepare attack_poll_${n} as delete from public.attack_probe`)).code,
            '42501',
          );
        }, 'the new policy applying');
        s.send(msg.execute('attack_portal'), msg.sync());
        const answers = await s.untilReady();
        const tag = answers.find((a) => a.type === 'C')?.message.toString('latin1');
        s.send(msg.query('commit'));
        await s.untilReady();
        assert.equal(
          errorOf(answers)?.get('C'),
          '42501',
          `the portal ran past the policy: ${shape(answers)} ${tag}`,
        );
        assert.equal(
          await probeCount(),
          before,
          `the portal ran its DELETE past the policy: ${shape(answers)}`,
        );
      } finally {
        s.close();
        await other.end();
        await dropPolicy('attack-late-portal');
      }
    });

    it('a statement PREPAREd in SQL before the policy, run by a protocol Bind of its name', async () => {
      const s = await raw();
      s.send(msg.query('prepare attack_old_bind as delete from public.attack_probe'));
      await s.untilReady();
      await putPolicy({
        name: 'attack-late-bind',
        connections: ['demo'],
        groups: ['admin'],
        rules: [{ deny: 'write-without-where' }],
      });
      try {
        await passesSoon(async () => {
          s.send(msg.query('execute attack_old_bind'));
          assert.equal(errorOf(await s.untilReady())?.get('C'), '42501');
        }, 'the new policy refusing EXECUTE');
        const before = await probeCount();
        s.send(msg.bind('', 'attack_old_bind'), msg.execute(''), msg.sync());
        const answers = await s.untilReady();
        assert.equal(
          await probeCount(),
          before,
          `the Bind ran the DELETE prepared before the policy: ${shape(answers)}`,
        );
      } finally {
        s.close();
        await dropPolicy('attack-late-bind');
      }
    });

    it('read-only added to an open session: PREPARE and EXECUTE inside a DO body', async () => {
      const admin = await t.client(ADMIN);
      await putPolicy({
        name: 'attack-late-ro2',
        connections: ['demo'],
        groups: ['admin'],
        rules: [{ readOnly: true }],
      });
      try {
        await passesSoon(async () => {
          assert.equal(
            (await failure(admin, "insert into public.attack_probe (note) values ('late ro')")).code,
            '42501',
          );
        }, 'read-only applying');
        const before = await probeCount();
        try {
          await admin.query(
            "do $$ begin execute 'prepare attack_ro_late as insert into public.attack_probe (note) values (''late ro'')'; execute 'execute attack_ro_late'; end $$",
          );
        } catch {
          // refused: safe
        }
        assert.equal(await probeCount(), before, 'the session wrote past its read-only policy');
      } finally {
        await admin.end();
        await dropPolicy('attack-late-ro2');
      }
    });

    it('read-only added to an open session: EXPLAIN (ANALYZE 1) of a write', async () => {
      const admin = await t.client(ADMIN);
      await putPolicy({
        name: 'attack-late-ro',
        connections: ['demo'],
        groups: ['admin'],
        rules: [{ readOnly: true }],
      });
      try {
        await passesSoon(async () => {
          assert.equal(
            (await failure(admin, "insert into public.attack_probe (note) values ('late ro')")).code,
            '42501',
          );
        }, 'read-only applying');
        const before = await probeCount();
        try {
          await admin.query("explain (analyze 1) insert into public.attack_probe (note) values ('late ro')");
        } catch {
          // refused: safe
        }
        assert.equal(await probeCount(), before, 'the session wrote past its read-only policy');
      } finally {
        await admin.end();
        await dropPolicy('attack-late-ro');
      }
    });
  });

  describe('read-only', () => {
    before(async () => {
      await putPolicy({
        name: 'attack-ro',
        connections: ['demo'],
        groups: ['admin'],
        rules: [{ readOnly: true }],
      });
    });
    after(async () => {
      await dropPolicy('attack-ro');
    });

    it("pgward's refusals: case, quoting, SET LOCAL, set_config, transaction modes, locks, large objects", async () => {
      const admin = await t.client(ADMIN);
      const before = await probeCount();
      for (const text of [
        'set "DEFAULT_TRANSACTION_READ_ONLY" = off',
        'SET Default_Transaction_Read_Only TO false',
        'set default_transaction_read_only to default',
        "select set_config('DEFAULT_TRANSACTION_READ_ONLY', 'off', false)",
        "select pg_catalog.set_config('default_transaction_read_only', 'off', false)",
        "select U&\"set\\005fconfig\"('default_transaction_read_only', 'off', false)",
        "select set_config(U&'default\\005ftransaction_read_only', 'off', false)",
        "select * from set_config('default_transaction_read_only', 'off', false)",
        "do $$ begin perform set_config('default_transaction_read_only', 'off', false); end $$",
        "update pg_settings set setting = 'off' where name = 'default_transaction_read_only'",
        'begin isolation level serializable, read write',
        'start transaction read only, read write',
        'select * from public.attack_probe for no key update',
        'select * from public.attack_probe for key share',
        "select lo_from_bytea(0, '\\x00')",
        'select pg_catalog.lo_create(0)',
        'select * into temp attack_ro_into from public.attack_probe',
        'create temp table attack_ro_ctas as select 1',
        'call public.nothing()',
        "merge into public.attack_probe p using (select 1 as id) s on p.id = s.id when matched then update set note = 'ro'",
        "prepare attack_ro_ins as insert into public.attack_probe (note) values ('ro')",
        'vacuum public.attack_probe',
        'analyze public.attack_probe',
      ]) {
        await refused(admin, text);
      }
      await admin.query('begin');
      await refused(admin, 'set local transaction_read_only = off');
      await admin.query('rollback');
      await admin.query('begin');
      await refused(admin, 'declare attack_ro_cur cursor for select * from public.attack_probe for update');
      await admin.query('rollback');
      await refused(admin, 'prepare attack_ro_lock as select * from public.attack_probe for share');
      assert.equal(await probeCount(), before);
      await admin.end();
    });

    it('what pgward lets past is refused by the target (default_transaction_read_only)', async () => {
      const admin = await t.client(ADMIN);
      const before = await probeCount();
      for (const text of [
        "explain (analyze 1) insert into public.attack_probe (note) values ('ro')",
        'select public.attack_sneaky()',
        "do $$ begin execute 'prepare attack_ro_dw as insert into public.attack_probe (note) values (''ro'')'; execute 'execute attack_ro_dw'; end $$",
      ]) {
        try {
          await admin.query(text);
        } catch {
          // refused by pgward or the target: safe
        }
      }
      await admin.query('reset all');
      await admin.query('discard all');
      assert.equal(
        (await admin.query('show default_transaction_read_only')).rows[0].default_transaction_read_only,
        'on',
      );
      assert.equal(await probeCount(), before);
      await admin.end();
    });

    it('startup options: no space, case, dashes, backslash escapes, repeats; read-only stays on', async () => {
      for (const options of [
        '-cdefault_transaction_read_only=off',
        '-c DEFAULT_TRANSACTION_READ_ONLY=off',
        '--DEFAULT-TRANSACTION-READ-ONLY=false',
        '-c default_transaction_read_only=o\\ff',
        '-c default_transaction_read_only=of',
        '-c default_transaction_read_only=on -c default_transaction_read_only=off',
        '-c transaction_read_only=off',
        '-c default_transaction_read_only=0',
      ]) {
        const got = await connectWith(options);
        if (got.client) {
          const on = (await got.client.query('show default_transaction_read_only')).rows[0]
            .default_transaction_read_only;
          await got.client.end();
          assert.equal(on, 'on', `${options}: read-only was turned off at connect`);
        } else {
          assert.equal(got.err?.code, '22023', `${options}: ${got.err?.message}`);
        }
      }
      const fine = await connectWith('-c default_transaction_read_only=on');
      assert.ok(fine.client, fine.err?.message);
      await fine.client.end();
    });

    it('FunctionCall of set_config by OID is refused', async () => {
      const oid = Number(
        (await target.query("select 'pg_catalog.set_config(text,text,boolean)'::regprocedure::oid as oid"))
          .rows[0].oid,
      );
      const s = await raw();
      s.send(msg.functionCall(oid, ['default_transaction_read_only', 'off', 'false']));
      assert.ok(errorOf(await s.untilReady()), 'set_config ran through FunctionCall');
      s.send(msg.query('show default_transaction_read_only'));
      const answers = await s.untilReady();
      const row = answers.find((a) => a.type === 'D');
      assert.ok(row?.message.toString('latin1').includes('on'));
      s.close();
    });
  });

  describe('tables: access write', () => {
    let admin: pg.Client;
    before(async () => {
      await putPolicy({
        name: 'attack-table-write',
        connections: ['demo'],
        groups: ['admin'],
        rules: [{ deny: { tables: ['attack_probe'], access: 'write' } }],
      });
      admin = await t.client(ADMIN);
    });
    after(async () => {
      await admin.end();
      await dropPolicy('attack-table-write');
    });

    it('writes in every phrasing, DDL that changes the table, functions created to write it', async () => {
      const before = await probeCount();
      for (const text of [
        "insert into attack_probe (note) values ('tw')",
        'INSERT INTO "attack_probe" (note) VALUES (\'tw\')',
        'insert into public.attack_probe (note) select note from public.attack_probe where id = 1',
        "update public.attack_probe set note = 'tw' where id = 1",
        'delete from public.attack_probe where id = 1',
        "merge into public.attack_probe p using (select 1 as id) s on p.id = s.id when matched then update set note = 'tw'",
        'truncate public.attack_probe',
        'copy public.attack_probe (note) from stdin',
        "with i as (insert into public.attack_probe (note) values ('tw') returning 1) select * from i",
        "do $$ begin execute 'insert into public.attack_probe (note) values (''tw'')'; end $$",
        'alter table public.attack_probe rename to attack_renamed',
        'alter table public.attack_probe set schema pg_temp',
        'alter table public.attack_probe add column sneaky int',
        "create rule attack_r as on insert to public.users do also insert into public.attack_probe (note) values ('rule')",
        "create function public.attack_w2() returns void language sql as $$ insert into public.attack_probe (note) values ('f') $$",
        'lock table public.attack_probe in access exclusive mode',
        'grant all on public.attack_probe to public',
      ]) {
        await refused(admin, text);
      }
      assert.equal(await probeCount(), before);
    });

    it('a view created through pgward writes the table', async () => {
      const before = await probeCount();
      try {
        await admin.query('create view public.attack_v as select id, note from public.attack_probe');
        await admin.query("insert into public.attack_v (note) values ('through the view')");
      } catch {
        // refusing either is the safe outcome
      }
      assert.equal(await probeCount(), before, 'an INSERT into a view just created wrote the table');
    });
  });

  describe('tables: access write, reached through CASCADE', () => {
    let admin: pg.Client;
    before(async () => {
      await target.query(`
        create schema if not exists attack_s authorization app_admin;
        create table if not exists attack_s.keep (a int);
        alter table attack_s.keep owner to app_admin;
        insert into attack_s.keep values (1);`);
      await putPolicy({
        name: 'attack-cascade',
        connections: ['demo'],
        groups: ['admin'],
        rules: [{ deny: { tables: ['public.sensitive_data', 'attack_s.keep'], access: 'write' } }],
      });
      admin = await t.client(ADMIN);
    });
    after(async () => {
      await admin.end();
      await dropPolicy('attack-cascade');
    });

    it('the protected tables themselves are refused', async () => {
      await refused(admin, 'truncate public.sensitive_data');
      await refused(admin, 'drop table attack_s.keep');
      await refused(admin, 'truncate attack_s.keep, public.users');
    });

    it('DROP SCHEMA ... CASCADE drops a protected table', async () => {
      try {
        await admin.query('drop schema attack_s cascade');
      } catch {
        // refused: safe
      }
      const { rows } = await target.query("select to_regclass('attack_s.keep') as t");
      assert.ok(rows[0].t, 'the protected table attack_s.keep was dropped');
    });

    it('TRUNCATE ... CASCADE of a referenced table empties a protected table', async () => {
      const count = async () =>
        Number((await target.query('select count(*) from public.sensitive_data')).rows[0].count);
      const before = await count();
      assert.ok(before > 0);
      try {
        await admin.query('truncate public.users cascade');
      } catch {
        // refused: safe
      }
      assert.equal(await count(), before, 'TRUNCATE users CASCADE emptied public.sensitive_data');
    });
  });

  describe('row limits', () => {
    before(async () => {
      await putPolicy({
        name: 'attack-rows',
        connections: ['demo'],
        groups: ['admin'],
        rules: [{ limit: { rows: 5 } }],
      });
    });
    after(async () => {
      await dropPolicy('attack-rows');
    });

    it('cursors (FETCH ALL, FETCH 100, WITH HOLD), SQL EXECUTE, SHOW ALL, wide rows, many columns, notices', async () => {
      const admin = await t.client(ADMIN);
      await admin.query('begin');
      await admin.query('declare attack_rc cursor for select generate_series(1, 10)');
      await refused(admin, 'fetch all from attack_rc', '54000');
      await admin.query('rollback');
      await admin.query('declare attack_rh cursor with hold for select generate_series(1, 10)');
      await refused(admin, 'fetch 100 from attack_rh', '54000');
      await admin.query('close attack_rh');
      await admin.query('prepare attack_rows as select generate_series(1, 10)');
      await refused(admin, 'execute attack_rows', '54000');
      await refused(admin, 'show all', '54000');
      await refused(admin, "select repeat('x', 200000) from generate_series(1, 10)", '54000');
      const columns = Array.from({ length: 800 }, (_, k) => `g as c${k}`).join(', ');
      await refused(admin, `select ${columns} from generate_series(1, 10) g`, '54000');
      await refused(admin, 'select public.attack_noisy(g) from generate_series(1, 10) g', '54000');
      await refused(
        admin,
        "explain analyze select * from public.attack_probe where note like 'row%'",
        '54000',
      );
      await admin.end();
    });

    it('extended: Describe first, Flush instead of Sync, Execute with a large row count, two batches in one write', async () => {
      const rows = (answers: Answer[]) => answers.filter((a) => a.type === 'D').length;
      const s = await raw();
      s.send(
        msg.parse('', 'select generate_series(1, 10)'),
        msg.bind('', ''),
        msg.describePortal(''),
        msg.execute('', 100),
        msg.flush(),
      );
      s.send(msg.sync());
      let answers = await s.untilReady();
      assert.equal(errorOf(answers)?.get('C'), '54000', shape(answers));
      assert.ok(rows(answers) <= 5, shape(answers));
      s.send(
        msg.parse('attack_named', 'select generate_series(1, 10)'),
        msg.bind('', 'attack_named'),
        msg.execute(''),
        msg.sync(),
        msg.bind('', 'attack_named'),
        msg.execute(''),
        msg.sync(),
      );
      answers = await s.untilReady(2);
      assert.ok(rows(answers) <= 10, shape(answers));
      assert.equal(answers.filter((a) => a.type === 'E').length, 2, shape(answers));
      // Two simple queries in one write.
      s.send(msg.query('select generate_series(1, 10)'), msg.query('select generate_series(1, 10)'));
      answers = await s.untilReady(2);
      assert.ok(rows(answers) <= 10, shape(answers));
      assert.equal(answers.filter((a) => a.type === 'E').length, 2, shape(answers));
      s.close();
    });

    it('COPY TO STDOUT: extended protocol, csv, binary, a query of wide rows', async () => {
      const copyRows = (answers: Answer[]) => answers.filter((a) => a.type === 'd').length;
      const s = await raw();
      s.send(
        msg.parse('', 'copy (select generate_series(1, 10)) to stdout'),
        msg.bind('', ''),
        msg.execute(''),
        msg.sync(),
      );
      let answers = await s.untilReady();
      assert.equal(errorOf(answers)?.get('C'), '54000', shape(answers));
      assert.ok(copyRows(answers) <= 5, shape(answers));
      for (const text of [
        'copy (select g, g::text from generate_series(1, 10) g) to stdout with (format csv, header)',
        'copy (select generate_series(1, 10)) to stdout with (format binary)',
        "copy (select repeat('y', 100000) from generate_series(1, 10)) to stdout",
      ]) {
        s.send(msg.query(text));
        answers = await s.untilReady();
        assert.equal(errorOf(answers)?.get('C'), '54000', `${text}: ${shape(answers)}`);
        assert.ok(copyRows(answers) <= 7, `${text}: ${shape(answers)}`);
      }
      s.close();
    });

    it('a cancel while the result is held does not let the rest through', async () => {
      const admin = await t.client(ADMIN);
      const rows: unknown[] = [];
      const running = admin
        .query('select g, pg_sleep(case when g = 5 then 1 else 0 end) from generate_series(1, 10) g')
        .then((r) => rows.push(...r.rows))
        .catch((err: PgError) => err);
      await new Promise((resolve) => setTimeout(resolve, 300));
      t.cancel(admin);
      const result = await running;
      assert.ok(rows.length <= 5, `${rows.length} rows reached the client`);
      assert.ok(result && typeof result === 'object' && 'code' in result);
      // The session goes on, still held to the limit.
      await passesSoon(() => admin.query('select 1'), 'the session answering after the cancel');
      await refused(admin, 'select generate_series(1, 10)', '54000');
      await admin.end();
    });
  });
});
