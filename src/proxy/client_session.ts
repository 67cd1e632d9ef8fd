/**
 * One client connection, start to end, as a pipeline of named steps:
 * startup (TLS, protocol negotiation) → authenticate (token as password) → sign in (directory)
 * → choose connection and roles (access) → upstream (pool or login, provisioning) → relay.
 * Every failure before the relay becomes a FATAL ErrorResponse with its SQLSTATE.
 */
import { randomUUID } from 'node:crypto';
import type { Socket } from 'node:net';
import { Duplex } from 'node:stream';
import { TLSSocket } from 'node:tls';
import type { StatementRecord } from '../audit/audit_writer.js';
import { StatementTracker } from '../audit/statement_tracker.js';
import type { Person } from '../directory/directory.js';
import { asPgwardError, PgwardError } from '../errors.js';
import { isLoopbackHost } from '../loopback.js';
import type { SignedIn } from '../session/authenticator.js';
import type { Connection } from '../vault/connections.js';
import * as decode from '../wire/decode.js';
import * as encode from '../wire/encode.js';
import { MessageFramer, typeFlags, type Verdict } from '../wire/framer.js';
import { BE, FE, HIGHEST_MINOR, LIMITS, TLS_HANDSHAKE_BYTE } from '../wire/protocol.js';
import { SocketInput } from '../wire/socket_input.js';
import { readStartupPacket, type StartupPacket } from '../wire/startup.js';
import type { CancelKey, Cancellable } from './cancel_map.js';
import type { ProxyContext } from './proxy_context.js';
import type { LoginRole } from '../upstream/role_provisioner.js';
import { quoteLiteral } from '../upstream/sql_quote.js';
import { type UpstreamConnection, UpstreamError, type UpstreamTarget } from '../upstream/upstream.js';

/** Client message types the session decodes; everything else streams through. */
const CLIENT_TYPES = typeFlags([
  FE.QUERY,
  FE.PARSE,
  FE.BIND,
  FE.EXECUTE,
  FE.FUNCTION_CALL,
  FE.SYNC,
  FE.CLOSE,
  FE.TERMINATE,
]);
/** Server message types the session decodes. */
const SERVER_TYPES = typeFlags([
  BE.COMMAND_COMPLETE,
  BE.EMPTY_QUERY,
  BE.PORTAL_SUSPENDED,
  BE.ERROR,
  BE.READY_FOR_QUERY,
  BE.PARAMETER_STATUS,
]);
const MAX_SERVER_MESSAGE = 2 ** 31 - 1;
const MAX_APPLICATION_NAME_BYTES = 63;
/** Startup parameters that are not session settings. */
const NOT_SETTINGS = new Set(['user', 'database', 'application_name', 'replication']);

type StartupMessage = Extract<StartupPacket, { kind: 'startup' }>;

/** application_name as seen in the target: the client's, then the person (63 bytes at most). */
export function upstreamApplicationName(client: string | undefined, email: string): string {
  const suffix = ` [${email}]`;
  let name = client || 'client';
  while (name.length > 0 && Buffer.byteLength(name + suffix) > MAX_APPLICATION_NAME_BYTES)
    name = name.slice(0, -1);
  const full = `${name}${suffix}`;
  return Buffer.byteLength(full) <= MAX_APPLICATION_NAME_BYTES
    ? full
    : `[${email}]`.slice(0, MAX_APPLICATION_NAME_BYTES);
}

/** Wraps bytes already read plus the rest of a socket as one stream (for direct TLS). */
function prepend(first: Buffer, socket: Socket, input: SocketInput): Duplex {
  const duplex = new Duplex({
    read() {
      socket.resume();
    },
    write(chunk, _encoding, done) {
      socket.write(chunk, done);
    },
    final(done) {
      socket.end(done);
    },
    destroy(err, done) {
      socket.destroy(err ?? undefined);
      done(err);
    },
  });
  duplex.push(first);
  input.onChunk = (chunk) => {
    if (!duplex.push(Buffer.from(chunk))) socket.pause();
  };
  socket.on('end', () => duplex.push(null));
  socket.on('error', (err) => duplex.destroy(err));
  return duplex;
}

export class ClientSession implements Cancellable {
  readonly id = randomUUID();
  private socket: Socket | TLSSocket;
  /** The client's bytes: the socket's, or once TLS is up, the TLS layer's. */
  private input: SocketInput;
  private tls = false;
  private buffered: Buffer = Buffer.alloc(0);
  private wake: (() => void) | undefined;
  private ended = false;
  private upstream: UpstreamConnection | undefined;
  private poolKey = '';
  private cancelKey: CancelKey | undefined;
  private tracker: StatementTracker | undefined;
  private bytesIn = 0;
  private bytesOut = 0;
  private audited = false;
  private closing: Promise<void> | undefined;
  private readonly remoteAddress: string;
  /** Resolves when the session is over and cleaned up. */
  readonly done: Promise<void>;
  private resolveDone!: () => void;

  constructor(
    socket: Socket,
    input: SocketInput,
    private readonly ctx: ProxyContext,
  ) {
    this.socket = socket;
    this.input = input;
    input.onChunk = this.onStartupData;
    this.remoteAddress = socket.remoteAddress ?? 'unknown';
    this.done = new Promise((resolve) => {
      this.resolveDone = resolve;
    });
    socket.setNoDelay(true);
    this.listen(socket);
  }

  // ---- reading during startup and authentication --------------------------------------------

  private readonly onStartupData = (chunk: Buffer) => {
    this.bytesIn += chunk.length;
    // A copy: the chunk's buffer is reused for the next read.
    this.buffered = this.buffered.length === 0 ? Buffer.from(chunk) : Buffer.concat([this.buffered, chunk]);
    if (this.buffered.length > LIMITS.STARTUP_BYTES + LIMITS.PASSWORD_BYTES + 16) {
      // Nothing legitimate sends this much before authenticating.
      this.socket.pause();
    }
    this.wake?.();
  };

  private readonly onGone = () => {
    this.ended = true;
    this.wake?.();
    void this.close('client disconnected');
  };

  private listen(socket: Socket | TLSSocket): void {
    socket.on('error', () => undefined);
    socket.on('close', this.onGone);
  }

  private unlisten(socket: Socket | TLSSocket): void {
    socket.removeListener('close', this.onGone);
  }

  private receive(): Promise<void> {
    if (this.ended) return Promise.reject(new PgwardError('PROTOCOL_VIOLATION', 'client disconnected'));
    return new Promise((resolve) => {
      this.wake = () => {
        this.wake = undefined;
        resolve();
      };
    });
  }

  // ---- the pipeline ---------------------------------------------------------------------------

  /** Runs the session to its end; never throws. */
  async run(): Promise<void> {
    const deadline = setTimeout(() => {
      void this.refuse(
        new PgwardError('PROTOCOL_VIOLATION', 'authentication took too long; the connection is closed'),
      );
    }, this.ctx.config.authTimeoutMs);
    let stage: { email?: string; provider?: string } = {};
    try {
      const startup = await this.startup();
      if (!startup) return;
      const { person } = await this.authenticate(startup);
      stage = { email: person.email, provider: person.provider };
      const connection = await this.chooseConnection(startup, person);
      const roles = this.allowedRoles(connection, person);
      clearTimeout(deadline);
      await this.attachUpstream(startup, person, connection, roles);
      this.relay();
    } catch (err) {
      clearTimeout(deadline);
      const e = asPgwardError(err);
      if (stage.email || e.code !== 'PROTOCOL_VIOLATION') this.auditRefusal(e, stage);
      await this.refuse(e);
    }
  }

  /** Startup: TLS and GSS requests, cancel requests, then the StartupMessage. */
  private async startup(): Promise<StartupMessage | undefined> {
    for (;;) {
      if (!this.tls && this.buffered.length > 0 && this.buffered[0] === TLS_HANDSHAKE_BYTE) {
        await this.startDirectTls();
        continue;
      }
      const read = readStartupPacket(this.buffered);
      if (!read) {
        await this.receive();
        continue;
      }
      this.buffered = this.buffered.subarray(read.size);
      const packet = read.packet;
      switch (packet.kind) {
        case 'ssl':
          await this.answerSslRequest();
          continue;
        case 'gssenc':
          this.socket.write('N');
          continue;
        case 'cancel':
          this.ctx.cancels.find(packet.pid, packet.secret)?.cancelUpstream();
          this.socket.end();
          return undefined;
        case 'startup':
          if (packet.params.has('replication') && packet.params.get('replication') !== 'false') {
            throw new PgwardError('NOT_ALLOWED', 'replication connections are not supported through pgward');
          }
          if (packet.minor > HIGHEST_MINOR || packet.protocolOptions.length > 0) {
            // Our own highest version and the options we do not know; never the client's.
            this.socket.write(
              encode.negotiateProtocolVersion(Math.min(packet.minor, HIGHEST_MINOR), packet.protocolOptions),
            );
          }
          return { ...packet, minor: Math.min(packet.minor, HIGHEST_MINOR) };
      }
    }
  }

  private async answerSslRequest(): Promise<void> {
    if (this.tls || !this.ctx.tls) {
      this.socket.write('N');
      return;
    }
    const raw = this.socket as Socket;
    raw.pause();
    // Bytes sent after SSLRequest but before the handshake could be injected by a man in the middle.
    if (this.buffered.length > 0 || raw.readableLength > 0) {
      throw new PgwardError('PROTOCOL_VIOLATION', 'received unencrypted data after SSL request');
    }
    this.unlisten(raw);
    this.input.onChunk = () => undefined;
    raw.write('S');
    await this.upgrade(new TLSSocket(raw, { isServer: true, secureContext: this.ctx.tls }));
    raw.resume();
  }

  /** PostgreSQL 17 direct TLS: the first byte is a TLS handshake; ALPN must say "postgresql". */
  private async startDirectTls(): Promise<void> {
    if (!this.ctx.tls) {
      this.socket.destroy();
      throw new PgwardError('PROTOCOL_VIOLATION', 'direct TLS is not configured');
    }
    const raw = this.socket as Socket;
    this.unlisten(raw);
    const first = this.buffered;
    this.buffered = Buffer.alloc(0);
    const tls = new TLSSocket(prepend(first, raw, this.input), {
      isServer: true,
      secureContext: this.ctx.tls,
      ALPNProtocols: ['postgresql'],
    });
    await this.upgrade(tls);
    if (tls.alpnProtocol !== 'postgresql') {
      tls.destroy();
      throw new PgwardError('PROTOCOL_VIOLATION', 'direct TLS connections must use ALPN "postgresql"');
    }
  }

  private upgrade(tls: TLSSocket): Promise<void> {
    this.socket = tls;
    this.tls = true;
    this.input = new SocketInput();
    this.input.onChunk = this.onStartupData;
    this.input.listen(tls);
    this.listen(tls);
    return new Promise((resolve, reject) => {
      tls.once('secure', () => resolve());
      tls.once('error', (err) =>
        reject(new PgwardError('PROTOCOL_VIOLATION', `TLS handshake failed: ${err.message}`)),
      );
    });
  }

  /** Asks for the password, which must be a token, and verifies it. */
  private async authenticate(startup: StartupMessage): Promise<SignedIn> {
    const plaintextAllowed = this.ctx.config.allowLoopbackPlaintext && isLoopbackHost(this.remoteAddress);
    if (!this.tls && !plaintextAllowed) {
      throw new PgwardError('NOT_ALLOWED', 'pgward accepts tokens only over TLS', {
        hint: 'connect with sslmode=require',
      });
    }
    this.socket.write(encode.authenticationCleartextPassword());
    const message = await this.readMessage(LIMITS.PASSWORD_BYTES);
    if (message[0] !== FE.PASSWORD) {
      throw new PgwardError(
        'PROTOCOL_VIOLATION',
        `expected a password message, got "${String.fromCharCode(message[0]!)}"`,
      );
    }
    const token = decode.passwordText(message).trim();
    if (token === '') {
      throw new PgwardError('LOGIN_FAILED', 'no token given', {
        hint: 'use a token from `pgward login` as the password',
      });
    }
    const signedIn = await this.ctx.authenticate(token);
    const { email } = signedIn.person;
    const user = (startup.params.get('user') ?? '').toLowerCase();
    if (user !== email && user !== signedIn.preferredUsername?.toLowerCase()) {
      throw new PgwardError(
        'NOT_ALLOWED',
        `user name "${startup.params.get('user')}" does not match the token (signed in as ${email})`,
        {
          hint: `connect as ${email}`,
        },
      );
    }
    return signedIn;
  }

  /** Reads one regular message during authentication, capped at `max` bytes. */
  private async readMessage(max: number): Promise<Buffer> {
    for (;;) {
      if (this.buffered.length >= 5) {
        const length = this.buffered.readInt32BE(1);
        if (length < 4 || length > max + 4) {
          throw new PgwardError(
            'PROTOCOL_VIOLATION',
            `invalid password message length ${length} (at most ${max + 4})`,
          );
        }
        if (this.buffered.length >= 1 + length) {
          const message = this.buffered.subarray(0, 1 + length);
          this.buffered = this.buffered.subarray(1 + length);
          return message;
        }
      }
      await this.receive();
    }
  }

  private async chooseConnection(startup: StartupMessage, person: Person): Promise<Connection> {
    const name = startup.params.get('database') || startup.params.get('user')!;
    const connection = await this.ctx.connections.find(name);
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
  private allowedRoles(connection: Connection, person: Person): string[] {
    const roles = new Set<string>();
    for (const group of person.groups) for (const role of connection.access.get(group) ?? []) roles.add(role);
    return [...roles].sort();
  }

  private async attachUpstream(
    startup: StartupMessage,
    person: Person,
    connection: Connection,
    roles: string[],
  ) {
    const settings: Record<string, string> = {};
    for (const [k, v] of startup.params) if (!NOT_SETTINGS.has(k)) settings[k] = v;
    const appName = upstreamApplicationName(startup.params.get('application_name'), person.email);
    let roleReady: LoginRole | undefined;
    if (connection.roleMode === 'provision') {
      // Grants are made exactly right at every connect, pooled or not.
      roleReady = await this.ctx.provisioner.prepare(connection, person, roles);
    }
    const loginRole = roleReady?.roleName ?? connection.credentialUser;
    this.poolKey = `${connection.id}\0${loginRole}\0${JSON.stringify(Object.entries(settings).sort())}`;
    let upstream = this.ctx.pool.take(this.poolKey);
    if (!upstream) {
      const credential = roleReady
        ? { user: roleReady.roleName, password: roleReady.password }
        : await this.ctx.connections.credential(connection);
      const target: UpstreamTarget = {
        host: connection.host,
        port: connection.port,
        database: connection.database,
        sslmode: connection.sslmode,
        sslCa: connection.sslCa,
        user: credential.user,
        password: credential.password,
        params: { ...settings, application_name: appName },
      };
      try {
        upstream = await this.ctx.pool.open(target);
      } catch (err) {
        if (!(roleReady && err instanceof UpstreamError && err.upstreamFields.get('C') === '28P01'))
          throw this.upstreamFailure(err);
        // The role's password was changed behind pgward's back: set a new one and retry once.
        roleReady = await this.ctx.provisioner.prepare(connection, person, roles, true);
        upstream = await this.ctx.pool.open({ ...target, password: roleReady.password }).catch((e) => {
          throw this.upstreamFailure(e);
        });
      }
    } else if (upstream.parameters.get('application_name') !== appName) {
      await upstream.query(`SET application_name = ${quoteLiteral(appName)}`);
    }
    this.upstream = upstream;
    this.cancelKey = this.ctx.cancels.register(this, startup.minor);
    this.tracker = new StatementTracker(this.id, (r: StatementRecord) => this.ctx.audit.statement(r));
    this.ctx.audit.sessionStarted({
      sessionId: this.id,
      userId: person.userId,
      email: person.email,
      provider: person.provider,
      connectionName: connection.name,
      loginRole,
      clientAddr: this.remoteAddress,
      applicationName: startup.params.get('application_name') ?? null,
      startedAt: new Date(),
    });
    this.audited = true;
    this.socket.write(
      Buffer.concat([
        encode.authenticationOk(),
        upstream.parameterStatusMessages(),
        encode.backendKeyData(this.cancelKey.pid, this.cancelKey.secret),
        encode.readyForQuery(upstream.status),
      ]),
    );
    this.ctx.log.debug(
      { session: this.id, email: person.email, connection: connection.name, loginRole },
      'session started',
    );
  }

  private upstreamFailure(err: unknown): PgwardError {
    if (err instanceof UpstreamError) {
      const code = err.upstreamFields.get('C');
      // Keep the target's own SQLSTATE where it tells the client something (e.g. 53300).
      return Object.assign(
        new PgwardError(
          'UPSTREAM_FAILED',
          `target database: ${err.upstreamFields.get('M') ?? 'login failed'}`,
        ),
        {
          upstreamCode: code,
        },
      );
    }
    return asPgwardError(err);
  }

  // ---- relay ----------------------------------------------------------------------------------

  private relay(): void {
    const client = this.socket;
    const upstream = this.upstream!;
    const tracker = this.tracker!;
    const up = upstream.socket;
    const input = this.input;
    this.unlisten(client);
    const pending = upstream.takeOver();

    const clientFramer = new MessageFramer(
      CLIENT_TYPES,
      this.ctx.config.maxMessageBytes,
      (type, message): Verdict => {
        if (type === FE.TERMINATE) {
          this.ended = true;
          return 'drop';
        }
        tracker.onClient(type, message);
        return 'forward';
      },
      'client',
    );
    const serverFramer = new MessageFramer(
      SERVER_TYPES,
      MAX_SERVER_MESSAGE,
      (type, message): Verdict => {
        if (type === BE.READY_FOR_QUERY) upstream.status = decode.readyStatus(message);
        else if (type === BE.PARAMETER_STATUS) upstream.parameterStatus(message);
        tracker.onServer(type, message);
        return 'forward';
      },
      'server',
    );

    /** Writes what was read through `input` to `to`, pausing `from` while `to` is full. */
    const forward = (segments: Buffer[], input: SocketInput, to: typeof client, from: typeof client) => {
      if (!input.write(to, segments) && !from.isPaused()) {
        from.pause();
        to.once('drain', () => from.resume());
      }
    };

    const onClientData = (chunk: Buffer) => {
      this.bytesIn += chunk.length;
      let segments: Buffer[];
      try {
        segments = clientFramer.push(chunk);
      } catch (err) {
        void this.refuse(asPgwardError(err));
        return;
      }
      forward(segments, input, up, client);
      if (this.ended) void this.close('client terminated');
    };
    const onServerData = (chunk: Buffer) => {
      this.bytesOut += chunk.length;
      let segments: Buffer[];
      try {
        segments = serverFramer.push(chunk);
      } catch (err) {
        void this.close(`target protocol error: ${(err as Error).message}`, true);
        return;
      }
      forward(segments, upstream.input, client, up);
    };
    const onUpstreamGone = () => {
      if (this.closing) return;
      void this.refuse(new PgwardError('UPSTREAM_FAILED', 'the target database closed the connection'), true);
    };

    input.onChunk = onClientData;
    client.on('close', () => void this.close(this.ended ? 'client terminated' : 'client disconnected'));
    client.on('error', () => undefined);
    upstream.input.onChunk = onServerData;
    up.on('close', onUpstreamGone);
    this.detachUpstream = () => {
      upstream.input.onChunk = () => undefined;
      up.removeListener('close', onUpstreamGone);
      if (up.isPaused()) up.resume();
      input.onChunk = () => undefined;
      return serverFramer.atBoundary && clientFramer.atBoundary;
    };
    // Whatever the target sent after its last ReadyForQuery (a notification) goes first.
    if (pending.length > 0) onServerData(pending);
    if (this.buffered.length > 0) {
      const early = this.buffered;
      this.buffered = Buffer.alloc(0);
      this.bytesIn -= early.length;
      onClientData(early);
    }
    client.resume();
  }

  private detachUpstream: (() => boolean) | undefined;

  /** CancelRequest for this session: forwarded to the upstream connection serving it now. */
  cancelUpstream(): void {
    const upstream = this.upstream;
    if (!upstream || !this.tracker?.busy) return;
    upstream.cancel().catch((err) => this.ctx.log.debug({ err: (err as Error).message }, 'cancel failed'));
  }

  // ---- ending ---------------------------------------------------------------------------------

  /** Sends a FATAL error (if the client can still hear it) and ends the session. */
  private async refuse(err: PgwardError, upstreamBroken = false): Promise<void> {
    if (this.closing) return this.closing;
    const internal = err.httpStatus >= 500 && err.code === 'INTERNAL';
    if (internal) this.ctx.log.error({ err: err.cause ?? err, session: this.id }, 'session failed');
    const upstreamCode = (err as PgwardError & { upstreamCode?: string }).upstreamCode;
    if (!this.socket.destroyed && this.socket.writable) {
      this.socket.write(
        encode.errorResponse({
          severity: 'FATAL',
          code: upstreamCode ?? err.sqlstate,
          message: internal ? 'pgward internal error' : err.message,
          // The stable code lets a person (or support) tell one refusal from another.
          detail: internal ? undefined : (err.detail ?? `pgward error ${err.code}`),
          hint: err.hint,
        }),
      );
    }
    return this.close(`refused ${upstreamCode ?? err.sqlstate}: ${err.message}`, upstreamBroken);
  }

  private auditRefusal(err: PgwardError, stage: { email?: string; provider?: string }): void {
    const now = new Date();
    this.ctx.audit.sessionStarted({
      sessionId: this.id,
      userId: null,
      email: stage.email ?? null,
      provider: stage.provider ?? null,
      connectionName: null,
      loginRole: null,
      clientAddr: this.remoteAddress,
      applicationName: null,
      startedAt: now,
    });
    this.audited = true;
    this.ctx.log.info(
      { session: this.id, client: this.remoteAddress, email: stage.email, code: err.code },
      'session refused',
    );
  }

  /** Gateway shutdown: the client is told, as PostgreSQL tells it (57P01). */
  shutdown(): Promise<void> {
    if (this.closing) return this.closing;
    if (!this.socket.destroyed && this.socket.writable) {
      this.socket.write(
        encode.errorResponse({
          severity: 'FATAL',
          code: '57P01',
          message: 'terminating connection: pgward is shutting down',
        }),
      );
    }
    return this.close('gateway shutdown', Boolean(this.tracker?.busy));
  }

  /** Ends the session: the upstream goes back to the pool when it is at rest, else it closes. */
  close(reason: string, upstreamBroken = false): Promise<void> {
    this.closing ??= this.finish(reason, upstreamBroken);
    return this.closing;
  }

  private async finish(reason: string, upstreamBroken: boolean): Promise<void> {
    const upstream = this.upstream;
    this.upstream = undefined;
    if (this.cancelKey) this.ctx.cancels.unregister(this.cancelKey);
    const atBoundary = this.detachUpstream?.() ?? true;
    if (!this.socket.destroyed) {
      this.socket.end();
      // A client that never closes its side must not hold the gateway open.
      setTimeout(() => this.socket.destroy(), 2_000).unref();
    }
    if (upstream) {
      if (upstreamBroken || !atBoundary || this.tracker?.busy) {
        // Mid-query: stop the work upstream, and do not reuse a connection in an unknown state.
        if (this.tracker?.busy && upstream.alive) await upstream.cancel().catch(() => undefined);
        upstream.socket.destroy();
      } else {
        upstream.release();
        await this.ctx.pool.release(this.poolKey, upstream);
      }
    }
    if (this.audited) {
      this.ctx.audit.sessionEnded({
        sessionId: this.id,
        endedAt: new Date(),
        bytesIn: this.bytesIn,
        bytesOut: this.bytesOut,
        endReason: reason,
      });
    }
    this.resolveDone();
  }
}
