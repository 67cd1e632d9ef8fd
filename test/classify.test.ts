import assert from 'node:assert/strict';
import { before, describe, test } from 'node:test';
import type { StatementInfo } from '../src/policy/classification.js';
import { classify } from '../src/policy/classify.js';
import { redactSecrets } from '../src/policy/secrets.js';
import { loadSqlParser } from '../src/policy/sql_parser.js';
import { CORPUS, type Expected } from './fixtures/classification_corpus.js';

before(async () => {
  await loadSqlParser();
});

/** What the corpus states about a statement, with every field filled. */
function project(s: StatementInfo): Required<Omit<Expected, 'execute' | 'prepared'>> & Partial<Expected> {
  const p: Required<Omit<Expected, 'execute' | 'prepared'>> & Partial<Expected> = {
    class: s.class,
    command: s.command,
    tables: s.tables
      .map((t) => `${t.access === 'write' ? 'w' : 'r'}:${t.schema === null ? '' : `${t.schema}.`}${t.name}`)
      .sort(),
    functions: [...s.functions].sort(),
    changesRole: s.changesRole,
    writeWithoutWhere: s.writeWithoutWhere,
    settings: s.settings.map((x) => [x.name, x.via, x.value]),
    readWrite: s.readWrite,
    lockingRead: s.lockingRead,
    opaque: s.opaqueSql !== undefined,
  };
  if (s.execute !== undefined) p.execute = s.execute.name;
  if (s.prepare !== undefined) p.prepared = s.prepare.statement.class;
  return p;
}

function filled(e: Expected): ReturnType<typeof project> {
  const p: ReturnType<typeof project> = {
    class: e.class,
    command: e.command,
    tables: [...(e.tables ?? [])].sort(),
    functions: [...(e.functions ?? [])].sort(),
    changesRole: e.changesRole ?? false,
    writeWithoutWhere: e.writeWithoutWhere ?? false,
    settings: e.settings ?? [],
    readWrite: e.readWrite ?? false,
    lockingRead: e.lockingRead ?? false,
    opaque: e.opaque ?? false,
  };
  if (e.execute !== undefined) p.execute = e.execute;
  if (e.prepared !== undefined) p.prepared = e.prepared;
  return p;
}

describe('classification corpus', () => {
  test('holds at least 200 statements', () => {
    const statements = CORPUS.reduce((n, e) => n + e.expect.length, 0);
    assert.ok(CORPUS.length >= 200, `${CORPUS.length} entries`);
    assert.ok(statements >= 200);
  });

  for (const entry of CORPUS) {
    test(entry.sql.length > 100 ? `${entry.sql.slice(0, 100)}...` : entry.sql, () => {
      const c = classify(entry.sql);
      assert.deepEqual(c.statements.map(project), entry.expect.map(filled));
      const bytes = Buffer.from(entry.sql);
      const found = c.secrets.map((s) => bytes.subarray(s.start, s.end).toString());
      assert.deepEqual(found, entry.secrets ?? []);
      const redacted = redactSecrets(entry.sql, c.secrets);
      for (const secret of entry.secrets ?? []) assert.ok(!redacted.includes(secret), redacted);
    });
  }
});

describe('classify edge cases', () => {
  test('an empty text or only comments has no statements', () => {
    assert.deepEqual(classify('').statements, []);
    assert.deepEqual(classify('  -- nothing\n /* here */ ;;').statements, []);
  });

  test('a syntax error carries PostgreSQL message and 1-based character position', () => {
    const c = classify("select 'é' frm t");
    assert.deepEqual(c.syntaxError, { message: 'syntax error at or near "t"', position: 16 });
  });

  test('PREPARE cannot hold a utility statement (the grammar refuses it)', () => {
    const c = classify("PREPARE p AS ALTER ROLE x PASSWORD 'y'");
    assert.equal(c.syntaxError?.message, 'syntax error at or near "ALTER"');
    assert.deepEqual(
      c.secrets.map((s) =>
        Buffer.from("PREPARE p AS ALTER ROLE x PASSWORD 'y'").subarray(s.start, s.end).toString(),
      ),
      ["'y'"],
    );
  });

  test('a text over the size cap is unknown with the reason', () => {
    const c = classify(`SELECT 1 /* ${'x'.repeat(1024 * 1024)} */`);
    assert.equal(c.statements[0]?.class, 'unknown');
    assert.match(c.statements[0]?.unknownReason ?? '', /longer than/);
  });

  test('deeply nested expressions are unknown, not a crash', () => {
    const c = classify(`SELECT ${'(1+'.repeat(1000)}1${')'.repeat(1000)}`);
    assert.equal(c.statements[0]?.class, 'unknown');
  });

  test('EXECUTE literals nest only so deep inside DO bodies', () => {
    let body = 'ALTER ROLE x SUPERUSER';
    for (let i = 0; i < 12; i++) body = `DO $d${i}$ BEGIN EXECUTE $e${i}$${body}$e${i}$; END $d${i}$`;
    const s = classify(body).statements[0];
    assert.ok(s !== undefined && (s.changesRole || s.opaqueSql !== undefined));
  });
});
