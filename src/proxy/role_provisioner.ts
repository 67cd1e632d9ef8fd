/**
 * Role mode `provision`: pgward keeps one login role per person in the target database, named
 * after their email, and at each connect grants exactly the database roles their groups map to
 * and revokes the others. It acts through the connection's own credential, which needs
 * CREATEROLE and ADMIN OPTION on the mapped roles (PostgreSQL 16+), never superuser.
 * All SQL passes names and secrets as quoted literals and builds identifiers with format('%I').
 */
import { createHash } from 'node:crypto';
import pg from 'pg';
import { PgwardError } from '../errors.js';
import type { Connection, ConnectionRepository } from '../vault/connections.js';
import { scramVerifier } from './scram.js';
import { quoteLiteral } from './sql_quote.js';
import { TtlCache } from './ttl_cache.js';

const MAX_IDENTIFIER_BYTES = 63;

/** The login role of a person: their email, shortened with a hash suffix when over 63 bytes. */
export function loginRoleName(email: string, userId?: string): string {
  // A second person with the same email (identities not linked) gets their id as a suffix.
  const name = userId === undefined ? email : `${email}~${userId.replace(/-/g, '').slice(0, 8)}`;
  if (Buffer.byteLength(name) <= MAX_IDENTIFIER_BYTES) return name;
  const hash = createHash('sha256').update(name).digest('hex').slice(0, 8);
  let prefix = name;
  while (Buffer.byteLength(prefix) > MAX_IDENTIFIER_BYTES - 9) prefix = prefix.slice(0, -1);
  return `${prefix}~${hash}`;
}

/** The DO block that creates or checks the login role and makes its memberships exactly `wanted`. */
export function syncRoleSql(role: string, wanted: string[], verifier: string | undefined): string {
  const wantedArray = `ARRAY[${wanted.map(quoteLiteral).join(', ')}]::text[]`;
  const setPassword = verifier
    ? `EXECUTE format('ALTER ROLE %I PASSWORD %L', login, ${quoteLiteral(verifier)});`
    : '';
  const createPassword = verifier ? quoteLiteral(verifier) : 'NULL';
  return `DO $pgward$
DECLARE
  login text := ${quoteLiteral(role)};
  wanted text[] := ${wantedArray};
  existing record;
  w text;
  r text;
BEGIN
  SELECT rolsuper, rolcreaterole, rolreplication, rolbypassrls, rolcanlogin INTO existing
    FROM pg_roles WHERE rolname = login;
  IF NOT FOUND THEN
    EXECUTE format('CREATE ROLE %I LOGIN INHERIT NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS PASSWORD %L',
      login, ${createPassword});
  ELSIF existing.rolsuper OR existing.rolcreaterole OR existing.rolreplication OR existing.rolbypassrls THEN
    RAISE EXCEPTION 'login role % exists with privileges pgward does not manage', login USING ERRCODE = '42501';
  ELSE
    ${setPassword}
  END IF;
  FOREACH w IN ARRAY wanted LOOP
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = w) THEN
      RAISE EXCEPTION 'database role % does not exist', w USING ERRCODE = '42704';
    END IF;
  END LOOP;
  FOR r IN SELECT g.rolname FROM pg_auth_members m
      JOIN pg_roles g ON g.oid = m.roleid JOIN pg_roles u ON u.oid = m.member
      WHERE u.rolname = login LOOP
    IF NOT (r = ANY (wanted)) THEN
      EXECUTE format('REVOKE %I FROM %I', r, login);  -- a no-op (warning) for grants by others
    END IF;
  END LOOP;
  -- A membership granted by someone else cannot be revoked by pgward: refuse rather than serve it.
  SELECT string_agg(DISTINCT g.rolname, ', ') INTO r FROM pg_auth_members m
    JOIN pg_roles g ON g.oid = m.roleid JOIN pg_roles u ON u.oid = m.member
    WHERE u.rolname = login AND NOT (g.rolname = ANY (wanted));
  IF r IS NOT NULL THEN
    RAISE EXCEPTION 'login role % holds memberships pgward cannot revoke: %', login, r USING ERRCODE = '42501';
  END IF;
  FOREACH w IN ARRAY wanted LOOP
    IF NOT EXISTS (SELECT FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid JOIN pg_roles u ON u.oid = m.member
                   WHERE u.rolname = login AND g.rolname = w) THEN
      EXECUTE format('GRANT %I TO %I', w, login);
    END IF;
  END LOOP;
END
$pgward$`;
}

/** node-postgres TLS options for a connection's sslmode. */
function pgSsl(connection: Connection): pg.ClientConfig['ssl'] {
  switch (connection.sslmode) {
    case 'disable':
      return false;
    case 'prefer':
    case 'require':
      return connection.sslCa
        ? { ca: connection.sslCa, checkServerIdentity: () => undefined }
        : { rejectUnauthorized: false };
    case 'verify-ca':
      return { ca: connection.sslCa, checkServerIdentity: () => undefined };
    case 'verify-full':
      return { ca: connection.sslCa, servername: connection.host };
  }
}

export class RoleProvisioner {
  /** One small pool of admin sessions per connection (id → pool). */
  private readonly admins = new Map<string, Promise<pg.Pool>>();
  /** Login roles (name and password) already read from the vault, per connection and person. */
  private readonly logins = new Map<string, { roleName: string; password: string }>();
  /**
   * Per (connection, person): the role set last made exactly right, until it must be re-checked.
   * One entry per login role, so that applying another set (the person switched identity)
   * replaces it and switching back is applied again.
   */
  private readonly synced = new TtlCache<string>();

  /**
   * @param syncIntervalMs grants are re-checked at a connect when the last check of the same
   *   person, connection and role set is older than this (0: at every connect). A changed role
   *   set is always applied at once.
   */
  constructor(
    private readonly connections: ConnectionRepository,
    private readonly syncIntervalMs: number,
  ) {}

  private admin(connection: Connection): Promise<pg.Pool> {
    let pool = this.admins.get(connection.id);
    if (!pool) {
      pool = this.connections.credential(connection).then((credential) => {
        const created = new pg.Pool({
          host: connection.host,
          port: connection.port,
          database: connection.database,
          user: credential.user,
          password: credential.password,
          ssl: pgSsl(connection),
          max: 4,
          idleTimeoutMillis: 60_000,
          connectionTimeoutMillis: 10_000,
          query_timeout: 15_000,
          application_name: 'pgward (role provisioning)',
        });
        created.on('error', () => undefined);
        return created;
      });
      pool.catch(() => this.admins.delete(connection.id));
      this.admins.set(connection.id, pool);
    }
    return pool;
  }

  /**
   * Makes the person's login role exist with exactly `roles` granted; returns the name and the
   * password to log in with. `resetPassword` sets a fresh verifier (after a failed login).
   */
  async prepare(
    connection: Connection,
    person: { userId: string; email: string },
    roles: string[],
    resetPassword = false,
  ): Promise<{ roleName: string; password: string }> {
    const loginKey = `${connection.id}\0${person.userId}`;
    let login: { roleName: string; password: string; created?: boolean } | undefined =
      this.logins.get(loginKey);
    if (!login) {
      login = await this.connections
        .loginRole(connection, person.userId, loginRoleName(person.email))
        .catch((err: unknown) => {
          if (!(err instanceof PgwardError && err.code === 'CONFLICT')) throw err;
          return this.connections.loginRole(
            connection,
            person.userId,
            loginRoleName(person.email, person.userId),
          );
        });
      if (this.logins.size > 10_000) this.logins.clear();
      this.logins.set(loginKey, { roleName: login.roleName, password: login.password });
    }
    const verifier = login.created || resetPassword ? await scramVerifier(login.password) : undefined;
    const syncKey = `${loginKey}\0${roles.join('\0')}`;
    if (!verifier && this.synced.get(loginKey) === syncKey) {
      return { roleName: login.roleName, password: login.password };
    }
    try {
      await (await this.admin(connection)).query(syncRoleSql(login.roleName, roles, verifier));
      this.synced.set(loginKey, syncKey, this.syncIntervalMs);
    } catch (err) {
      this.synced.delete(loginKey);
      const e = err as { code?: string; message?: string };
      if (e.code === '42704' || e.code === '42501') {
        throw new PgwardError(
          'NOT_ALLOWED',
          `cannot prepare your database role on "${connection.name}": ${e.message}`,
          {
            hint: 'ask a pgward administrator to check the connection access map',
          },
        );
      }
      throw new PgwardError('UPSTREAM_FAILED', `cannot manage database roles on "${connection.name}"`, {
        cause: err,
        detail: e.message,
      });
    }
    return { roleName: login.roleName, password: login.password };
  }

  async close(): Promise<void> {
    const pools = [...this.admins.values()];
    this.admins.clear();
    await Promise.all(pools.map((p) => p.then((pool) => pool.end()).catch(() => undefined)));
  }
}
