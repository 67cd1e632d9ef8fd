/**
 * The one way from a signed-in person to a target session, for every client (the wire
 * listener, and through it `pgward connect`; the console): connection and grants → session caps
 * → role provisioning → pooled or new upstream login → the audit's session record. Each step is
 * a small named function; any failure is a PgwardError the caller reports in its own protocol.
 */
import type { Person } from '../directory/directory.js';
import { PgwardError } from '../errors.js';
import { startupSettingsRefusal } from '../policy/builtin_rules.js';
import type { LoginRole } from '../upstream/role_provisioner.js';
import { quoteLiteral } from '../upstream/sql_quote.js';
import { type UpstreamConnection, UpstreamError } from '../upstream/upstream.js';
import { upstreamTarget } from '../upstream/upstream_target.js';
import type { Connection } from '../vault/connections.js';
import type { ProxyContext } from './proxy_context.js';

/** Startup parameters that are not session settings of the target. */
const NOT_SETTINGS = new Set(['user', 'database', 'application_name', 'replication']);

export interface ConnectRequest {
  sessionId: string;
  person: Person;
  /** The connection's name (the database name of the startup packet). */
  connectionName: string;
  /** The client's startup parameters (settings such as client_encoding, and application_name). */
  params: ReadonlyMap<string, string>;
  clientAddr: string;
  /** A policy makes the session read-only: the target is told so at login (RESET ALL keeps it). */
  readOnly: boolean;
}

/** A session attached to its target: release() it exactly once when it ends. */
export interface Attached {
  connection: Connection;
  roles: string[];
  loginRole: string;
  upstream: UpstreamConnection;
  poolKey: string;
}

/** Counts sessions per person and per connection, to cap both. */
class SessionCounts {
  private readonly counts = new Map<string, number>();

  take(key: string, max: number): boolean {
    const n = this.counts.get(key) ?? 0;
    if (n >= max) return false;
    this.counts.set(key, n + 1);
    return true;
  }

  give(key: string): void {
    const n = (this.counts.get(key) ?? 1) - 1;
    if (n <= 0) this.counts.delete(key);
    else this.counts.set(key, n);
  }
}

/** The connection a person asks for, if it exists and their groups reach it. */
export async function chooseConnection(
  ctx: Pick<ProxyContext, 'connections'>,
  name: string,
  person: Person,
): Promise<Connection> {
  const connection = await ctx.connections.find(name);
  if (!connection) {
    throw new PgwardError('UNKNOWN_CONNECTION', `connection "${name}" does not exist`, {
      hint: 'the database name selects the connection; ask a pgward administrator which ones you may use',
    });
  }
  if (!person.groups.some((g) => connection.access.has(g))) {
    throw new PgwardError('NOT_ALLOWED', `${person.email} may not use connection "${name}"`, {
      detail: `your groups: ${person.groups.join(', ') || '(none)'}`,
      hint: 'ask a pgward administrator for access',
    });
  }
  return connection;
}

/** Database roles the person's groups map to on this connection. */
export function allowedRoles(connection: Connection, person: Person): string[] {
  const roles = new Set<string>();
  for (const group of person.groups) for (const role of connection.access.get(group) ?? []) roles.add(role);
  return [...roles].sort();
}

/** What the connect path works with. */
export type ConnectParts = Pick<ProxyContext, 'config' | 'connections' | 'provisioner' | 'pool' | 'audit'>;

export class ConnectPath {
  private readonly perPerson = new SessionCounts();
  private readonly perConnection = new SessionCounts();

  constructor(private readonly ctx: ConnectParts) {}

  /** Attaches a session to its target and records its start; throws a PgwardError to refuse. */
  async attach(req: ConnectRequest): Promise<Attached> {
    const { ctx } = this;
    const { person } = req;
    // No audit, no access: a session starts only while its statements can be made durable.
    if (!ctx.audit.accepting()) throw ctx.audit.refusal();
    const connection = await chooseConnection(ctx, req.connectionName, person);
    const roles = allowedRoles(connection, person);
    this.takeSlots(person, connection);
    try {
      const attached = await this.login(req, connection, roles);
      ctx.audit.sessionStarted({
        sessionId: req.sessionId,
        userId: person.userId,
        email: person.email,
        provider: person.provider,
        connectionName: connection.name,
        loginRole: attached.loginRole,
        clientAddr: req.clientAddr,
        applicationName: req.params.get('application_name') ?? null,
        startedAt: new Date(),
      });
      return attached;
    } catch (err) {
      this.giveSlots(person.userId, connection.id);
      throw err;
    }
  }

  /**
   * Ends an attached session: the upstream goes back to the pool when `reusable` (at rest, at a
   * message boundary), else it is closed.
   */
  async release(attached: Attached, person: Person, reusable: boolean): Promise<void> {
    this.giveSlots(person.userId, attached.connection.id);
    const { upstream } = attached;
    if (!reusable) {
      upstream.socket.destroy();
      return;
    }
    upstream.release();
    await this.ctx.pool.release(attached.poolKey, upstream);
  }

  private takeSlots(person: Person, connection: Connection): void {
    const { config } = this.ctx;
    if (!this.perPerson.take(person.userId, config.maxSessionsPerPerson)) {
      throw new PgwardError(
        'TOO_MANY_CONNECTIONS',
        `${person.email} already has ${config.maxSessionsPerPerson} sessions open through pgward`,
        { hint: 'close sessions you no longer use, or ask the operator to raise pg.maxSessionsPerPerson' },
      );
    }
    if (!this.perConnection.take(connection.id, config.maxSessionsPerConnection)) {
      this.perPerson.give(person.userId);
      throw new PgwardError(
        'TOO_MANY_CONNECTIONS',
        `connection "${connection.name}" already has ${config.maxSessionsPerConnection} sessions open`,
        { hint: 'try again later, or ask the operator to raise pg.maxSessionsPerConnection' },
      );
    }
  }

  private giveSlots(userId: string, connectionId: string): void {
    this.perPerson.give(userId);
    this.perConnection.give(connectionId);
  }

  /** Provisioning (role mode `provision`), then a pooled upstream or a new login. */
  private async login(req: ConnectRequest, connection: Connection, roles: string[]): Promise<Attached> {
    const { ctx } = this;
    const { person } = req;
    const settings: Record<string, string> = {};
    for (const [k, v] of req.params) if (!NOT_SETTINGS.has(k)) settings[k] = v;
    const refusal = startupSettingsRefusal(settings, req.readOnly);
    if (refusal) throw new PgwardError('BAD_REQUEST', refusal);
    // A startup setting is the value RESET and DISCARD ALL go back to: read-only cannot be undone.
    if (req.readOnly) settings['default_transaction_read_only'] = 'on';
    // The client's own application_name, as it would be direct: what the client reads back
    // must not change. The login role names the person in provision mode.
    const appName = req.params.get('application_name') ?? '';
    let roleReady: LoginRole | undefined;
    if (connection.roleMode === 'provision') {
      // Grants are made exactly right at every connect, pooled or not.
      roleReady = await ctx.provisioner.prepare(connection, person, roles);
    }
    const loginRole = roleReady?.roleName ?? connection.credentialUser;
    // Shared mode: one credential serves many people, so upstreams are pooled per person (a
    // pooled session never crosses from one person to another).
    const owner = roleReady ? '' : person.userId;
    const poolKey = `${connection.id}\0${connection.version}\0${loginRole}\0${owner}\0${JSON.stringify(Object.entries(settings).sort())}`;
    let upstream = ctx.pool.take(poolKey);
    if (upstream) {
      if ((upstream.parameters.get('application_name') ?? '') !== appName)
        await upstream.query(`SET application_name = ${quoteLiteral(appName)}`);
      return { connection, roles, loginRole, upstream, poolKey };
    }
    const credential = roleReady
      ? { user: roleReady.roleName, password: roleReady.password }
      : await ctx.connections.credential(connection);
    const target = upstreamTarget(
      connection,
      credential,
      appName === '' ? settings : { ...settings, application_name: appName },
      ctx.config.upstreamTimeoutMs,
    );
    try {
      upstream = await ctx.pool.open(target);
    } catch (err) {
      const code = err instanceof UpstreamError ? err.upstreamFields.get('C') : undefined;
      if (!(roleReady && (code === '28P01' || code === '28000'))) throw upstreamFailure(err);
      // The role's password was changed behind pgward's back (28P01), or another gateway took
      // LOGIN away before the person was active again (28000): sync it again and retry once.
      roleReady = await ctx.provisioner.prepare(connection, person, roles, true);
      upstream = await ctx.pool.open({ ...target, password: roleReady.password }).catch((e) => {
        throw upstreamFailure(e);
      });
    }
    return { connection, roles, loginRole, upstream, poolKey };
  }
}

/** A failed upstream login as the client is told: the target's own SQLSTATE where it helps (53300). */
function upstreamFailure(err: unknown): PgwardError {
  if (!(err instanceof UpstreamError))
    return err instanceof PgwardError
      ? err
      : new PgwardError('INTERNAL', 'upstream login failed', { cause: err });
  return Object.assign(
    new PgwardError('UPSTREAM_FAILED', `target database: ${err.upstreamFields.get('M') ?? 'login failed'}`),
    { upstreamCode: err.upstreamFields.get('C') },
  );
}
