/**
 * Role mode `provision`: pgward keeps one login role per person and connection in the target
 * cluster, named after their email, and at each connect grants exactly the database roles their
 * groups map to and revokes the others. It acts through the connection's own credential, which
 * needs CREATEROLE and ADMIN OPTION on the mapped roles (PostgreSQL 16+), never superuser.
 * All SQL passes names and secrets as quoted literals and builds identifiers with format('%I').
 *
 * Roles belong to the whole cluster, not to one database, while grants and secrets are kept per
 * connection: two connections to one cluster must never share a login role, or each connect
 * through one would take back what the other granted and reset its password. So each role
 * carries a mark (its comment) naming the connection and person it serves; a role of the same
 * name marked for another, or with someone else's comment, is left alone and the person gets a
 * role with a suffix of their own on this connection.
 */
import { createHash } from 'node:crypto';
import pg from 'pg';
import { PgwardError } from '../errors.js';
import type { Connection, ConnectionRepository } from '../vault/connections.js';
import { scramVerifier } from './scram.js';
import { quoteLiteral } from './sql_quote.js';
import { TtlCache } from '../ttl_cache.js';

const MAX_IDENTIFIER_BYTES = 63;
/** SQLSTATE the role sync raises when the role's name is taken in the cluster (ours alone). */
const ROLE_TAKEN = 'PGW01';

/**
 * The login role of a person: their email; with `suffix` (when that name is taken) the email
 * and the suffix. Names over 63 bytes are shortened with a hash.
 */
export function loginRoleName(email: string, suffix?: string): string {
  const name = suffix === undefined ? email : `${email}~${suffix}`;
  if (Buffer.byteLength(name) <= MAX_IDENTIFIER_BYTES) return name;
  const hash = createHash('sha256').update(name).digest('hex').slice(0, 8);
  let prefix = name;
  while (Buffer.byteLength(prefix) > MAX_IDENTIFIER_BYTES - 9) prefix = prefix.slice(0, -1);
  return `${prefix}~${hash}`;
}

/** The suffix of a person's role on a connection when their plain email is taken. */
export function loginRoleSuffix(connectionId: string, userId: string): string {
  return createHash('sha256').update(`${connectionId}:${userId}`).digest('hex').slice(0, 8);
}

/** The comment that marks a login role as pgward's, for one connection and person. */
export function loginRoleMark(connectionId: string, userId: string): string {
  return `pgward login role: connection ${connectionId}, person ${userId}`;
}

/**
 * The DO block that creates or checks the login role and makes its memberships exactly `wanted`.
 * An existing role is used only when it carries `mark`, or no comment at all (made by an
 * administrator for pgward, or by pgward before roles were marked) and no privileges pgward
 * does not manage; it is then marked.
 */
export function syncRoleSql(
  role: string,
  wanted: string[],
  verifier: string | undefined,
  mark: string,
): string {
  const wantedArray = `ARRAY[${wanted.map(quoteLiteral).join(', ')}]::text[]`;
  const setPassword = verifier
    ? `EXECUTE format('ALTER ROLE %I PASSWORD %L', login, ${quoteLiteral(verifier)});`
    : '';
  const createPassword = verifier ? quoteLiteral(verifier) : 'NULL';
  return `DO $pgward$
DECLARE
  login text := ${quoteLiteral(role)};
  mark text := ${quoteLiteral(mark)};
  wanted text[] := ${wantedArray};
  existing record;
  login_oid oid;
  w text;
  r text;
BEGIN
  SELECT rolsuper, rolcreaterole, rolreplication, rolbypassrls, rolcanlogin,
         shobj_description(oid, 'pg_authid') AS note INTO existing
    FROM pg_roles WHERE rolname = login;
  IF NOT FOUND THEN
    EXECUTE format('CREATE ROLE %I LOGIN INHERIT NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS PASSWORD %L',
      login, ${createPassword});
    EXECUTE format('COMMENT ON ROLE %I IS %L', login, mark);
  ELSIF existing.note IS DISTINCT FROM mark AND existing.note IS NOT NULL THEN
    RAISE EXCEPTION 'role % belongs to another connection, person or owner', login USING ERRCODE = '${ROLE_TAKEN}';
  ELSIF existing.rolsuper OR existing.rolcreaterole OR existing.rolreplication OR existing.rolbypassrls THEN
    RAISE EXCEPTION 'login role % exists with privileges pgward does not manage', login USING ERRCODE = '42501';
  ELSE
    ${setPassword}
    IF existing.note IS NULL THEN
      EXECUTE format('COMMENT ON ROLE %I IS %L', login, mark);
    END IF;
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
  -- Privileges granted to the login role itself by someone else (not an owner's own) would come
  -- on top of the mapped roles: refuse rather than serve them. This database's objects only.
  SELECT oid INTO login_oid FROM pg_roles WHERE rolname = login;
  SELECT string_agg(what, ', ' ORDER BY what) INTO r FROM (
    SELECT DISTINCT format('%s %s',
        CASE c.relkind WHEN 'S' THEN 'sequence' WHEN 'v' THEN 'view' WHEN 'm' THEN 'materialized view'
          WHEN 'f' THEN 'foreign table' ELSE 'table' END, c.oid::regclass) AS what
      FROM pg_class c, aclexplode(c.relacl) a WHERE a.grantee = login_oid AND a.grantor <> login_oid
    UNION
    SELECT format('column %s.%I', t.attrelid::regclass, t.attname)
      FROM pg_attribute t, aclexplode(t.attacl) a WHERE a.grantee = login_oid AND a.grantor <> login_oid
    UNION
    SELECT format('schema %I', n.nspname)
      FROM pg_namespace n, aclexplode(n.nspacl) a WHERE a.grantee = login_oid AND a.grantor <> login_oid
    UNION
    SELECT format('function %s', p.oid::regprocedure)
      FROM pg_proc p, aclexplode(p.proacl) a WHERE a.grantee = login_oid AND a.grantor <> login_oid
    UNION
    SELECT format('database %I', d.datname)
      FROM pg_database d, aclexplode(d.datacl) a
      WHERE d.datname = current_database() AND a.grantee = login_oid AND a.grantor <> login_oid
  ) direct;
  IF r IS NOT NULL THEN
    RAISE EXCEPTION 'login role % holds privileges granted to it directly, which pgward does not manage: %', login, r
      USING ERRCODE = '42501';
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

export interface LoginRole {
  roleName: string;
  password: string;
}

/** A login role as the provisioner remembers it: is its password in the cluster yet? */
interface CachedLogin extends LoginRole {
  passwordSet: boolean;
}

export class RoleProvisioner {
  /** One small pool of admin sessions per connection, for the connection as it is now. */
  private readonly admins = new Map<string, { version: string; pool: Promise<pg.Pool> }>();
  /** Login roles (name and password) already read from the vault, per connection and person. */
  private readonly logins = new Map<string, CachedLogin>();
  /**
   * Per (connection, person): the role set last made exactly right, until it must be re-checked.
   * One entry per login role, so that applying another set (the person switched identity)
   * replaces it and switching back is applied again.
   */
  private readonly synced = new TtlCache<string>();
  /** Syncs under way, per (connection, person): concurrent connects of one person share one. */
  private readonly inFlight = new Map<string, Promise<LoginRole>>();

  /**
   * @param syncIntervalMs grants are re-checked at a connect when the last check of the same
   *   person, connection and role set is older than this (0: at every connect). A changed role
   *   set is always applied at once.
   */
  constructor(
    private readonly connections: ConnectionRepository,
    private readonly syncIntervalMs: number,
  ) {}

  /** The admin pool for the connection; a connection changed since (host, credential) gets a new one. */
  private admin(connection: Connection): Promise<pg.Pool> {
    const current = this.admins.get(connection.id);
    if (current && current.version === connection.version) return current.pool;
    if (current) void current.pool.then((old) => old.end()).catch(() => undefined);
    const pool = this.connections.credential(connection).then((credential) => {
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
    pool.catch(() => {
      if (this.admins.get(connection.id)?.pool === pool) this.admins.delete(connection.id);
    });
    this.admins.set(connection.id, { version: connection.version, pool });
    return pool;
  }

  /**
   * Makes the person's login role exist with exactly `roles` granted; returns the name and the
   * password to log in with. `resetPassword` sets a fresh verifier (after a failed login).
   */
  prepare(
    connection: Connection,
    person: { userId: string; email: string },
    roles: string[],
    resetPassword = false,
  ): Promise<LoginRole> {
    const key = `${connection.id}\0${person.userId}\0${roles.join('\0')}\0${resetPassword}`;
    let running = this.inFlight.get(key);
    if (!running) {
      running = this.sync(connection, person, roles, resetPassword).finally(() => this.inFlight.delete(key));
      this.inFlight.set(key, running);
    }
    return running;
  }

  private async sync(
    connection: Connection,
    person: { userId: string; email: string },
    roles: string[],
    resetPassword: boolean,
  ): Promise<LoginRole> {
    const loginKey = `${connection.id}\0${person.userId}`;
    // After a failed login, the vault is asked again: another gateway may have changed the role.
    let login =
      (!resetPassword && this.logins.get(loginKey)) || (await this.storedLogin(connection, person, loginKey));
    if (resetPassword) login.passwordSet = false;
    const syncKey = `${loginKey}\0${roles.join('\0')}`;
    if (login.passwordSet && this.synced.get(loginKey) === syncKey) return login;
    const mark = loginRoleMark(connection.id, person.userId);
    try {
      try {
        await this.run(connection, login, roles, mark);
      } catch (err) {
        if ((err as { code?: string }).code !== ROLE_TAKEN) throw err;
        // The name is another's in this cluster: this person gets their own on this connection,
        // unless another gateway gave it to them already.
        const taken = login.roleName;
        login = await this.storedLogin(connection, person, loginKey);
        if (login.roleName === taken) {
          const renamed = loginRoleName(person.email, loginRoleSuffix(connection.id, person.userId));
          if (renamed === taken) throw err;
          login = {
            ...(await this.connections.renameLoginRole(connection, person.userId, renamed)),
            passwordSet: false,
          };
          this.remember(loginKey, login);
        }
        login.passwordSet = false;
        await this.run(connection, login, roles, mark);
      }
      login.passwordSet = true;
      this.synced.set(loginKey, syncKey, this.syncIntervalMs);
    } catch (err) {
      this.synced.delete(loginKey);
      throw this.failure(connection, err);
    }
    return { roleName: login.roleName, password: login.password };
  }

  /** The person's login role on the connection from the vault (made up on first use). */
  private async storedLogin(
    connection: Connection,
    person: { userId: string; email: string },
    loginKey: string,
  ): Promise<CachedLogin> {
    const stored = await this.connections
      .loginRole(connection, person.userId, loginRoleName(person.email))
      .catch((err: unknown) => {
        // Another person with the same email has that name on this connection.
        if (!(err instanceof PgwardError && err.code === 'CONFLICT')) throw err;
        return this.connections.loginRole(
          connection,
          person.userId,
          loginRoleName(person.email, loginRoleSuffix(connection.id, person.userId)),
        );
      });
    const login = { ...stored, passwordSet: !stored.created };
    this.remember(loginKey, login);
    return login;
  }

  private remember(loginKey: string, login: CachedLogin): void {
    if (this.logins.size > 10_000) this.logins.clear();
    this.logins.set(loginKey, login);
  }

  /**
   * Runs the sync (with the password when it is not set yet); a concurrent CREATE ROLE of the
   * same name by another gateway is retried once.
   */
  private async run(
    connection: Connection,
    login: CachedLogin,
    roles: string[],
    mark: string,
  ): Promise<void> {
    const verifier = login.passwordSet ? undefined : await scramVerifier(login.password);
    const sql = syncRoleSql(login.roleName, roles, verifier, mark);
    const pool = await this.admin(connection);
    try {
      await pool.query(sql);
    } catch (err) {
      const code = (err as { code?: string }).code;
      if (code !== '23505' && code !== '42710') throw err;
      await pool.query(sql);
    }
  }

  private failure(connection: Connection, err: unknown): PgwardError {
    const e = err as { code?: string; message?: string };
    if (e.code === '42704' || e.code === '42501' || e.code === ROLE_TAKEN) {
      return new PgwardError(
        'NOT_ALLOWED',
        `cannot prepare your database role on "${connection.name}": ${e.message}`,
        {
          hint: 'ask a pgward administrator to check the connection access map',
        },
      );
    }
    return new PgwardError('UPSTREAM_FAILED', `cannot manage database roles on "${connection.name}"`, {
      cause: err,
      detail: e.message,
    });
  }

  async close(): Promise<void> {
    const pools = [...this.admins.values()];
    this.admins.clear();
    await Promise.all(pools.map((p) => p.pool.then((pool) => pool.end()).catch(() => undefined)));
  }
}
