/**
 * Refusing a client's message the way PostgreSQL would have refused it, without letting it reach
 * the target. In its place pgward sends an Execute of a portal that cannot exist (its name holds
 * a per-process secret), followed by a Sync when the refused message was a Query or a
 * FunctionCall (they end their own batch). The target fails that Execute at exactly the
 * refused message's place in the stream, so everything PostgreSQL does on an error happens as
 * it would have: answers to earlier pipelined messages come first, a transaction block is left
 * aborted, an implicit transaction is rolled back, the rest of an extended batch is skipped until
 * Sync, and a ReadyForQuery ends it. pgward then swaps the target's "portal does not exist"
 * ErrorResponse for the refusal's own.
 */
import { randomBytes } from 'node:crypto';
import type { Refusal } from '../policy/classification.js';
import * as decode from '../wire/decode.js';
import * as encode from '../wire/encode.js';

/** A secret shared by every session of this process: clients never see the portal names. */
const NONCE = randomBytes(12).toString('hex');
const PREFIX = `pgward_refusal_${NONCE}_`;

export class Refusals {
  private seq = 0;
  /** ErrorResponses to send, by the portal name whose failure they replace. */
  private readonly waiting = new Map<string, { error: Buffer; batch: number }>();
  private batchesDone = 0;

  /**
   * The bytes to send the target instead of a refused message. `simple`: the message was a
   * Query or FunctionCall, which ends its batch; `batch` is the number of batches the session
   * had sent before this one (Sync, Query and FunctionCall each end one).
   */
  inject(refusal: Refusal, simple: boolean, batch: number): Buffer {
    const portal = `${PREFIX}${++this.seq}`;
    this.waiting.set(portal, {
      batch,
      error: encode.errorResponse({
        severity: 'ERROR',
        code: refusal.sqlstate,
        message: refusal.message,
        detail: refusal.detail,
        hint: refusal.hint,
        position: refusal.position,
      }),
    });
    const execute = encode.execute(portal);
    return simple ? Buffer.concat([execute, encode.sync()]) : execute;
  }

  /** True while a refusal awaits its answer (the relay then looks at ErrorResponses). */
  get active(): boolean {
    return this.waiting.size > 0;
  }

  /** An ErrorResponse from the target: the refusal's own error if it answers an injected Execute. */
  replace(message: Buffer): Buffer | undefined {
    const text = decode.errorFields(message).get('M') ?? '';
    const start = text.indexOf(PREFIX);
    if (start === -1) return undefined;
    const end = text.indexOf('"', start);
    const portal = text.slice(start, end === -1 ? undefined : end);
    const entry = this.waiting.get(portal);
    if (!entry) return undefined;
    this.waiting.delete(portal);
    return entry.error;
  }

  /**
   * A ReadyForQuery ended a batch. A refusal in it that got no answer was skipped by the target
   * (an earlier message of its batch had failed, which PostgreSQL reports instead).
   */
  ready(): void {
    const done = this.batchesDone++;
    for (const [portal, entry] of this.waiting) if (entry.batch <= done) this.waiting.delete(portal);
  }
}
