/**
 * Role mode `provision`: pgward keeps one login role per person and connection in the target
 * cluster, named after their email, and at each connect grants exactly the database roles their
 * groups map to and revokes the others. It acts through the connection's own credential, which
 * needs CREATEROLE and ADMIN OPTION on the mapped roles (PostgreSQL 16+), never superuser.
 * Its SQL is constant text; every value travels as a bind parameter (role_sql.ts). It runs on
 * pgward's own admin sessions (admin_pool.ts), the one way pgward talks to targets.
 *
 * A login role cannot be turned against pgward from inside the database: its VALID UNTIL is a
 * few minutes away, renewed with its password at each sync, so a password the person set
 * themselves stops working soon; settings stored on it, changed attributes, memberships granted
 * by others and a changed comment are undone, and the session that found them is refused.
 * `disablePerson` takes LOGIN away when a person is deactivated; the next sync gives it back.
 *
 * Roles belong to the whole cluster, not to one database, while grants and secrets are kept per
 * connection: two connections to one cluster must never share a login role, or each connect
 * through one would take back what the other granted and reset its password. So each role
 * carries a mark (its comment) naming the connection and person it serves; a role of the same
 * name marked for another, or with someone else's comment on a role pgward has not made yet, is
 * left alone and the person gets a role with a suffix of their own on this connection.
 */
import { createHash } from 'node:crypto';
import { PgwardError } from '../errors.js';
import type { Logger } from '../log/logger.js';
import { TtlCache } from '../ttl_cache.js';
import type { Connection, ConnectionRepository } from '../vault/connections.js';
import { AdminPool } from './admin_pool.js';
import {
  DISABLE_ROLE,
  READ_TAMPERED,
  ROLE_TAKEN,
  SET_DISABLE_VALUES,
  SET_SYNC_VALUES,
  SYNC_ROLE,
} from './role_sql.js';
import { scramVerifier } from './scram.js';
import { DEFAULT_UPSTREAM_TIMEOUT_MS } from './upstream.js';

const MAX_IDENTIFIER_BYTES = 63;

/**
 * The login role of a person: their email; with `suffix` (when that name is taken) the email
 * and the suffix. Names over 63 bytes are shortened with a hash.
 */
export function loginRoleName(email: string, suffix?: string): string {
  const name = suffix === undefined ? email : `${email}~${suffix}`;
  if (Buffer.byteLength(name) <= MAX_IDENTIFIER_BYTES) return name;
  const hash = createHash('sha256').update(name).digest('hex').slice(0, 8);
  let prefix = name;
  // By code point, so a character is never cut in half.
  while (Buffer.byteLength(prefix) > MAX_IDENTIFIER_BYTES - 9) prefix = [...prefix].slice(0, -1).join('');
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

export interface LoginRole {
  roleName: string;
  password: string;
}

/** A login role as the provisioner remembers it: is it in the cluster with this password yet? */
interface CachedLogin extends LoginRole {
  passwordSet: boolean;
  /** The SCRAM verifier of `password`, made once. */
  verifier?: string;
}

export interface ProvisionerOptions {
  /** A login role's VALID UNTIL is this far ahead of each sync. */
  validForMs: number;
  /** The deadline of each upstream step. */
  timeoutMs: number;
  log: Logger | undefined;
  /** A role every login role is a member of (for pg_hba.conf's `+group`). */
  group: string | undefined;
}

export class RoleProvisioner {
  /** pgward's own sessions on each target, for the connection as it is now. */
  private readonly admin: AdminPool;
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
  private readonly opts: ProvisionerOptions;
  /** How long a sync counts: never so long that VALID UNTIL could pass before the login. */
  private readonly syncTtlMs: number;

  /**
   * @param syncIntervalMs grants are re-checked at a connect when the last check of the same
   *   person, connection and role set is older than this (0: at every connect), and at least
   *   twice per VALID UNTIL period. A changed role set is always applied at once.
   */
  constructor(
    private readonly connections: ConnectionRepository,
    syncIntervalMs: number,
    opts: Partial<ProvisionerOptions> = {},
  ) {
    this.opts = {
      validForMs: 120_000,
      timeoutMs: DEFAULT_UPSTREAM_TIMEOUT_MS,
      log: undefined,
      group: undefined,
      ...opts,
    };
    this.syncTtlMs = Math.min(syncIntervalMs, this.opts.validForMs / 2);
    this.admin = new AdminPool(connections, { timeoutMs: this.opts.timeoutMs });
  }

  /**
   * Makes the person's login role exist with exactly `roles` granted, LOGIN and a fresh VALID
   * UNTIL; returns the name and the password to log in with. `resetPassword` (after a failed
   * login) reads the vault again and syncs now. Refuses (LOGIN_ROLE_TAMPERED, 42501) when the
   * role was changed outside pgward, after undoing the change.
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

  /**
   * Takes LOGIN away from every login role of the person on every connection (deactivation,
   * revocation). Tries every connection; rejects afterwards when one could not be reached.
   * The person's next sync (they are active again) gives LOGIN back.
   */
  async disablePerson(userId: string): Promise<void> {
    const failures: string[] = [];
    for (const { connection, roleName } of await this.connections.loginRolesOf(userId)) {
      this.synced.delete(`${connection.id}\0${userId}`);
      try {
        await this.admin.use(connection, (conn) =>
          conn.pipeline(
            [
              { sql: SET_DISABLE_VALUES, params: [roleName, loginRoleMark(connection.id, userId)] },
              { sql: DISABLE_ROLE },
            ],
            'the role change (NOLOGIN)',
          ),
        );
      } catch (err) {
        failures.push(connection.name);
        this.opts.log?.warn(
          { connection: connection.name, loginRole: roleName, err: (err as Error).message },
          'cannot take LOGIN away from a login role',
        );
      }
    }
    if (failures.length > 0) {
      throw new PgwardError(
        'UPSTREAM_FAILED',
        `cannot take LOGIN away from the person's login roles on ${failures.map((n) => `"${n}"`).join(', ')}`,
        { hint: 'check that the targets are up, then deactivate the person again' },
      );
    }
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
    const syncKey = `${loginKey}\0${roles.join('\0')}`;
    if (!resetPassword && login.passwordSet && this.synced.get(loginKey) === syncKey) {
      return { roleName: login.roleName, password: login.password };
    }
    const mark = loginRoleMark(connection.id, person.userId);
    let tampered: string;
    try {
      try {
        tampered = await this.run(connection, login, roles, mark);
      } catch (err) {
        if ((err as { upstreamFields?: Map<string, string> }).upstreamFields?.get('C') !== ROLE_TAKEN)
          throw err;
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
        tampered = await this.run(connection, login, roles, mark);
      }
      login.passwordSet = true;
    } catch (err) {
      this.synced.delete(loginKey);
      throw this.failure(connection, err);
    }
    if (tampered !== '') {
      this.synced.delete(loginKey);
      // Names what changed, never a value (a stored setting could hold anything).
      this.opts.log?.warn(
        { connection: connection.name, loginRole: login.roleName, userId: person.userId, changed: tampered },
        'a login role was changed outside pgward: undone, and the session refused',
      );
      throw new PgwardError(
        'LOGIN_ROLE_TAMPERED',
        `your database login role on "${connection.name}" was changed outside pgward (${tampered}); ` +
          'pgward has undone the change and refused this session',
        {
          hint: tampered.includes('cannot revoke')
            ? 'a database administrator must revoke those memberships; ask a pgward administrator'
            : 'connect again; changing your own database role (password, settings) is not allowed',
        },
      );
    }
    this.synced.set(loginKey, syncKey, this.syncTtlMs);
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
    const login: CachedLogin = {
      roleName: stored.roleName,
      password: stored.password,
      passwordSet: !stored.created,
    };
    this.remember(loginKey, login);
    return login;
  }

  private remember(loginKey: string, login: CachedLogin): void {
    if (this.logins.size > 10_000) this.logins.clear();
    this.logins.set(loginKey, login);
  }

  /**
   * Runs the sync in one implicit transaction (values as bind parameters, then the constant DO
   * block); a concurrent CREATE ROLE of the same name by another gateway is retried once.
   * Resolves with what was found changed outside pgward ('' when nothing).
   */
  private async run(
    connection: Connection,
    login: CachedLogin,
    roles: string[],
    mark: string,
  ): Promise<string> {
    login.verifier ??= await scramVerifier(login.password);
    const { group } = this.opts;
    const wanted = group === undefined || roles.includes(group) ? roles : [...roles, group];
    const statements = [
      {
        sql: SET_SYNC_VALUES,
        params: [
          login.roleName,
          mark,
          JSON.stringify(wanted),
          login.verifier,
          String(Math.ceil(this.opts.validForMs / 1000)),
          login.passwordSet ? 'on' : 'off',
        ],
      },
      { sql: SYNC_ROLE },
      { sql: READ_TAMPERED },
    ];
    const once = () =>
      this.admin.use(connection, (conn) => conn.pipeline(statements, 'the role provisioning'));
    let sets: (string | null)[][][];
    try {
      sets = await once();
    } catch (err) {
      const code = (err as { upstreamFields?: Map<string, string> }).upstreamFields?.get('C');
      if (code !== '23505' && code !== '42710') throw err;
      sets = await once();
    }
    return sets[2]?.[0]?.[0] ?? '';
  }

  private failure(connection: Connection, err: unknown): PgwardError {
    const code = (err as { upstreamFields?: Map<string, string> }).upstreamFields?.get('C');
    const message = (err as Error).message;
    if (code === '42704' || code === '42501' || code === ROLE_TAKEN) {
      return new PgwardError(
        'NOT_ALLOWED',
        `cannot prepare your database role on "${connection.name}": ${message}`,
        {
          hint: 'ask a pgward administrator to check the connection access map',
        },
      );
    }
    // A timeout or a refused password method says what to do itself; keep its code.
    if (err instanceof PgwardError && err.code !== 'UPSTREAM_FAILED') return err;
    const detail = err instanceof PgwardError && err.detail ? `${message} (${err.detail})` : message;
    return new PgwardError('UPSTREAM_FAILED', `cannot manage database roles on "${connection.name}"`, {
      cause: err,
      detail,
    });
  }

  async close(): Promise<void> {
    this.admin.close();
  }
}
