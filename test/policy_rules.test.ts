/**
 * Policy documents and decisions as pure functions: validation names the bad field, each rule
 * kind refuses what it names however it is phrased (CTEs, EXPLAIN ANALYZE, PREPARE/EXECUTE, DO
 * bodies, comments and strings holding keywords), read-only cannot be escaped, observe mode
 * never refuses, and the classification shared by number shape decides as the text itself.
 */
import assert from 'node:assert/strict';
import { before, describe, test } from 'node:test';
import { classify } from '../src/policy/classify.js';
import { numberShape } from '../src/policy/first_look.js';
import { checkStatements } from '../src/policy/policy_check.js';
import { type PolicyDocument, readPolicyText, validatePolicy } from '../src/policy/policy_document.js';
import { compilePolicy, decide, type PolicySet, policiesFor } from '../src/policy/policy_rules.js';
import { loadSqlParser } from '../src/policy/sql_parser.js';
import { SqlPrepares } from '../src/policy/sql_prepares.js';

before(async () => {
  await loadSqlParser();
});

const KNOWN = {
  connections: new Set(['demo', 'orders']),
  isGroup: (g: string) => ['editor', 'viewer', 'admin'].includes(g) || g.startsWith('dev:'),
};

function doc(rules: unknown[], extra: Record<string, unknown> = {}): PolicyDocument {
  const checked = validatePolicy({ name: 'p', connections: ['demo'], rules, ...extra });
  if (!checked.ok) throw new Error(JSON.stringify(checked.problems));
  return checked.document;
}

function setOf(...documents: PolicyDocument[]): PolicySet {
  return policiesFor(documents.map(compilePolicy), 'demo', ['editor']);
}

/** The decision on a text: the refusal's message, 'observed', or 'allowed'. */
function judge(set: PolicySet, text: string, prepares = new SqlPrepares()): string {
  const c = classify(text);
  assert.equal(c.syntaxError, undefined, `${text} must parse`);
  const d = decide(set, c.statements, prepares);
  if (!d.refusal) prepares.track(c.statements);
  if (d.refusal) return `refused: ${d.refusal.message}`;
  return d.outcomes.length > 0 ? 'observed' : 'allowed';
}

describe('policy documents', () => {
  test('the example of the issue is valid, and names default', () => {
    const text = `
name: editors-safe-writes
connections: [demo]
groups: [editor]
mode: enforce
rules:
  - deny: [ddl, truncate]
    message: schema changes go through migrations
  - deny: write-without-where
  - deny: { functions: [pg_read_file, lo_import, dblink_exec] }
  - deny: { tables: [public.sensitive_data], access: write }
  - deny: multi-statement
  - limit: { rows: 10000 }
  - readOnly: true
`;
    const out = readPolicyText(text, KNOWN);
    assert.ok(out.ok, JSON.stringify(!out.ok && out.problems));
    assert.equal(validatePolicy({ name: 'x', connections: ['demo'], rules: [{ deny: 'ddl' }] }).ok, true);
    const d = doc([{ deny: { tables: ['T'] } }]);
    assert.deepEqual(d.rules[0], { deny: { tables: ['t'], access: 'any' } });
    assert.equal(d.mode, 'enforce');
  });

  const BAD: [string, unknown, string, RegExp][] = [
    ['an unknown class', { rules: [{ deny: ['dll'] }] }, 'rules[0].deny[0]', /ddl/],
    ['an unknown class alone', { rules: [{ deny: 'dll' }] }, 'rules[0].deny', /statement class/],
    ['a deny of an unknown form', { rules: [{ deny: { views: ['v'] } }] }, 'rules[0].deny', /functions/],
    ['an unknown rule kind', { rules: [{ forbid: 'ddl' }] }, 'rules[0]', /deny, limit, readOnly/],
    [
      'an unknown field in a rule',
      { rules: [{ deny: 'ddl', mesage: 'typo' }] },
      'rules[0]',
      /unknown field mesage/,
    ],
    ['an unknown top-level field', { rules: [{ deny: 'ddl' }], group: ['x'] }, '(document)', /group/],
    ['a zero row limit', { rules: [{ limit: { rows: 0 } }] }, 'rules[0].limit.rows', /./],
    [
      'an unknown table access',
      { rules: [{ deny: { tables: ['t'], access: 'delete' } }] },
      'rules[0].deny.access',
      /read/,
    ],
    ['no rules', { rules: [] }, 'rules', /./],
    ['an upper-case name', { name: 'Editors', rules: [{ deny: 'ddl' }] }, 'name', /lowercase/],
    ['readOnly false', { rules: [{ readOnly: false }] }, 'rules[0].readOnly', /true/],
  ];
  for (const [what, fields, path, message] of BAD) {
    test(`refuses ${what}, naming ${path}`, () => {
      const out = validatePolicy({ name: 'p', connections: ['demo'], ...(fields as object) }, KNOWN);
      assert.equal(out.ok, false);
      const problems = out.ok ? [] : out.problems;
      const hit = problems.find((p) => p.path === path);
      assert.ok(hit, `expected a problem at ${path}: ${JSON.stringify(problems)}`);
      assert.match(hit.message, message);
    });
  }

  test('refuses an unknown connection or group, naming the entry', () => {
    const out = validatePolicy(
      { name: 'p', connections: ['demo', 'nope'], groups: ['editor', 'ghosts'], rules: [{ deny: 'ddl' }] },
      KNOWN,
    );
    assert.equal(out.ok, false);
    const problems = out.ok ? [] : out.problems;
    assert.deepEqual(
      problems.map((p) => p.path),
      ['connections[1]', 'groups[1]'],
    );
    assert.ok(
      validatePolicy({ name: 'p', connections: ['demo'], groups: ['dev:x'], rules: [{ deny: 'ddl' }] }, KNOWN)
        .ok,
    );
  });

  test('YAML syntax errors and oversized documents are problems, not crashes', () => {
    const broken = readPolicyText('name: [unclosed', KNOWN);
    assert.equal(broken.ok, false);
    const big = readPolicyText(`name: p\n#${'x'.repeat(70_000)}`, KNOWN);
    assert.equal(big.ok, false);
    assert.match(big.ok ? '' : big.problems[0]!.message, /longer than/);
  });
});

describe('policy decisions', () => {
  test('deny classes, through CTEs, EXPLAIN ANALYZE, PREPARE and DO bodies', () => {
    const set = setOf(doc([{ deny: ['ddl', 'truncate'], message: 'schema changes go through migrations' }]));
    const refused = 'refused: schema changes go through migrations';
    assert.equal(judge(set, 'drop table users'), refused);
    assert.equal(judge(set, 'CREATE TEMP TABLE t (a int)'), refused);
    assert.equal(judge(set, 'truncate users'), refused);
    assert.equal(judge(set, 'do $$ begin drop table users; end $$'), refused);
    assert.equal(judge(set, "do $$ begin execute 'drop table users'; end $$"), refused);
    assert.equal(judge(set, "select 'drop table users' -- drop table users"), 'allowed');
    assert.equal(judge(set, '/* truncate users */ select 1'), 'allowed');
    assert.equal(judge(set, 'select $$drop table x$$'), 'allowed');
    assert.equal(judge(set, 'explain drop table users'.replace('drop table users', 'select 1')), 'allowed');
  });

  test('write-without-where at any depth', () => {
    const set = setOf(doc([{ deny: 'write-without-where' }]));
    assert.match(judge(set, 'delete from users'), /DELETE without WHERE/);
    assert.match(judge(set, 'update users set name = 1'), /UPDATE without WHERE/);
    assert.match(judge(set, 'with x as (delete from users returning *) select * from x'), /without WHERE/);
    assert.match(judge(set, 'explain analyze delete from users'), /without WHERE/);
    assert.match(judge(set, 'prepare p as update users set name = 2'), /UPDATE without WHERE/);
    assert.equal(judge(set, 'delete from users where id = 1'), 'allowed');
    assert.equal(judge(set, 'explain delete from users'), 'allowed', 'EXPLAIN without ANALYZE runs nothing');
    assert.equal(judge(set, "select 'delete from users'"), 'allowed');
  });

  test('functions, by name, whatever the schema or case', () => {
    const set = setOf(doc([{ deny: { functions: ['pg_read_file', 'dblink_exec'] } }]));
    assert.match(judge(set, "select pg_read_file('/etc/passwd')"), /pg_read_file/);
    assert.match(judge(set, "select PG_CATALOG.PG_READ_FILE('/etc/passwd')"), /pg_read_file/);
    assert.match(judge(set, "select * from (select pg_read_file('x')) s"), /pg_read_file/);
    assert.match(judge(set, "do $$ begin perform pg_read_file('x'); end $$"), /pg_read_file/);
    assert.equal(judge(set, "select 'pg_read_file(1)'"), 'allowed');
    assert.equal(judge(set, 'select pg_read_file_size()'), 'allowed');
  });

  test('tables: write and any, unqualified names match any schema', () => {
    const writes = setOf(doc([{ deny: { tables: ['public.sensitive_data'], access: 'write' } }]));
    assert.match(judge(writes, "insert into sensitive_data (secret) values ('x')"), /writes sensitive_data/);
    assert.match(judge(writes, "update public.sensitive_data set secret = 'x' where id = 1"), /writes/);
    assert.match(
      judge(writes, 'with d as (delete from "sensitive_data" where id = 1 returning 1) select 1'),
      /writes/,
    );
    assert.equal(judge(writes, 'select * from sensitive_data'), 'allowed');
    assert.equal(judge(writes, 'update other.sensitive_data set a = 1 where id = 1'), 'allowed');
    const any = setOf(doc([{ deny: { tables: ['sensitive_data'] } }]));
    assert.match(judge(any, 'select * from sensitive_data'), /reads sensitive_data/);
    assert.match(
      judge(any, 'select * from users u join lateral (select 1 from sensitive_data) s on true'),
      /reads/,
    );
    assert.match(judge(any, 'copy sensitive_data to stdout'), /reads/);
    assert.match(judge(any, 'copy (select * from sensitive_data) to stdout'), /reads/);
    assert.equal(judge(any, "select 'sensitive_data'"), 'allowed');
  });

  test('what reaches a protected table around its name: SQL in strings, CASCADE, DDL over it', () => {
    const set = setOf(doc([{ deny: { tables: ['public.sensitive_data'], access: 'write' } }]));
    assert.match(
      judge(set, "select query_to_xml('select * from sensitive_data', true, false, '')"),
      /runs SQL/,
    );
    assert.match(judge(set, "select table_to_xml('sensitive_data', true, false, '')"), /runs SQL/);
    assert.match(
      judge(set, "select * from ts_stat('select to_tsvector(data) from sensitive_data')"),
      /runs SQL/,
    );
    assert.match(judge(set, 'drop schema public cascade'), /CASCADE/);
    assert.match(judge(set, 'truncate users cascade'), /CASCADE/);
    assert.match(judge(set, 'create view v as select * from sensitive_data'), /over sensitive_data/);
    assert.equal(judge(set, 'create view v as select * from users'), 'allowed');
    assert.equal(judge(set, 'drop schema other'), 'allowed');
    const functions = setOf(doc([{ deny: { functions: ['pg_read_file'] } }]));
    assert.match(
      judge(functions, "select query_to_xml('select pg_read_file(''x'')', true, false, '')"),
      /runs SQL/,
    );
  });

  test('deny ddl also refuses SELECT INTO, which creates a table', () => {
    const set = setOf(doc([{ deny: ['ddl'] }]));
    assert.match(judge(set, 'select 1 as a into t'), /creates a table/);
    assert.match(judge(set, 'create table t as execute p'), /refused/);
  });

  test('PREPARE and EXECUTE inside DO bodies, CREATE TABLE AS EXECUTE, and cursors are resolved', () => {
    const set = setOf(doc([{ deny: ['write'] }, { deny: { tables: ['sensitive_data'] } }]));
    const prepares = new SqlPrepares();
    assert.match(
      judge(
        set,
        "do $$ begin execute 'prepare w as insert into users (name) values (1)'; execute 'execute w'; end $$",
        prepares,
      ),
      /refused/,
    );
    assert.equal(judge(set, 'prepare r as select * from users', prepares), 'allowed');
    assert.equal(judge(set, "do $$ begin execute 'execute r'; end $$", prepares), 'allowed');
    assert.match(judge(set, "do $$ begin execute 'execute unseen'; end $$", prepares), /PREPARE it again/);
    assert.match(judge(set, 'create table t as execute unseen', prepares), /refused/);
    assert.equal(judge(set, 'declare c cursor for select * from users', prepares), 'allowed');
    assert.equal(judge(set, 'fetch all from c', prepares), 'allowed');
    assert.match(judge(set, 'fetch all from held_before', prepares), /DECLARE it again/);
    assert.match(
      judge(set, 'declare s cursor with hold for select * from sensitive_data', prepares),
      /refused/,
    );
  });

  test('multi-statement texts', () => {
    const set = setOf(doc([{ deny: 'multi-statement' }]));
    assert.match(judge(set, 'select 1; select 2'), /2 statements/);
    assert.equal(judge(set, "select 'a;b'; "), 'allowed');
  });

  test('EXECUTE is judged by what was prepared, and an unseen name is refused', () => {
    const set = setOf(doc([{ deny: ['write'] }]));
    const prepares = new SqlPrepares();
    assert.equal(judge(set, 'prepare r as select 1', prepares), 'allowed');
    assert.equal(judge(set, 'execute r', prepares), 'allowed');
    assert.equal(judge(set, 'EXECUTE R', prepares), 'allowed', 'names fold to lower case');
    assert.match(judge(set, 'prepare w as insert into users (name) values ($1)', prepares), /refused/);
    assert.match(judge(set, 'execute never_prepared', prepares), /PREPARE it again/);
    assert.match(judge(set, 'explain analyze execute never_prepared', prepares), /PREPARE it again/);
    judge(set, 'deallocate all', prepares);
    assert.match(judge(set, 'execute r', prepares), /PREPARE it again/);
  });

  test('read-only: writes, escapes and row locks are refused; reads and plain settings are not', () => {
    const set = setOf(doc([{ readOnly: true }]));
    assert.equal(set.readOnly, true);
    const REFUSED = [
      "insert into users (name) values ('x')",
      'update users set name = 1 where id = 1',
      'delete from users where id = 1',
      'create temp table t (a int)',
      'select * from users for update',
      'select * from users for share',
      "select nextval('users_id_seq')",
      "select setval('users_id_seq', 1)",
      'copy users from stdin',
      'select * into t from users',
      'set default_transaction_read_only = off',
      'set transaction_read_only = off',
      'reset default_transaction_read_only',
      "select set_config('default_transaction_read_only', 'off', false)",
      "select set_config('transaction_read_only', 'off', true)",
      'begin read write',
      'start transaction isolation level serializable, read write',
      'set transaction read write',
      'set session characteristics as transaction read write',
      'call some_procedure()',
      'vacuum users',
      'with x as (insert into users (name) values (1) returning *) select * from x',
      "do $$ begin insert into users (name) values ('x'); end $$",
      'prepare p as delete from users where id = 1',
      'explain analyze update users set name = 1 where id = 1',
      'lock table users',
      'select lo_import($$/etc/passwd$$)',
    ];
    for (const text of REFUSED) assert.match(judge(set, text), /refused/, text);
    const ALLOWED = [
      'select * from users',
      'begin',
      'begin read only',
      'set statement_timeout = 1000',
      'show transaction_read_only',
      'reset all',
      'discard all',
      'explain update users set name = 1',
      'copy users to stdout',
      'commit',
      'listen x',
    ];
    for (const text of ALLOWED) assert.equal(judge(set, text), 'allowed', text);
  });

  test('observe mode decides and records, never refuses', () => {
    const set = setOf(doc([{ deny: ['ddl'] }], { mode: 'observe' }));
    assert.equal(judge(set, 'drop table users'), 'observed');
    const c = classify('drop table users');
    const d = decide(set, c.statements);
    assert.deepEqual(
      d.outcomes.map((o) => [o.policy, o.outcome]),
      [['p', 'observed']],
    );
    assert.equal(setOf(doc([{ readOnly: true }], { mode: 'observe' })).readOnly, false);
  });

  test('which policies apply: connections and groups', () => {
    const all = [
      compilePolicy(doc([{ deny: 'ddl' }], { name: 'editors', groups: ['editor'] })),
      compilePolicy(doc([{ deny: 'ddl' }], { name: 'everyone' })),
      compilePolicy(doc([{ deny: 'ddl' }], { name: 'orders-only', connections: ['orders'] })),
      compilePolicy(doc([{ limit: { rows: 10 } }], { name: 'tight' })),
      compilePolicy(doc([{ limit: { rows: 50 } }], { name: 'loose' })),
    ];
    assert.deepEqual(
      policiesFor(all, 'demo', ['editor']).policies.map((p) => p.name),
      ['editors', 'everyone', 'tight', 'loose'],
    );
    assert.deepEqual(
      policiesFor(all, 'demo', ['viewer']).policies.map((p) => p.name),
      ['everyone', 'tight', 'loose'],
    );
    assert.equal(policiesFor(all, 'demo', ['viewer']).rowLimit?.rows, 10, 'the strictest limit');
    assert.equal(policiesFor([], 'demo', []).policies.length, 0);
  });

  test('the refusal carries SQLSTATE 42501, POLICY_DENIED with policy and rule, and a hint', () => {
    const set = setOf(doc([{ deny: 'write-without-where' }], { name: 'safe' }));
    const d = decide(set, classify('delete from users').statements);
    assert.equal(d.refusal?.sqlstate, '42501');
    assert.match(
      d.refusal?.detail ?? '',
      /^pgward error POLICY_DENIED: policy "safe", rules\[0\] \(deny write-without-where\)/,
    );
    assert.ok(d.refusal?.hint);
  });
});

describe('classification by number shape', () => {
  test('numbers become zeros of the same length; strings, identifiers and parameters stay', () => {
    assert.equal(
      numberShape('select abalance from t1 where aid = 12345'),
      'select abalance from t1 where aid = 00000',
    );
    assert.equal(
      numberShape('select \'123\', "c1", $1, 1.5e10, 0x1F'),
      'select \'123\', "c1", $1, 0.0e00, 0x0F',
    );
    assert.equal(
      numberShape('do $$ begin perform 1; end $$; select 7'),
      'do $$ begin perform 1; end $$; select 0',
    );
    assert.equal(numberShape("select 'unterminated"), undefined);
  });

  test('a shape decides as the text itself, for every corpus of rule kinds', () => {
    const set = setOf(
      doc([
        { deny: ['ddl'] },
        { deny: 'write-without-where' },
        { deny: { functions: ['pg_sleep'] } },
        { deny: { tables: ['sensitive_data'] } },
        { readOnly: true },
      ]),
    );
    const TEXTS = [
      'select * from users where id = 42',
      'update users set name = 5 where id = 7',
      'delete from users',
      'select pg_sleep(10)',
      'select * from sensitive_data limit 100',
      'set statement_timeout = 5000',
      'set default_transaction_read_only = 0',
      'create table t1 (a int)',
      'select 1; select 2',
    ];
    for (const text of TEXTS) {
      const shape = numberShape(text)!;
      assert.equal(judge(set, shape), judge(set, text), text);
    }
  });
});

describe('policy test (offline)', () => {
  const documents = [
    doc([{ deny: ['ddl'], message: 'no DDL' }, { deny: 'write-without-where' }], { groups: ['editor'] }),
  ];
  test('expectations that hold, and one that does not', () => {
    const report = checkStatements(
      documents,
      `-- expect: allow
select 1;
-- expect: deny
drop table users;
-- a comment that is not an expectation
-- expect: deny
delete from users;
-- expect: deny
select 2;
alter role current_user password 'x';
`,
    );
    assert.deepEqual(
      report.results.map((r) => [r.line, r.decision, r.ok]),
      [
        [2, 'allow', true],
        [4, 'deny', true],
        [7, 'deny', true],
        [9, 'allow', false],
        [10, 'deny', true],
      ],
    );
    assert.equal(report.results[4]?.policy, 'builtin');
  });

  test('groups choose the policies; a syntax error names its line', () => {
    assert.equal(checkStatements(documents, 'drop table x;', ['viewer']).results[0]?.decision, 'allow');
    assert.equal(checkStatements(documents, 'drop table x;', ['editor']).results[0]?.decision, 'deny');
    const bad = checkStatements(documents, 'select 1;\nselec 2;');
    assert.equal(bad.syntaxError?.line, 2);
  });
});
