/**
 * Follows one relayed session's requests and responses to record each statement: Query text
 * (simple protocol), Parse text for each Execute (extended protocol; bind parameter values are
 * never read), duration, command tag, rows and SQLSTATE. Pure logic over decoded messages:
 * responses arrive in request order, so a FIFO of pending requests pairs them (protocol
 * section "Extended Query": after an error the server skips to the next Sync).
 */
import { performance } from 'node:perf_hooks';
import * as decode from '../wire/decode.js';
import { BE, FE } from '../wire/protocol.js';
import { MAX_STATEMENT_TEXT, type StatementRecord } from './audit_writer.js';
import { WallClock } from './wall_clock.js';

interface Pending {
  kind: 'simple' | 'extended' | 'function' | 'sync';
  text: string;
  /** performance.now() when the request was forwarded. */
  t0: number;
  tag: string | null;
  rows: number | null;
  sqlstate: string | null;
}

/** One for all sessions: it reads the wall clock once a second. */
const wallClock = new WallClock();

/** Prepared statements and portals whose text is remembered, per session. */
const MAX_TRACKED_NAMES = 10_000;

function cap(text: string): string {
  return text.length > MAX_STATEMENT_TEXT
    ? `${text.slice(0, MAX_STATEMENT_TEXT)}… [cut at ${MAX_STATEMENT_TEXT} characters]`
    : text;
}

export class StatementTracker {
  private seq = 0;
  private readonly pending: Pending[] = [];
  private readonly prepared = new Map<string, string>();
  private readonly portals = new Map<string, string>();

  constructor(
    private readonly sessionId: string,
    private readonly emit: (record: StatementRecord) => void,
  ) {}

  /** True while requests await their responses (the session is mid-query). */
  get busy(): boolean {
    return this.pending.length > 0;
  }

  private push(kind: Pending['kind'], text: string): void {
    this.pending.push({
      kind,
      text,
      t0: performance.now(),
      tag: null,
      rows: null,
      sqlstate: null,
    });
  }

  private remember(map: Map<string, string>, name: string, text: string): void {
    if (map.size >= MAX_TRACKED_NAMES && !map.has(name)) return;
    map.set(name, text);
  }

  /** A message from the client, before it is forwarded. */
  onClient(type: number, message: Buffer): void {
    switch (type) {
      case FE.QUERY:
        this.push('simple', cap(decode.queryText(message)));
        break;
      case FE.PARSE: {
        const { name, text } = decode.parseMessage(message);
        this.remember(this.prepared, name, cap(text));
        break;
      }
      case FE.BIND: {
        const { portal, statement } = decode.bindMessage(message);
        this.remember(this.portals, portal, this.prepared.get(statement) ?? '(unknown prepared statement)');
        break;
      }
      case FE.EXECUTE:
        this.push('extended', this.portals.get(decode.executePortal(message)) ?? '(unknown portal)');
        break;
      case FE.FUNCTION_CALL:
        this.push('function', '(function call)');
        break;
      case FE.SYNC:
        this.push('sync', '');
        break;
      case FE.CLOSE: {
        const { kind, name } = decode.closeMessage(message);
        (kind === 'S' ? this.prepared : this.portals).delete(name);
        break;
      }
    }
  }

  private finish(entry: Pending): void {
    const now = performance.now();
    const elapsed = now - entry.t0;
    this.emit({
      sessionId: this.sessionId,
      seq: ++this.seq,
      kind: entry.kind === 'sync' ? 'extended' : entry.kind,
      text: entry.text,
      // Wall-clock time, like the session's own start and end: the monotonic clock's origin
      // drifts from it over a long-running process (clock steps and slews).
      startedAtMs: wallClock.at(now) - elapsed,
      durationMs: Math.round(elapsed * 1000) / 1000,
      commandTag: entry.tag,
      rows: entry.rows,
      sqlstate: entry.sqlstate,
    });
  }

  /** A message from the server, before it is forwarded. */
  onServer(type: number, message: Buffer): void {
    const head = this.pending[0];
    if (!head) return;
    switch (type) {
      case BE.COMMAND_COMPLETE:
      case BE.EMPTY_QUERY:
      case BE.PORTAL_SUSPENDED: {
        const tag =
          type === BE.COMMAND_COMPLETE
            ? decode.commandTag(message)
            : type === BE.EMPTY_QUERY
              ? ''
              : 'SUSPENDED';
        head.tag = tag;
        const rows = decode.tagRows(tag);
        if (rows !== undefined) head.rows = (head.kind === 'simple' ? (head.rows ?? 0) : 0) + rows;
        if (head.kind === 'extended') this.finish(this.pending.shift()!);
        break;
      }
      case BE.ERROR: {
        if (head.kind === 'sync') break;
        head.sqlstate = decode.errorFields(message).get('C') ?? 'XX000';
        if (head.kind === 'extended') this.finish(this.pending.shift()!);
        break;
      }
      case BE.READY_FOR_QUERY: {
        if (head.kind === 'simple' || head.kind === 'function') {
          this.finish(this.pending.shift()!);
          break;
        }
        // End of an extended batch: Executes the server skipped after an error were not run.
        while (this.pending.length > 0) {
          const entry = this.pending.shift()!;
          if (entry.kind === 'sync') break;
        }
        break;
      }
    }
  }
}
