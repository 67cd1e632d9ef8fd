/**
 * The server side of a connection's first packets, for every PostgreSQL listener pgward runs
 * (the gateway's endpoint, `pgward connect`'s local port): bytes are gathered as they arrive,
 * under the startup caps, and read as startup packets (SSLRequest, GSSENCRequest, CancelRequest,
 * StartupMessage; protocol section "Start-up") and then as the password message. Transport is
 * the caller's: it pushes chunks, says when the peer went away, and takes what is left once the
 * handshake is over (a client may pipeline its first query behind its password).
 */
import { PgwardError } from '../errors.js';
import * as decode from './decode.js';
import { FE, LIMITS } from './protocol.js';
import { readStartupPacket, type StartupPacket } from './startup.js';

/** Nothing legitimate sends more than this before it has authenticated. */
const MAX_BEFORE_AUTH = LIMITS.STARTUP_BYTES + LIMITS.PASSWORD_BYTES + 16;

export class HandshakeInput {
  private buffered: Buffer = Buffer.alloc(0);
  private wake: (() => void) | undefined;
  private gone = false;

  /**
   * @param onFull called when the peer has sent more than any handshake needs: the caller stops
   *   reading (the deadline then ends the connection).
   */
  constructor(private readonly onFull: () => void) {}

  /** A chunk read from the peer; copied, since the caller may reuse its buffer. */
  push(chunk: Buffer): void {
    this.buffered = this.buffered.length === 0 ? Buffer.from(chunk) : Buffer.concat([this.buffered, chunk]);
    if (this.buffered.length > MAX_BEFORE_AUTH) this.onFull();
    this.wake?.();
  }

  /** The peer closed its side. */
  end(): void {
    this.gone = true;
    this.wake?.();
  }

  /** Bytes received and not read yet. */
  get pending(): number {
    return this.buffered.length;
  }

  /** The first byte not read yet (direct TLS starts with a TLS record). */
  peek(): number | undefined {
    return this.buffered[0];
  }

  private received(): Promise<void> {
    if (this.gone)
      return Promise.reject(new PgwardError('PROTOCOL_VIOLATION', 'the client went away during login'));
    return new Promise((resolve) => {
      this.wake = () => {
        this.wake = undefined;
        resolve();
      };
    });
  }

  /** Waits until some byte has arrived (or the peer went away). */
  async some(): Promise<void> {
    while (this.buffered.length === 0) await this.received();
  }

  /** The next startup packet; throws a PgwardError (MalformedStartup for bad framing). */
  async startupPacket(): Promise<StartupPacket> {
    for (;;) {
      const read = readStartupPacket(this.buffered);
      if (read) {
        this.buffered = this.buffered.subarray(read.size);
        return read.packet;
      }
      await this.received();
    }
  }

  /** The password message (cleartext), capped at LIMITS.PASSWORD_BYTES. */
  async password(): Promise<string> {
    const message = await this.message(LIMITS.PASSWORD_BYTES);
    if (message[0] !== FE.PASSWORD) {
      throw new PgwardError(
        'PROTOCOL_VIOLATION',
        `expected a password message, got "${String.fromCharCode(message[0]!)}"`,
      );
    }
    return decode.passwordText(message);
  }

  /** One regular message, capped at `max` bytes of body. */
  private async message(max: number): Promise<Buffer> {
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
      await this.received();
    }
  }

  /** Takes what is left: the handshake is over (or moves to TLS, which must find nothing left). */
  rest(): Buffer {
    const rest = this.buffered;
    this.buffered = Buffer.alloc(0);
    return rest;
  }
}
