/**
 * One client connection of the PostgreSQL endpoint, start to end: startup (TLS, protocol
 * negotiation) → authenticate (token as password, sign-in) → the connect path (access, caps,
 * provisioning, upstream, audit) → the relay of inspectors. Every failure before the relay
 * becomes a FATAL ErrorResponse with its SQLSTATE; a stream that is not a PostgreSQL client's
 * (a malformed startup packet) is closed without an answer, as PostgreSQL does.
 */
import { randomUUID } from 'node:crypto';
import type { Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import { Duplex } from 'node:stream';
import { TLSSocket } from 'node:tls';
import type { StatementRecord } from '../audit/audit_writer.js';
import { StatementTracker } from '../audit/statement_tracker.js';
import { asPgwardError, PgwardError } from '../errors.js';
import { isLoopbackHost } from '../loopback.js';
import type { ConnectionMetrics, SessionOutcome } from '../metrics/metrics.js';
import type { PolicySet } from '../policy/policy_rules.js';
import type { SignedIn } from '../session/authenticator.js';
import type { Connection } from '../vault/connections.js';
import * as encode from '../wire/encode.js';
import { Handshake, type StartupMessage } from '../wire/handshake.js';
import { HIGHEST_MINOR } from '../wire/protocol.js';
import { SocketInput } from '../wire/socket_input.js';
import { MalformedStartup } from '../wire/startup.js';
import type { CancelKey, Cancellable } from './cancel_map.js';
import type { Attached } from './connect_path.js';
import { errorResponseFor, type WithUpstreamCode } from './error_response.js';
import { PolicyInspector } from './policy_inspector.js';
import type { ProxyContext } from './proxy_context.js';
import { Relay } from './relay.js';

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
  /** The handshake: startup packets and password, under the startup caps. */
  private readonly handshake: Handshake;
  private attached: Attached | undefined;
  private signedIn: SignedIn | undefined;
  /** The groups policies are chosen by: the person's at attach, then as access rechecks find them. */
  private policyGroups: readonly string[] = [];
  private relayer: Relay | undefined;
  private connectionMetrics: ConnectionMetrics | undefined;
  private readonly startedAt = performance.now();
  /**
   * Called once the client has authenticated: the listener moves it out of the startup caps, or
   * answers the error that refuses it (too many sessions).
   */
  onAuthenticated: (() => PgwardError | undefined) | undefined;
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
    /** An in-process connection (the console's): no network, so no TLS to ask for. */
    transport: { inProcess?: boolean } = {},
  ) {
    this.socket = socket;
    this.input = input;
    input.onChunk = this.onStartupData;
    this.remoteAddress = socket.remoteAddress ?? 'unknown';
    this.handshake = new Handshake({
      tls: ctx.tls !== undefined,
      plaintextAllowed:
        transport.inProcess === true ||
        (ctx.config.allowLoopbackPlaintext && isLoopbackHost(this.remoteAddress)),
      highestMinor: HIGHEST_MINOR,
    });
    this.done = new Promise((resolve) => {
      this.resolveDone = resolve;
    });
    socket.setNoDelay(true);
    this.listen(socket);
  }

  // ---- reading during startup and authentication --------------------------------------------

  private readonly onStartupData = (chunk: Buffer) => {
    this.bytesIn += chunk.length;
    // Past what a handshake needs: stop reading (the deadline ends a client that sends only that).
    if (!this.handshake.push(chunk)) this.socket.pause();
  };

  private readonly onGone = () => {
    this.handshake.end();
    void this.close('client disconnected', false, 'client_disconnected');
  };

  private listen(socket: Socket | TLSSocket): void {
    socket.on('error', () => undefined);
    socket.on('close', this.onGone);
  }

  private unlisten(socket: Socket | TLSSocket): void {
    socket.removeListener('close', this.onGone);
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
      const signedIn = await this.authenticate(startup);
      stage = { email: signedIn.person.email, provider: signedIn.person.provider };
      const full = this.onAuthenticated?.();
      if (full) throw full;
      clearTimeout(deadline);
      await this.attach(startup, signedIn);
      this.relay();
    } catch (err) {
      clearTimeout(deadline);
      const e = asPgwardError(err);
      if (e instanceof MalformedStartup) {
        // PostgreSQL answers nothing to a stream that may not be a PostgreSQL client's.
        this.ctx.log.debug({ client: this.remoteAddress, err: e.message }, 'malformed startup packet');
        this.socket.destroy();
        await this.close(`malformed startup packet: ${e.message}`);
        return;
      }
      if (stage.email || e.code !== 'PROTOCOL_VIOLATION') this.auditRefusal(e, stage);
      if (!this.attached) this.ctx.metrics?.loginRefused(e.code);
      await this.refuse(e);
    }
  }

  /** Startup: the handshake's steps (src/wire/handshake.ts), with the I/O they ask for. */
  private async startup(): Promise<StartupMessage | undefined> {
    for (;;) {
      const step = await this.handshake.step();
      switch (step.kind) {
        case 'reply':
          this.socket.write(step.reply);
          continue;
        case 'start-tls':
          await this.startTls(step.reply);
          continue;
        case 'direct-tls':
          await this.startDirectTls(step.received);
          continue;
        case 'cancel':
          this.ctx.cancels.find(step.pid, step.secret)?.cancelUpstream();
          this.socket.end();
          return undefined;
        case 'startup':
          this.socket.write(step.reply);
          return step.startup;
        case 'more':
        case 'password':
          throw new Error(`handshake step ${step.kind} during startup`);
      }
    }
  }

  /** SSLRequest answered 'S': the TLS handshake, over the raw socket. */
  private async startTls(reply: Buffer): Promise<void> {
    const raw = this.socket as Socket;
    raw.pause();
    // Bytes sent after SSLRequest but before the handshake could be injected by a man in the middle.
    if (raw.readableLength > 0) {
      throw new PgwardError('PROTOCOL_VIOLATION', 'received unencrypted data after SSL request');
    }
    this.unlisten(raw);
    this.input.onChunk = () => undefined;
    raw.write(reply);
    await this.upgrade(new TLSSocket(raw, { isServer: true, secureContext: this.ctx.tls }));
    raw.resume();
  }

  /** PostgreSQL 17 direct TLS: the first byte is a TLS handshake; ALPN must say "postgresql". */
  private async startDirectTls(received: Buffer): Promise<void> {
    const raw = this.socket as Socket;
    this.unlisten(raw);
    const tls = new TLSSocket(prepend(received, raw, this.input), {
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
    this.input = new SocketInput();
    this.input.onChunk = this.onStartupData;
    this.input.listen(tls);
    this.listen(tls);
    return new Promise((resolve, reject) => {
      tls.once('secure', () => {
        this.handshake.tlsUp();
        resolve();
      });
      tls.once('error', (err) =>
        reject(new PgwardError('PROTOCOL_VIOLATION', `TLS handshake failed: ${err.message}`)),
      );
    });
  }

  /** Asks for the password, which must be a token, and verifies it. */
  private async authenticate(startup: StartupMessage): Promise<SignedIn> {
    const step = await this.handshake.step();
    if (step.kind !== 'password') throw new Error(`handshake step ${step.kind} instead of the password`);
    const token = step.password.trim();
    if (token === '') {
      throw new PgwardError('LOGIN_FAILED', 'no token given', {
        hint: 'use a token from `pgward login` as the password',
      });
    }
    const signedIn = await this.ctx.authenticate(token, startup.params.get('user') ?? '');
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

  /** The connect path, then the welcome the client would get from the target itself. */
  private async attach(startup: StartupMessage, signedIn: SignedIn): Promise<void> {
    const { person } = signedIn;
    const connectionName = startup.params.get('database') || startup.params.get('user')!;
    this.policyGroups = person.groups;
    const attached = await this.ctx.connectPath.attach({
      sessionId: this.id,
      person,
      connectionName,
      params: startup.params,
      clientAddr: this.remoteAddress,
      readOnly: this.ctx.policies.setFor(connectionName, person.groups).readOnly,
    });
    this.attached = attached;
    this.signedIn = signedIn;
    this.audited = true;
    this.cancelKey = this.ctx.cancels.register(this, startup.minor);
    const metrics = this.ctx.metrics?.connection(attached.connection.name);
    this.connectionMetrics = metrics;
    this.tracker = new StatementTracker(this.id, (r: StatementRecord, refused: boolean) => {
      this.ctx.audit.statement(r);
      metrics?.statement(refused ? 'refused' : r.sqlstate ? 'error' : 'ok', (r.durationMs ?? 0) / 1000);
    });
    const { upstream } = attached;
    this.socket.write(
      Buffer.concat([
        encode.authenticationOk(),
        upstream.parameterStatusMessages(),
        encode.backendKeyData(this.cancelKey.pid, this.cancelKey.secret),
        encode.readyForQuery(upstream.status),
      ]),
    );
    metrics?.sessionStarted();
    this.ctx.metrics?.connected((performance.now() - this.startedAt) / 1000);
    this.ctx.log.debug(
      {
        session: this.id,
        email: person.email,
        connection: attached.connection.name,
        loginRole: attached.loginRole,
      },
      'session started',
    );
  }

  // ---- relay ----------------------------------------------------------------------------------

  private relay(): void {
    const { upstream } = this.attached!;
    this.unlisten(this.socket);
    const pending = upstream.takeOver();
    const early = this.handshake.rest();
    this.relayer = new Relay({
      client: this.socket,
      input: this.input,
      upstream,
      tracker: this.tracker!,
      inspectors: this.ctx.inspectors,
      policy: new PolicyInspector(this.policyView(this.attached!.connection.name)),
      admit: () => {
        if (this.ctx.audit.accepting()) return undefined;
        const err = this.ctx.audit.refusal();
        return {
          sqlstate: err.sqlstate,
          message: err.message,
          hint: err.hint,
          detail: `pgward error ${err.code}`,
          rule: 'builtin: audit',
        };
      },
      maxMessageBytes: this.ctx.config.maxMessageBytes,
      maxStatementBytes: this.ctx.config.maxStatementBytes,
      onClientGone: (terminated) =>
        void (terminated
          ? this.close('client terminated', false, 'client_terminated')
          : this.close('client disconnected', false, 'client_disconnected')),
      // The target said why (a FATAL the client has been sent) or closed without a word, as
      // PostgreSQL itself would: the client sees the same, nothing of pgward's.
      onUpstreamGone: () =>
        void this.close('the target database closed the connection', true, 'target_closed'),
      onClientViolation: (err) => void this.refuse(err),
      onTargetViolation: (message) => void this.close(`target protocol error: ${message}`, true),
      counted: (bytesIn, bytesOut) => {
        this.bytesIn += bytesIn;
        this.bytesOut += bytesOut;
      },
    });
    this.relayer.start(pending, early);
  }

  /** CancelRequest for this session: forwarded to the upstream connection serving it now. */
  cancelUpstream(): void {
    const upstream = this.attached?.upstream;
    if (!upstream || !this.tracker?.busy) return;
    upstream.cancel().catch((err) => this.ctx.log.debug({ err: (err as Error).message }, 'cancel failed'));
  }

  /** The policies that apply to this session now: read again only when the catalog changed. */
  private policyView(connection: string): () => PolicySet {
    const catalog = this.ctx.policies;
    let generation = -1;
    let groups: readonly string[] = [];
    let set: PolicySet | undefined;
    return () => {
      if (catalog.generation !== generation || groups !== this.policyGroups) {
        generation = catalog.generation;
        groups = this.policyGroups;
        set = catalog.setFor(connection, groups);
      }
      return set!;
    };
  }

  /** The person's groups changed (an access recheck): the policies follow from the next statement. */
  regroup(groups: readonly string[]): void {
    if (groups.join('\0') !== this.policyGroups.join('\0')) this.policyGroups = groups;
  }

  /** The person signed in on this session, once attached (for access rechecks). */
  get person(): SignedIn | undefined {
    return this.signedIn;
  }

  /** The database roles the session was given. */
  get roles(): readonly string[] {
    return this.attached?.roles ?? [];
  }

  /** The connection this session is attached to. */
  get connection(): Connection | undefined {
    return this.attached?.connection;
  }

  // ---- ending ---------------------------------------------------------------------------------

  /** Sends a FATAL error (if the client can still hear it) and ends the session. */
  private async refuse(err: PgwardError, upstreamBroken = false): Promise<void> {
    if (this.closing) return this.closing;
    if (err.code === 'INTERNAL')
      this.ctx.log.error({ err: err.cause ?? err, session: this.id }, 'session failed');
    if (!this.socket.destroyed && this.socket.writable) this.socket.write(errorResponseFor(err));
    const code = (err as WithUpstreamCode).upstreamCode ?? err.sqlstate;
    return this.close(`refused ${code}: ${err.message}`, upstreamBroken);
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

  /**
   * Ends the session from pgward's side with 57P01, as PostgreSQL's own pg_terminate_backend
   * does: the gateway shutting down, or the person's access gone (revoked, deactivated, signed
   * out, connection changed).
   */
  terminate(reason: string, outcome: SessionOutcome = 'revoked'): Promise<void> {
    if (this.closing) return this.closing;
    if (!this.socket.destroyed && this.socket.writable) {
      this.socket.write(
        encode.errorResponse({
          severity: 'FATAL',
          code: '57P01',
          message: `terminating connection: ${reason}`,
          detail: 'pgward error SESSION_ENDED',
        }),
      );
    }
    return this.close(reason, Boolean(this.tracker?.busy), outcome);
  }

  /** Gateway shutdown: the client is told, as PostgreSQL tells it (57P01). */
  shutdown(): Promise<void> {
    return this.terminate('pgward is shutting down', 'shutdown');
  }

  /** Ends the session: the upstream goes back to the pool when it is at rest, else it closes. */
  close(reason: string, upstreamBroken = false, outcome: SessionOutcome = 'error'): Promise<void> {
    this.closing ??= this.finish(reason, upstreamBroken, outcome);
    return this.closing;
  }

  private async finish(reason: string, upstreamBroken: boolean, outcome: SessionOutcome): Promise<void> {
    const attached = this.attached;
    this.attached = undefined;
    if (this.cancelKey) this.ctx.cancels.unregister(this.cancelKey);
    const atBoundary = this.relayer?.detach() ?? true;
    if (!this.socket.destroyed) {
      this.socket.end();
      // A client that never closes its side must not hold the gateway open.
      setTimeout(() => this.socket.destroy(), 2_000).unref();
    }
    if (attached) {
      this.connectionMetrics?.sessionEnded(outcome);
      const busy = Boolean(this.tracker?.busy);
      // Mid-query: stop the work upstream, and do not reuse a connection in an unknown state.
      if (busy && !upstreamBroken && attached.upstream.alive)
        await attached.upstream.cancel().catch(() => undefined);
      await this.ctx.connectPath
        .release(attached, this.signedIn!.person, !upstreamBroken && atBoundary && !busy)
        .catch((err: unknown) => this.ctx.log.debug({ err }, 'upstream release failed'));
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
