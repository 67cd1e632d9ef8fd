/** Password literals found from the parse and redacted for the audit, at UTF-8 byte offsets. */
import assert from 'node:assert/strict';
import { before, describe, test } from 'node:test';
import { classify } from '../src/policy/classify.js';
import { REDACTED, redactForAudit, redactSecrets } from '../src/policy/secrets.js';
import { loadSqlParser } from '../src/policy/sql_parser.js';

before(async () => {
  await loadSqlParser();
});

function redact(text: string): string {
  return redactSecrets(text, classify(text).secrets);
}

describe('redactSecrets', () => {
  const cases: [string, string, string][] = [
    ["ALTER ROLE current_user PASSWORD 'hunter2'", 'hunter2', `ALTER ROLE current_user PASSWORD ${REDACTED}`],
    [
      "create role r login password 'p1' valid until 'infinity'",
      'p1',
      `create role r login password ${REDACTED} valid until 'infinity'`,
    ],
    ["ALTER USER bob ENCRYPTED PASSWORD 'enc'", 'enc', `ALTER USER bob ENCRYPTED PASSWORD ${REDACTED}`],
    [
      "select 'ééé'; alter user \"bøb\" password 'pässwörd' -- ü",
      'pässwörd',
      `select 'ééé'; alter user "bøb" password ${REDACTED} -- ü`,
    ],
    [
      "SELECT '日本語 😀'; ALTER ROLE x PASSWORD '😀secret😀'",
      'secret',
      `SELECT '日本語 😀'; ALTER ROLE x PASSWORD ${REDACTED}`,
    ],
    ["/* ü */ ALTER ROLE x PASSWORD E'a\\'b'", "a\\'b", `/* ü */ ALTER ROLE x PASSWORD ${REDACTED}`],
    ['ALTER ROLE x PASSWORD $q$dollar$q$', 'dollar', `ALTER ROLE x PASSWORD ${REDACTED}`],
    [
      "CREATE USER MAPPING FOR bob SERVER s OPTIONS (user 'u', password 'fdwpass')",
      'fdwpass',
      `CREATE USER MAPPING FOR bob SERVER s OPTIONS (user 'u', password ${REDACTED})`,
    ],
    ["DO $$ BEGIN ALTER ROLE x PASSWORD 'inbody'; END $$", 'inbody', `DO ${REDACTED}`],
    ["DO $$ BEGIN EXECUTE 'ALTER ROLE x PASSWORD ''dyn'''; END $$", 'dyn', `DO ${REDACTED}`],
  ];
  for (const [text, secret, expected] of cases) {
    test(text, () => {
      const out = redact(text);
      assert.equal(out, expected);
      assert.ok(!out.includes(secret));
    });
  }

  test('connection strings with a password are hidden (subscriptions, dblink)', () => {
    for (const [text, secret] of [
      ["CREATE SUBSCRIPTION s CONNECTION 'host=h dbname=d password=subpw' PUBLICATION p", 'subpw'],
      ["ALTER SUBSCRIPTION s CONNECTION 'password = altpw host=h'", 'altpw'],
      ["SELECT dblink_connect('c', 'dbname=d user=u password=dblpw')", 'dblpw'],
      ["SELECT dblink('postgresql://u:uripw@h/d', 'select 1')", 'uripw'],
    ]) {
      const out = redact(text as string);
      assert.ok(!out.includes(secret as string), out);
      assert.ok(out.includes(REDACTED), out);
    }
  });

  test('a password in a text that does not parse is still hidden', () => {
    const out = redact("ALTER ROLE x PASSWORD 'typo-secret' VALID UNTL 'x'");
    assert.ok(!out.includes('typo-secret'), out);
  });

  test('a password in a text the lexer cannot read hides the whole text', () => {
    const out = redact("ALTER ROLE x PASSWORD 'unterminated");
    assert.equal(out, REDACTED);
  });

  test('redactForAudit parses texts the relay did not classify when they could hold a password', () => {
    assert.equal(
      redactForAudit("SELECT dblink_connect('password=zz9')"),
      `SELECT dblink_connect(${REDACTED})`,
    );
    assert.equal(redactForAudit('SELECT 1'), 'SELECT 1');
    const text = "ALTER ROLE x PASSWORD 'y'";
    assert.equal(redactForAudit(text, classify(text)), `ALTER ROLE x PASSWORD ${REDACTED}`);
  });

  test('a text without secrets is returned unchanged', () => {
    const text = "SELECT 'password', password FROM users WHERE name = 'é'";
    assert.equal(redact(text), text);
  });

  test('ranges past the end or overlapping do not throw or leak', () => {
    assert.equal(redactSecrets('abc', [{ start: 1, end: 99 }]), `a${REDACTED}`);
    assert.equal(
      redactSecrets('012345', [
        { start: 1, end: 4 },
        { start: 2, end: 5 },
      ]),
      `0${REDACTED}5`,
    );
  });
});
