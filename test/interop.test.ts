import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { PACKAGE_ROOT } from '../src/package_root.js';
import { startTestStack, type TestStack } from './support/dev_stack.js';

const run = promisify(execFile);
const JDBC_JAR = '/usr/share/java/postgresql.jar';
const INTEROP = path.join(PACKAGE_ROOT, 'test', 'interop');

/** A Python that can import psycopg2 (Debian's, where apt installed it, comes first). */
async function pythonWithPsycopg2(): Promise<string | undefined> {
  for (const python of ['/usr/bin/python3', 'python3']) {
    try {
      await run(python, ['-c', 'import psycopg2']);
      return python;
    } catch {
      // try the next one
    }
  }
  return undefined;
}

// .ci/run installs python3-psycopg2 and libpostgresql-jdbc-java; elsewhere these skip, saying why.
describe('interop: other drivers through the gateway', async () => {
  const python = await pythonWithPsycopg2();
  const jdbc = existsSync(JDBC_JAR);
  if (process.env['PGWARD_REQUIRE_INTEROP'] === '1') {
    // CI installed both drivers: a skip there would hide a missing install step.
    it('has both drivers installed', () => {
      assert.ok(python, 'python3-psycopg2 is missing');
      assert.ok(jdbc, `${JDBC_JAR} is missing`);
    });
  }
  let t: TestStack;
  before(async () => {
    t = await startTestStack();
  });
  after(async () => {
    await t?.close();
  });

  it('psycopg2: parameters, server-side cursor, COPY, errors', {
    skip: python ? false : 'python3-psycopg2 is not installed',
  }, async () => {
    const dsn = `host=${t.stack.info.pg.host} port=${t.stack.info.pg.port} dbname=demo user=viewer@example.com sslmode=require password=${await t.token('viewer@example.com')}`;
    const { stdout } = await run(python!, [path.join(INTEROP, 'psycopg2_check.py'), dsn], {
      timeout: 60_000,
    });
    assert.deepEqual(stdout.trim().split('\n'), [
      'user=viewer@example.com',
      'param=john_doe',
      'cursor=1000',
      'copy=john_doe,jane_smith',
      'error=22012',
      'after-error=42',
    ]);
  });

  it('JDBC: server-prepared statements, batches, errors', {
    skip: jdbc ? false : 'libpostgresql-jdbc-java is not installed',
  }, async () => {
    const url = `jdbc:postgresql://${t.stack.info.pg.host}:${t.stack.info.pg.port}/demo`;
    const { stdout } = await run(
      'java',
      [
        '-cp',
        JDBC_JAR,
        path.join(INTEROP, 'Interop.java'),
        url,
        'editor@example.com',
        await t.token('editor@example.com'),
      ],
      { timeout: 120_000 },
    );
    assert.deepEqual(stdout.trim().split('\n'), [
      'user=editor@example.com',
      'prepared=ok',
      'batch=3',
      'error=22012',
      'after-error=42',
    ]);
  });
});
