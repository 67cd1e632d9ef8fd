/**
 * The bytes a socket receives, handed to one handler that is swapped as a connection moves on
 * (login, relay, back to the pool).
 *
 * A plain TCP socket made with `readOptions()` reads into a buffer that is reused (Node's
 * `onread`): the relay then costs no allocation and no stream event per read, which on the hot
 * path is worth several percent of throughput. The price is a rule for every handler: a chunk
 * is valid only during its call. Copy what you keep, and write views of it with `write()`.
 * The buffer is small while reads are small (most of a session) and large while reads fill it
 * (a large result, COPY): an idle connection holds 8 KiB, not 64, and a connection that lives
 * for one transaction allocates that much less.
 * It cannot be shared between sockets: Node picks each socket's next buffer after its read, so
 * a buffer a queued write keeps could still be filled by another socket's next read.
 * A TLS socket decrypts into fresh buffers and is read through 'data' events (`listen()`);
 * handlers follow the same rule (they cannot tell), and `write()` then never needs to copy.
 */
import { type OnReadOpts, Socket, type SocketConstructorOpts } from 'node:net';

/** Receives each chunk read; `chunk` may be overwritten once the call returns. */
export type ChunkHandler = (chunk: Buffer) => void;

/** The read buffer while reads are small: a whole OLTP request or result fits. */
const SMALL_READ_BYTES = 8 * 1024;
/** The read buffer once a read filled the small one: what libuv would offer by default. */
const LARGE_READ_BYTES = 64 * 1024;

export class SocketInput {
  /** The current reader of this socket's bytes. */
  onChunk: ChunkHandler = () => undefined;
  private buffer: Buffer | undefined;
  /** Whether chunks are views of `buffer` (else fresh from 'data' events). */
  private reusing = false;

  /** The `onread` option for `net.connect`: reads land in a buffer this input reuses. */
  readOptions(): OnReadOpts {
    this.buffer = Buffer.allocUnsafeSlow(SMALL_READ_BYTES);
    this.reusing = true;
    return {
      // Asked again after every read: a kept or resized buffer has been replaced by then.
      buffer: () => this.buffer!,
      callback: (bytes, buffer) => {
        // The buffer is the one `buffer()` returned: a Buffer.
        this.onChunk((buffer as Buffer).subarray(0, bytes));
        this.resize(bytes, buffer.length);
        return true;
      },
    };
  }

  /**
   * Sizes the next read's buffer after a read of `bytes` into one of `size`: large after a read
   * that filled it (more is likely waiting), small again after a read the small one would hold.
   */
  private resize(bytes: number, size: number): void {
    const want = bytes === size ? LARGE_READ_BYTES : bytes <= SMALL_READ_BYTES ? SMALL_READ_BYTES : size;
    if (this.buffer !== undefined && this.buffer.length !== want) this.buffer = Buffer.allocUnsafeSlow(want);
  }

  /**
   * The socket a server accepted (with `pauseOnConnect`, before any read), re-made to read into
   * this input's buffer: Node's server has no `onread` option. The new socket takes over the
   * accepted one's handle (Node's own `_handle`, the same move Node makes when it passes a
   * socket to a child process); the old object is then retired without closing the connection.
   * Should the handle not be there, the accepted socket is read through 'data' events instead.
   */
  adopt(accepted: Socket): Socket {
    const old = accepted as unknown as { _handle: unknown };
    if (!old._handle) {
      this.listen(accepted);
      accepted.resume();
      return accepted;
    }
    const handle = old._handle;
    old._handle = null;
    accepted.destroy();
    return new Socket({
      handle,
      readable: true,
      writable: true,
      onread: this.readOptions(),
    } as SocketConstructorOpts);
  }

  /**
   * Reads a socket that delivers fresh chunks ('data' events; TLS). Also for a TLS socket laid
   * over one made with `readOptions()`: TLS then reads the raw socket itself.
   */
  listen(socket: Socket): void {
    this.reusing = false;
    socket.on('data', (chunk: Buffer) => this.onChunk(chunk));
  }

  /** Passes every chunk on to `to` as it is, pausing `from` while `to` is full. */
  pipeTo(from: Socket, to: Socket): void {
    this.onChunk = (chunk) => {
      if (!this.write(to, [chunk]) && !from.isPaused()) {
        from.pause();
        to.once('drain', () => from.resume());
      }
    };
  }

  /**
   * Writes segments of the chunk just read (views of it, or copies) to `to`, several in one
   * write, keeping the rule: a write that cannot go out at once must own its bytes.
   * - When `to` is already waiting, the segments are copied at their own size: a trickle of tiny
   *   chunks must not pin a whole read buffer each (that would let a client make the gateway hold
   *   a gigabyte before backpressure stops reading).
   * - When this write is the one that has to wait, it keeps the buffer (`keep()`).
   * Returns false when `to` is full: stop reading until it drains.
   */
  write(to: Socket, segments: Buffer[]): boolean {
    const reused = this.reusing;
    const waiting = reused && to.writableLength > 0;
    let ok = true;
    if (segments.length === 1) ok = to.write(waiting ? ownCopy(segments[0]!) : segments[0]!);
    else if (segments.length > 1) {
      to.cork();
      for (const s of segments) ok = to.write(waiting ? ownCopy(s) : s);
      to.uncork();
    }
    if (reused && !waiting && to.writableLength > 0) this.keep();
    return ok;
  }

  /**
   * The last chunk must outlive its call (a write of it was queued, not sent): the buffer is
   * left to that write and later reads go to a new one.
   */
  private keep(): void {
    if (this.buffer) this.buffer = Buffer.allocUnsafeSlow(this.buffer.length);
  }
}

/**
 * A copy in memory of its own. Buffers come unpooled here (allocUnsafeSlow): Node's pool (8 KiB
 * on Node.js 20, 64 KiB on 24) would make a small copy, or a read buffer, share one allocation
 * with unrelated buffers and keep all of it alive as long as the write waits.
 */
function ownCopy(segment: Buffer): Buffer {
  const copy = Buffer.allocUnsafeSlow(segment.length);
  segment.copy(copy);
  return copy;
}
