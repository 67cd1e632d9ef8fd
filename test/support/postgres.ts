/** A real PostgreSQL 18 (embedded) for tests: one cluster per test file, a fresh database per test. */
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import pg from 'pg';
import { type EmbeddedCluster, startEmbeddedPostgres } from '../../src/store/embedded_postgres.js';
import { quietLog } from './quiet_log.js';
import { removeTempDir, tempDir } from './temp_dir.js';

/** A cluster in a temporary folder, which close() removes. */
export async function startTestPostgres(): Promise<EmbeddedCluster> {
  const root = tempDir('pg');
  const cluster = await startEmbeddedPostgres({ dir: path.join(root, 'cluster'), log: quietLog });
  return {
    ...cluster,
    async close() {
      await cluster.close();
      removeTempDir(root);
    },
  };
}

/** A fresh database; `icu` gives it a linguistic default collation (the test cluster's is C). */
export async function createDatabase(
  cluster: EmbeddedCluster,
  opts: { icu?: boolean } = {},
): Promise<string> {
  const name = `t_${randomBytes(6).toString('hex')}`;
  const client = new pg.Client({ connectionString: cluster.url });
  await client.connect();
  try {
    await client.query(
      opts.icu
        ? `CREATE DATABASE ${name} TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'und' LOCALE 'C'`
        : `CREATE DATABASE ${name}`,
    );
  } finally {
    await client.end();
  }
  return cluster.url.replace(/\/postgres$/, `/${name}`);
}
