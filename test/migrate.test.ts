import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { cpSync, readdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { PgwardError } from '../src/errors.js';
import type { EmbeddedCluster } from '../src/store/embedded_postgres.js';
import { MIGRATIONS_DIR, migrate } from '../src/store/migrate.js';
import { createPool } from '../src/store/store.js';
import { createDatabase, startTestPostgres } from './support/postgres.js';
import { quietLog } from './support/quiet_log.js';
import { tempDir } from './support/temp_dir.js';

const run = promisify(execFile);
const ALL_VERSIONS = readdirSync(MIGRATIONS_DIR)
  .filter((f) => f.endsWith('.sql'))
  .map((f) => Number(f.slice(0, 3)));

/** Everything about the pgward schema that a migration could change. */
async function schemaFingerprint(url: string): Promise<string> {
  const pool = createPool(url);
  try {
    const { rows } = await pool.query(`
      SELECT c.relname, c.relkind, a.attname, format_type(a.atttypid, a.atttypmod) AS type, a.attnotnull
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
      WHERE n.nspname = 'pgward' ORDER BY 1, 3`);
    return JSON.stringify(rows);
  } finally {
    await pool.end();
  }
}

describe('migrations', () => {
  let cluster: EmbeddedCluster;
  before(async () => {
    cluster = await startTestPostgres();
  });
  after(async () => {
    await cluster.close();
  });

  it('apply once, then a second run changes nothing', async () => {
    const url = await createDatabase(cluster);
    const pool = createPool(url);
    try {
      assert.deepEqual(await migrate(pool, quietLog), ALL_VERSIONS);
      const first = await schemaFingerprint(url);
      assert.deepEqual(await migrate(pool, quietLog), []);
      assert.equal(await schemaFingerprint(url), first);
      const { rows } = await pool.query('SELECT version FROM pgward.schema_migration ORDER BY version');
      assert.deepEqual(
        rows.map((r) => r.version),
        ALL_VERSIONS,
      );
    } finally {
      await pool.end();
    }
  });

  it('two processes starting together do not race', async () => {
    const url = await createDatabase(cluster);
    const child = path.join(path.dirname(fileURLToPath(import.meta.url)), 'support', 'migrate_child.js');
    const results = await Promise.all([
      run(process.execPath, [child, url]),
      run(process.execPath, [child, url]),
    ]);
    const applied = results.map((r) => JSON.parse(r.stdout) as number[]);
    // One process applied everything, the other found it done: never both, never half each.
    assert.deepEqual(
      [...applied[0]!, ...applied[1]!].sort((a, b) => a - b),
      ALL_VERSIONS,
    );
    assert.ok(applied.some((a) => a.length === 0));
  });

  it('refuses a migration that was edited after it was applied', async () => {
    const url = await createDatabase(cluster);
    const dir = tempDir('migrations');
    cpSync(MIGRATIONS_DIR, dir, { recursive: true });
    const pool = createPool(url);
    try {
      await migrate(pool, quietLog, dir);
      const first = readdirSync(dir).sort()[0]!;
      writeFileSync(path.join(dir, first), '-- edited\nSELECT 1;\n');
      await assert.rejects(migrate(pool, quietLog, dir), (err: unknown) => {
        assert.ok(err instanceof PgwardError);
        assert.equal(err.code, 'MIGRATION_FAILED');
        assert.match(err.message, /was changed after it was applied/);
        return true;
      });
    } finally {
      await pool.end();
    }
  });

  it('rolls back a failing migration whole and names it', async () => {
    const url = await createDatabase(cluster);
    const dir = tempDir('migrations');
    cpSync(MIGRATIONS_DIR, dir, { recursive: true });
    writeFileSync(path.join(dir, '900_broken.sql'), 'CREATE TABLE pgward.half_done (id int);\nSELECT 1/0;\n');
    const pool = createPool(url);
    try {
      await assert.rejects(migrate(pool, quietLog, dir), /migration 900 \(broken\) failed/);
      const { rowCount } = await pool.query("SELECT 1 FROM pg_tables WHERE tablename = 'half_done'");
      assert.equal(rowCount, 0);
    } finally {
      await pool.end();
    }
  });
});
