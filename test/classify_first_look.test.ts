/**
 * The first look against PostgreSQL's own lexer and parser: the same statement boundaries and
 * leading keywords through every quoting form, and never "plain" for a role change.
 */
import assert from 'node:assert/strict';
import { before, describe, test } from 'node:test';
import { classify } from '../src/policy/classify.js';
import { type FirstLook, firstLook, needsParseForBuiltins } from '../src/policy/first_look.js';
import { loadSqlParser, parseSql, scanSql } from '../src/policy/sql_parser.js';
import { CORPUS } from './fixtures/classification_corpus.js';

before(async () => {
  await loadSqlParser();
});

/** What PostgreSQL says: the statements' first words, or undefined when the text does not parse. */
function reference(text: string): string[] | undefined {
  const parsed = parseSql(text);
  if (!parsed.ok) return undefined;
  const tokens = scanSql(text) ?? [];
  return parsed.statements.map((s) => {
    const t = tokens.find((k) => k.start >= s.start);
    if (t === undefined || t.kind === 'SCONST' || !/^[A-Za-z_\u0080-\uffff]/.test(t.text)) return '';
    return t.text.length <= 10 ? t.text.toUpperCase() : '';
  });
}

function sure(look: FirstLook): { count: number; keywords: string[] } {
  assert.notEqual(look, 'unsure');
  return look as { count: number; keywords: string[] };
}

describe('firstLook splits as PostgreSQL does', () => {
  const cases: [string, string[]][] = [
    ['SELECT 1', ['SELECT']],
    ['select 1; update t set a = 1', ['SELECT', 'UPDATE']],
    ["SELECT ';'; DELETE FROM t", ['SELECT', 'DELETE']],
    ["SELECT 'it''s; x'; VALUES (1)", ['SELECT', 'VALUES']],
    ["SELECT E'\\'; ALTER'; SELECT 2", ['SELECT', 'SELECT']],
    ["SELECT E'\\\\'; ALTER ROLE x SUPERUSER", ['SELECT', 'ALTER']],
    ["SELECT e'\\';''; x'; TABLE t", ['SELECT', 'TABLE']],
    ["SELECT U&'\\0041;'; SHOW x", ['SELECT', 'SHOW']],
    ["SELECT B'101', X'1F'; SHOW x", ['SELECT', 'SHOW']],
    ['SELECT "a;b""c;"; SHOW x', ['SELECT', 'SHOW']],
    ['SELECT U&"a;b"; SHOW x', ['SELECT', 'SHOW']],
    ['SELECT $$;$$; SHOW x', ['SELECT', 'SHOW']],
    ['SELECT $a$ $$; $b$ ; $a$; SHOW x', ['SELECT', 'SHOW']],
    ['SELECT $é$ ; $é$; SHOW x', ['SELECT', 'SHOW']],
    ['SELECT $1; SHOW x', ['SELECT', 'SHOW']],
    ['SELECT a$b$c FROM t; SHOW x', ['SELECT', 'SHOW']],
    ['SELECT 1 -- ; ALTER\n; SHOW x', ['SELECT', 'SHOW']],
    ['SELECT 1 -- x\r; ALTER ROLE x SUPERUSER', ['SELECT', 'ALTER']],
    ['SELECT 1 /* ; /* ; */ ; */; SHOW x', ['SELECT', 'SHOW']],
    ['/* lead */ -- lead\n  select 1', ['SELECT']],
    [';;; SELECT 1;;; ;', ['SELECT']],
    ['\t\n\r\f\vSELECT\v1', ['SELECT']],
    ['(SELECT 1); SHOW x', ['', 'SHOW']],
    ['WITH x AS (SELECT 1) SELECT * FROM x', ['WITH']],
    ['SELECT ünï FROM "tåble"; SHOW x', ['SELECT', 'SHOW']],
    ['BEGIN; UPDATE t SET a = 1 WHERE id = 2; END;', ['BEGIN', 'UPDATE', 'END']],
  ];
  for (const [text, keywords] of cases) {
    test(JSON.stringify(text), () => {
      const look = sure(firstLook(text));
      assert.deepEqual(look.keywords, keywords);
      assert.equal(look.count, keywords.length);
      assert.deepEqual(reference(text), keywords);
    });
  }

  const unsure = [
    "SELECT 'open",
    'SELECT "open',
    "SELECT E'open\\'",
    'SELECT $a$ open $b$',
    'SELECT /* open /* */',
    'SELECT (1; SELECT 2)',
    'SELECT 1)',
    'SELECT 1\u0000; ALTER ROLE x SUPERUSER',
    'CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; END',
    'CREATE RULE r AS ON INSERT TO t DO ALSO (NOTIFY a; NOTIFY b)',
  ];
  for (const text of unsure) {
    test(`unsure: ${JSON.stringify(text)}`, () => {
      assert.equal(firstLook(text), 'unsure');
      assert.equal(needsParseForBuiltins(firstLook(text)), true);
    });
  }
});

describe('needsParseForBuiltins', () => {
  test('pgbench statements pass without a parse', () => {
    for (const text of [
      'BEGIN;',
      'UPDATE pgbench_accounts SET abalance = abalance + 10 WHERE aid = 5;',
      'SELECT abalance FROM pgbench_accounts WHERE aid = 5;',
      'INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (1, 1, 5, 10, CURRENT_TIMESTAMP);',
      'END;',
    ]) {
      assert.equal(needsParseForBuiltins(firstLook(text)), false, text);
    }
  });

  test('texts that name set_config or pg_settings are parsed whatever they start with', () => {
    for (const text of [
      "SELECT set_config('a', 'b', false)",
      "SELECT SET_CONFIG('a', 'b', false)",
      "SELECT \"set_config\"('a', 'b', false)",
      "UPDATE pg_settings SET setting = 'x' WHERE name = 'y'",
      'SELECT U&"\\0061"',
    ]) {
      assert.equal(needsParseForBuiltins(firstLook(text)), true, text);
    }
  });

  test('statements that are not plain are parsed', () => {
    for (const text of [
      'SET x = 1',
      'COPY t FROM STDIN',
      'CALL p()',
      'DO $$ BEGIN END $$',
      'ALTER TABLE t ADD c int',
      'GRANT a TO b',
    ]) {
      assert.equal(needsParseForBuiltins(firstLook(text)), true, text);
    }
  });

  test('property: every corpus statement that changes a role, or is refused, needs the parse', () => {
    let checked = 0;
    for (const entry of CORPUS) {
      const c = classify(entry.sql);
      if (c.statements.some((s) => s.changesRole || s.opaqueSql !== undefined) || c.syntaxError) {
        assert.equal(needsParseForBuiltins(firstLook(entry.sql)), true, entry.sql);
        checked++;
      }
    }
    assert.ok(checked > 50, `${checked}`);
  });
});

describe('firstLook against PostgreSQL on generated texts', () => {
  const FRAGMENTS = [
    'SELECT 1',
    'ALTER ROLE x SUPERUSER',
    'UPDATE t SET a = 1',
    ';',
    ' ',
    '\n',
    '\r',
    '--c\n',
    '--c\r',
    '-- ',
    '/* a */',
    '/* /* n */ */',
    '/*',
    '*/',
    "'s;'",
    "'it''s'",
    "''",
    "'",
    "E'\\''",
    "E'\\\\'",
    "e'",
    '\\',
    '$$;$$',
    '$a$ $$ ; $a$',
    '$a$',
    '$$',
    '$1',
    '"q;"',
    '"a""b"',
    '"',
    "U&'x;'",
    'U&"y"',
    'x',
    'E',
    '(',
    ')',
    '1',
    '1e',
    'a$b',
    ',',
    'SELECT',
    'ALTER',
    'DO $$ BEGIN ALTER ROLE x SUPERUSER; END $$',
  ];
  test('same boundaries and keywords whenever PostgreSQL parses the text; never plain for a role change', () => {
    let seed = 42;
    const random = (n: number): number => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed % n;
    };
    let compared = 0;
    for (let iteration = 0; iteration < 20000; iteration++) {
      const parts: string[] = [];
      const count = 1 + random(8);
      for (let k = 0; k < count; k++)
        parts.push(FRAGMENTS[random(FRAGMENTS.length)] ?? '', random(2) === 0 ? ' ' : '');
      const text = parts.join('');
      const expected = reference(text);
      if (expected === undefined) continue;
      const look = firstLook(text);
      if (look !== 'unsure') {
        assert.deepEqual(look.keywords, expected, JSON.stringify(text));
        compared++;
      }
      const c = classify(text);
      if (c.statements.some((s) => s.changesRole || s.opaqueSql !== undefined)) {
        assert.equal(needsParseForBuiltins(look), true, JSON.stringify(text));
      }
    }
    assert.ok(compared > 2000, `${compared} compared`);
  });
});
