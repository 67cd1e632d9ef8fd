/**
 * The inspector that protects pgward itself, on for every session: it judges each Query and
 * Parse text with the built-in rules (no statement that changes a role, however phrased) and
 * caps statement sizes. The cheap first look lets the statements no built-in rule concerns
 * pass without a parse; the others are parsed once per distinct text (the decision cache).
 * Decisions are the pure functions of policy/; this module only wires them to the relay.
 */
import { protectPgward } from '../policy/builtin_rules.js';
import type { Refusal } from '../policy/classification.js';
import { classify } from '../policy/classify.js';
import { DecisionCache } from '../policy/decision_cache.js';
import { firstLook, needsParseForBuiltins } from '../policy/first_look.js';
import { redactSecrets } from '../policy/secrets.js';

/** What the guard decided about one statement text. */
export interface Judgement {
  /** Set when the statement must not run. */
  refusal?: Refusal;
  /** The text to record when it differs from the real one (secrets redacted). */
  recordAs?: string;
}

/** Bumped whenever the built-in rules change what they decide: cached decisions are then stale. */
const BUILTIN_RULES_VERSION = 1;

/** One cache for the process: texts repeat across sessions (drivers, ORMs, pgbench). */
const decisions = new DecisionCache<Judgement>(10_000, 64 * 1024 * 1024);

/** Cache statistics, for the benchmark and metrics. */
export function guardCacheStats() {
  return decisions.stats;
}

const ALLOW: Judgement = {};

/** Judges one statement text (a Query's, or a Parse's) against the built-in rules. */
export function judgeStatement(text: string): Judgement | undefined {
  if (!needsParseForBuiltins(firstLook(text))) return undefined;
  const cached = decisions.get(text, BUILTIN_RULES_VERSION);
  if (cached !== undefined) return cached === ALLOW ? undefined : cached;
  const judgement = judgeParsed(text);
  decisions.set(text, BUILTIN_RULES_VERSION, judgement ?? ALLOW);
  return judgement;
}

function judgeParsed(text: string): Judgement | undefined {
  const classified = classify(text);
  const refusal = protectPgward(classified);
  const recordAs = classified.secrets.length > 0 ? redactSecrets(text, classified.secrets) : undefined;
  if (!refusal && recordAs === undefined) return undefined;
  return { refusal, recordAs };
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
