/**
 * An in-process connection to the PostgreSQL endpoint: two joined streams, one for a client in
 * the gateway's own process (the web console's node-postgres client) and one that the listener
 * serves exactly as it serves a socket. No port, no TLS: the bytes never leave the process.
 *
 * Each end is a Duplex with the few Socket methods the session code and node-postgres call.
 * Writes are copied: the relay writes views of reused read buffers and takes a write that
 * returns at once as sent, so the other end must not keep the writer's memory.
 */
import { Duplex } from 'node:stream';

export class InProcessEnd extends Duplex {
  private peer!: InProcessEnd;
  /** The writer waiting for this end's reader to want more (backpressure). */
  private resumeWriter: (() => void) | undefined;

  private constructor(
    /** Who is at the other end, as a socket's remoteAddress would say. */
    readonly remoteAddress: string,
    allowHalfOpen: boolean,
  ) {
    super({ allowHalfOpen });
  }

  /**
   * A joined pair: `client` for the caller, `server` for the listener (which ends its side when
   * the client ends, as a server socket does).
   */
  static pair(clientAddress: string): { client: InProcessEnd; server: InProcessEnd } {
    const client = new InProcessEnd('in-process', true);
    const server = new InProcessEnd(clientAddress, false);
    client.peer = server;
    server.peer = client;
    return { client, server };
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, done: (err?: Error | null) => void): void {
    if (this.peer.destroyed) {
      done(new Error('the other end of the in-process connection is closed'));
      return;
    }
    if (this.peer.push(Buffer.from(chunk))) done();
    else this.peer.resumeWriter = () => done();
  }

  override _read(): void {
    const resume = this.resumeWriter;
    this.resumeWriter = undefined;
    resume?.();
  }

  override _final(done: (err?: Error | null) => void): void {
    if (!this.peer.destroyed) this.peer.push(null);
    done();
  }

  override _destroy(err: Error | null, done: (err?: Error | null) => void): void {
    // A socket's close is seen at both ends.
    if (!this.peer.destroyed) {
      this.peer.push(null);
      this.peer.destroy();
    }
    done(err);
  }

  // ---- the Socket methods node-postgres and the session call ---------------------------------

  /** node-postgres "connects" its stream: this one is connected from the start. */
  connect(): this {
    process.nextTick(() => this.emit('connect'));
    return this;
  }

  setNoDelay(): this {
    return this;
  }

  setKeepAlive(): this {
    return this;
  }

  setTimeout(): this {
    return this;
  }

  ref(): this {
    return this;
  }

  unref(): this {
    return this;
  }
}
