/**
 * `pgward connect CONN`: a PostgreSQL port on 127.0.0.1 for clients that cannot fetch a token
 * (DBeaver, a JDBC URL, a script). Each client logs in with a password made up for this run and
 * printed once; pgward then opens its own connection to the gateway over TLS, as the signed-in
 * person with a fresh token, and relays the bytes both ways. Other local users cannot use the port
 * without that password, and the token never leaves this process.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { createServer, type Server, type Socket } from 'node:net';
import { PgwardError } from '../errors.js';
import { isLoopbackHost } from '../loopback.js';
import { errorResponseFor } from '../proxy/error_response.js';
import { UpstreamConnection, UpstreamError } from '../upstream/upstream.js';
import * as encode from '../wire/encode.js';
import { Handshake, type StartupMessage } from '../wire/handshake.js';
import { MalformedStartup } from '../wire/startup.js';
import { accessToken, api, type GatewaySslMode, gatewayUrl, pgEndpoint } from './gateway_client.js';
import { untilSignal } from './signals.js';

export interface ConnectOptions {
  gateway?: string;
  port: number;
  sslmode?: GatewaySslMode;
}

/** A local client has this long to log in. */
const LOGIN_TIMEOUT_MS = 30_000;
/** Startup parameters that are ours to set, or that pgward does not relay. */
const OWN_PARAMS = new Set(['user', 'database', 'replication']);

interface Relayed {
  upstream: UpstreamConnection;
}

const digest = (text: string) => createHash('sha256').update(text).digest();

/** The gateway's own refusal, passed on as it was sent. */
function gatewayRefusal(err: UpstreamError): Buffer {
  const f = err.upstreamFields;
  return encode.errorResponse({
    severity: 'FATAL',
    code: f.get('C') ?? '08006',
    message: f.get('M') ?? err.message,
    detail: f.get('D'),
    hint: f.get('H'),
  });
}

export class LocalConnectListener {
  private readonly server: Server;
  private readonly sessions = new Set<Relayed>();
  private readonly sockets = new Set<Socket>();
  private readonly passwordDigest: Buffer;
  private tokenInFlight: Promise<string> | undefined;

  constructor(
    private readonly target: {
      gateway: string;
      host: string;
      port: number;
      sslmode: GatewaySslMode;
      connection: string;
      email: string;
      password: string;
    },
  ) {
    this.passwordDigest = digest(target.password);
    this.server = createServer({ noDelay: true }, (socket) => this.accept(socket));
  }

  async listen(port: number): Promise<number> {
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(port, '127.0.0.1', () => {
        this.server.removeListener('error', reject);
        resolve();
      });
    });
    return (this.server.address() as { port: number }).port;
  }

  close(): Promise<void> {
    for (const socket of this.sockets) socket.destroy();
    for (const { upstream } of this.sessions) upstream.close();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }

  /** One token refresh at a time, however many clients connect at once. */
  private token(): Promise<string> {
    this.tokenInFlight ??= accessToken(this.target.gateway).finally(() => {
      this.tokenInFlight = undefined;
    });
    return this.tokenInFlight;
  }

  private accept(socket: Socket): void {
    this.sockets.add(socket);
    socket.on('close', () => this.sockets.delete(socket));
    socket.on('error', () => socket.destroy());
    socket.setTimeout(LOGIN_TIMEOUT_MS, () => {
      socket.end(errorResponseFor(new PgwardError('LOGIN_FAILED', 'the client did not log in in time')));
    });
    this.handshake(socket).catch((err: unknown) => {
      // Not a PostgreSQL client's bytes: closed without an answer, as PostgreSQL does.
      if (err instanceof MalformedStartup) socket.destroy();
      else if (err instanceof UpstreamError) socket.end(gatewayRefusal(err));
      else if (err instanceof PgwardError) socket.end(errorResponseFor(err));
      else socket.destroy();
    });
  }

  /** Startup, local password check, login at the gateway, then the relay. */
  private async handshake(socket: Socket): Promise<void> {
    // Plaintext on loopback; the hop to the gateway is the one that needs TLS. pgward speaks 3.0
    // to the gateway here, so a client asking for more is told so.
    const handshake = new Handshake({ tls: false, plaintextAllowed: true, highestMinor: 0 });
    const onData = (chunk: Buffer) => {
      if (!handshake.push(chunk)) socket.destroy();
    };
    socket.on('data', onData);
    socket.once('close', () => handshake.end());
    let startup: StartupMessage | undefined;
    let password: string | undefined;
    while (password === undefined) {
      const step = await handshake.step();
      switch (step.kind) {
        case 'reply':
          socket.write(step.reply);
          break;
        case 'cancel':
          this.cancel(step.pid, step.secret);
          socket.end();
          return;
        case 'startup':
          startup = step.startup;
          socket.write(step.reply);
          break;
        case 'password':
          password = step.password;
          break;
        default:
          throw new Error(`handshake step ${step.kind} on a plaintext port`);
      }
    }
    if (!startup) throw new Error('a password before the startup message');
    const presented = digest(password);
    if (!timingSafeEqual(presented, this.passwordDigest)) {
      throw new PgwardError('LOGIN_FAILED', 'wrong password for this `pgward connect` port', {
        hint: 'use the password in the line `pgward connect` printed; it changes each time it starts',
      });
    }
    const database = startup.params.get('database');
    if (database && database !== this.target.connection) {
      throw new PgwardError('NOT_FOUND', `this port serves the connection "${this.target.connection}" only`, {
        hint: `connect to database ${this.target.connection}, or run \`pgward connect ${database}\``,
      });
    }
    const params: Record<string, string> = {};
    for (const [key, value] of startup.params) if (!OWN_PARAMS.has(key)) params[key] = value;
    const upstream = await UpstreamConnection.open({
      host: this.target.host,
      port: this.target.port,
      database: this.target.connection,
      sslmode: this.target.sslmode,
      sslCa: undefined,
      user: this.target.email,
      password: await this.token(),
      params,
      // The password here is the person's own token for the gateway, which asks for it in
      // cleartext over the TLS of the gateway endpoint (as any client's token).
      allowUnverifiedPasswordAuth: true,
    });
    if (socket.destroyed) {
      upstream.close();
      return;
    }
    socket.removeListener('data', onData);
    this.relay(socket, handshake.rest(), upstream);
  }

  /** Tells the client it is in, then passes bytes both ways until either side ends. */
  private relay(socket: Socket, early: Buffer, upstream: UpstreamConnection): void {
    socket.setTimeout(0);
    const hello: Buffer[] = [];
    hello.push(encode.authenticationOk());
    hello.push(upstream.parameterStatusMessages());
    // The gateway's key for this session: a CancelRequest with it is forwarded to the gateway.
    hello.push(encode.backendKeyData(upstream.backendPid, upstream.backendSecret));
    hello.push(encode.readyForQuery(upstream.status));
    hello.push(upstream.takeOver());
    socket.write(Buffer.concat(hello));
    const up = upstream.socket;
    if (early.length > 0) up.write(early);
    const session: Relayed = { upstream };
    this.sessions.add(session);
    socket.pipe(up);
    upstream.input.pipeTo(up, socket);
    const end = () => {
      this.sessions.delete(session);
      socket.destroy();
      up.destroy();
    };
    socket.once('close', end);
    up.once('close', end);
    up.on('error', end);
  }

  private cancel(pid: number, secret: Buffer): void {
    for (const { upstream } of this.sessions) {
      const key = upstream.backendSecret;
      if (upstream.backendPid === pid && key.length === secret.length && timingSafeEqual(key, secret)) {
        upstream.cancel().catch(() => undefined);
        return;
      }
    }
  }
}

export async function runConnect(connection: string, opts: ConnectOptions): Promise<void> {
  const gateway = await gatewayUrl(opts.gateway);
  const token = await accessToken(gateway);
  const [endpoint, me, usable] = await Promise.all([
    pgEndpoint(gateway, opts.sslmode),
    api<{ email: string }>(gateway, 'GET', '/api/v1/whoami', { token }),
    api<{ name: string }[]>(gateway, 'GET', '/api/v1/connections', { token }),
  ]);
  if (endpoint.sslmode === 'disable' && !isLoopbackHost(endpoint.host)) {
    // The token would cross the network in the clear.
    throw new PgwardError('BAD_REQUEST', `the gateway's PostgreSQL endpoint ${endpoint.host} offers no TLS`, {
      hint: 'ask its operator to enable TLS on the PostgreSQL endpoint',
    });
  }
  if (!usable.some((c) => c.name === connection)) {
    throw new PgwardError('NOT_FOUND', `no connection "${connection}" that you may use`, {
      hint: `yours: ${usable.map((c) => c.name).join(', ') || '(none)'}`,
    });
  }
  const password = randomBytes(18).toString('base64url');
  const listener = new LocalConnectListener({ gateway, ...endpoint, connection, email: me.email, password });
  let port: number;
  try {
    port = await listener.listen(opts.port);
  } catch (err) {
    throw new PgwardError(
      'BAD_REQUEST',
      `cannot listen on 127.0.0.1:${opts.port}: ${(err as Error).message}`,
      {
        hint: 'pick another port with --port (0 lets the system choose)',
      },
    );
  }
  const user = encodeURIComponent(me.email);
  process.stderr.write(
    `Forwarding 127.0.0.1:${port} to ${connection} at ${gateway} as ${me.email}. Ctrl-C stops it.\n` +
      `Connect with (the password is made up for this run, and changes each time):\n`,
  );
  process.stdout.write(
    `psql "postgresql://${user}:${password}@127.0.0.1:${port}/${encodeURIComponent(connection)}?sslmode=disable"\n`,
  );
  await untilSignal();
  await listener.close();
}
