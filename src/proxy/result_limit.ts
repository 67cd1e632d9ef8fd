/**
 * Counting one result's rows against the row limits of a session's policies: the strictest
 * enforce-mode limit cuts the result off; observe-mode limits only say, in the audit, that they
 * would have.
 */
import type { AuditDecision } from '../policy/builtin_rules.js';
import type { RowLimit } from '../policy/policy_rules.js';

export class LimitedResult {
  private rows = 0;
  /** More rows came than the enforced limit lets through: the rest are dropped. */
  exceeded = false;
  /** An observe-mode limit was passed. */
  observedPast = false;
  private readonly observeAt: number;

  constructor(
    /** The enforced limit, if any. */
    readonly limit: RowLimit | undefined,
    private readonly observed: readonly RowLimit[],
    /**
     * A ReadyForQuery ends the result (a Query; an Execute whose Sync went along), else its
     * CommandComplete, PortalSuspended, EmptyQueryResponse or ErrorResponse does.
     */
    public endsAtReady: boolean,
  ) {
    let at = Number.POSITIVE_INFINITY;
    for (const l of observed) if (l.rows < at) at = l.rows;
    this.observeAt = at;
  }

  /** One row (a DataRow, or a CopyData of COPY TO STDOUT): true when it may reach the client. */
  row(): boolean {
    const n = ++this.rows;
    if (n > this.observeAt) this.observedPast = true;
    if (this.limit !== undefined && n > this.limit.rows) {
      this.exceeded = true;
      return false;
    }
    return true;
  }

  /** The audit decision: refused by the enforced limit, or observed by the ones passed. */
  decision(): AuditDecision {
    if (this.exceeded) {
      const l = this.limit!;
      return {
        decision: 'refused',
        decidedBy: JSON.stringify([
          {
            policy: l.policy,
            rule: `${l.rule.path} (${l.rule.description})`,
            outcome: 'refused',
            message: `more than ${l.rows} rows`,
          },
        ]),
      };
    }
    return {
      decision: 'observed',
      decidedBy: JSON.stringify(
        this.observed
          .filter((l) => this.rows > l.rows)
          .map((l) => ({
            policy: l.policy,
            rule: `${l.rule.path} (${l.rule.description})`,
            outcome: 'observed',
            message: `more than ${l.rows} rows`,
          })),
      ),
    };
  }
}
