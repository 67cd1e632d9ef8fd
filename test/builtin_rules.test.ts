/**
 * The built-in rule, tried as an attacker: every phrasing of a role change (and of SQL pgward
 * cannot see) must be refused, and the first look must never let one pass unparsed.
 */
import assert from 'node:assert/strict';
import { before, describe, test } from 'node:test';
import { checkBuiltins, type Judgement, parseFailure, protectPgward } from '../src/policy/builtin_rules.js';
import { classify } from '../src/policy/classify.js';
import { DecisionCache } from '../src/policy/decision_cache.js';
import { firstLook, needsParseForBuiltins } from '../src/policy/first_look.js';
import { loadSqlParser } from '../src/policy/sql_parser.js';

before(async () => {
  await loadSqlParser();
});

const SCRAM = 'SCRAM-SHA-256$4096:c2FsdHNhbHQ=$c3RvcmVka2V5:c2VydmVya2V5';

/** [name, text, what the refusal's detail names] */
const REFUSED: [string, string, string][] = [
  ['own password', "alter role current_user password 'x'", 'ROLE_CHANGE_DENIED'],
  ['upper case', "ALTER ROLE CURRENT_USER PASSWORD 'x'", 'ROLE_CHANGE_DENIED'],
  ['mixed case and odd whitespace', "AlTeR\t rOlE\r\n\fcurrent_user\vPASSWORD 'x'", 'ROLE_CHANGE_DENIED'],
  ['leading block comment', "/* hi */ ALTER ROLE current_user PASSWORD 'x'", 'ROLE_CHANGE_DENIED'],
  ['leading line comment', "-- SELECT\nALTER ROLE current_user PASSWORD 'x'", 'ROLE_CHANGE_DENIED'],
  [
    'line comment ended by a carriage return',
    "SELECT 1 -- note\r; ALTER ROLE current_user PASSWORD 'x'",
    'ROLE_CHANGE_DENIED',
  ],
  [
    'nested block comment',
    "/* a /* b */ SELECT */ ALTER ROLE current_user PASSWORD 'x'",
    'ROLE_CHANGE_DENIED',
  ],
  ['comment between keywords', "ALTER/**/ROLE/**/current_user/**/PASSWORD/**/'x'", 'ROLE_CHANGE_DENIED'],
  ['ALTER USER', "ALTER USER current_user WITH PASSWORD 'x'", 'ROLE_CHANGE_DENIED'],
  ['SESSION_USER', "ALTER ROLE SESSION_USER PASSWORD 'x'", 'ROLE_CHANGE_DENIED'],
  ['CURRENT_ROLE', "ALTER ROLE CURRENT_ROLE PASSWORD 'x'", 'ROLE_CHANGE_DENIED'],
  ['quoted login role name', 'ALTER ROLE "pgw_alice@example.com" PASSWORD \'x\'', 'ROLE_CHANGE_DENIED'],
  ['ENCRYPTED PASSWORD', "ALTER ROLE current_user ENCRYPTED PASSWORD 'x'", 'ROLE_CHANGE_DENIED'],
  ['psql \\password (SCRAM verifier)', `ALTER USER "pgw_alice" PASSWORD '${SCRAM}'`, 'ROLE_CHANGE_DENIED'],
  [
    'psql \\password (md5)',
    "ALTER USER bob PASSWORD 'md5d8578edf8458ce06fbc5bb76a58c5ca4'",
    'ROLE_CHANGE_DENIED',
  ],
  ['dollar-quoted password', 'ALTER ROLE current_user PASSWORD $p$x$p$', 'ROLE_CHANGE_DENIED'],
  ['PASSWORD NULL', 'ALTER ROLE current_user PASSWORD NULL', 'ROLE_CHANGE_DENIED'],
  ['VALID UNTIL', "ALTER ROLE current_user VALID UNTIL 'infinity'", 'ROLE_CHANGE_DENIED'],
  ['attributes', 'ALTER ROLE current_user CREATEROLE LOGIN', 'ROLE_CHANGE_DENIED'],
  ['stored role setting', "alter role current_user set role = 'app_admin'", 'ROLE_CHANGE_DENIED'],
  [
    'stored setting in one database',
    'ALTER ROLE current_user IN DATABASE demo SET search_path = evil',
    'ROLE_CHANGE_DENIED',
  ],
  ['ALTER ROLE ALL', 'ALTER ROLE ALL SET default_transaction_read_only = off', 'ROLE_CHANGE_DENIED'],
  ['RESET stored settings', 'ALTER ROLE current_user RESET ALL', 'ROLE_CHANGE_DENIED'],
  ['rename', 'ALTER ROLE app_readonly RENAME TO app_ro', 'ROLE_CHANGE_DENIED'],
  ['ALTER GROUP', 'ALTER GROUP app_admin ADD USER CURRENT_USER', 'ROLE_CHANGE_DENIED'],
  ['GRANT role TO CURRENT_USER', 'GRANT app_admin TO CURRENT_USER', 'ROLE_CHANGE_DENIED'],
  ['GRANT with options', 'GRANT app_admin TO current_user WITH INHERIT TRUE, SET TRUE', 'ROLE_CHANGE_DENIED'],
  ['REVOKE role', 'REVOKE app_readonly FROM bob', 'ROLE_CHANGE_DENIED'],
  ['CREATE ROLE', "CREATE ROLE evil LOGIN PASSWORD 'x'", 'ROLE_CHANGE_DENIED'],
  ['CREATE USER', 'CREATE USER evil', 'ROLE_CHANGE_DENIED'],
  ['DROP ROLE', 'DROP ROLE app_readonly', 'ROLE_CHANGE_DENIED'],
  [
    'COMMENT ON ROLE (pgward keeps the email there)',
    "COMMENT ON ROLE bob IS 'mallory@example.com'",
    'ROLE_CHANGE_DENIED',
  ],
  ['SECURITY LABEL ON ROLE', "SECURITY LABEL ON ROLE bob IS 'x'", 'ROLE_CHANGE_DENIED'],
  ['ALTER DATABASE SET', 'ALTER DATABASE demo SET default_transaction_read_only = off', 'ROLE_CHANGE_DENIED'],
  ['ALTER DATABASE SET role', "ALTER DATABASE demo SET role = 'app_admin'", 'ROLE_CHANGE_DENIED'],
  ['REASSIGN OWNED', 'REASSIGN OWNED BY current_user TO app_admin', 'ROLE_CHANGE_DENIED'],
  ['DROP OWNED', 'DROP OWNED BY current_user', 'ROLE_CHANGE_DENIED'],
  ['ALTER SYSTEM', "ALTER SYSTEM SET password_encryption = 'md5'", 'ROLE_CHANGE_DENIED'],
  ['second statement', "SELECT 1; ALTER ROLE current_user PASSWORD 'x'", 'ROLE_CHANGE_DENIED'],
  ['inside a transaction block', "BEGIN; ALTER ROLE current_user PASSWORD 'x'; COMMIT", 'ROLE_CHANGE_DENIED'],
  ['after a string holding ;', "SELECT 'a;b'; ALTER ROLE current_user PASSWORD 'x'", 'ROLE_CHANGE_DENIED'],
  [
    'after an E-string ending in an escaped backslash',
    "SELECT E'\\\\'; ALTER ROLE current_user PASSWORD 'x'",
    'ROLE_CHANGE_DENIED',
  ],
  [
    'after an E-string with an escaped quote',
    "SELECT E'\\';'; ALTER ROLE current_user PASSWORD 'x'",
    'ROLE_CHANGE_DENIED',
  ],
  [
    'after an E-string whose escaped quote would pair with a quote in a comment',
    "SELECT E'\\''; ALTER ROLE current_user SUPERUSER; SELECT 1 -- '",
    'ROLE_CHANGE_DENIED',
  ],
  [
    'after a dollar quote holding a quote that would pair with one in a comment',
    "SELECT $$'$$; ALTER ROLE current_user SUPERUSER; SELECT 1 -- '",
    'ROLE_CHANGE_DENIED',
  ],
  [
    'after a tagged dollar quote holding $$',
    "SELECT $a$ $$ ' $a$; ALTER ROLE current_user SUPERUSER; SELECT 1 -- '",
    'ROLE_CHANGE_DENIED',
  ],
  [
    'after a quoted identifier holding a quote',
    'SELECT 1 AS "\'"; ALTER ROLE current_user SUPERUSER; SELECT 1 -- \'',
    'ROLE_CHANGE_DENIED',
  ],
  [
    'after a -- comment holding a quote',
    "SELECT 1 -- '\n; ALTER ROLE current_user SUPERUSER; SELECT 1 -- '",
    'ROLE_CHANGE_DENIED',
  ],
  ['after a dollar-quoted ;', "SELECT $$;$$; ALTER ROLE current_user PASSWORD 'x'", 'ROLE_CHANGE_DENIED'],
  [
    'after a quoted identifier holding ;',
    'SELECT 1 AS "x;"; ALTER ROLE current_user PASSWORD \'x\'',
    'ROLE_CHANGE_DENIED',
  ],
  ['empty statements around it', ";;  ; ALTER ROLE current_user PASSWORD 'x';;", 'ROLE_CHANGE_DENIED'],
  ['DO, static', "DO $$ BEGIN ALTER ROLE current_user PASSWORD 'x'; END $$", 'ROLE_CHANGE_DENIED'],
  ['DO, single-quoted body', "DO 'BEGIN ALTER ROLE current_user PASSWORD ''x''; END'", 'ROLE_CHANGE_DENIED'],
  [
    'DO, explicit LANGUAGE plpgsql',
    "DO LANGUAGE plpgsql $$ BEGIN ALTER ROLE current_user VALID UNTIL 'infinity'; END $$",
    'ROLE_CHANGE_DENIED',
  ],
  [
    'DO, EXECUTE literal',
    "DO $$ BEGIN EXECUTE 'alter role current_user password ''x'''; END $$",
    'ROLE_CHANGE_DENIED',
  ],
  [
    'DO, EXECUTE concatenated literals',
    "DO $$ BEGIN EXECUTE 'al' || 'ter role current_user password ''x'''; END $$",
    'ROLE_CHANGE_DENIED',
  ],
  [
    'DO, EXECUTE with comments in the concatenation',
    "DO $$ BEGIN EXECUTE 'ALTER ' /* x */ || -- y\n 'ROLE current_user SUPERUSER'; END $$",
    'ROLE_CHANGE_DENIED',
  ],
  [
    'DO, nested dollar tags',
    'DO $outer$ BEGIN EXECUTE $inner$ALTER ROLE current_user NOLOGIN$inner$; END $outer$',
    'ROLE_CHANGE_DENIED',
  ],
  [
    'DO, EXECUTE of a DO',
    'DO $a$ BEGIN EXECUTE $b$DO $c$ BEGIN ALTER ROLE current_user SUPERUSER; END $c$$b$; END $a$',
    'ROLE_CHANGE_DENIED',
  ],
  [
    'DO, inside IF and a loop',
    'DO $$ BEGIN IF true THEN FOR i IN 1..2 LOOP GRANT app_admin TO current_user; END LOOP; END IF; END $$',
    'ROLE_CHANGE_DENIED',
  ],
  [
    'DO, in an exception handler',
    'DO $$ BEGIN PERFORM 1/0; EXCEPTION WHEN OTHERS THEN ALTER ROLE current_user SUPERUSER; END $$',
    'ROLE_CHANGE_DENIED',
  ],
  [
    'DO, EXECUTE format()',
    "DO $$ BEGIN EXECUTE format('ALTER ROLE %I PASSWORD %L', current_user, 'x'); END $$",
    'UNINSPECTABLE_SQL_DENIED',
  ],
  [
    'DO, EXECUTE of a variable',
    "DO $$ DECLARE q text := 'ALTER ROLE current_user SUPERUSER'; BEGIN EXECUTE q; END $$",
    'UNINSPECTABLE_SQL_DENIED',
  ],
  [
    'DO, EXECUTE of a concatenation with a function',
    "DO $$ BEGIN EXECUTE 'ALTER ROLE ' || quote_ident(current_user) || ' SUPERUSER'; END $$",
    'UNINSPECTABLE_SQL_DENIED',
  ],
  [
    'DO, EXECUTE of chr() codes',
    "DO $$ BEGIN EXECUTE chr(65) || 'LTER ROLE current_user SUPERUSER'; END $$",
    'UNINSPECTABLE_SQL_DENIED',
  ],
  [
    'DO, OPEN FOR EXECUTE of a variable',
    "DO $$ DECLARE c refcursor; q text := 'x'; BEGIN OPEN c FOR EXECUTE q; END $$",
    'UNINSPECTABLE_SQL_DENIED',
  ],
  [
    'DO in another language',
    "DO LANGUAGE plperl $$ spi_exec_query('ALTER ROLE current_user SUPERUSER') $$",
    'UNINSPECTABLE_SQL_DENIED',
  ],
  [
    'DO that does not compile',
    'DO $$ BEGIN ALTER ROLE current_user SUPERUSER END $$',
    'UNINSPECTABLE_SQL_DENIED',
  ],
  [
    'CREATE FUNCTION plpgsql',
    'CREATE FUNCTION f() RETURNS void LANGUAGE plpgsql AS $$ BEGIN ALTER ROLE current_user SUPERUSER; END $$',
    'ROLE_CHANGE_DENIED',
  ],
  [
    'CREATE OR REPLACE FUNCTION',
    "CREATE OR REPLACE FUNCTION public.f() RETURNS void AS $body$ BEGIN EXECUTE 'ALTER ROLE current_user PASSWORD ''x'''; END $body$ LANGUAGE plpgsql",
    'ROLE_CHANGE_DENIED',
  ],
  [
    'CREATE FUNCTION sql',
    "CREATE FUNCTION f() RETURNS void LANGUAGE sql AS 'ALTER ROLE current_user SUPERUSER'",
    'ROLE_CHANGE_DENIED',
  ],
  [
    'CREATE PROCEDURE',
    'CREATE PROCEDURE p() LANGUAGE plpgsql AS $$ BEGIN GRANT app_admin TO current_user; END $$',
    'ROLE_CHANGE_DENIED',
  ],
  [
    'BEGIN ATOMIC body',
    'CREATE FUNCTION f() RETURNS void LANGUAGE sql BEGIN ATOMIC ALTER ROLE current_user SUPERUSER; END',
    'ROLE_CHANGE_DENIED',
  ],
  [
    'BEGIN ATOMIC procedure body',
    'CREATE PROCEDURE p() BEGIN ATOMIC SELECT 1; GRANT app_admin TO current_user; END',
    'ROLE_CHANGE_DENIED',
  ],
  [
    'function created then called',
    'CREATE FUNCTION f() RETURNS void LANGUAGE sql AS $$ ALTER ROLE current_user SUPERUSER $$; SELECT f()',
    'ROLE_CHANGE_DENIED',
  ],
  [
    'function that EXECUTEs its argument',
    'CREATE FUNCTION run(q text) RETURNS void LANGUAGE plpgsql AS $$ BEGIN EXECUTE q; END $$',
    'UNINSPECTABLE_SQL_DENIED',
  ],
  [
    'function that RETURN QUERY EXECUTEs',
    'CREATE FUNCTION g(q text) RETURNS SETOF int LANGUAGE plpgsql AS $$ BEGIN RETURN QUERY EXECUTE q; END $$',
    'UNINSPECTABLE_SQL_DENIED',
  ],
  [
    'function in another language',
    "CREATE FUNCTION h() RETURNS void LANGUAGE plperl AS $$ spi_exec_query('ALTER ROLE x SUPERUSER') $$",
    'UNINSPECTABLE_SQL_DENIED',
  ],
  [
    'DO creating a function',
    "DO $$ BEGIN EXECUTE 'CREATE FUNCTION f() RETURNS void LANGUAGE sql AS ''ALTER ROLE current_user SUPERUSER'''; END $$",
    'ROLE_CHANGE_DENIED',
  ],
  [
    'COPY TO PROGRAM',
    'COPY (SELECT 1) TO PROGRAM \'psql -c "ALTER ROLE x SUPERUSER"\'',
    'UNINSPECTABLE_SQL_DENIED',
  ],
  [
    'standard_conforming_strings off (lexer mismatch)',
    'SET standard_conforming_strings = off',
    'SETTING_DENIED',
  ],
  [
    'standard_conforming_strings via set_config',
    "SELECT set_config('standard_conforming_strings', 'off', false)",
    'SETTING_DENIED',
  ],
  [
    'standard_conforming_strings in a DO body',
    "DO $$ BEGIN PERFORM set_config('standard_conforming_strings', 'no', false); END $$",
    'SETTING_DENIED',
  ],
  [
    'a function whose body PostgreSQL would lex with standard_conforming_strings off',
    "CREATE FUNCTION f() RETURNS void LANGUAGE plpgsql SET standard_conforming_strings = off AS $$ BEGIN PERFORM 'x\\' || '; ALTER ROLE current_user SUPERUSER; PERFORM ' || 'y'; END $$",
    'SETTING_DENIED',
  ],
  [
    'ALTER FUNCTION ... SET standard_conforming_strings',
    'ALTER FUNCTION f() SET standard_conforming_strings TO off',
    'SETTING_DENIED',
  ],
  [
    'ALTER PROCEDURE ... SET standard_conforming_strings',
    'ALTER PROCEDURE p() SET standard_conforming_strings = false',
    'SETTING_DENIED',
  ],
  [
    'client_encoding SJIS (a trail byte can be a backslash)',
    "SET client_encoding = 'SJIS'",
    'SETTING_DENIED',
  ],
  ['SET NAMES GBK', "SET NAMES 'GBK'", 'SETTING_DENIED'],
  [
    'UPDATE pg_settings (its rule calls set_config)',
    "UPDATE pg_settings SET setting = 'off' WHERE name = 'standard_conforming_strings'",
    'SETTING_DENIED',
  ],
  [
    'UPDATE pg_catalog.pg_settings in a CTE',
    "WITH s AS (UPDATE pg_catalog.pg_settings SET setting = 'SJIS' WHERE name = 'client_encoding' RETURNING 1) SELECT * FROM s",
    'SETTING_DENIED',
  ],
  [
    'PREPAREd set_config',
    "PREPARE p AS SELECT set_config('standard_conforming_strings', 'off', false)",
    'SETTING_DENIED',
  ],
  [
    'set_config spelled with U& escapes',
    "SELECT U&\"set\\005fconfig\"('standard_conforming_strings', 'off', false)",
    'SETTING_DENIED',
  ],
  [
    'set_config of a computed name',
    "SELECT set_config(lower('STANDARD_CONFORMING_STRINGS'), 'off', false)",
    'SETTING_DENIED',
  ],
];

const ALLOWED: [string, string][] = [
  ['SET ROLE (PostgreSQL checks membership)', 'SET ROLE app_admin'],
  ['SET SESSION AUTHORIZATION (PostgreSQL checks it)', 'SET SESSION AUTHORIZATION alice'],
  ['set_config role', "SELECT set_config('role', 'app_admin', false)"],
  ['RESET ROLE', 'RESET ROLE'],
  ['reads and writes', 'SELECT * FROM users; UPDATE t SET a = 1 WHERE id = 2'],
  [
    'keywords in strings and comments',
    "SELECT 'ALTER ROLE x PASSWORD ''y''' /* ALTER ROLE */ -- GRANT a TO b",
  ],
  ['keywords in dollar quotes', 'SELECT $q$ ALTER ROLE current_user SUPERUSER $q$'],
  ['a table named like a keyword', 'SELECT * FROM "role"'],
  ['GRANT on a table', 'GRANT SELECT ON t TO app_readonly'],
  ['DO with static SQL', 'DO $$ BEGIN UPDATE t SET a = 1 WHERE id = 1; END $$'],
  ['DO with EXECUTE of a literal', "DO $$ BEGIN EXECUTE 'SELECT 1'; END $$"],
  [
    'DO with OPEN FOR EXECUTE of a literal',
    "DO $$ DECLARE c refcursor; BEGIN OPEN c FOR EXECUTE 'SELECT 1'; END $$",
  ],
  ['CREATE FUNCTION without role changes', 'CREATE FUNCTION f() RETURNS int LANGUAGE sql AS $$ SELECT 1 $$'],
  ['CALL (a procedure body is checked when it is created)', 'CALL p()'],
  ['standard_conforming_strings on', 'SET standard_conforming_strings = on'],
  ['client_encoding UTF8', "SET client_encoding = 'UTF-8'"],
  ['client_encoding LATIN1', 'SET client_encoding TO latin1'],
  ['RESET client_encoding', 'RESET client_encoding'],
  ['EXECUTE (PREPARE holds only plannable statements)', 'EXECUTE p(1)'],
];

describe('protectPgward refuses', () => {
  for (const [name, sql, code] of REFUSED) {
    test(name, () => {
      const refusal = protectPgward(classify(sql));
      assert.ok(refusal !== undefined, `not refused: ${sql}`);
      assert.equal(refusal.sqlstate, '42501');
      assert.equal(refusal.rule, 'protect-pgward');
      assert.equal(refusal.detail, `pgward error ${code}`);
      // The first look must send it to the parser; otherwise the relay would never classify it.
      assert.equal(needsParseForBuiltins(firstLook(sql)), true);
      // Nothing of the text (a password) is echoed back.
      for (const text of [refusal.message, refusal.detail ?? '', refusal.hint ?? '']) {
        assert.ok(!text.includes("'x'") && !text.includes(SCRAM), text);
      }
    });
  }
});

describe('protectPgward allows', () => {
  for (const [name, sql] of ALLOWED) {
    test(name, () => {
      assert.equal(protectPgward(classify(sql)), undefined);
    });
  }
});

describe('checkBuiltins', () => {
  test('clears plain texts without the cache, refuses role changes, and caches parsed decisions', () => {
    const cache = new DecisionCache<Judgement>(100, 100_000);
    assert.equal(checkBuiltins('SELECT 1', cache), undefined);
    assert.equal(cache.stats.misses, 0);
    const text = "SELECT 1; ALTER ROLE current_user PASSWORD 'x'";
    assert.equal(checkBuiltins(text, cache)?.refusal?.sqlstate, '42501');
    const again = checkBuiltins(text, cache);
    assert.equal(again?.refusal?.sqlstate, '42501');
    assert.equal(again?.recordAs, "SELECT 1; ALTER ROLE current_user PASSWORD '[redacted]'");
    assert.equal(checkBuiltins('SET work_mem = 1024', cache), undefined);
    assert.equal(checkBuiltins('SET work_mem = 1024', cache), undefined);
    assert.deepEqual([cache.stats.hits, cache.stats.misses], [2, 2]);
  });

  test('a refused DO body with a password in dynamic SQL is recorded with its strings withheld', () => {
    const text = "do $$ begin execute 'alter role ' || current_user || ' password ''hunter2'''; end $$";
    const judged = checkBuiltins(text);
    assert.equal(judged?.refusal?.sqlstate, '42501');
    assert.doesNotMatch(judged?.recordAs ?? text, /hunter2/);
  });

  test('a plain SELECT with a connection string has its password redacted, and runs', () => {
    const judged = checkBuiltins("select dblink_connect('host=db password=hunter2 dbname=x')");
    assert.equal(judged?.refusal, undefined);
    assert.doesNotMatch(judged?.recordAs ?? 'hunter2', /hunter2/);
  });
});

describe('protectPgward messages', () => {
  test('a role change says which statement and what to do', () => {
    const r = protectPgward(classify("SELECT 1; ALTER USER current_user PASSWORD 'x'"));
    assert.equal(
      r?.message,
      'ALTER ROLE (statement 2 of 2) changes a database role, which pgward manages; it is not allowed through pgward',
    );
    assert.equal(r?.hint, 'pgward manages your database role; ask an administrator to change access');
  });

  test('PREPARE cannot hold a role change: PostgreSQL grammar refuses it (42601 with its position)', () => {
    const r = protectPgward(classify("PREPARE p AS ALTER ROLE current_user PASSWORD 'x'"));
    assert.deepEqual(r, {
      sqlstate: '42601',
      message: 'syntax error at or near "ALTER"',
      position: 14,
      rule: 'parse',
    });
  });

  test('parseFailure keeps PostgreSQL message and position', () => {
    assert.deepEqual(parseFailure({ message: 'syntax error at end of input', position: 9 }), {
      sqlstate: '42601',
      message: 'syntax error at end of input',
      position: 9,
      rule: 'parse',
    });
  });

  test('a statement over the size cap is refused with 54000', () => {
    const r = protectPgward(classify(`SELECT 1 -- ${'x'.repeat(1024 * 1024)}`));
    assert.equal(r?.sqlstate, '54000');
    assert.match(r?.message ?? '', /longer than 1048576 bytes/);
  });
});
