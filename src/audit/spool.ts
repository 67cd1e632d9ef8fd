/**
 * The audit spool: an append-only file in the data dir that holds the audit batches the store
 * could not take, until they are replayed into it, oldest first. Each batch is one frame,
 *
 *   magic "PWS1" | payload length (uint32 BE) | CRC-32 of the payload (uint32 BE) | payload
 *
 * written with one write and made durable with fsync before append() returns, so a frame is
 * either wholly there or detectably not: a torn tail (the process or the machine died during a
 * write) fails its length or checksum, is logged and cut off when the spool is opened, and the
 * frames before it replay. The file is capped at `maxBytes`; a batch that does not fit is
 * refused (the writer keeps it in memory and stops accepting new records).
 *
 * All file operations are synchronous: they happen only while the store is unreachable, and a
 * synchronous append is what lets a shutdown spool its queue after its deadline, and lets two
 * appends never interleave.
 */
import {
  closeSync,
  fstatSync,
  fsyncSync,
  ftruncateSync,
  mkdirSync,
  openSync,
  readSync,
  writeSync,
} from 'node:fs';
import path from 'node:path';
import { crc32 } from 'node:zlib';
import type { Logger } from '../log/logger.js';
import type { SessionEnd, SessionStart } from './audit_writer.js';
import { type RowBatch, STATEMENT_COLUMNS_V1 } from './statement_rows.js';

export const SPOOL_FILE = 'audit.spool';
const MAGIC = Buffer.from('PWS1', 'latin1');
const HEADER_BYTES = 12;
/** No frame is larger (a batch carries at most 8 MiB of statements and its sessions). */
const MAX_FRAME_BYTES = 256 * 1024 * 1024;
/** Below this much room (or a 16th of the cap) the spool counts as full. */
const MIN_ROOM_BYTES = 1024 * 1024;

/** One batch of the audit writer: sessions started, statements, sessions ended. */
export interface AuditBatch {
  starts: SessionStart[];
  statements: RowBatch;
  ends: SessionEnd[];
}

/** A frame read back: its batch, where the next frame starts, and how many records it holds. */
export interface SpoolFrame {
  batch: AuditBatch;
  next: number;
  records: number;
}

/** Records (sessions and statements) in a batch. */
export function recordsOf(batch: AuditBatch): number {
  return batch.starts.length + batch.statements.rows + batch.ends.length;
}

/** A batch as a frame's payload: its JSON part's length, the JSON part, then the COPY rows. */
export function encodeBatch(batch: AuditBatch): Buffer {
  const head = Buffer.from(
    JSON.stringify({
      v: 2,
      starts: batch.starts,
      ends: batch.ends,
      statements: { id: batch.statements.id, rows: batch.statements.rows },
    }),
    'utf8',
  );
  const length = Buffer.alloc(4);
  length.writeUInt32BE(head.length);
  return Buffer.concat([length, head, ...batch.statements.parts]);
}

/** The inverse of encodeBatch; throws on a payload it did not write. */
export function decodeBatch(payload: Buffer): AuditBatch {
  const headLength = payload.readUInt32BE(0);
  const head = JSON.parse(payload.toString('utf8', 4, 4 + headLength)) as {
    v: number;
    starts: (Omit<SessionStart, 'startedAt'> & { startedAt: string })[];
    ends: (Omit<SessionEnd, 'endedAt'> & { endedAt: string })[];
    statements: { id: string; rows: number };
  };
  if (head.v !== 1 && head.v !== 2) throw new Error(`unknown spool record version ${head.v}`);
  const rows = payload.subarray(4 + headLength);
  return {
    starts: head.starts.map((s) => ({ ...s, startedAt: new Date(s.startedAt) })),
    ends: head.ends.map((e) => ({ ...e, endedAt: new Date(e.endedAt) })),
    statements: {
      id: head.statements.id,
      parts: rows.length > 0 ? [rows] : [],
      rows: head.statements.rows,
      bytes: rows.length,
      // Version 1 rows predate the policy decision columns.
      ...(head.v === 1 ? { columns: STATEMENT_COLUMNS_V1 } : {}),
    },
  };
}

/** What the spool holds now (for health and metrics). */
export interface SpoolStatus {
  /** Whether the file could be opened; if not, nothing can be spooled. */
  usable: boolean;
  /** Bytes and records not yet replayed into the store. */
  bytes: number;
  records: number;
  maxBytes: number;
  /** Less than 1 MiB of room left, or the last batch did not fit. */
  full: boolean;
  /** Frames found damaged and skipped since start (their records are lost, and logged). */
  skippedFrames: number;
}

export class AuditSpool {
  private fd: number | undefined;
  /** Size of the file: where the next frame goes. */
  private size = 0;
  /** Where replay continues; frames before it are in the store. */
  private replayedTo = 0;
  /** Records in frames after `replayedTo`. */
  private pendingRecords = 0;
  private refusedForRoom = false;
  private skipped = 0;
  /** Offsets of damaged frames found by open(): replay steps over them without counting again. */
  private readonly damaged = new Set<number>();
  readonly file: string;

  constructor(
    dir: string,
    private readonly maxBytes: number,
    private readonly log: Logger,
  ) {
    this.file = path.join(dir, SPOOL_FILE);
  }

  /**
   * Opens (or creates) the spool file and checks every frame: a damaged tail is cut off, with a
   * log line. Returns false (logged) when the file cannot be opened: then nothing is spooled.
   */
  open(): boolean {
    try {
      mkdirSync(path.dirname(this.file), { recursive: true, mode: 0o700 });
      // Statement texts are sensitive: the file is its owner's only.
      this.fd = openSync(this.file, 'a+', 0o600);
      closeSync(this.fd);
      this.fd = openSync(this.file, 'r+');
      this.size = fstatSync(this.fd).size;
    } catch (err) {
      this.fd = undefined;
      this.log.error({ err: (err as Error).message, file: this.file }, 'cannot open the audit spool');
      return false;
    }
    this.scan();
    if (this.pendingRecords > 0)
      this.log.warn(
        { records: this.pendingRecords, bytes: this.size },
        'the audit spool holds records from an earlier run; they are replayed into the store',
      );
    return true;
  }

  /** Walks the frames; cuts the file after the last whole one. */
  private scan(): void {
    let offset = 0;
    let records = 0;
    while (offset < this.size) {
      const frame = this.readAt(offset);
      if (frame === 'torn') {
        this.log.error(
          { offset, bytes: this.size - offset, file: this.file },
          'the audit spool ends in a torn record (written when the process died); it is skipped',
        );
        this.skipped++;
        ftruncateSync(this.fd!, offset);
        fsyncSync(this.fd!);
        this.size = offset;
        break;
      }
      if (frame === 'damaged') {
        // A whole frame whose checksum fails: skip it, keep the frames after it.
        const length = this.header(offset)!.length;
        this.log.error({ offset, file: this.file }, 'a damaged audit spool record is skipped');
        this.skipped++;
        this.damaged.add(offset);
        offset += HEADER_BYTES + length;
        continue;
      }
      records += frame.records;
      offset = frame.next;
    }
    this.replayedTo = 0;
    this.pendingRecords = records;
  }

  private header(offset: number): { length: number; checksum: number } | undefined {
    if (this.size - offset < HEADER_BYTES) return undefined;
    const head = Buffer.alloc(HEADER_BYTES);
    readSync(this.fd!, head, 0, HEADER_BYTES, offset);
    if (!head.subarray(0, 4).equals(MAGIC)) return undefined;
    const length = head.readUInt32BE(4);
    if (length > MAX_FRAME_BYTES || offset + HEADER_BYTES + length > this.size) return undefined;
    return { length, checksum: head.readUInt32BE(8) };
  }

  /** The frame at `offset`; 'torn' when its header or length is not whole, 'damaged' on a bad checksum. */
  private readAt(offset: number): SpoolFrame | 'torn' | 'damaged' {
    const head = this.header(offset);
    if (!head) return 'torn';
    const payload = Buffer.alloc(head.length);
    readSync(this.fd!, payload, 0, head.length, offset + HEADER_BYTES);
    if (crc32(payload) !== head.checksum) {
      // The last frame, cut short by zero-filled blocks after a power loss, is a torn tail too.
      return offset + HEADER_BYTES + head.length === this.size ? 'torn' : 'damaged';
    }
    let batch: AuditBatch;
    try {
      batch = decodeBatch(payload);
    } catch {
      return 'damaged';
    }
    return { batch, next: offset + HEADER_BYTES + head.length, records: recordsOf(batch) };
  }

  /** Appends a batch as one frame and fsyncs it. False (logged once) if it does not fit or fails. */
  append(batch: AuditBatch): boolean {
    if (this.fd === undefined) return false;
    const payload = encodeBatch(batch);
    if (this.size + HEADER_BYTES + payload.length > this.maxBytes) {
      if (!this.refusedForRoom)
        this.log.error(
          { bytes: this.size, maxBytes: this.maxBytes },
          'the audit spool is full (audit.spoolMaxBytes): new sessions and statements are refused',
        );
      this.refusedForRoom = true;
      return false;
    }
    const head = Buffer.alloc(HEADER_BYTES);
    MAGIC.copy(head, 0);
    head.writeUInt32BE(payload.length, 4);
    head.writeUInt32BE(crc32(payload), 8);
    const frame = Buffer.concat([head, payload]);
    try {
      let written = 0;
      while (written < frame.length)
        written += writeSync(this.fd, frame, written, frame.length - written, this.size + written);
      fsyncSync(this.fd);
    } catch (err) {
      this.log.error({ err: (err as Error).message, file: this.file }, 'cannot write the audit spool');
      // Whatever part was written is cut off again, so the next frame starts clean.
      try {
        ftruncateSync(this.fd, this.size);
      } catch {}
      return false;
    }
    this.size += frame.length;
    this.pendingRecords += recordsOf(batch);
    return true;
  }

  /** The next frame to replay, or undefined when everything is replayed. Damaged frames are skipped. */
  next(): SpoolFrame | undefined {
    while (this.fd !== undefined && this.replayedTo < this.size) {
      const frame = this.readAt(this.replayedTo);
      if (typeof frame === 'object') return frame;
      if (!this.damaged.has(this.replayedTo)) {
        // Checked at open; only a file changed under us gets here.
        this.log.error({ offset: this.replayedTo }, 'a damaged audit spool record is skipped');
        this.skipped++;
      }
      const head = this.header(this.replayedTo);
      this.replayedTo = head ? this.replayedTo + HEADER_BYTES + head.length : this.size;
    }
    return undefined;
  }

  /** The frame that next() returned is in the store; once all are, the file is emptied. */
  replayed(frame: SpoolFrame): void {
    this.replayedTo = frame.next;
    this.pendingRecords = Math.max(0, this.pendingRecords - frame.records);
    if (this.replayedTo >= this.size) this.clear();
  }

  private clear(): void {
    if (this.fd === undefined) return;
    ftruncateSync(this.fd, 0);
    fsyncSync(this.fd);
    this.size = 0;
    this.replayedTo = 0;
    this.pendingRecords = 0;
    this.damaged.clear();
    this.refusedForRoom = false;
  }

  /** Whether frames wait to be replayed. */
  get pending(): boolean {
    return this.replayedTo < this.size;
  }

  status(): SpoolStatus {
    return {
      usable: this.fd !== undefined,
      bytes: this.size - this.replayedTo,
      records: this.pendingRecords,
      maxBytes: this.maxBytes,
      full: this.refusedForRoom || this.maxBytes - this.size < Math.min(MIN_ROOM_BYTES, this.maxBytes / 16),
      skippedFrames: this.skipped,
    };
  }

  close(): void {
    if (this.fd === undefined) return;
    closeSync(this.fd);
    this.fd = undefined;
  }
}
