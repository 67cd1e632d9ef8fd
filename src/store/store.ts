/**
 * The store: pgward's own PostgreSQL (schema `pgward`). External when a database URL is set,
 * otherwise an embedded cluster in the data dir. Opening it applies pending migrations.
 */
import path from 'node:path';
import pg from 'pg';
import { PgwardError } from '../errors.js';
import type { Logger } from '../log/logger.js';
import { type EmbeddedCluster, startEmbeddedPostgres } from './embedded_postgres.js';
import { migrate } from './migrate.js';
import { translateStoreError } from './store_errors.js';

export interface Store {
  readonly pool: pg.Pool;
  /** Connection URL of the store; holds its password, never log it. */
  readonly url: string;
  /** Whether the store answers a trivial query right now. */
  ping(): Promise<boolean>;
  close(): Promise<void>;
}

const CONNECT_TIMEOUT_MS = 10_000;
const QUERY_TIMEOUT_MS = 30_000;

type AnyQuery = (...args: unknown[]) => unknown;

/** Wraps a promise-returning `query` so that failing to reach the store rejects STORE_UNAVAILABLE. */
function translating(query: AnyQuery): AnyQuery {
  return (...args: unknown[]) => {
    const result = query(...args);
    // Callback forms, and COPY streams, are passed through as they are.
    if (result instanceof Promise)
      return result.catch((err: unknown) => Promise.reject(translateStoreError(err)));
    return result;
  };
}

/**
 * Creates a pool with pgward's timeouts; `application_name` shows who is connected. Every
 * promise it and its clients return rejects STORE_UNAVAILABLE when the store cannot be reached.
 */
export function createPool(url: string, max = 10): pg.Pool {
  const pool = new pg.Pool({
    connectionString: url,
    max,
    connectionTimeoutMillis: CONNECT_TIMEOUT_MS,
    query_timeout: QUERY_TIMEOUT_MS,
    application_name: 'pgward',
  });
  // An idle client losing its connection must not crash the process; the next query reconnects.
  pool.on('error', () => undefined);
  pool.on('connect', (client) => {
    client.query = translating(client.query.bind(client) as AnyQuery) as typeof client.query;
  });
  pool.query = translating(pool.query.bind(pool) as AnyQuery) as typeof pool.query;
  pool.connect = translating(pool.connect.bind(pool) as AnyQuery) as typeof pool.connect;
  return pool;
}

/** Opens the store described by the configuration and brings its schema up to date. */
export async function openStore(opts: {
  databaseUrl?: string | undefined;
  dataDir: string;
  log: Logger;
}): Promise<Store> {
  let cluster: EmbeddedCluster | undefined;
  let url = opts.databaseUrl;
  if (url === undefined) {
    cluster = await startEmbeddedPostgres({ dir: path.join(opts.dataDir, 'store'), log: opts.log });
    url = cluster.url;
  }
  const pool = createPool(url);
  try {
    await migrate(pool, opts.log);
  } catch (err) {
    await pool.end().catch(() => undefined);
    await cluster?.close();
    if (err instanceof PgwardError) throw err;
    throw new PgwardError('STORE_UNAVAILABLE', 'cannot reach the store database', {
      cause: err,
      detail: (err as Error).message,
      hint: opts.databaseUrl ? 'check PGWARD_DATABASE_URL' : undefined,
    });
  }
  return {
    pool,
    url,
    ping: () =>
      pool.query('SELECT 1').then(
        () => true,
        () => false,
      ),
    async close() {
      await pool.end().catch(() => undefined);
      await cluster?.close();
    },
  };
}
