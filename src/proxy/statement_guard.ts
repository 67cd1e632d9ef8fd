/**
 * The built-in rules as the relay's first statement inspector, with one decision cache for the
 * process (texts repeat across sessions: drivers, ORMs, pgbench), and the refusal of a statement
 * longer than pgward records. The decisions themselves are policy/'s pure functions.
 */
import { checkBuiltins, type Judgement } from '../policy/builtin_rules.js';
import type { Refusal } from '../policy/classification.js';
import { DecisionCache } from '../policy/decision_cache.js';

export type { Judgement };

const decisions = new DecisionCache<Judgement>(10_000, 64 * 1024 * 1024);

/** Cache statistics, for the benchmark and metrics. */
export function guardCacheStats() {
  return decisions.stats;
}

/** Judges one statement text (a Query's, or a Parse's) against the built-in rules. */
export function judgeStatement(text: string): Judgement | undefined {
  return checkBuiltins(text, decisions);
}

/** The refusal of a statement longer than pgward records. */
export function tooLong(bytes: number, maxBytes: number): Refusal {
  return {
    sqlstate: '54000',
    message: `statement is ${bytes} bytes, longer than pgward records (${maxBytes})`,
    detail: 'pgward error STATEMENT_TOO_LONG',
    hint: 'send large data as bind parameters or with COPY; an operator can raise audit.maxStatementBytes',
    rule: 'builtin: statement size',
  };
}
