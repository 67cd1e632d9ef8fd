/**
 * A connection from pgward to a target database: TLS per sslmode, startup, login (SCRAM-SHA-256,
 * md5 or cleartext), then either relayed to a client or driven by pgward itself (reset, SET).
 */
import { createHash } from 'node:crypto';
import { connect as netConnect, type Socket } from 'node:net';
import { type TLSSocket, connect as tlsConnect } from 'node:tls';
import { PgwardError } from '../errors.js';
import type { SslMode } from '../vault/connections.js';
import * as decode from '../wire/decode.js';
import * as encode from '../wire/encode.js';
import { AUTH, BE, PROTOCOL } from '../wire/protocol.js';
import { MessageReader } from '../wire/reader.js';
import { SocketInput } from '../wire/socket_input.js';
import { SCRAM_MECHANISM, ScramClient } from './scram.js';

export interface UpstreamTarget {
  host: string;
  port: number;
  database: string;
  sslmode: SslMode;
  sslCa: string | undefined;
  user: string;
  password: string;
  /** Startup parameters besides user and database (application_name, client_encoding, ...). */
  params: Record<string, string>;
}

const CONNECT_TIMEOUT_MS = 10_000;
const MAX_UPSTREAM_MESSAGE = 64 * 1024 * 1024;

/** Error from the target, carried with its own SQLSTATE. */
export class UpstreamError extends PgwardError {
  constructor(
    message: string,
    readonly upstreamFields: Map<string, string>,
  ) {
    super('UPSTREAM_FAILED', message);
  }
}

function tcp(host: string, port: number, input: SocketInput): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = netConnect({ host, port, noDelay: true, onread: input.readOptions() });
    const timer = setTimeout(() => socket.destroy(new Error('connect timeout')), CONNECT_TIMEOUT_MS);
    socket.once('connect', () => {
      clearTimeout(timer);
      socket.removeListener('error', onError);
      resolve(socket);
    });
    const onError = (err: Error) => {
      clearTimeout(timer);
      reject(
        new PgwardError('UPSTREAM_FAILED', `cannot reach the target database at ${host}:${port}`, {
          cause: err,
        }),
      );
    };
    socket.once('error', onError);
  });
}

/** Reads exactly one byte (the answer to SSLRequest), refusing anything sent after it. */
function readSslAnswer(socket: Socket, input: SocketInput): Promise<number> {
  return new Promise((resolve, reject) => {
    input.onChunk = (chunk: Buffer) => {
      cleanup();
      if (chunk.length !== 1) {
        reject(new PgwardError('UPSTREAM_FAILED', 'the target sent unexpected bytes after its TLS answer'));
        socket.destroy();
        return;
      }
      resolve(chunk[0]!);
    };
    const onEnd = () => {
      cleanup();
      reject(new PgwardError('UPSTREAM_FAILED', 'the target closed the connection during TLS negotiation'));
    };
    const cleanup = () => {
      input.onChunk = () => undefined;
      socket.removeListener('error', onEnd);
      socket.removeListener('close', onEnd);
    };
    socket.once('error', onEnd);
    socket.once('close', onEnd);
  });
}

/** TLS per sslmode. A TLS socket is read through `input` from then on (its 'data' events). */
async function secure(
  socket: Socket,
  target: UpstreamTarget,
  input: SocketInput,
): Promise<Socket | TLSSocket> {
  if (target.sslmode === 'disable') return socket;
  socket.write(encode.sslRequest());
  const answer = await readSslAnswer(socket, input);
  if (answer === 0x4e /* N */) {
    if (target.sslmode === 'prefer') return socket;
    socket.destroy();
    throw new PgwardError(
      'UPSTREAM_FAILED',
      `the target does not support TLS, but the connection requires sslmode=${target.sslmode}`,
    );
  }
  if (answer !== 0x53 /* S */) {
    socket.destroy();
    throw new PgwardError('UPSTREAM_FAILED', 'the target answered the TLS request with garbage');
  }
  const verify =
    target.sslmode === 'verify-ca' || target.sslmode === 'verify-full' || target.sslCa !== undefined;
  return new Promise((resolve, reject) => {
    const tls = tlsConnect({
      socket,
      servername: /^[\d.:]+$/.test(target.host) ? undefined : target.host,
      ca: target.sslCa,
      rejectUnauthorized: verify,
      // verify-ca checks the chain only; verify-full also the host name (Node's default check).
      ...(target.sslmode === 'verify-full' ? {} : { checkServerIdentity: () => undefined }),
    });
    tls.setNoDelay(true);
    input.listen(tls);
    tls.once('secureConnect', () => {
      tls.removeListener('error', onError);
      resolve(tls);
    });
    const onError = (err: Error) =>
      reject(new PgwardError('UPSTREAM_FAILED', `TLS to the target failed: ${err.message}`, { cause: err }));
    tls.once('error', onError);
  });
}

function md5Password(user: string, password: string, salt: Buffer): string {
  const inner = createHash('md5')
    .update(password + user)
    .digest('hex');
  return `md5${createHash('md5')
    .update(Buffer.concat([Buffer.from(inner), salt]))
    .digest('hex')}`;
}

export class UpstreamConnection {
  private readonly parameterValues = new Map<string, string>();
  /** The parameters as ParameterStatus messages, encoded once until one changes. */
  private parameterMessages: Buffer | undefined;
  backendPid = 0;
  backendSecret: Buffer = Buffer.alloc(0);
  /** Transaction status from the last ReadyForQuery. */
  status: 'I' | 'T' | 'E' = 'I';
  private readonly reader = new MessageReader(MAX_UPSTREAM_MESSAGE);
  private waiting: ((message: Buffer | undefined) => void) | undefined;
  private failure: Error | undefined;
  /** Control mode's reader; a relay swaps in its own between takeOver() and release(). */
  private readonly onControlData = (chunk: Buffer) => {
    try {
      this.reader.push(chunk);
    } catch (err) {
      this.fail(err as Error);
      return;
    }
    this.wake();
  };

  private constructor(
    readonly socket: Socket | TLSSocket,
    /** The socket's bytes (see SocketInput for the rule on keeping them). */
    readonly input: SocketInput,
    readonly target: UpstreamTarget,
  ) {
    input.onChunk = this.onControlData;
    socket.on('error', (err) => this.fail(err));
    socket.on('close', () => this.fail(new Error('closed')));
  }

  private fail(err: Error): void {
    this.failure ??= err;
    this.wake();
  }

  /** Hands the next queued message (or the failure) to whoever waits. */
  private wake(): void {
    const waiting = this.waiting;
    if (!waiting) return;
    const message = this.reader.shift();
    if (message || this.failure) {
      this.waiting = undefined;
      waiting(message);
    }
  }

  get alive(): boolean {
    return this.failure === undefined && !this.socket.destroyed;
  }

  /** Next message in control mode. */
  private next(): Promise<Buffer> {
    return new Promise((resolve, reject) => {
      this.waiting = (message) => {
        if (message) resolve(message);
        else
          reject(
            new PgwardError('UPSTREAM_FAILED', 'the target closed the connection', { cause: this.failure }),
          );
      };
      this.wake();
    });
  }

  /** Opens a connection and logs in. */
  static async open(target: UpstreamTarget): Promise<UpstreamConnection> {
    const input = new SocketInput();
    const socket = await secure(await tcp(target.host, target.port, input), target, input);
    const conn = new UpstreamConnection(socket, input, target);
    try {
      await conn.login();
    } catch (err) {
      socket.destroy();
      throw err;
    }
    return conn;
  }

  private async login(): Promise<void> {
    const { target } = this;
    this.socket.write(
      encode.startupMessage(PROTOCOL.V3_0, {
        user: target.user,
        database: target.database,
        ...target.params,
      }),
    );
    let scram: ScramClient | undefined;
    for (;;) {
      const message = await this.next();
      const type = message[0];
      if (type === BE.AUTHENTICATION) {
        const { code, data } = decode.authenticationRequest(message);
        switch (code) {
          case AUTH.OK:
            break;
          case AUTH.CLEARTEXT:
            this.socket.write(encode.passwordMessage(target.password));
            break;
          case AUTH.MD5:
            this.socket.write(
              encode.passwordMessage(md5Password(target.user, target.password, data.subarray(0, 4))),
            );
            break;
          case AUTH.SASL: {
            const mechanisms = data.toString('utf8').split('\0');
            if (!mechanisms.includes(SCRAM_MECHANISM)) {
              throw new PgwardError(
                'UPSTREAM_FAILED',
                `the target offers no supported SASL mechanism (${mechanisms.join(' ')})`,
              );
            }
            scram = new ScramClient(target.password);
            this.socket.write(encode.saslInitialResponse(SCRAM_MECHANISM, scram.clientFirst()));
            break;
          }
          case AUTH.SASL_CONTINUE:
            if (!scram) throw new PgwardError('UPSTREAM_FAILED', 'unexpected SASL message from the target');
            this.socket.write(encode.saslResponse(await scram.clientFinal(data.toString('utf8'))));
            break;
          case AUTH.SASL_FINAL:
            if (!scram) throw new PgwardError('UPSTREAM_FAILED', 'unexpected SASL message from the target');
            scram.verifyServerFinal(data.toString('utf8'));
            break;
          default:
            throw new PgwardError(
              'UPSTREAM_FAILED',
              `the target asks for an authentication method pgward does not support (${code})`,
            );
        }
      } else if (type === BE.PARAMETER_STATUS) {
        this.parameterStatus(message);
      } else if (type === BE.BACKEND_KEY_DATA) {
        this.backendPid = message.readInt32BE(5);
        this.backendSecret = Buffer.from(message.subarray(9));
      } else if (type === BE.ERROR) {
        const fields = decode.errorFields(message);
        throw new UpstreamError(
          `the target refused the login: ${fields.get('M') ?? 'unknown error'}`,
          fields,
        );
      } else if (type === BE.READY_FOR_QUERY) {
        this.status = decode.readyStatus(message);
        return;
      }
      // NoticeResponse and NegotiateProtocolVersion need no answer.
    }
  }

  /** The target's run-time parameters (server_version, TimeZone, application_name, ...). */
  get parameters(): ReadonlyMap<string, string> {
    return this.parameterValues;
  }

  /** Records a ParameterStatus message the target sent, at login or since. */
  parameterStatus(message: Buffer): void {
    const [name, value] = decode.parameterStatus(message);
    this.parameterValues.set(name, value);
    this.parameterMessages = undefined;
  }

  /**
   * The parameters as the ParameterStatus messages a client is welcomed with. A pooled
   * connection welcomes client after client with the same ones: they are encoded once.
   */
  parameterStatusMessages(): Buffer {
    this.parameterMessages ??= Buffer.concat(
      [...this.parameterValues].map(([name, value]) => encode.parameterStatus(name, value)),
    );
    return this.parameterMessages;
  }

  /** Runs SQL in control mode; resolves at ReadyForQuery, rejects with the first error. */
  async query(sql: string): Promise<void> {
    this.socket.write(encode.query(sql));
    let error: UpstreamError | undefined;
    for (;;) {
      const message = await this.next();
      const type = message[0];
      if (type === BE.ERROR && !error) {
        const fields = decode.errorFields(message);
        error = new UpstreamError(fields.get('M') ?? 'error', fields);
      } else if (type === BE.PARAMETER_STATUS) {
        this.parameterStatus(message);
      } else if (type === BE.READY_FOR_QUERY) {
        this.status = decode.readyStatus(message);
        if (error) throw error;
        return;
      }
    }
  }

  /**
   * Hands the socket to a relay: control mode stops until `release()`. Returns the bytes that
   * arrived after the last message read in control mode, which the relay must pass on first.
   */
  takeOver(): Buffer {
    this.input.onChunk = () => undefined;
    return this.reader.rest();
  }

  /** Takes the socket back from a relay. */
  release(): void {
    this.input.onChunk = this.onControlData;
  }

  /** Asks the target to cancel what this connection is running (a separate connection). */
  async cancel(): Promise<void> {
    const input = new SocketInput();
    const socket = await secure(await tcp(this.target.host, this.target.port, input), this.target, input);
    socket.on('error', () => undefined);
    socket.end(encode.cancelRequest(this.backendPid, this.backendSecret));
  }

  close(): void {
    if (!this.socket.destroyed) {
      this.socket.end(encode.terminate());
      this.socket.destroySoon?.();
    }
  }
}
