/**
 * The policies as a relay inspector for one session: each statement text (Query, Parse, and a
 * Bind when the policies changed since its Parse) and each FunctionCall is judged by the policies
 * that apply to the session now, and the decision goes to the audit. A session no policy applies
 * to pays one comparison per statement. Classifications are kept per number shape for the
 * process, so `WHERE aid = 123` and `WHERE aid = 456` are parsed once.
 */
import type { AuditDecision, Judgement } from '../policy/builtin_rules.js';
import { parseFailure } from '../policy/builtin_rules.js';
import type { Classification, StatementInfo } from '../policy/classification.js';
import { baseInfo, classify } from '../policy/classify.js';
import { DecisionCache } from '../policy/decision_cache.js';
import { numberShape } from '../policy/first_look.js';
import {
  decide,
  judgesStatements,
  NO_POLICIES,
  type PolicyDecision,
  type PolicySet,
  type RowLimit,
} from '../policy/policy_rules.js';
import { SqlPrepares } from '../policy/sql_prepares.js';
import { emptyUses } from '../policy/tree_walk.js';
import type { FastPathFunction } from './fast_path.js';

const classifications = new DecisionCache<Classification>(10_000, 64 * 1024 * 1024);

/** Cache statistics, for the benchmark. */
export function policyCacheStats() {
  return classifications.stats;
}

/** The classification of a text, shared by every text of the same number shape. */
export function classifyShaped(text: string): Classification {
  const shape = numberShape(text) ?? text;
  const cached = classifications.get(shape, 0);
  if (cached !== undefined) return cached;
  const c = classify(shape);
  classifications.set(shape, 0, c);
  return c;
}

/** Parse texts judged, per session: a Bind re-judges only when the policies changed since. */
const MAX_JUDGED = 10_000;

const allowedDecisions = new WeakMap<PolicySet, AuditDecision>();

/** Every policy of the set allowed the statement. */
function allowedBy(set: PolicySet): AuditDecision {
  let d = allowedDecisions.get(set);
  if (d === undefined) {
    d = {
      decision: 'allowed',
      decidedBy: JSON.stringify(set.policies.map((p) => ({ policy: p.name, outcome: 'allowed' }))),
    };
    allowedDecisions.set(set, d);
  }
  return d;
}

function judgementOf(set: PolicySet, d: PolicyDecision): Judgement {
  if (d.outcomes.length === 0) return { decision: allowedBy(set) };
  const decidedBy = JSON.stringify(d.outcomes);
  if (d.refusal) return { refusal: d.refusal, decision: { decision: 'refused', decidedBy } };
  return { decision: { decision: 'observed', decidedBy } };
}

/** The refusal of a multi-statement Query under a row limit: each result must be counted alone. */
function multiUnderLimit(limit: RowLimit): Judgement {
  const refusal = {
    sqlstate: '0A000',
    message: `send one statement per query: policy "${limit.policy}" limits each result to ${limit.rows} rows`,
    detail: `pgward error POLICY_DENIED: policy "${limit.policy}", ${limit.rule.path} (${limit.rule.description}): a text of several statements`,
    hint: 'split the statements (psql -f does), or use the extended protocol',
    rule: `${limit.policy} ${limit.rule.path}`,
  };
  return {
    refusal,
    decision: {
      decision: 'refused',
      decidedBy: JSON.stringify([
        { policy: limit.policy, rule: limit.rule.path, outcome: 'refused', message: refusal.message },
      ]),
    },
  };
}

export class PolicyInspector {
  private readonly prepares = new SqlPrepares();
  private last: PolicySet = NO_POLICIES;
  private readonly judged = new Map<string, { set: PolicySet; judgement: Judgement }>();

  /** `current` gives the policies that apply to this session now. */
  constructor(private readonly current: () => PolicySet) {}

  /** The policies now; what was tracked under none is forgotten (it was not followed then). */
  get set(): PolicySet {
    const set = this.current();
    if (set !== this.last) {
      if (set === NO_POLICIES) {
        this.prepares.clear();
        this.judged.clear();
      }
      this.last = set;
    }
    return set;
  }

  /** The row limit results are held to now, if any. */
  rowLimit(): RowLimit | undefined {
    return this.set.rowLimit;
  }

  /** A Query's text (several statements may share it). */
  judgeQuery(text: string): Judgement | undefined {
    const set = this.set;
    if (set === NO_POLICIES) return undefined;
    return this.judge(set, text, true);
  }

  /** A Parse's text; kept, so Bind and Execute find the decision. */
  judgeParse(text: string): Judgement | undefined {
    const set = this.set;
    if (set === NO_POLICIES) return undefined;
    const judgement = this.judge(set, text, false);
    if (this.judged.size >= MAX_JUDGED) this.judged.clear();
    this.judged.set(text, { set, judgement });
    return judgement;
  }

  /**
   * A Bind of a statement whose text is `text`: judged again only when the policies changed
   * since its Parse (a statement prepared before a policy applied must not run past it).
   */
  judgeBind(text: string | undefined, statement: string): Judgement | undefined {
    const set = this.set;
    if (set === NO_POLICIES) return undefined;
    // No protocol-level statement of that name: a Bind may name a SQL-level PREPARE.
    if (text === undefined) return this.judgeInfos(set, { execute: statement });
    const seen = this.judged.get(text);
    if (seen?.set === set) return seen.judgement.refusal ? seen.judgement : undefined;
    return this.judgeParse(text);
  }

  /**
   * An Execute of a portal running `text`: judged again when the policies changed since (a
   * portal bound before a policy applied must not run past it); its decision goes to the audit.
   */
  judgeExecute(text: string | undefined): Judgement | undefined {
    const set = this.set;
    if (set === NO_POLICIES || text === undefined) return undefined;
    const seen = this.judged.get(text);
    return seen?.set === set ? seen.judgement : this.judgeParse(text);
  }

  /** A Bind of a SQL-level prepared statement, judged by what it was prepared with. */
  private judgeInfos(set: PolicySet, what: { execute: string }): Judgement {
    if (!judgesStatements(set)) return { decision: allowedBy(set) };
    const execute: StatementInfo = {
      ...baseInfo('utility', 'EXECUTE', emptyUses()),
      execute: { name: what.execute },
    };
    return judgementOf(set, decide(set, [execute], this.prepares));
  }

  /** A FunctionCall of an allowed large-object function, judged as a call of it in a SELECT. */
  judgeFunctionCall(fn: FastPathFunction): Judgement | undefined {
    const set = this.set;
    if (set === NO_POLICIES) return undefined;
    const info: StatementInfo = {
      ...baseInfo(fn.writes ? 'write' : 'read', 'FunctionCall', emptyUses()),
      functions: [fn.name],
    };
    return judgementOf(set, decide(set, [info]));
  }

  private judge(set: PolicySet, text: string, query: boolean): Judgement {
    if (!judgesStatements(set) && !(query && set.rowLimit)) return { decision: allowedBy(set) };
    const c = classifyShaped(text);
    if (c.syntaxError) {
      const refusal = parseFailure(c.syntaxError);
      return {
        refusal,
        decision: {
          decision: 'refused',
          decidedBy: JSON.stringify([
            { policy: 'builtin', rule: 'parse', outcome: 'refused', message: refusal.message },
          ]),
        },
      };
    }
    if (query && set.rowLimit && c.statements.length > 1) return multiUnderLimit(set.rowLimit);
    const d = decide(set, c.statements, this.prepares);
    if (!d.refusal) this.prepares.track(c.statements);
    return judgementOf(set, d);
  }
}
