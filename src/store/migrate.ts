/**
 * Numbered SQL migrations (`migrations/NNN_name.sql`), applied in order at start. An advisory lock
 * serialises gateways that start together against one store; each migration runs in its own
 * transaction and is recorded with a checksum, so a file edited after it ran is caught.
 */
import { createHash } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import type pg from 'pg';
import { PgwardError } from '../errors.js';
import type { Logger } from '../log/logger.js';
import { PACKAGE_ROOT } from '../package_root.js';

/** Key of the advisory lock held while migrating ("pgward" in ASCII). */
const MIGRATION_LOCK = 0x706777617264;

/** The migrations folder, shipped at the package root. */
export const MIGRATIONS_DIR = path.join(PACKAGE_ROOT, 'migrations');

interface Migration {
  version: number;
  name: string;
  sql: string;
  checksum: string;
}

async function readMigrations(dir: string): Promise<Migration[]> {
  const files = (await readdir(dir)).filter((f) => f.endsWith('.sql')).sort();
  const migrations: Migration[] = [];
  for (const file of files) {
    const m = /^(\d{3})_([a-z0-9_]+)\.sql$/.exec(file);
    if (!m) throw new PgwardError('MIGRATION_FAILED', `migration file ${file} is not named NNN_name.sql`);
    const sql = await readFile(path.join(dir, file), 'utf8');
    migrations.push({
      version: Number(m[1]),
      name: m[2]!,
      sql,
      checksum: createHash('sha256').update(sql).digest('hex'),
    });
  }
  return migrations;
}

/** Applies pending migrations; returns the versions it applied (empty when up to date). */
export async function migrate(pool: pg.Pool, log: Logger, dir = MIGRATIONS_DIR): Promise<number[]> {
  const migrations = await readMigrations(dir);
  const client = await pool.connect();
  const applied: number[] = [];
  try {
    await client.query('SELECT pg_advisory_lock($1)', [MIGRATION_LOCK]);
    await client.query(`CREATE SCHEMA IF NOT EXISTS pgward;
      CREATE TABLE IF NOT EXISTS pgward.schema_migration (
        version int PRIMARY KEY, name text NOT NULL, checksum text NOT NULL,
        applied_at timestamptz NOT NULL DEFAULT now())`);
    const { rows } = await client.query<{ version: number; checksum: string }>(
      'SELECT version, checksum FROM pgward.schema_migration',
    );
    const done = new Map(rows.map((r) => [r.version, r.checksum]));
    for (const migration of migrations) {
      const checksum = done.get(migration.version);
      if (checksum !== undefined) {
        if (checksum !== migration.checksum) {
          throw new PgwardError(
            'MIGRATION_FAILED',
            `migration ${migration.version} (${migration.name}) was changed after it was applied to this store`,
            { hint: 'never edit an applied migration; add a new one' },
          );
        }
        continue;
      }
      try {
        await client.query('BEGIN');
        await client.query(migration.sql);
        await client.query(
          'INSERT INTO pgward.schema_migration (version, name, checksum) VALUES ($1, $2, $3)',
          [migration.version, migration.name, migration.checksum],
        );
        await client.query('COMMIT');
      } catch (err) {
        await client.query('ROLLBACK').catch(() => undefined);
        throw new PgwardError(
          'MIGRATION_FAILED',
          `migration ${migration.version} (${migration.name}) failed`,
          {
            cause: err,
            detail: (err as Error).message,
          },
        );
      }
      applied.push(migration.version);
      log.info({ version: migration.version, name: migration.name }, 'applied migration');
    }
  } finally {
    await client.query('SELECT pg_advisory_unlock($1)', [MIGRATION_LOCK]).catch(() => undefined);
    client.release();
  }
  return applied;
}
