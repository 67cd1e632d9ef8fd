/**
 * The framer of one direction of a relayed connection: the proxy's hot path. It finds message
 * boundaries in the byte stream and returns what to forward, without copying where it can:
 * - runs of messages that lie whole in a chunk are forwarded as one view of that chunk;
 * - messages of types nobody decodes stream through as they arrive, even when split across
 *   chunks (a 100 MB DataRow is never buffered);
 * - only a message somebody decodes that is split across chunks is copied, once, into a
 *   buffer of its exact size (and a split 5-byte header).
 * Every declared length is checked against the direction's cap before anything is kept.
 */
import { PgwardError } from '../errors.js';

/** What to do with a decoded message: forward it as is, drop it, or send these bytes instead. */
export type Verdict = 'forward' | 'drop' | Buffer;

/**
 * Receives each complete message of an interesting type: `message` is the whole message (type
 * byte and length included), valid only during the call.
 */
export type MessageHandler = (type: number, message: Buffer) => Verdict;

const HEADER = 5;

export class MessageFramer {
  /** Bytes of a split header, carried to the next chunk. */
  private readonly header = Buffer.allocUnsafe(HEADER);
  private headerLength = 0;
  /** Bytes still to stream of a message nobody decodes (or to discard, see `discarding`). */
  private skip = 0;
  /** The message being skipped is an oversized one: its bytes are dropped, not streamed. */
  private discarding = false;
  /** A decoded-type message split across chunks, being filled. */
  private held: Buffer | undefined;
  private heldLength = 0;
  /** Set by `pause()` from a handler: framing stops after the current message. */
  private paused = false;
  /** What followed the message that paused framing, copied; framed again at `resume()`. */
  private rest: Buffer | undefined;

  /**
   * @param interesting 256 flags: which message types `onMessage` must see whole.
   * @param maxMessageBytes cap on any message's declared length (type byte excluded).
   * @param oversize a message of an interesting type longer than its type's entry in `maxBytes`
   *   is never held: its bytes are dropped as they arrive and `onOversize` says what to send in
   *   its place.
   */
  constructor(
    private readonly interesting: Uint8Array,
    private readonly maxMessageBytes: number,
    private readonly onMessage: MessageHandler,
    private readonly direction: 'client' | 'server',
    private readonly oversize?: {
      maxBytes: Float64Array;
      onOversize: (type: number, length: number) => Verdict;
    },
  ) {}

  /** Starts dropping an oversized message; returns the bytes to send in its place, if any. */
  private discard(type: number, length: number, available: number): Buffer | undefined {
    this.skip = 1 + length - available;
    this.discarding = this.skip > 0;
    const verdict = this.oversize!.onOversize(type, length);
    return typeof verdict === 'object' ? verdict : undefined;
  }

  private checkLength(type: number, length: number): void {
    if (length < 4 || length > this.maxMessageBytes) {
      throw new PgwardError(
        'PROTOCOL_VIOLATION',
        length < 4
          ? `invalid message length ${length} from the ${this.direction}`
          : `${this.direction} message of type "${String.fromCharCode(type)}" is ${length} bytes, over the limit of ${this.maxMessageBytes}`,
      );
    }
  }

  /**
   * Stops framing after the message being handled (call it from the handler): the rest of the
   * chunk is kept, and `push` must not be called again until `resume()`.
   */
  pause(): void {
    this.paused = true;
  }

  /** Ends a pause; returns the bytes left unframed, to push again first. */
  resume(): Buffer | undefined {
    this.paused = false;
    const rest = this.rest;
    this.rest = undefined;
    return rest;
  }

  /** Keeps what follows `pos` for `resume()` (the chunk may be a reused read buffer). */
  private stop(chunk: Buffer, pos: number): void {
    if (pos < chunk.length) this.rest = Buffer.from(chunk.subarray(pos));
  }

  /** True when no message is partially received: the stream is at a message boundary. */
  get atBoundary(): boolean {
    return this.skip === 0 && this.held === undefined && this.headerLength === 0;
  }

  /** Consumes a chunk and returns the buffers to forward, in order. */
  push(chunk: Buffer): Buffer[] {
    const out: Buffer[] = [];
    const n = chunk.length;
    let pos = 0;
    let runStart = 0;
    while (pos < n) {
      if (this.skip > 0) {
        const take = Math.min(this.skip, n - pos);
        this.skip -= take;
        pos += take;
        if (this.discarding) {
          runStart = pos;
          this.discarding = this.skip > 0;
        }
        continue;
      }
      const held = this.held;
      if (held !== undefined) {
        const take = Math.min(held.length - this.heldLength, n - pos);
        chunk.copy(held, this.heldLength, pos, pos + take);
        this.heldLength += take;
        pos += take;
        runStart = pos;
        if (this.heldLength === held.length) {
          this.held = undefined;
          const verdict = this.onMessage(held[0]!, held);
          if (verdict === 'forward') out.push(held);
          else if (verdict !== 'drop') out.push(verdict);
          if (this.paused) {
            this.stop(chunk, pos);
            return out;
          }
        }
        continue;
      }
      if (this.headerLength > 0 || n - pos < HEADER) {
        if (pos > runStart) out.push(chunk.subarray(runStart, pos));
        const take = Math.min(HEADER - this.headerLength, n - pos);
        chunk.copy(this.header, this.headerLength, pos, pos + take);
        this.headerLength += take;
        pos += take;
        runStart = pos;
        if (this.headerLength < HEADER) break;
        this.headerLength = 0;
        const type = this.header[0]!;
        const length = int32At(this.header, 1);
        this.checkLength(type, length);
        if (this.interesting[type] === 1) {
          if (this.oversize !== undefined && length > this.oversize.maxBytes[type]!) {
            const instead = this.discard(type, length, HEADER);
            if (instead) out.push(instead);
            continue;
          }
          const message = Buffer.allocUnsafe(1 + length);
          this.header.copy(message, 0, 0, HEADER);
          if (length === 4) {
            const verdict = this.onMessage(type, message);
            if (verdict === 'forward') out.push(message);
            else if (verdict !== 'drop') out.push(verdict);
            if (this.paused) {
              this.stop(chunk, pos);
              return out;
            }
          } else {
            this.held = message;
            this.heldLength = HEADER;
          }
        } else {
          out.push(Buffer.from(this.header));
          this.skip = length - 4;
        }
        continue;
      }
      const type = chunk[pos]!;
      const length = int32At(chunk, pos + 1);
      this.checkLength(type, length);
      const total = 1 + length;
      if (this.interesting[type] !== 1) {
        const available = n - pos;
        if (available >= total) pos += total;
        else {
          this.skip = total - available;
          pos = n;
        }
        continue;
      }
      if (this.oversize !== undefined && length > this.oversize.maxBytes[type]!) {
        if (pos > runStart) out.push(chunk.subarray(runStart, pos));
        const available = Math.min(total, n - pos);
        const instead = this.discard(type, length, available);
        if (instead) out.push(instead);
        pos += available;
        runStart = pos;
        continue;
      }
      if (n - pos >= total) {
        const verdict = this.onMessage(type, chunk.subarray(pos, pos + total));
        if (verdict !== 'forward') {
          if (pos > runStart) out.push(chunk.subarray(runStart, pos));
          if (verdict !== 'drop') out.push(verdict);
          runStart = pos + total;
        }
        pos += total;
        if (this.paused) {
          if (pos > runStart) out.push(chunk.subarray(runStart, pos));
          this.stop(chunk, pos);
          return out;
        }
        continue;
      }
      if (pos > runStart) out.push(chunk.subarray(runStart, pos));
      const message = Buffer.allocUnsafe(total);
      chunk.copy(message, 0, pos, n);
      this.held = message;
      this.heldLength = n - pos;
      pos = n;
      runStart = n;
    }
    if (pos > runStart) out.push(runStart === 0 && pos === n ? chunk : chunk.subarray(runStart, pos));
    return out;
  }
}

/**
 * A big-endian int32 read in place: Buffer's readInt32BE checks its arguments on every call,
 * and this runs for every message relayed. The caller has checked that 4 bytes are there.
 */
function int32At(b: Buffer, p: number): number {
  return (b[p]! << 24) | (b[p + 1]! << 16) | (b[p + 2]! << 8) | b[p + 3]!;
}

/** Builds the 256-flag table of message types to decode. */
export function typeFlags(types: readonly number[]): Uint8Array {
  const flags = new Uint8Array(256);
  for (const t of types) flags[t] = 1;
  return flags;
}
