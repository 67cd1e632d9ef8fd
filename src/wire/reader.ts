/**
 * A simple message reader for the parts that are not the hot path (upstream login, pool resets,
 * client authentication): it queues whole messages, copied out of the chunks it is given (which
 * may be reused after the call), with a size cap.
 */
import { PgwardError } from '../errors.js';

export class MessageReader {
  private buffer: Buffer = Buffer.alloc(0);
  private readonly queue: Buffer[] = [];

  constructor(private readonly maxMessageBytes: number) {}

  /** Adds bytes; complete messages become available through shift(). */
  push(chunk: Buffer): void {
    let data = this.buffer.length === 0 ? chunk : Buffer.concat([this.buffer, chunk]);
    while (data.length >= 5) {
      const length = data.readInt32BE(1);
      if (length < 4 || length > this.maxMessageBytes) {
        throw new PgwardError('PROTOCOL_VIOLATION', `invalid message length ${length}`);
      }
      if (data.length < 1 + length) break;
      this.queue.push(Buffer.from(data.subarray(0, 1 + length)));
      data = data.subarray(1 + length);
    }
    // The chunk may be a read buffer that is reused: keep a copy of the partial message.
    this.buffer = data.length === 0 ? Buffer.alloc(0) : Buffer.from(data);
  }

  shift(): Buffer | undefined {
    return this.queue.shift();
  }

  /** Everything not yet shifted (whole messages, then a partial one), leaving the reader empty. */
  rest(): Buffer {
    const rest = Buffer.concat([...this.queue, this.buffer]);
    this.queue.length = 0;
    this.buffer = Buffer.alloc(0);
    return rest;
  }
}
