/**
 * Audited statements as rows of PostgreSQL's binary COPY format, encoded the moment they are
 * recorded (protocol chapter "COPY Operations", binary file format).
 *
 * Why binary, and why at once: a statement queued as an object lives until its batch is
 * written, long enough to be promoted to V8's old generation, and at ten thousand statements a
 * second that keeps major garbage collections running on the proxy's thread. Encoded into large
 * buffers, a statement leaves no object behind. Binary rows also spare the store the text
 * format's parsing (timestamps, numbers, escapes), its largest cost per row after the insert.
 *
 * Rows go into chunks of CHUNK_BYTES, written front to back; take() hands out the bytes written
 * since the last take as views, and later rows continue after them, so nothing handed out is
 * ever overwritten.
 */
import { randomUUID } from 'node:crypto';
import type { StatementRecord } from './audit_writer.js';

/** The columns of every row, in order. */
export const STATEMENT_COLUMNS =
  'session_id, seq, kind, text, started_at, duration_ms, command_tag, rows, sqlstate, decision, decided_by';
/** The columns of rows spooled before statements carried policy decisions. */
export const STATEMENT_COLUMNS_V1 =
  'session_id, seq, kind, text, started_at, duration_ms, command_tag, rows, sqlstate';
const FIELDS = 11;

const CHUNK_BYTES = 256 * 1024;

/** Binary COPY header: signature, flags (none), header extension length (none). */
export const COPY_HEADER = Buffer.concat([Buffer.from('PGCOPY\n\xff\r\n\0', 'latin1'), Buffer.alloc(8)]);
/** Binary COPY trailer: a field count of -1. */
export const COPY_TRAILER = Buffer.from([0xff, 0xff]);

/** Microseconds from the Unix epoch to PostgreSQL's (2000-01-01 UTC). */
const PG_EPOCH_MICROS = 946_684_800_000_000;
const TWO_32 = 2 ** 32;

/** Bytes a row needs at most, before its strings (each UTF-16 unit is at most 3 UTF-8 bytes). */
const FIXED_BYTES = 2 + FIELDS * 4 + 16 + 4 + 8 + 8 + 8 + 8 + 8;

/** Rows written since the last take, ready to be sent. */
export interface RowBatch {
  /** Names the batch in the store (`pgward.audit_batch`), so a retry of it is recognised. */
  id: string;
  parts: Buffer[];
  rows: number;
  bytes: number;
  /** The column list of rows written by an earlier version (from the spool); else STATEMENT_COLUMNS. */
  columns?: string;
}

/** Rows sealed but not yet taken; `id` is set on a batch that was taken and put back. */
type Pending = Omit<RowBatch, 'id'> & { id?: string };

export class StatementRows {
  private chunk: Buffer = Buffer.allocUnsafe(CHUNK_BYTES);
  /** `chunk` as a DataView: its setters compile to plain stores (Buffer's writers check bounds). */
  private view = viewOf(this.chunk);
  /** Where the next row goes in `chunk`; rows before `start` have been taken. */
  private used = 0;
  private start = 0;
  /** Rows in `chunk` since `start`. */
  private rowsInChunk = 0;
  /** Rows moved out of `chunk` (when it filled up, or at a take) and not yet taken. */
  private sealed: Pending[] = [];
  /** Session ids as 16 bytes, for the sessions recording now. */
  private readonly uuids = new Map<string, Buffer>();

  /** Rows waiting to be taken. */
  rows = 0;
  /** Bytes waiting to be taken. */
  bytes = 0;

  add(r: StatementRecord): void {
    const need =
      FIXED_BYTES +
      3 *
        (r.text.length +
          (r.commandTag?.length ?? 0) +
          (r.sqlstate?.length ?? 0) +
          r.kind.length +
          (r.decision?.length ?? 0) +
          (r.decidedBy?.length ?? 0));
    if (this.chunk.length - this.used < need) this.newChunk(need);
    const b = this.chunk;
    const v = this.view;
    let p = this.used;
    v.setInt16(p, FIELDS);
    p = int32(v, p + 2, 16);
    b.set(this.uuid(r.sessionId), p);
    p = int32(v, p + 16, 4);
    p = int32(v, p, r.seq);
    p = textField(b, v, p, r.kind);
    p = textField(b, v, p, r.text);
    p = int32(v, p, 8);
    p = int64(v, p, Math.round(r.startedAtMs * 1000) - PG_EPOCH_MICROS);
    if (r.durationMs === null) p = int32(v, p, -1);
    else {
      p = int32(v, p, 8);
      v.setFloat64(p, r.durationMs);
      p += 8;
    }
    p = textField(b, v, p, r.commandTag);
    if (r.rows === null) p = int32(v, p, -1);
    else {
      p = int32(v, p, 8);
      p = int64(v, p, r.rows);
    }
    p = textField(b, v, p, r.sqlstate);
    p = textField(b, v, p, r.decision);
    p = textField(b, v, p, r.decidedBy);
    this.bytes += p - this.used;
    this.used = p;
    this.rowsInChunk++;
    this.rows++;
  }

  private uuid(id: string): Buffer {
    let bytes = this.uuids.get(id);
    if (bytes === undefined) {
      if (this.uuids.size >= 10_000) this.uuids.clear();
      bytes = Buffer.from(id.replaceAll('-', ''), 'hex');
      if (bytes.length !== 16) throw new Error(`not a session id: ${id}`);
      this.uuids.set(id, bytes);
    }
    return bytes;
  }

  /** A session ended: its id will not be seen again. */
  forget(sessionId: string): void {
    this.uuids.delete(sessionId);
  }

  private newChunk(need: number): void {
    this.seal();
    this.chunk = Buffer.allocUnsafe(Math.max(CHUNK_BYTES, need));
    this.view = viewOf(this.chunk);
    this.used = 0;
    this.start = 0;
  }

  /** Moves the rows written since the last take into `sealed`. */
  private seal(): void {
    if (this.rowsInChunk === 0) return;
    const part = this.chunk.subarray(this.start, this.used);
    this.sealed.push({ parts: [part], rows: this.rowsInChunk, bytes: part.length });
    this.start = this.used;
    this.rowsInChunk = 0;
  }

  /**
   * Takes whole rows, oldest first, up to about `maxBytes` (at least one part). A batch that was
   * put back comes again alone and under its id: the store may hold it already.
   */
  take(maxBytes: number): RowBatch {
    this.seal();
    const first = this.sealed[0];
    if (first?.id !== undefined) {
      this.sealed.shift();
      this.rows -= first.rows;
      this.bytes -= first.bytes;
      return first as RowBatch;
    }
    const batch: RowBatch = { id: randomUUID(), parts: [], rows: 0, bytes: 0 };
    while (
      this.sealed.length > 0 &&
      this.sealed[0]!.id === undefined &&
      (batch.bytes === 0 || batch.bytes + this.sealed[0]!.bytes <= maxBytes)
    ) {
      const next = this.sealed.shift()!;
      batch.parts.push(...next.parts);
      batch.rows += next.rows;
      batch.bytes += next.bytes;
    }
    this.rows -= batch.rows;
    this.bytes -= batch.bytes;
    return batch;
  }

  /** Puts a batch that could not be written back in front, to be taken again first. */
  putBack(batch: RowBatch): void {
    if (batch.rows === 0) return;
    this.sealed.unshift(batch);
    this.rows += batch.rows;
    this.bytes += batch.bytes;
  }
}

/** A text field at `p`: its UTF-8 length, then the bytes; null as a length of -1. Returns the end. */
function textField(b: Buffer, v: DataView, p: number, value: string | null): number {
  if (value === null) return int32(v, p, -1);
  const written = utf8(b, p + 4, value);
  v.setInt32(p, written);
  return p + 4 + written;
}

function viewOf(b: Buffer): DataView {
  return new DataView(b.buffer, b.byteOffset, b.length);
}

/** Strings this short are tried as ASCII by hand: most SQL and every tag is ASCII. */
const SHORT = 256;

/** Writes a string's UTF-8 bytes at `p` and returns how many. */
function utf8(b: Buffer, p: number, value: string): number {
  const n = value.length;
  if (n <= SHORT) {
    // A call into Buffer.write costs more than copying a short ASCII string in place.
    let i = 0;
    while (i < n) {
      const c = value.charCodeAt(i);
      if (c >= 0x80) break;
      b[p + i] = c;
      i++;
    }
    if (i === n) return n;
  }
  return b.write(value, p, 'utf8');
}

/** Writes a big-endian int4 at `p`; returns the position after it. */
function int32(v: DataView, p: number, value: number): number {
  v.setInt32(p, value);
  return p + 4;
}

/** Writes an integer within ±2^53 as a big-endian int8 (two's complement); returns the end. */
function int64(v: DataView, p: number, value: number): number {
  const high = Math.floor(value / TWO_32);
  v.setInt32(p, high);
  v.setUint32(p + 4, value - high * TWO_32);
  return p + 8;
}
