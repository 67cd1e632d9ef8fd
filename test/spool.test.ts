import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { appendFileSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { Writable } from 'node:stream';
import { describe, it } from 'node:test';
import type { StatementRecord } from '../src/audit/audit_writer.js';
import { type AuditBatch, AuditSpool, SPOOL_FILE } from '../src/audit/spool.js';
import { StatementRows } from '../src/audit/statement_rows.js';
import { createLogger } from '../src/log/logger.js';
import { tempDir } from './support/temp_dir.js';

/** A logger whose lines the test reads. */
function capturingLog() {
  const lines: { msg: string; [key: string]: unknown }[] = [];
  const destination = new Writable({
    write(chunk, _encoding, done) {
      for (const line of String(chunk).split('\n')) if (line.trim() !== '') lines.push(JSON.parse(line));
      done();
    },
  });
  return { log: createLogger({ level: 'info', pretty: false, destination }), lines };
}

const sessionId = randomUUID();

function statement(seq: number, text: string): StatementRecord {
  return {
    sessionId,
    seq,
    kind: 'simple',
    text,
    startedAtMs: Date.UTC(2026, 11, 1, 12, 0, seq),
    durationMs: 0.25,
    commandTag: 'SELECT 1',
    rows: 1,
    sqlstate: null,
    decision: null,
    decidedBy: null,
  };
}

/** A batch of one session start, `n` statements starting at `first`, and one session end. */
function batch(first: number, n: number, text = 'select 1'): AuditBatch {
  const rows = new StatementRows();
  for (let seq = first; seq < first + n; seq++) rows.add(statement(seq, `${text} -- ${seq}`));
  return {
    starts: [
      {
        sessionId,
        userId: null,
        email: 'viewer@example.com',
        provider: 'dev',
        connectionName: 'demo',
        loginRole: null,
        clientAddr: '127.0.0.1',
        applicationName: 'psql',
        startedAt: new Date(Date.UTC(2026, 11, 1, 12, 0, 0)),
      },
    ],
    statements: rows.take(64 * 1024 * 1024),
    ends: [
      {
        sessionId,
        endedAt: new Date(Date.UTC(2026, 11, 1, 13)),
        bytesIn: 10,
        bytesOut: 20,
        endReason: 'client',
      },
    ],
  };
}

/** Everything a spool replays, in order, marking each frame replayed. */
function replayAll(spool: AuditSpool): AuditBatch[] {
  const out: AuditBatch[] = [];
  for (let frame = spool.next(); frame; frame = spool.next()) {
    out.push(frame.batch);
    spool.replayed(frame);
  }
  return out;
}

/** A batch as plain data, for comparing (the rows as one buffer). */
function plain(b: AuditBatch) {
  return {
    starts: b.starts,
    ends: b.ends,
    id: b.statements.id,
    rows: b.statements.rows,
    bytes: Buffer.concat(b.statements.parts).toString('hex'),
  };
}

describe('the audit spool', () => {
  it('gives back every batch, byte for byte and in order, after a reopen', () => {
    const dir = tempDir('spool');
    const written = [batch(1, 3), batch(4, 200, 'ünïcödé 🐘'), batch(204, 1)];
    const spool = new AuditSpool(dir, 64 * 1024 * 1024, createLogger({ level: 'silent' }));
    assert.equal(spool.open(), true);
    for (const b of written) assert.equal(spool.append(b), true);
    assert.equal(spool.status().records, 3 * 2 + 204);
    spool.close();

    const again = new AuditSpool(dir, 64 * 1024 * 1024, createLogger({ level: 'silent' }));
    assert.equal(again.open(), true);
    assert.equal(again.status().records, 3 * 2 + 204);
    assert.deepEqual(replayAll(again).map(plain), written.map(plain));
    // Once everything is replayed the file is emptied.
    assert.equal(statSync(path.join(dir, SPOOL_FILE)).size, 0);
    assert.deepEqual(again.status(), {
      usable: true,
      bytes: 0,
      records: 0,
      maxBytes: 64 * 1024 * 1024,
      full: false,
      skippedFrames: 0,
    });
    // Statement texts are sensitive: the file is its owner's only.
    assert.equal(statSync(path.join(dir, SPOOL_FILE)).mode & 0o777, 0o600);
    again.close();
  });

  it('regression: a torn tail after SIGKILL is skipped with a log line, and the records before it replay', () => {
    const dir = tempDir('spool');
    const file = path.join(dir, SPOOL_FILE);
    const spool = new AuditSpool(dir, 64 * 1024 * 1024, createLogger({ level: 'silent' }));
    spool.open();
    spool.append(batch(1, 2));
    spool.append(batch(3, 2));
    const whole = statSync(file).size;
    spool.append(batch(5, 50));
    spool.close();
    // The process died halfway through writing the third frame.
    const bytes = readFileSync(file);
    const cut = whole + Math.floor((bytes.length - whole) / 2);
    writeFileSync(file, bytes.subarray(0, cut));

    const { log, lines } = capturingLog();
    const reopened = new AuditSpool(dir, 64 * 1024 * 1024, log);
    reopened.open();
    const torn = lines.find((l) => /torn record/.test(l.msg));
    assert.ok(torn, `a log line names the torn record: ${JSON.stringify(lines)}`);
    assert.equal(torn['offset'], whole);
    assert.equal(reopened.status().skippedFrames, 1);
    assert.equal(statSync(file).size, whole, 'the torn tail is cut off');
    // A frame appended after the cut follows the whole ones.
    reopened.append(batch(7, 1));
    assert.deepEqual(
      replayAll(reopened).map((b) => b.statements.rows),
      [2, 2, 1],
    );
    reopened.close();
  });

  it('skips a damaged frame in the middle (its checksum fails) and replays the frames after it', () => {
    const dir = tempDir('spool');
    const file = path.join(dir, SPOOL_FILE);
    const spool = new AuditSpool(dir, 64 * 1024 * 1024, createLogger({ level: 'silent' }));
    spool.open();
    spool.append(batch(1, 1));
    const first = statSync(file).size;
    spool.append(batch(2, 1, 'select 2'));
    spool.append(batch(3, 1));
    spool.close();
    // One byte of the second frame's statement text changes ("select 2" → "select 3").
    const bytes = readFileSync(file);
    const at = bytes.indexOf('select 2', first);
    assert.ok(at > first);
    bytes[at + 7] = '3'.charCodeAt(0);
    writeFileSync(file, bytes);

    const { log, lines } = capturingLog();
    const reopened = new AuditSpool(dir, 64 * 1024 * 1024, log);
    reopened.open();
    assert.ok(lines.some((l) => /damaged audit spool record/.test(l.msg)));
    const replayed = replayAll(reopened);
    assert.equal(replayed.length, 2, 'the damaged frame is not replayed as if it were whole');
    assert.equal(reopened.status().skippedFrames, 1);
    reopened.close();
  });

  it('refuses a batch past spoolMaxBytes and says so once; says full', () => {
    const dir = tempDir('spool');
    const { log, lines } = capturingLog();
    const spool = new AuditSpool(dir, 64 * 1024, log);
    spool.open();
    assert.equal(spool.append(batch(1, 10)), true);
    assert.equal(spool.append(batch(11, 2000, 'x'.repeat(100))), false);
    assert.equal(spool.append(batch(11, 2000, 'x'.repeat(100))), false);
    assert.equal(lines.filter((l) => /spool is full/.test(l.msg)).length, 1);
    assert.equal(spool.status().full, true);
    assert.ok(statSync(path.join(dir, SPOOL_FILE)).size <= 64 * 1024);
    // Replayed and emptied, it has room again.
    replayAll(spool);
    assert.equal(spool.status().full, false);
    spool.close();
  });

  it('ignores garbage that is not a frame at all', () => {
    const dir = tempDir('spool');
    const spool = new AuditSpool(dir, 64 * 1024 * 1024, createLogger({ level: 'silent' }));
    spool.open();
    spool.append(batch(1, 1));
    spool.close();
    appendFileSync(path.join(dir, SPOOL_FILE), 'not a frame');
    const reopened = new AuditSpool(dir, 64 * 1024 * 1024, createLogger({ level: 'silent' }));
    reopened.open();
    assert.deepEqual(
      replayAll(reopened).map((b) => b.statements.rows),
      [1],
    );
    reopened.close();
  });
});
