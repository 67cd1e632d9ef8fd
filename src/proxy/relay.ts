/**
 * The relay of one session once it is logged in: client and target bytes framed into messages,
 * most forwarded untouched as views of what was read (the hot path), the few that matter decoded
 * and handed to the inspectors in order:
 * - client side: each statement (Query, Parse, FunctionCall) is judged by the statement
 *   inspectors (the built-in rules, later policies); a refused one is answered in its place
 *   (see refusals.ts) and, in the extended protocol, the rest of its batch is dropped until
 *   Sync, as PostgreSQL skips it; sizes and prepared-statement counts are capped;
 * - both sides: the session's prepared statements (what each name really runs) and the
 *   statement tracker (the audit) follow requests and answers.
 * A verdict can forward a message, drop it, or replace it with other bytes; reviews (a held
 * statement) and masking (rewritten rows) plug in as further inspectors on the same two paths.
 */
import type { StatementTracker } from '../audit/statement_tracker.js';
import { PgwardError } from '../errors.js';
import type { Refusal } from '../policy/classification.js';
import type { UpstreamConnection } from '../upstream/upstream.js';
import * as decode from '../wire/decode.js';
import { MessageFramer, typeFlags, type Verdict } from '../wire/framer.js';
import { type CapExceeded, PreparedStatements } from '../wire/prepared_statements.js';
import { BE, FE } from '../wire/protocol.js';
import type { SocketInput } from '../wire/socket_input.js';
import { fastPathFunction, fastPathText } from './fast_path.js';
import { Refusals } from './refusals.js';
import { type Judgement, tooLong } from './statement_guard.js';

/** Judges each statement text before it is forwarded; undefined lets it through. */
export type StatementInspector = (text: string) => Judgement | undefined;

/** Client message types the relay decodes; everything else streams through. */
const CLIENT_TYPES = typeFlags([
  FE.QUERY,
  FE.PARSE,
  FE.BIND,
  FE.EXECUTE,
  FE.FUNCTION_CALL,
  FE.SYNC,
  FE.CLOSE,
  FE.TERMINATE,
]);
/** Server message types the relay decodes. */
const SERVER_TYPES = typeFlags([
  BE.COMMAND_COMPLETE,
  BE.EMPTY_QUERY,
  BE.PORTAL_SUSPENDED,
  BE.ERROR,
  BE.READY_FOR_QUERY,
  BE.PARAMETER_STATUS,
  BE.PARSE_COMPLETE,
  BE.BIND_COMPLETE,
  BE.CLOSE_COMPLETE,
]);
const MAX_SERVER_MESSAGE = 2 ** 31 - 1;
/** A Parse holds its parameter types besides the text: up to 65,535 OIDs of 4 bytes. */
const PARSE_OVERHEAD = 4 * 65_535 + 1024;

export interface RelayOptions {
  client: import('node:net').Socket;
  /** The client's bytes (the socket's, or its TLS layer's). */
  input: SocketInput;
  upstream: UpstreamConnection;
  tracker: StatementTracker;
  inspectors: readonly StatementInspector[];
  /**
   * Whether statements may run at all now (the audit can make them durable); a refusal is
   * answered in place of each Query, Parse and FunctionCall while it says no.
   */
  admit(): Refusal | undefined;
  maxMessageBytes: number;
  /** Longest statement text pgward records and runs (audit.maxStatementBytes). */
  maxStatementBytes: number;
  /** The client ended the session (Terminate or close). */
  onClientGone(terminated: boolean): void;
  /** The target closed the connection. */
  onUpstreamGone(): void;
  /** The client broke the protocol: end the session with this error. */
  onClientViolation(err: PgwardError): void;
  /** The target broke the protocol. */
  onTargetViolation(message: string): void;
  /** Bytes counted for the session record. */
  counted(bytesIn: number, bytesOut: number): void;
}

function capRefusal(cap: CapExceeded): Refusal {
  return {
    sqlstate: '54000',
    message: `too many ${cap.what} in this session (at most ${cap.limit})`,
    detail: 'pgward error LIMIT_EXCEEDED',
    hint:
      cap.what === 'portals'
        ? 'close portals you no longer need, or end the transaction'
        : 'close prepared statements you no longer need (Close, or DEALLOCATE)',
    rule: `builtin: ${cap.what} per session`,
  };
}

function fastPathRefusal(oid: number): Refusal {
  return {
    sqlstate: '42501',
    message: `pgward does not run the function with OID ${oid} through the fast-path interface`,
    detail: 'pgward error POLICY_DENIED',
    hint: 'call the function in a query (SELECT ...); only large-object functions may use FunctionCall',
    rule: 'builtin: fast-path function call',
  };
}

export class Relay {
  private readonly prepared = new PreparedStatements();
  private readonly refusals = new Refusals();
  /** Batches sent to the target: each Query, FunctionCall and Sync ends one. */
  private batches = 0;
  /** After a refusal in the extended protocol: drop the client's messages until Sync. */
  private skipping = false;
  private terminated = false;
  private readonly clientFramer: MessageFramer;
  private readonly serverFramer: MessageFramer;

  constructor(private readonly o: RelayOptions) {
    const caps = new Float64Array(256).fill(Number.POSITIVE_INFINITY);
    caps[FE.QUERY] = o.maxStatementBytes + 5;
    caps[FE.PARSE] = o.maxStatementBytes + PARSE_OVERHEAD;
    this.clientFramer = new MessageFramer(CLIENT_TYPES, o.maxMessageBytes, this.onClientMessage, 'client', {
      maxBytes: caps,
      onOversize: this.onOversize,
    });
    this.serverFramer = new MessageFramer(SERVER_TYPES, MAX_SERVER_MESSAGE, this.onServerMessage, 'server');
  }

  /** True while requests await their answers (the session is mid-query). */
  get busy(): boolean {
    return this.o.tracker.busy;
  }

  // ---- client side ----------------------------------------------------------------------------

  private judge(text: string): Judgement | undefined {
    for (const inspect of this.o.inspectors) {
      const judgement = inspect(text);
      if (judgement) return judgement;
    }
    return undefined;
  }

  /** A refused Query or FunctionCall: the target reports the refusal and ends the batch. */
  private refuseSimple(refusal: Refusal, text: string): Buffer {
    this.o.tracker.request('simple', text, true);
    const bytes = this.refusals.inject(refusal, true, this.batches);
    this.ended();
    return bytes;
  }

  /** A refused Parse or Bind: the target reports the refusal; the rest waits for Sync. */
  private refuseExtended(refusal: Refusal, text: string): Buffer {
    this.o.tracker.request('extended', text, true);
    this.skipping = true;
    return this.refusals.inject(refusal, false, this.batches);
  }

  /** A batch was sent to the target (its ReadyForQuery will end it). */
  private ended(): void {
    this.batches++;
    this.prepared.synced();
  }

  private readonly onClientMessage = (type: number, message: Buffer): Verdict => {
    switch (type) {
      case FE.QUERY: {
        // PostgreSQL ignores a Query while it skips to Sync; so does the relay.
        if (this.skipping) return 'drop';
        const text = decode.queryText(message);
        const judgement = this.judge(text);
        const recorded = judgement?.recordAs ?? text;
        const refusal = judgement?.refusal ?? this.o.admit();
        if (refusal) return this.refuseSimple(refusal, recorded);
        this.o.tracker.request('simple', recorded);
        this.ended();
        return 'forward';
      }
      case FE.PARSE: {
        if (this.skipping) return 'drop';
        const { name, text } = decode.parseMessage(message);
        const bytes = Buffer.byteLength(text);
        if (bytes > this.o.maxStatementBytes)
          return this.refuseExtended(tooLong(bytes, this.o.maxStatementBytes), omitted(bytes));
        const judgement = this.judge(text);
        const recorded = judgement?.recordAs ?? text;
        const refusal = judgement?.refusal ?? this.o.admit();
        if (refusal) return this.refuseExtended(refusal, recorded);
        const cap = this.prepared.checkParse(name, recorded);
        if (cap) return this.refuseExtended(capRefusal(cap), recorded);
        this.prepared.parse(name, recorded);
        return 'forward';
      }
      case FE.BIND: {
        if (this.skipping) return 'drop';
        const { portal, statement } = decode.bindMessage(message);
        const cap = this.prepared.checkBind(portal);
        if (cap) return this.refuseExtended(capRefusal(cap), this.prepared.statement(statement) ?? '');
        this.prepared.bind(portal, statement);
        return 'forward';
      }
      case FE.EXECUTE: {
        if (this.skipping) return 'drop';
        const text = this.prepared.portal(decode.executePortal(message));
        this.o.tracker.request('extended', text ?? '(portal does not exist)');
        return 'forward';
      }
      case FE.FUNCTION_CALL: {
        if (this.skipping) return 'drop';
        const oid = decode.functionCallOid(message);
        const text = fastPathText(oid);
        if (!fastPathFunction(oid)) return this.refuseSimple(fastPathRefusal(oid), text);
        const closed = this.o.admit();
        if (closed) return this.refuseSimple(closed, text);
        this.o.tracker.request('function', text);
        this.ended();
        return 'forward';
      }
      case FE.SYNC:
        this.skipping = false;
        this.o.tracker.request('sync', '');
        this.ended();
        return 'forward';
      case FE.CLOSE: {
        if (this.skipping) return 'drop';
        const { kind, name } = decode.closeMessage(message);
        this.prepared.close(kind, name);
        return 'forward';
      }
      case FE.TERMINATE:
        this.terminated = true;
        return 'drop';
    }
    return 'forward';
  };

  /** A Query or Parse longer than any statement pgward runs: dropped unread, and refused. */
  private readonly onOversize = (type: number, length: number): Verdict => {
    const bytes = length - 4;
    const refusal = tooLong(bytes, this.o.maxStatementBytes);
    if (type === FE.QUERY) return this.skipping ? 'drop' : this.refuseSimple(refusal, omitted(bytes));
    return this.skipping ? 'drop' : this.refuseExtended(refusal, omitted(bytes));
  };

  // ---- server side ----------------------------------------------------------------------------

  private readonly onServerMessage = (type: number, message: Buffer): Verdict => {
    const { upstream, tracker } = this.o;
    switch (type) {
      case BE.READY_FOR_QUERY: {
        const status = decode.readyStatus(message);
        upstream.status = status;
        this.prepared.ready(status);
        this.refusals.ready();
        break;
      }
      case BE.ERROR: {
        this.prepared.failed();
        const instead = this.refusals.active ? this.refusals.replace(message) : undefined;
        if (instead) {
          tracker.onServer(type, instead);
          return instead;
        }
        break;
      }
      case BE.PARSE_COMPLETE:
      case BE.BIND_COMPLETE:
      case BE.CLOSE_COMPLETE:
        this.prepared.confirmed();
        return 'forward';
      case BE.COMMAND_COMPLETE: {
        const tag = decode.commandTag(message);
        if (tag === 'DISCARD ALL' || tag === 'DEALLOCATE ALL') this.prepared.deallocateAll();
        break;
      }
      case BE.PARAMETER_STATUS:
        upstream.parameterStatus(message);
        return 'forward';
    }
    tracker.onServer(type, message);
    return 'forward';
  };

  // ---- wiring ---------------------------------------------------------------------------------

  /**
   * Starts relaying. `pendingServer`: what the target sent after its last ReadyForQuery in
   * control mode (a notification); `earlyClient`: what the client sent before the welcome.
   */
  start(pendingServer: Buffer, earlyClient: Buffer): void {
    const { client, input, upstream } = this.o;
    const up = upstream.socket;
    const forward = (segments: Buffer[], from: SocketInput, to: typeof client, source: typeof client) => {
      if (!from.write(to, segments) && !source.isPaused()) {
        source.pause();
        to.once('drain', () => source.resume());
      }
    };
    const onClientData = (chunk: Buffer) => {
      this.o.counted(chunk.length, 0);
      let segments: Buffer[];
      try {
        segments = this.clientFramer.push(chunk);
      } catch (err) {
        this.o.onClientViolation(
          err instanceof PgwardError ? err : new PgwardError('PROTOCOL_VIOLATION', (err as Error).message),
        );
        return;
      }
      forward(segments, input, up, client);
      if (this.terminated) this.o.onClientGone(true);
    };
    const onServerData = (chunk: Buffer) => {
      this.o.counted(0, chunk.length);
      let segments: Buffer[];
      try {
        segments = this.serverFramer.push(chunk);
      } catch (err) {
        this.o.onTargetViolation((err as Error).message);
        return;
      }
      forward(segments, upstream.input, client, up);
    };
    const onUpstreamClose = () => this.o.onUpstreamGone();
    input.onChunk = onClientData;
    client.on('close', () => this.o.onClientGone(this.terminated));
    client.on('error', () => undefined);
    upstream.input.onChunk = onServerData;
    up.on('close', onUpstreamClose);
    this.detach = () => {
      upstream.input.onChunk = () => undefined;
      up.removeListener('close', onUpstreamClose);
      if (up.isPaused()) up.resume();
      input.onChunk = () => undefined;
      return this.serverFramer.atBoundary && this.clientFramer.atBoundary && !this.skipping;
    };
    if (pendingServer.length > 0) onServerData(pendingServer);
    if (earlyClient.length > 0) {
      this.o.counted(-earlyClient.length, 0);
      onClientData(earlyClient);
    }
    client.resume();
  }

  /** Stops relaying; true when both directions are at a message boundary (the upstream is reusable). */
  detach: () => boolean = () => true;
}

/** What the audit records for a statement too long to keep: its size, never a cut text. */
function omitted(bytes: number): string {
  return `(statement of ${bytes} bytes not recorded: longer than audit.maxStatementBytes)`;
}
