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
import type { AuditDecision } from '../policy/builtin_rules.js';
import type { Refusal } from '../policy/classification.js';
import { rowLimitRefusal } from '../policy/policy_rules.js';
import type { UpstreamConnection } from '../upstream/upstream.js';
import * as decode from '../wire/decode.js';
import * as encode from '../wire/encode.js';
import { MessageFramer, typeFlags, type Verdict } from '../wire/framer.js';
import { type CapExceeded, PreparedStatements } from '../wire/prepared_statements.js';
import { BE, FE } from '../wire/protocol.js';
import type { SocketInput } from '../wire/socket_input.js';
import { ClientHold } from './client_hold.js';
import { fastPathFunction, fastPathText } from './fast_path.js';
import type { PolicyInspector } from './policy_inspector.js';
import { Refusals } from './refusals.js';
import { LimitedResult } from './result_limit.js';
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
  BE.COPY_IN_RESPONSE,
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
  /** The built-in rules (and any other inspector that only judges texts), in order. */
  inspectors: readonly StatementInspector[];
  /** The policies that apply to the session now. */
  policy: PolicyInspector;
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

/** The audit decision of a refusal by a built-in rule (or the audit gate). */
function refusedByBuiltin(refusal: Refusal): AuditDecision {
  return {
    decision: 'refused',
    decidedBy: JSON.stringify([
      { policy: 'builtin', rule: refusal.rule, outcome: 'refused', message: refusal.message },
    ]),
  };
}

const FLUSH = encode.flush();

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
  /** This relay's own copy: row counting turns DataRow and CopyData on only while a limit counts. */
  private readonly serverTypes = SERVER_TYPES.slice();
  /** This relay's own copy: CopyDone and CopyFail are looked at only while the target copies in. */
  private readonly clientTypes = CLIENT_TYPES.slice();
  /** Syncs forwarded since the last Query or Execute (a COPY FROM STDIN may make them void). */
  private syncsSinceRequest = 0;
  /** The target is in COPY FROM STDIN mode: it ignores Syncs until CopyDone or CopyFail. */
  private copyingIn = false;
  /** The result being counted against a row limit; client input is held until it ends. */
  private limited: LimitedResult | undefined;
  /** Client input held behind a counted result. */
  private readonly hold: ClientHold;
  /** The original ReadyForQuery of a result cut at its row limit is dropped (the injected one ends it). */
  private dropReady = false;
  /** A counted Execute was forwarded: the client's next message decides how its result is held. */
  private nextDecides = false;
  private clientData: (chunk: Buffer, replay: boolean) => void = () => undefined;

  constructor(private readonly o: RelayOptions) {
    const caps = new Float64Array(256).fill(Number.POSITIVE_INFINITY);
    caps[FE.QUERY] = o.maxStatementBytes + 5;
    caps[FE.PARSE] = o.maxStatementBytes + PARSE_OVERHEAD;
    this.clientFramer = new MessageFramer(
      this.clientTypes,
      o.maxMessageBytes,
      this.onClientMessage,
      'client',
      {
        maxBytes: caps,
        onOversize: this.onOversize,
      },
    );
    this.serverFramer = new MessageFramer(
      this.serverTypes,
      MAX_SERVER_MESSAGE,
      this.onServerMessage,
      'server',
    );
    this.hold = new ClientHold(this.clientFramer, o.client, (chunk) => this.clientData(chunk, true));
  }

  /** True while requests await their answers (the session is mid-query). */
  get busy(): boolean {
    return this.o.tracker.busy;
  }

  // ---- client side ----------------------------------------------------------------------------

  /** The built-in rules first (they protect pgward itself), then the policies. */
  private judge(text: string, query: boolean): Judgement | undefined {
    let builtin: Judgement | undefined;
    for (const inspect of this.o.inspectors) {
      builtin = inspect(text);
      if (builtin) break;
    }
    if (builtin?.refusal) return { ...builtin, decision: refusedByBuiltin(builtin.refusal) };
    const policy = query ? this.o.policy.judgeQuery(text) : this.o.policy.judgeParse(text);
    if (!policy) return builtin;
    return builtin?.recordAs === undefined ? policy : { ...policy, recordAs: builtin.recordAs };
  }

  /** A refused Query or FunctionCall: the target reports the refusal and ends the batch. */
  private refuseSimple(refusal: Refusal, text: string, decision?: AuditDecision): Buffer {
    this.o.tracker.request('simple', text, true, decision ?? refusedByBuiltin(refusal));
    const bytes = this.refusals.inject(refusal, true, this.batches);
    this.ended();
    return bytes;
  }

  /** A refused Parse or Bind: the target reports the refusal; the rest waits for Sync. */
  private refuseExtended(refusal: Refusal, text: string, decision?: AuditDecision): Buffer {
    this.o.tracker.request('extended', text, true, decision ?? refusedByBuiltin(refusal));
    this.skipping = true;
    return this.refusals.inject(refusal, false, this.batches);
  }

  /**
   * A Query or Execute whose result a row limit counts. A cut-off result must fail where
   * PostgreSQL's own error would (the transaction aborted, the rest of an extended batch
   * skipped), so what the client sends after it waits until the result ends, unless that is the
   * Sync ending the batch: then the Sync goes on with it (no extra round trip) and what follows
   * the Sync waits for its ReadyForQuery.
   */
  private countResult(query: boolean): void {
    const limit = this.o.policy.rowLimit();
    const observed = this.o.policy.set.observedRowLimits;
    if (limit === undefined && observed.length === 0) return;
    this.limited = new LimitedResult(limit, observed, query);
    this.serverTypes[BE.DATA_ROW] = 1;
    this.serverTypes[BE.COPY_DATA] = 1;
    if (query) this.hold.after();
    else this.nextDecides = true;
  }

  /**
   * The message after a counted Execute: a Sync goes with it (the result then ends at the
   * ReadyForQuery); anything else waits for the result's end, and a Flush goes in its place so
   * that the target sends the result now.
   */
  private afterCountedExecute(type: number, message: Buffer): Verdict | undefined {
    this.nextDecides = false;
    const limited = this.limited;
    if (limited === undefined) return undefined;
    if (type === FE.SYNC) {
      this.hold.after();
      limited.endsAtReady = true;
      return undefined;
    }
    this.hold.before(message);
    return FLUSH;
  }

  /**
   * The counted result ended: client input flows again once the message that ended it has been
   * handled (what waited is framed then, in order).
   */
  private resultEnded(): void {
    this.limited = undefined;
    this.nextDecides = false;
    this.serverTypes[BE.DATA_ROW] = 0;
    this.serverTypes[BE.COPY_DATA] = 0;
    queueMicrotask(() => this.hold.release());
  }

  /**
   * A result went past its row limit and its end was dropped: the target is made to fail right
   * there (an Execute of a portal that cannot exist), and its error becomes the limit's. When a
   * ReadyForQuery ends the result (a Query, or an Execute whose Sync went along), that one is
   * dropped and the failure's own ends it.
   */
  private cutOff(limited: LimitedResult): void {
    const refusal = rowLimitRefusal(limited.limit!);
    this.o.tracker.amend(limited.decision());
    const up = this.o.upstream.socket;
    if (limited.endsAtReady) {
      up.write(this.refusals.inject(refusal, true, this.batches));
      this.ended();
      this.dropReady = true;
    } else {
      up.write(Buffer.concat([this.refusals.inject(refusal, false, this.batches), FLUSH]));
      this.skipping = true;
      this.resultEnded();
    }
  }

  /** A batch was sent to the target (its ReadyForQuery will end it). */
  private ended(): void {
    this.batches++;
    this.prepared.synced();
  }

  private readonly onClientMessage = (type: number, message: Buffer): Verdict => {
    if (this.nextDecides) {
      const verdict = this.afterCountedExecute(type, message);
      if (verdict !== undefined) return verdict;
    }
    switch (type) {
      case FE.QUERY: {
        // PostgreSQL ignores a Query while it skips to Sync; so does the relay.
        if (this.skipping) return 'drop';
        const text = decode.queryText(message);
        const judgement = this.judge(text, true);
        const recorded = judgement?.recordAs ?? text;
        const refusal = judgement?.refusal ?? this.o.admit();
        if (refusal) return this.refuseSimple(refusal, recorded, judgement?.decision);
        this.o.tracker.request('simple', recorded, false, judgement?.decision);
        this.ended();
        this.syncsSinceRequest = 0;
        this.countResult(true);
        return 'forward';
      }
      case FE.PARSE: {
        if (this.skipping) return 'drop';
        const { name, text } = decode.parseMessage(message);
        const bytes = Buffer.byteLength(text);
        if (bytes > this.o.maxStatementBytes)
          return this.refuseExtended(tooLong(bytes, this.o.maxStatementBytes), omitted(bytes));
        const judgement = this.judge(text, false);
        const recorded = judgement?.recordAs ?? text;
        const refusal = judgement?.refusal ?? this.o.admit();
        if (refusal) return this.refuseExtended(refusal, recorded, judgement?.decision);
        const cap = this.prepared.checkParse(name, recorded);
        if (cap) return this.refuseExtended(capRefusal(cap), recorded);
        this.prepared.parse(name, recorded);
        return 'forward';
      }
      case FE.BIND: {
        if (this.skipping) return 'drop';
        const { portal, statement } = decode.bindMessage(message);
        const text = this.prepared.statement(statement);
        const cap = this.prepared.checkBind(portal);
        if (cap) return this.refuseExtended(capRefusal(cap), text ?? '');
        // Prepared before the policies changed: judged again by the ones that apply now.
        const judgement = this.o.policy.judgeBind(text, statement);
        if (judgement?.refusal) return this.refuseExtended(judgement.refusal, text ?? '', judgement.decision);
        this.prepared.bind(portal, statement);
        return 'forward';
      }
      case FE.EXECUTE: {
        if (this.skipping) return 'drop';
        const text = this.prepared.portal(decode.executePortal(message));
        // A portal bound before the policies changed is judged again by the ones now.
        const judgement = this.o.policy.judgeExecute(text);
        if (judgement?.refusal) return this.refuseExtended(judgement.refusal, text ?? '', judgement.decision);
        this.o.tracker.request('extended', text ?? '(portal does not exist)', false, judgement?.decision);
        this.countResult(false);
        return 'forward';
      }
      case FE.FUNCTION_CALL: {
        if (this.skipping) return 'drop';
        const oid = decode.functionCallOid(message);
        const text = fastPathText(oid);
        const fn = fastPathFunction(oid);
        if (!fn) return this.refuseSimple(fastPathRefusal(oid), text);
        const judgement = this.o.policy.judgeFunctionCall(fn);
        if (judgement?.refusal) return this.refuseSimple(judgement.refusal, text, judgement.decision);
        const closed = this.o.admit();
        if (closed) return this.refuseSimple(closed, text);
        this.o.tracker.request('function', text, false, judgement?.decision);
        this.ended();
        return 'forward';
      }
      case FE.SYNC:
        // In COPY FROM STDIN mode the target ignores a Sync: it ends no batch.
        if (this.copyingIn) return 'forward';
        this.skipping = false;
        this.o.tracker.request('sync', '');
        this.ended();
        this.syncsSinceRequest++;
        return 'forward';
      case FE.COPY_DONE:
      case FE.COPY_FAIL:
        this.copyingIn = false;
        this.clientTypes[FE.COPY_DONE] = 0;
        this.clientTypes[FE.COPY_FAIL] = 0;
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
    const limited = this.limited;
    if (limited !== undefined) {
      const verdict = this.countedMessage(limited, type);
      if (verdict !== undefined) return verdict;
    }
    switch (type) {
      case BE.READY_FOR_QUERY: {
        const status = decode.readyStatus(message);
        upstream.status = status;
        this.prepared.ready(status);
        this.refusals.ready();
        if (this.dropReady) {
          // A simple Query cut at its row limit: its own ReadyForQuery; the injected failure's follows.
          this.dropReady = false;
          return 'drop';
        }
        if (limited !== undefined) this.resultEnded();
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
      case BE.COPY_IN_RESPONSE:
        this.copyInStarted();
        break;
    }
    tracker.onServer(type, message);
    return 'forward';
  };

  /**
   * The target entered COPY FROM STDIN mode: Syncs the client sent after the COPY's Execute
   * (libpq sends one with it) reached it in that mode and will get no answer, and so will the
   * client's Syncs until its CopyDone or CopyFail; neither ends a batch.
   */
  private copyInStarted(): void {
    const voided = this.syncsSinceRequest;
    this.syncsSinceRequest = 0;
    if (voided > 0) {
      this.o.tracker.forgetSyncs(voided);
      this.prepared.unsynced(voided);
      this.batches -= voided;
    }
    this.copyingIn = true;
    this.clientTypes[FE.COPY_DONE] = 1;
    this.clientTypes[FE.COPY_FAIL] = 1;
  }

  /**
   * A message of the result a row limit counts: rows past the limit are dropped, and the end of a
   * result that passed it is dropped too and replaced by the limit's error (cutOff). Undefined:
   * handle the message as usual.
   */
  private countedMessage(limited: LimitedResult, type: number): Verdict | undefined {
    switch (type) {
      case BE.DATA_ROW:
      case BE.COPY_DATA: {
        if (limited.row()) return 'forward';
        return 'drop';
      }
      case BE.COPY_DONE:
        return limited.exceeded ? 'drop' : undefined;
      case BE.COPY_IN_RESPONSE:
        // COPY FROM STDIN returns no rows, and the target now waits for the client's data.
        this.resultEnded();
        return undefined;
      case BE.COMMAND_COMPLETE:
      case BE.PORTAL_SUSPENDED:
        if (limited.exceeded) {
          this.cutOff(limited);
          return 'drop';
        }
        if (limited.observedPast) this.o.tracker.amend(limited.decision());
        if (!limited.endsAtReady) this.resultEnded();
        return undefined;
      case BE.EMPTY_QUERY:
      case BE.ERROR:
        if (!limited.endsAtReady && !limited.exceeded) this.resultEnded();
        return undefined;
    }
    return undefined;
  }

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
        // Client input stays paused while it is held for a counted result.
        to.once('drain', () => {
          if (source !== client || !this.hold.active) source.resume();
        });
      }
    };
    const onClientData = (chunk: Buffer, replay = false) => {
      if (!replay) this.o.counted(chunk.length, 0);
      if (this.hold.active) {
        this.hold.keep(chunk, replay);
        return;
      }
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
    this.clientData = onClientData;
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
      return (
        this.serverFramer.atBoundary &&
        this.clientFramer.atBoundary &&
        !this.skipping &&
        this.limited === undefined &&
        this.hold.empty
      );
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
