/**
 * Connections to target databases and their vaulted credentials. The credential's password is
 * sealed with the gateway's key (bound to the connection id) and only ever opened to log in
 * upstream; nothing here returns it to a caller outside the proxy.
 */
import { randomBytes } from 'node:crypto';
import type pg from 'pg';
import { PgwardError } from '../errors.js';
import { withTransaction } from '../store/transaction.js';
import type { SecretBox } from './secret_box.js';
import { SSL_MODE_STRENGTH, SSL_MODES, type SslMode, tlsPlan } from './ssl_mode.js';

export { SSL_MODES, type SslMode };
export type RoleMode = 'provision' | 'shared';

export interface Connection {
  id: string;
  name: string;
  host: string;
  port: number;
  database: string;
  sslmode: SslMode;
  sslCa: string | undefined;
  roleMode: RoleMode;
  credentialUser: string;
  /** Unsafe: send the password in cleartext or md5 over TLS pgward did not verify. */
  allowUnverifiedPasswordAuth: boolean;
  /** Group name → database roles that group's members get. */
  access: Map<string, string[]>;
  /** Changes whenever the connection is updated (what was cached for it must be redone). */
  version: string;
}

export interface ConnectionInput {
  name: string;
  host: string;
  port: number;
  database: string;
  sslmode?: SslMode;
  sslCa?: string;
  roleMode?: RoleMode;
  /** Unsafe; false when absent. */
  allowUnverifiedPasswordAuth?: boolean;
  /**
   * Required for a new connection; when updating, absent means "keep the stored one", which is
   * refused when the change could lead the credential to another server (see `custodyChanges`).
   */
  credential?: { user: string; password: string };
  access?: Record<string, string[]>;
}

interface ConnectionRow {
  connection_id: string;
  name: string;
  host: string;
  port: number;
  database: string;
  sslmode: SslMode;
  ssl_ca: string | null;
  role_mode: RoleMode;
  credential_user: string;
  allow_unverified_password_auth: boolean;
  access: Record<string, string[]> | null;
  version: string;
}

const SELECT_CONNECTION = `
  SELECT c.connection_id, c.name, c.host, c.port, c.database, c.sslmode, c.ssl_ca, c.role_mode, c.credential_user,
         c.allow_unverified_password_auth, c.updated_at::text AS version,
         (SELECT jsonb_object_agg(a.group_name, a.db_roles) FROM pgward.connection_access a
           WHERE a.connection_id = c.connection_id) AS access
    FROM pgward.connection c`;

function toConnection(row: ConnectionRow): Connection {
  return {
    id: row.connection_id,
    name: row.name,
    host: row.host,
    port: row.port,
    database: row.database,
    sslmode: row.sslmode,
    sslCa: row.ssl_ca ?? undefined,
    roleMode: row.role_mode,
    credentialUser: row.credential_user,
    allowUnverifiedPasswordAuth: row.allow_unverified_password_auth,
    access: new Map(Object.entries(row.access ?? {})),
    version: row.version,
  };
}

/** How long a looked-up connection is reused before the store is asked again. */
const CACHE_MS = 2_000;

/**
 * The changes in `next` that could hand the stored credential to another server, or to one
 * pgward can no longer check (host, port, database, a weaker sslmode, another CA for a verified
 * connection, unverified password methods): each needs the credential sent again.
 */
export function custodyChanges(current: Connection, next: ConnectionInput): string[] {
  const changed: string[] = [];
  if (next.host !== current.host) changed.push('host');
  if (next.port !== current.port) changed.push('port');
  if (next.database !== current.database) changed.push('database');
  const sslmode = next.sslmode ?? 'prefer';
  if (SSL_MODE_STRENGTH[sslmode] < SSL_MODE_STRENGTH[current.sslmode]) changed.push('sslmode');
  if (tlsPlan(current.sslmode, current.sslCa).verifyChain && (next.sslCa ?? undefined) !== current.sslCa)
    changed.push('sslCa');
  if (next.allowUnverifiedPasswordAuth === true && !current.allowUnverifiedPasswordAuth)
    changed.push('allowUnverifiedPasswordAuth');
  return changed;
}

const owner = (id: string) => `connection:${id}`;
const loginOwner = (connectionId: string, userId: string) => `login-role:${connectionId}:${userId}`;

export class ConnectionRepository {
  private readonly cache = new Map<string, { connection: Connection | undefined; until: number }>();

  constructor(
    private readonly pool: pg.Pool,
    private readonly box: SecretBox,
  ) {}

  /**
   * Creates or replaces a connection by name, with its access map (when given). Without a
   * credential the stored one is kept; a new connection must have one.
   */
  async put(input: ConnectionInput): Promise<Connection> {
    await withTransaction(this.pool, async (client) => {
      if (!input.credential) {
        const { rows: existing } = await client.query<ConnectionRow>(
          `${SELECT_CONNECTION} WHERE c.name = $1 FOR UPDATE OF c`,
          [input.name],
        );
        const changed = existing[0] ? custodyChanges(toConnection(existing[0]), input) : [];
        if (changed.length > 0) {
          throw new PgwardError(
            'BAD_REQUEST',
            `changing ${changed.join(', ')} of connection "${input.name}" needs the credential again`,
            {
              detail: `fields that could lead the stored credential elsewhere: ${changed.join(', ')}`,
              hint: 'send credential (user and password) with the change',
            },
          );
        }
      }
      const { rows } = await client.query<{ connection_id: string; created: boolean }>(
        `INSERT INTO pgward.connection (tenant_id, name, host, port, database, sslmode, ssl_ca, role_mode,
           credential_user, credential_secret, allow_unverified_password_auth)
         SELECT tenant_id, $1, $2, $3, $4, $5, $6, $7, COALESCE($8, '?'), '\\x', $9 FROM pgward.tenant WHERE code = 'default'
         ON CONFLICT (name) DO UPDATE SET host = $2, port = $3, database = $4, sslmode = $5, ssl_ca = $6,
           role_mode = $7, credential_user = COALESCE($8, pgward.connection.credential_user),
           allow_unverified_password_auth = $9, updated_at = now()
         RETURNING connection_id, (xmax = 0) AS created`,
        [
          input.name,
          input.host,
          input.port,
          input.database,
          input.sslmode ?? 'prefer',
          input.sslCa ?? null,
          input.roleMode ?? 'provision',
          input.credential?.user ?? null,
          input.allowUnverifiedPasswordAuth ?? false,
        ],
      );
      const { connection_id: id, created } = rows[0]!;
      if (input.credential) {
        await client.query('UPDATE pgward.connection SET credential_secret = $2 WHERE connection_id = $1', [
          id,
          this.box.seal(input.credential.password, owner(id)),
        ]);
      } else if (created) {
        throw new PgwardError(
          'BAD_REQUEST',
          `connection "${input.name}" needs a credential (user and password)`,
        );
      }
      if (input.access) {
        await client.query('DELETE FROM pgward.connection_access WHERE connection_id = $1', [id]);
        for (const [group, roles] of Object.entries(input.access)) {
          await client.query(
            'INSERT INTO pgward.connection_access (connection_id, group_name, db_roles) VALUES ($1, $2, $3)',
            [id, group, roles],
          );
        }
      }
    });
    this.cache.delete(input.name);
    return (await this.find(input.name))!;
  }

  /** Every connection, by name (credentials stay sealed in the store). */
  async list(): Promise<Connection[]> {
    const { rows } = await this.pool.query<ConnectionRow>(`${SELECT_CONNECTION} ORDER BY c.name`);
    return rows.map(toConnection);
  }

  /** Deletes a connection (its login roles' records and access go with it); false when unknown. */
  async remove(name: string): Promise<boolean> {
    const { rowCount } = await this.pool.query('DELETE FROM pgward.connection WHERE name = $1', [name]);
    this.cache.delete(name);
    return rowCount === 1;
  }

  /** The connection named `name`, or undefined. Cached for a moment: this is on every connect. */
  async find(name: string): Promise<Connection | undefined> {
    const cached = this.cache.get(name);
    if (cached && cached.until > Date.now()) return cached.connection;
    const { rows } = await this.pool.query<ConnectionRow>(`${SELECT_CONNECTION} WHERE c.name = $1`, [name]);
    const connection = rows[0] && toConnection(rows[0]);
    if (this.cache.size > 1000) this.cache.clear();
    this.cache.set(name, { connection, until: Date.now() + CACHE_MS });
    return connection;
  }

  /** The login roles pgward keeps for a person, on every connection. */
  async loginRolesOf(userId: string): Promise<{ connection: Connection; roleName: string }[]> {
    const { rows } = await this.pool.query<ConnectionRow & { role_name: string }>(
      `SELECT l.role_name, s.* FROM pgward.login_role l
         JOIN (${SELECT_CONNECTION}) s ON s.connection_id = l.connection_id
        WHERE l.user_id = $1 ORDER BY s.name`,
      [userId],
    );
    return rows.map((row) => ({ connection: toConnection(row), roleName: row.role_name }));
  }

  /** The connection's own credential, opened for an upstream login. */
  async credential(connection: Connection): Promise<{ user: string; password: string }> {
    const { rows } = await this.pool.query<{ credential_secret: Buffer }>(
      'SELECT credential_secret FROM pgward.connection WHERE connection_id = $1',
      [connection.id],
    );
    if (!rows[0]) throw new PgwardError('UNKNOWN_CONNECTION', `connection "${connection.name}" was deleted`);
    return {
      user: connection.credentialUser,
      password: this.box.open(rows[0].credential_secret, owner(connection.id)),
    };
  }

  /** The login role pgward keeps for a person on a connection, creating its secret on first use. */
  async loginRole(
    connection: Connection,
    userId: string,
    roleName: string,
  ): Promise<{ roleName: string; password: string; created: boolean }> {
    const { rows } = await this.pool.query<{ role_name: string; secret: Buffer }>(
      'SELECT role_name, secret FROM pgward.login_role WHERE connection_id = $1 AND user_id = $2',
      [connection.id, userId],
    );
    if (rows[0]) {
      return {
        roleName: rows[0].role_name,
        password: this.box.open(rows[0].secret, loginOwner(connection.id, userId)),
        created: false,
      };
    }
    const password = randomBytes(32).toString('base64url');
    const inserted = await this.pool
      .query<{ role_name: string; secret: Buffer }>(
        `INSERT INTO pgward.login_role (connection_id, user_id, role_name, secret) VALUES ($1, $2, $3, $4)
         ON CONFLICT (connection_id, user_id) DO UPDATE SET connection_id = EXCLUDED.connection_id
         RETURNING role_name, secret`,
        [connection.id, userId, roleName, this.box.seal(password, loginOwner(connection.id, userId))],
      )
      .catch((err: { code?: string; constraint?: string }) => {
        if (err.code === '23505' && err.constraint === 'login_role_connection_id_role_name_key') {
          throw new PgwardError('CONFLICT', `the login role name ${roleName} belongs to someone else`);
        }
        throw err;
      });
    const row = inserted.rows[0]!;
    // Another gateway may have won the race: use what is stored.
    return {
      roleName: row.role_name,
      password: this.box.open(row.secret, loginOwner(connection.id, userId)),
      created: true,
    };
  }

  /**
   * Gives the person's login role on a connection another name (the first was taken in the
   * target cluster), with a new secret: it is a new role.
   */
  async renameLoginRole(
    connection: Connection,
    userId: string,
    roleName: string,
  ): Promise<{ roleName: string; password: string }> {
    const password = randomBytes(32).toString('base64url');
    const { rowCount } = await this.pool
      .query(
        'UPDATE pgward.login_role SET role_name = $3, secret = $4 WHERE connection_id = $1 AND user_id = $2',
        [connection.id, userId, roleName, this.box.seal(password, loginOwner(connection.id, userId))],
      )
      .catch((err: { code?: string }) => {
        if (err.code === '23505') {
          throw new PgwardError('CONFLICT', `the login role name ${roleName} belongs to someone else`);
        }
        throw err;
      });
    if (rowCount !== 1)
      throw new PgwardError('UNKNOWN_CONNECTION', `connection "${connection.name}" was deleted`);
    return { roleName, password };
  }
}
