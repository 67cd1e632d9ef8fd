/**
 * A connection from pgward to a target database: TLS per sslmode (tlsPlan), startup, login
 * (SCRAM-SHA-256; md5 or cleartext only over verified TLS unless the connection accepts the
 * risk), then either relayed to a client or driven by pgward itself (reset, SET, provisioning,
 * with bind parameters). Every step has a deadline and fails naming the connection and the step.
 */
import { createHash } from 'node:crypto';
import { connect as netConnect, type Socket } from 'node:net';
import { type TLSSocket, connect as tlsConnect } from 'node:tls';
import { PgwardError } from '../errors.js';
import { type SslMode, tlsPlan } from '../vault/ssl_mode.js';
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
  /** The connection's name, for messages (the database name when absent). */
  name?: string;
  /** Deadline of each step: TCP connect, TLS answer, TLS handshake, login, a control query. */
  timeoutMs?: number;
  /**
   * Unsafe: send the password in cleartext or md5 over TLS pgward did not verify (or none).
   * Without it, only SCRAM-SHA-256 is answered unless sslmode is verify-ca or verify-full.
   */
  allowUnverifiedPasswordAuth?: boolean;
}

export const DEFAULT_UPSTREAM_TIMEOUT_MS = 10_000;
const MAX_UPSTREAM_MESSAGE = 64 * 1024 * 1024;

/** SQLSTATE class 57P: the target is starting up, shutting down or cannot connect now. */
const STARTING_UP = /^57P0[34]$/;

/** Error from the target, carried with its own SQLSTATE. */
export class UpstreamError extends PgwardError {
  constructor(
    message: string,
    readonly upstreamFields: Map<string, string>,
  ) {
    super(STARTING_UP.test(upstreamFields.get('C') ?? '') ? 'UPSTREAM_STARTING' : 'UPSTREAM_FAILED', message);
  }
}

/** The target asked for a vaulted password in a form pgward will not send it in. */
export class PasswordAuthRefused extends PgwardError {
  constructor(
    target: UpstreamTarget,
    /** `password` (cleartext) or `md5`, as pg_hba.conf names them. */
    readonly method: 'password' | 'md5',
  ) {
    super(
      'UPSTREAM_PASSWORD_REFUSED',
      `target database "${targetName(target)}" asks for the password ${method === 'md5' ? 'as md5' : 'in cleartext'}, ` +
        'which pgward sends only over TLS it verified',
      {
        hint:
          'let the target use scram-sha-256 (pg_hba.conf and password_encryption), or set sslmode verify-ca or ' +
          "verify-full with the target's CA; allowUnverifiedPasswordAuth accepts the risk (unsafe)",
      },
    );
  }
}

/** What names a target in messages, and its deadline. */
type TargetLabel = Pick<UpstreamTarget, 'host' | 'port' | 'database' | 'name' | 'timeoutMs'>;

const targetName = (target: TargetLabel) => target.name ?? target.database;
const timeoutOf = (target: TargetLabel) => target.timeoutMs ?? DEFAULT_UPSTREAM_TIMEOUT_MS;

/** The error of a step that ran past its deadline, naming the connection and the step. */
export function upstreamTimeout(target: TargetLabel, step: string): PgwardError {
  const seconds = timeoutOf(target) / 1000;
  return new PgwardError(
    'UPSTREAM_TIMEOUT',
    `target database "${targetName(target)}" did not answer ${step} within ${seconds} s`,
    { hint: `check that ${target.host}:${target.port} is a PostgreSQL server that is up and not overloaded` },
  );
}

/** Rejects with the step's timeout error when `work` takes longer; `onTimeout` tears down. */
function within<T>(
  target: UpstreamTarget,
  step: string,
  work: Promise<T>,
  onTimeout: () => void,
): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      reject(upstreamTimeout(target, step));
      onTimeout();
    }, timeoutOf(target));
  });
  return Promise.race([work, deadline]).finally(() => clearTimeout(timer));
}

function tcp(target: UpstreamTarget, input: SocketInput): Promise<Socket> {
  const { host, port } = target;
  const socket = netConnect({ host, port, noDelay: true, onread: input.readOptions() });
  const connected = new Promise<Socket>((resolve, reject) => {
    socket.once('connect', () => {
      socket.removeListener('error', onError);
      resolve(socket);
    });
    const onError = (err: Error) => {
      reject(
        new PgwardError(
          'UPSTREAM_FAILED',
          `cannot reach target database "${targetName(target)}" at ${host}:${port}`,
          { cause: err, detail: (err as NodeJS.ErrnoException).code ?? err.message },
        ),
      );
    };
    socket.once('error', onError);
  });
  return within(target, 'the TCP connect', connected, () => socket.destroy());
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

/** How the connection is protected: no TLS, TLS with an unchecked certificate, or verified TLS. */
export type UpstreamTls = 'none' | 'unverified' | 'verified';

/** TLS per sslmode (tlsPlan). A TLS socket is read through `input` from then on (its 'data' events). */
async function secure(
  socket: Socket,
  target: UpstreamTarget,
  input: SocketInput,
): Promise<{ socket: Socket | TLSSocket; tls: UpstreamTls }> {
  const plan = tlsPlan(target.sslmode, target.sslCa);
  if (!plan.request) return { socket, tls: 'none' };
  socket.write(encode.sslRequest());
  const answer = await within(target, 'the TLS request', readSslAnswer(socket, input), () =>
    socket.destroy(),
  );
  if (answer === 0x4e /* N */) {
    if (plan.plaintextFallback) return { socket, tls: 'none' };
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
  const handshake = new Promise<TLSSocket>((resolve, reject) => {
    const tls = tlsConnect({
      socket,
      // The name the certificate must be for. Without `host`, Node checks an IP target's
      // certificate against "localhost"; SNI (servername) cannot carry an IP address.
      host: target.host,
      servername: /^[\d.:]+$/.test(target.host) ? undefined : target.host,
      ca: target.sslCa,
      rejectUnauthorized: plan.verifyChain,
      // Node checks the host name by default; verify-ca and below check the chain only.
      ...(plan.verifyHost ? {} : { checkServerIdentity: () => undefined }),
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
  const tls = await within(target, 'the TLS handshake', handshake, () => socket.destroy());
  return { socket: tls, tls: plan.verifyChain ? 'verified' : 'unverified' };
}

/** "DISCARD ALL", "SET application_name": what a control query is called in a timeout error. */
function describe(sql: string): string {
  const words = /^\s*([A-Za-z]+(?:\s+[A-Za-z_]+)?)/.exec(sql)?.[1] ?? 'a query';
  return `a control query (${words.replace(/\s+/g, ' ')})`;
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

  /** The authentication method the target asked for: scram-sha-256, md5, password or trust. */
  authMethod: string = 'trust';

  private constructor(
    readonly socket: Socket | TLSSocket,
    /** The socket's bytes (see SocketInput for the rule on keeping them). */
    readonly input: SocketInput,
    readonly target: UpstreamTarget,
    /** Whether the connection is encrypted, and the certificate checked. */
    readonly tls: UpstreamTls,
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
    const { socket, tls } = await secure(await tcp(target, input), target, input);
    const conn = new UpstreamConnection(socket, input, target, tls);
    try {
      await within(target, 'the login', conn.login(), () => socket.destroy());
    } catch (err) {
      socket.destroy();
      throw err;
    }
    return conn;
  }

  /**
   * Cleartext and md5 give the password (or a replayable hash of it) to whoever answers: only
   * to a target whose certificate was verified, unless the connection accepts the risk.
   */
  private mayRevealPassword(method: 'password' | 'md5'): void {
    this.authMethod = method;
    if (this.tls !== 'verified' && this.target.allowUnverifiedPasswordAuth !== true) {
      throw new PasswordAuthRefused(this.target, method);
    }
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
            scram?.checkDone();
            break;
          case AUTH.CLEARTEXT:
            this.mayRevealPassword('password');
            this.socket.write(encode.passwordMessage(target.password));
            break;
          case AUTH.MD5:
            this.mayRevealPassword('md5');
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
            this.authMethod = 'scram-sha-256';
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

  /**
   * Runs SQL in control mode (simple protocol); resolves at ReadyForQuery with the rows, rejects
   * with the first error. `step` names it in a timeout error (default: the SQL's first words).
   */
  query(sql: string, step = describe(sql)): Promise<(string | null)[][]> {
    this.socket.write(encode.query(sql));
    return this.results(step).then((sets) => sets.flat());
  }

  /**
   * Runs statements with bind parameters (extended protocol) up to one Sync, so they share one
   * implicit transaction: an error rolls all of them back. Resolves with each one's rows.
   */
  pipeline(
    statements: readonly { sql: string; params?: readonly (string | null)[] }[],
    step: string,
  ): Promise<(string | null)[][][]> {
    const out: Buffer[] = [];
    for (const { sql, params = [] } of statements) {
      out.push(encode.parse(sql), encode.bind(params), encode.execute(''));
    }
    out.push(encode.sync());
    this.socket.write(Buffer.concat(out));
    return this.results(step);
  }

  /** Reads results up to ReadyForQuery under the deadline; a connection past it is closed. */
  private results(step: string): Promise<(string | null)[][][]> {
    const read = async () => {
      const sets: (string | null)[][][] = [[]];
      let error: UpstreamError | undefined;
      for (;;) {
        const message = await this.next();
        const type = message[0];
        if (type === BE.DATA_ROW) {
          sets.at(-1)!.push(decode.dataRow(message));
        } else if (type === BE.COMMAND_COMPLETE) {
          sets.push([]);
        } else if (type === BE.ERROR && !error) {
          const fields = decode.errorFields(message);
          error = new UpstreamError(fields.get('M') ?? 'error', fields);
        } else if (type === BE.PARAMETER_STATUS) {
          this.parameterStatus(message);
        } else if (type === BE.READY_FOR_QUERY) {
          this.status = decode.readyStatus(message);
          if (error) throw error;
          sets.pop();
          return sets;
        }
      }
    };
    return within(this.target, step, read(), () => this.socket.destroy());
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
    const { socket } = await secure(await tcp(this.target, input), this.target, input);
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
