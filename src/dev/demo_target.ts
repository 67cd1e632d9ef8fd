/**
 * The dev stack's demo target: a PostgreSQL cluster with the sample schema and roles of seed 002
 * (`users`, `sensitive_data`, `app_readonly`, `app_readwrite`, `app_admin`), loaded idempotently,
 * and `pgward_admin`, the least-privileged login pgward uses to manage people's roles there.
 */
import path from 'node:path';
import pg from 'pg';
import type { Logger } from '../log/logger.js';
import { type EmbeddedCluster, startEmbeddedPostgres } from '../store/embedded_postgres.js';
import { readOrCreateSecret } from '../vault/secret_file.js';

export const DEMO_DATABASE = 'demo';
export const DEMO_ADMIN_ROLE = 'pgward_admin';
export const DEMO_ROLES = ['app_readonly', 'app_readwrite', 'app_admin'] as const;

export interface DemoTarget {
  cluster: EmbeddedCluster;
  /** Direct superuser URL of the demo database (dev only). */
  superuserUrl: string;
  /** pgward's own login on the target, for the demo connection's vaulted credential. */
  admin: { user: string; password: string };
}

const SCHEMA_SQL = `
CREATE TABLE IF NOT EXISTS public.users (
  id SERIAL PRIMARY KEY,
  username VARCHAR(50) UNIQUE NOT NULL,
  email VARCHAR(100) UNIQUE NOT NULL,
  created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP
);
CREATE TABLE IF NOT EXISTS public.sensitive_data (
  id SERIAL PRIMARY KEY,
  user_id INTEGER REFERENCES public.users(id),
  data TEXT NOT NULL,
  created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP
);
DO $$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'app_readonly') THEN CREATE ROLE app_readonly NOLOGIN; END IF;
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'app_readwrite') THEN CREATE ROLE app_readwrite NOLOGIN; END IF;
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'app_admin') THEN CREATE ROLE app_admin NOLOGIN; END IF;
END $$;
REVOKE ALL ON DATABASE ${DEMO_DATABASE} FROM PUBLIC;
GRANT CONNECT ON DATABASE ${DEMO_DATABASE} TO app_readonly, app_readwrite, app_admin;
GRANT USAGE ON SCHEMA public TO app_readonly, app_readwrite;
GRANT SELECT ON ALL TABLES IN SCHEMA public TO app_readonly;
GRANT SELECT, INSERT, UPDATE ON ALL TABLES IN SCHEMA public TO app_readwrite;
GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO app_readwrite;
GRANT ALL PRIVILEGES ON SCHEMA public TO app_admin;
GRANT ALL PRIVILEGES ON ALL TABLES IN SCHEMA public TO app_admin;
GRANT ALL PRIVILEGES ON ALL SEQUENCES IN SCHEMA public TO app_admin;
INSERT INTO public.users (username, email) VALUES
  ('john_doe', 'john@example.com'),
  ('jane_smith', 'jane@example.com'),
  ('admin_user', 'admin@example.com')
ON CONFLICT (username) DO NOTHING;
INSERT INTO public.sensitive_data (user_id, data)
SELECT u.id, v.data FROM (VALUES
  ('john_doe', 'John''s sensitive information'),
  ('jane_smith', 'Jane''s sensitive information'),
  ('admin_user', 'Admin''s sensitive information')) AS v(username, data)
JOIN public.users u USING (username)
WHERE NOT EXISTS (SELECT FROM public.sensitive_data);
`;

/** pgward_admin may create roles and hand out the app roles, but holds none of their privileges. */
function adminSql(password: string): string {
  const literal = `'${password.replace(/'/g, "''")}'`;
  return `
DO $$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '${DEMO_ADMIN_ROLE}') THEN
    CREATE ROLE ${DEMO_ADMIN_ROLE} LOGIN CREATEROLE;
  END IF;
END $$;
ALTER ROLE ${DEMO_ADMIN_ROLE} LOGIN CREATEROLE NOSUPERUSER PASSWORD ${literal};
GRANT CONNECT ON DATABASE ${DEMO_DATABASE} TO ${DEMO_ADMIN_ROLE};
GRANT ${DEMO_ROLES.join(', ')} TO ${DEMO_ADMIN_ROLE} WITH ADMIN TRUE, INHERIT FALSE, SET FALSE;
`;
}

/** Starts the demo target cluster in `dataDir/target` and brings its sample schema up to date. */
export async function startDemoTarget(opts: { dataDir: string; log: Logger }): Promise<DemoTarget> {
  const cluster = await startEmbeddedPostgres({ dir: path.join(opts.dataDir, 'target'), log: opts.log });
  try {
    const root = new pg.Client({ connectionString: cluster.url });
    await root.connect();
    try {
      const { rowCount } = await root.query('SELECT 1 FROM pg_database WHERE datname = $1', [DEMO_DATABASE]);
      if (rowCount === 0) await root.query(`CREATE DATABASE ${DEMO_DATABASE}`);
    } finally {
      await root.end();
    }
    const superuserUrl = cluster.url.replace(/\/postgres$/, `/${DEMO_DATABASE}`);
    const password = await readOrCreateSecret(path.join(opts.dataDir, 'target-admin.password'));
    const demo = new pg.Client({ connectionString: superuserUrl });
    await demo.connect();
    try {
      await demo.query(SCHEMA_SQL);
      await demo.query(adminSql(password));
    } finally {
      await demo.end();
    }
    return { cluster, superuserUrl, admin: { user: DEMO_ADMIN_ROLE, password } };
  } catch (err) {
    await cluster.close();
    throw err;
  }
}
