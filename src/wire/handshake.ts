/**
 * The server side of a connection's handshake (protocol section "Start-up"), as a state machine
 * over the bytes received, for every PostgreSQL listener pgward runs (the gateway's endpoint,
 * `pgward connect`'s local port). It knows no socket: the caller pushes what it reads, asks for
 * the next step, and does what the step says (write a reply, start TLS, look up a cancel key).
 *
 * States and what each accepts, as PostgreSQL's ProcessStartupPacket does:
 *
 * - `initial`: a TLS record (direct TLS, PostgreSQL 17), SSLRequest, GSSENCRequest,
 *   CancelRequest or StartupMessage.
 * - after SSLRequest answered 'N': GSSENCRequest (once), CancelRequest, StartupMessage.
 * - after GSSENCRequest answered 'N': SSLRequest (once), CancelRequest, StartupMessage.
 * - `tls` (SSLRequest answered 'S', or direct TLS): no plaintext byte at all until the caller
 *   says TLS is up (bytes sent before the TLS handshake could be a man in the middle's).
 * - inside TLS: CancelRequest or StartupMessage; a second SSLRequest or a GSSENCRequest is a
 *   protocol violation.
 * - `password`: the StartupMessage was accepted and the password asked for: one PasswordMessage.
 * - `done`: the handshake is over; what the client pipelined behind its password is `rest()`.
 *
 * A packet that cannot be the start of a PostgreSQL connection throws MalformedStartup (the
 * caller closes without an answer, as PostgreSQL does); every other refusal is a PgwardError
 * the caller answers with a FATAL ErrorResponse.
 */
import { PgwardError } from '../errors.js';
import * as decode from './decode.js';
import * as encode from './encode.js';
import { FE, LIMITS, TLS_HANDSHAKE_BYTE } from './protocol.js';
import { MalformedStartup, readStartupPacket, type StartupPacket } from './startup.js';

export type StartupMessage = Extract<StartupPacket, { kind: 'startup' }>;

/** Nothing legitimate sends more than this before it has authenticated. */
export const MAX_BEFORE_AUTH = LIMITS.STARTUP_BYTES + LIMITS.PASSWORD_BYTES + 16;

export interface HandshakeOptions {
  /** A certificate is configured: SSLRequest is answered 'S', direct TLS is accepted. */
  tls: boolean;
  /**
   * The password may be asked for without TLS (a loopback client with plaintext allowed, or the
   * local port of `pgward connect`); else a StartupMessage outside TLS is refused.
   */
  plaintextAllowed: boolean;
  /** The highest protocol minor version this listener speaks (3.x). */
  highestMinor: number;
}

export type HandshakeStep =
  /** More bytes are needed. */
  | { kind: 'more' }
  /** Write `reply` to the client, then ask for the next step. */
  | { kind: 'reply'; reply: Buffer }
  /**
   * Write `reply` ('S') and run the TLS handshake as a server; call `tlsUp()` once it is done.
   * Nothing was received after the SSLRequest.
   */
  | { kind: 'start-tls'; reply: Buffer }
  /**
   * The client started with a TLS record (direct TLS): `received` holds the bytes read so far,
   * which belong to the TLS layer; call `tlsUp()` once the handshake is done (ALPN is the
   * caller's to check).
   */
  | { kind: 'direct-tls'; received: Buffer }
  /** A CancelRequest: the caller looks the key up (in constant time) and closes. Final. */
  | { kind: 'cancel'; pid: number; secret: Buffer }
  /**
   * The StartupMessage, with the protocol minor version agreed: write `reply`
   * (NegotiateProtocolVersion when needed, then AuthenticationCleartextPassword) and ask for the
   * next step, which is the password.
   */
  | { kind: 'startup'; startup: StartupMessage; reply: Buffer }
  /** The password message's text. The handshake is done; `rest()` holds what followed it. */
  | { kind: 'password'; password: string };

type State = 'startup' | 'tls' | 'password' | 'done' | 'over';

const violation = (message: string) => new PgwardError('PROTOCOL_VIOLATION', message);

export class Handshake {
  private buffered: Buffer = Buffer.alloc(0);
  private state: State = 'startup';
  /** Nothing has been read as a packet yet (direct TLS is possible only then). */
  private first = true;
  private sslDone = false;
  private gssDone = false;
  private encrypted = false;
  private wake: (() => void) | undefined;
  private gone = false;
  /** A violation seen by push(), thrown by the next step. */
  private failure: PgwardError | undefined;

  constructor(private readonly opts: HandshakeOptions) {}

  /**
   * A chunk read from the client; copied, since the caller may reuse its buffer. Returns false
   * once more has been received than any handshake needs: stop reading (the caller's deadline
   * then ends the connection; a client may pipeline queries behind its password, which the
   * relay reads later). Never throws (it runs in the caller's read callback): a violation is
   * the next step's error.
   */
  push(chunk: Buffer): boolean {
    if (this.state === 'tls' && chunk.length > 0) {
      // A well-behaved client waits for the TLS handshake; these bytes could be injected.
      this.state = 'over';
      this.failure = violation('received unencrypted data after SSL request');
    }
    if (chunk.length > 0 && this.state !== 'over') {
      this.buffered = this.buffered.length === 0 ? Buffer.from(chunk) : Buffer.concat([this.buffered, chunk]);
    }
    this.wake?.();
    return this.buffered.length <= MAX_BEFORE_AUTH;
  }

  /** The client closed its side. */
  end(): void {
    this.gone = true;
    this.wake?.();
  }

  /** The TLS handshake the last step asked for is done: startup goes on inside TLS. */
  tlsUp(): void {
    if (this.state !== 'tls') throw new Error('tlsUp() without a TLS step');
    this.encrypted = true;
    this.sslDone = true;
    this.gssDone = true;
    this.state = 'startup';
  }

  /** The next step from the bytes received so far. Throws a PgwardError to refuse. */
  next(): HandshakeStep {
    if (this.failure) throw this.failure;
    switch (this.state) {
      case 'startup':
        return this.startupStep();
      case 'password':
        return this.passwordStep();
      case 'tls':
      case 'done':
      case 'over':
        return { kind: 'more' };
    }
  }

  /** The next step, waiting for bytes as needed; rejects when the client goes away first. */
  async step(): Promise<HandshakeStep> {
    for (;;) {
      const step = this.next();
      if (step.kind !== 'more') return step;
      if (this.gone) throw violation('the client went away during login');
      await new Promise<void>((resolve) => {
        this.wake = () => {
          this.wake = undefined;
          resolve();
        };
      });
    }
  }

  /** Takes what is left: the client's first messages after its password. */
  rest(): Buffer {
    const rest = this.buffered;
    this.buffered = Buffer.alloc(0);
    return rest;
  }

  private startupStep(): HandshakeStep {
    if (this.buffered.length === 0) return { kind: 'more' };
    if (this.first && this.buffered[0] === TLS_HANDSHAKE_BYTE) {
      if (!this.opts.tls) throw this.malformed('direct TLS is not configured');
      this.first = false;
      this.state = 'tls';
      return { kind: 'direct-tls', received: this.rest() };
    }
    let read: ReturnType<typeof readStartupPacket>;
    try {
      read = readStartupPacket(this.buffered);
    } catch (err) {
      this.state = 'over';
      throw err;
    }
    if (!read) return { kind: 'more' };
    this.first = false;
    this.buffered = this.buffered.subarray(read.size);
    const { packet } = read;
    switch (packet.kind) {
      case 'ssl':
        if (this.sslDone) throw this.refuse('SSLRequest sent again; only one is allowed');
        this.sslDone = true;
        if (!this.opts.tls) return { kind: 'reply', reply: Buffer.from('N') };
        if (this.buffered.length > 0) throw this.refuse('received unencrypted data after SSL request');
        this.state = 'tls';
        return { kind: 'start-tls', reply: Buffer.from('S') };
      case 'gssenc':
        if (this.gssDone) {
          throw this.refuse(
            this.encrypted
              ? 'GSSENCRequest inside an encrypted connection'
              : 'GSSENCRequest sent again; only one is allowed',
          );
        }
        this.gssDone = true;
        return { kind: 'reply', reply: Buffer.from('N') };
      case 'cancel':
        // Nothing may follow a CancelRequest: the caller closes.
        this.state = 'over';
        this.buffered = Buffer.alloc(0);
        return { kind: 'cancel', pid: packet.pid, secret: packet.secret };
      case 'startup':
        return this.startupMessage(packet);
    }
  }

  private startupMessage(packet: StartupMessage): HandshakeStep {
    const replication = packet.params.get('replication');
    if (replication !== undefined && replication !== 'false') {
      this.state = 'over';
      throw new PgwardError('NOT_ALLOWED', 'replication connections are not supported through pgward');
    }
    if (!this.encrypted && !this.opts.plaintextAllowed) {
      this.state = 'over';
      throw new PgwardError('NOT_ALLOWED', 'pgward accepts tokens only over TLS', {
        hint: 'connect with sslmode=require',
      });
    }
    const minor = Math.min(packet.minor, this.opts.highestMinor);
    const reply: Buffer[] = [];
    if (packet.minor > minor || packet.protocolOptions.length > 0) {
      // Our own highest version and the options we do not know; never the client's.
      reply.push(encode.negotiateProtocolVersion(minor, packet.protocolOptions));
    }
    reply.push(encode.authenticationCleartextPassword());
    this.state = 'password';
    return { kind: 'startup', startup: { ...packet, minor }, reply: Buffer.concat(reply) };
  }

  /** The password message (cleartext), capped at LIMITS.PASSWORD_BYTES. */
  private passwordStep(): HandshakeStep {
    if (this.buffered.length < 5) return { kind: 'more' };
    const type = this.buffered[0]!;
    if (type !== FE.PASSWORD) {
      throw this.refuse(`expected a password message, got "${String.fromCharCode(type)}"`);
    }
    const length = this.buffered.readInt32BE(1);
    if (length < 4 || length > LIMITS.PASSWORD_BYTES + 4) {
      throw this.refuse(`invalid password message length ${length} (at most ${LIMITS.PASSWORD_BYTES + 4})`);
    }
    if (this.buffered.length < 1 + length) return { kind: 'more' };
    const message = this.buffered.subarray(0, 1 + length);
    this.buffered = this.buffered.subarray(1 + length);
    let password: string;
    try {
      password = decode.passwordText(message);
    } catch (err) {
      this.state = 'over';
      throw err;
    }
    this.state = 'done';
    return { kind: 'password', password };
  }

  private refuse(message: string): PgwardError {
    this.state = 'over';
    return violation(message);
  }

  private malformed(message: string): MalformedStartup {
    this.state = 'over';
    return new MalformedStartup(message);
  }
}
