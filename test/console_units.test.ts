/**
 * The console's pure parts: finding the statement at the cursor, locating a policy error's path
 * in the document's text, CSV quoting, and errors that never carry more than PostgreSQL said.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { jsonSpans, spanOf } from '../console/src/json_paths.js';
import { splitStatements, statementAt } from '../console/src/statements.js';
import { sqlError } from '../src/console/query_bridge.js';
import { csvField } from '../src/console/result_export.js';
import { InProcessEnd } from '../src/proxy/in_process.js';

describe('statement at the cursor', () => {
  const text = `select 1;\nselect ';' as semi, "a;b" from t; -- not; here\nselect $x$ ; $x$, $$;$$ /* ; /* ; */ */;\n  select 4`;
  it('splits at semicolons outside strings, identifiers, comments and dollar quotes', () => {
    assert.deepEqual(
      splitStatements(text).map((s) => s.text),
      [
        'select 1',
        `select ';' as semi, "a;b" from t`,
        '-- not; here\nselect $x$ ; $x$, $$;$$ /* ; /* ; */ */',
        'select 4',
      ],
    );
  });
  it('finds the statement at every cursor position, and the spans point into the text', () => {
    for (const span of splitStatements(text)) assert.equal(text.slice(span.from, span.to), span.text);
    for (let i = 0; i <= text.length; i++) {
      const at = statementAt(text, i);
      assert.ok(at, `a statement at ${i}`);
      assert.ok(i <= at.to + 1, `the statement at ${i} ends at or after it`);
    }
    assert.equal(statementAt(text, text.length)?.text, 'select 4');
    assert.equal(statementAt(text, 3)?.text, 'select 1');
  });
  it('keeps an unterminated string to the end (the server reports it)', () => {
    assert.deepEqual(
      splitStatements("select 'open; string").map((s) => s.text),
      ["select 'open; string"],
    );
  });
});

describe('policy error paths in the document', () => {
  const doc = JSON.stringify(
    { name: 'p', rules: [{ deny: ['ddl', 'nonsense'] }, { limit: { rows: 5 } }] },
    null,
    2,
  );
  const spans = jsonSpans(doc)!;
  it('locates each value by the path the API names it with', () => {
    const at = (path: string) => {
      const s = spanOf(spans, path)!;
      return doc.slice(s.from, s.to);
    };
    assert.equal(at('rules[0].deny[1]'), '"nonsense"');
    assert.equal(at('rules[1].limit.rows'), '5');
    assert.equal(at('name'), '"p"');
  });
  it('falls back to the nearest parent for a missing field', () => {
    const s = spanOf(spans, 'rules[1].limit.bytes')!;
    assert.equal(doc.slice(s.from, s.to), '{\n        "rows": 5\n      }');
  });
  it('gives up on text that is not JSON', () => {
    assert.equal(jsonSpans('{"a": '), undefined);
    assert.equal(jsonSpans('{"a": 1} x'), undefined);
  });
});

describe('export and errors', () => {
  it('quotes CSV fields as RFC 4180 says, NULL as an empty field', () => {
    assert.equal(csvField('plain'), 'plain');
    assert.equal(csvField('a,b'), '"a,b"');
    assert.equal(csvField('say "hi"'), '"say ""hi"""');
    assert.equal(csvField('two\nlines'), '"two\nlines"');
    assert.equal(csvField(null), '');
    assert.equal(csvField(''), '');
  });
  it("passes on PostgreSQL's fields and nothing of a socket error", () => {
    const pgErr = Object.assign(new Error('permission denied for table users'), {
      code: '42501',
      severity: 'ERROR',
      detail: 'd',
      hint: 'h',
      position: '8',
    });
    assert.deepEqual(sqlError(pgErr), {
      sqlstate: '42501',
      message: 'permission denied for table users',
      severity: 'ERROR',
      detail: 'd',
      hint: 'h',
      position: 8,
    });
    const socket = Object.assign(new Error('connect ECONNREFUSED 10.1.2.3:5432'), { code: 'ECONNREFUSED' });
    assert.doesNotMatch(JSON.stringify(sqlError(socket)), /10\.1\.2\.3|ECONNREFUSED/);
  });
});

describe('in-process connection', () => {
  it('copies what is written: the writer may reuse its buffer at once (the relay does)', async () => {
    const { client, server } = InProcessEnd.pair('203.0.113.7');
    assert.equal(server.remoteAddress, '203.0.113.7');
    const got: Buffer[] = [];
    client.on('data', (b: Buffer) => got.push(b));
    const buffer = Buffer.from('first');
    server.write(buffer);
    buffer.write('XXXXX');
    server.end();
    await new Promise((resolve) => client.on('end', resolve));
    assert.equal(Buffer.concat(got).toString(), 'first');
  });
  it('holds the writer while the reader is full, and closes both ends together', async () => {
    const { client, server } = InProcessEnd.pair('198.51.100.1');
    server.pause();
    let ok = true;
    let written = 0;
    while (ok && written < 10_000_000) {
      ok = client.write(Buffer.alloc(65_536));
      written += 65_536;
    }
    assert.equal(ok, false, 'backpressure reached the writer');
    const drained = new Promise((resolve) => client.once('drain', resolve));
    server.resume();
    await drained;
    const closed = new Promise((resolve) => server.once('close', resolve));
    client.destroy();
    await closed;
  });
});
