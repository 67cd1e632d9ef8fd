/**
 * The live list of policies: the configuration file's (mirrored into the store at start) and
 * administrators' (through the API), the latter taking precedence by name. Every gateway on the
 * store reads them again when one publishes a change (and every minute, should a notification be
 * lost), and live sessions judge their next statement by the new list.
 */
import type pg from 'pg';
import type { AccessEvents } from '../directory/access_events.js';
import { PgwardError } from '../errors.js';
import type { Logger } from '../log/logger.js';
import { withTransaction } from '../store/transaction.js';
import {
  type KnownNames,
  type PolicyDocument,
  type PolicyProblem,
  validatePolicy,
} from './policy_document.js';
import {
  type CompiledPolicy,
  compilePolicy,
  NO_POLICIES,
  type PolicySet,
  policiesFor,
} from './policy_rules.js';

/** A safety net under the notifications: a gateway that missed one catches up within this. */
const RELOAD_MS = 60_000;
/** Distinct (connection, groups) combinations whose policy sets are kept. */
const MAX_SETS = 10_000;

export interface PolicyItem {
  name: string;
  source: 'config' | 'api';
  document: PolicyDocument;
  updatedAt: Date | null;
  updatedBy: string | null;
}

/** A policy document that failed validation: the problems, each at its field's path. */
export class PolicyInvalid extends PgwardError {
  constructor(readonly problems: PolicyProblem[]) {
    super('POLICY_INVALID', problems.map((p) => `${p.path}: ${p.message}`).join('; '), {
      hint: 'fix the fields named; `pgward policy test FILE` checks a document offline',
    });
  }
}

export class PolicyCatalog {
  private items: PolicyItem[] = [];
  private compiled: CompiledPolicy[] = [];
  /** Bumped at each reload: a session's view recomputes its set when it changes. */
  generation = 0;
  private readonly sets = new Map<string, PolicySet>();
  private timer: NodeJS.Timeout | undefined;
  private unsubscribe: (() => void) | undefined;

  constructor(
    private readonly pool: pg.Pool,
    private readonly configured: readonly PolicyDocument[],
    private readonly events: AccessEvents | undefined,
    private readonly log: Logger,
    /** The names a document may use (connections, groups), read at each check. */
    private readonly known: () => Promise<KnownNames>,
  ) {}

  /** Mirrors the configuration's policies into the store, loads all, and follows changes. */
  async start(): Promise<void> {
    const known = await this.known();
    this.configured.forEach((doc, i) => {
      const checked = validatePolicy(doc, known);
      // Still applied: a policy for a connection that appears later must hold from its first session.
      if (!checked.ok) {
        for (const p of checked.problems)
          this.log.error(
            `policies[${i}].${p.path}: ${p.message} (policy "${doc.name}" is applied as written)`,
          );
      }
    });
    await withTransaction(this.pool, async (client) => {
      await client.query("DELETE FROM pgward.policy WHERE source = 'config'");
      for (const doc of this.configured) {
        await client.query(
          "INSERT INTO pgward.policy (name, source, document, updated_by) VALUES ($1, 'config', $2, 'configuration file')",
          [doc.name, JSON.stringify(doc)],
        );
      }
    });
    await this.reload();
    this.unsubscribe = this.events?.subscribe((event) => {
      if (event.kind === 'policies' || event.kind === 'everyone') this.reloadSoon();
    });
    this.timer = setInterval(() => this.reloadSoon(), RELOAD_MS);
    this.timer.unref();
  }

  close(): void {
    clearInterval(this.timer);
    this.unsubscribe?.();
  }

  private reloadSoon(): void {
    this.reload().catch((err: unknown) => this.log.warn({ err }, 'cannot read the policies again'));
  }

  /** Reads every policy from the store; a stored document that no longer validates is skipped, loudly. */
  async reload(): Promise<void> {
    const { rows } = await this.pool.query<{
      name: string;
      source: 'config' | 'api';
      document: unknown;
      updated_at: Date;
      updated_by: string | null;
    }>(
      "SELECT name, source, document, updated_at, updated_by FROM pgward.policy ORDER BY name, source = 'api'",
    );
    const byName = new Map<string, PolicyItem>();
    for (const row of rows) {
      const checked = validatePolicy(row.document);
      if (!checked.ok) {
        this.log.error(
          `stored policy "${row.name}" is invalid and not applied: ${checked.problems[0]?.message}`,
        );
        continue;
      }
      // Rows of a name come config first, then api: an administrator's version wins.
      byName.set(row.name, {
        name: row.name,
        source: row.source,
        document: checked.document,
        updatedAt: row.updated_at,
        updatedBy: row.updated_by,
      });
    }
    this.items = [...byName.values()];
    this.compiled = this.items.map((i) => compilePolicy(i.document));
    this.sets.clear();
    this.generation++;
  }

  list(): PolicyItem[] {
    return this.items;
  }

  get(name: string): PolicyItem {
    const item = this.items.find((i) => i.name === name);
    if (!item) throw new PgwardError('NOT_FOUND', `no policy is named "${name}"`);
    return item;
  }

  /** Validates a document against what exists now; throws PolicyInvalid with every problem. */
  async check(input: unknown): Promise<PolicyDocument> {
    const checked = validatePolicy(input, await this.known());
    if (!checked.ok) throw new PolicyInvalid(checked.problems);
    return checked.document;
  }

  /** Creates or replaces an administrator's policy; every gateway applies it within moments. */
  async put(input: unknown, by: string): Promise<PolicyItem> {
    const document = await this.check(input);
    await this.pool.query(
      `INSERT INTO pgward.policy (name, source, document, updated_by) VALUES ($1, 'api', $2, $3)
       ON CONFLICT (name, source) DO UPDATE SET document = EXCLUDED.document, updated_at = now(),
         updated_by = EXCLUDED.updated_by`,
      [document.name, JSON.stringify(document), by],
    );
    await this.changed(`policy "${document.name}" changed by ${by}`);
    return this.get(document.name);
  }

  /** Deletes an administrator's policy (a configured one of the same name then applies again). */
  async remove(name: string, by: string): Promise<void> {
    const { rowCount } = await this.pool.query(
      "DELETE FROM pgward.policy WHERE name = $1 AND source = 'api'",
      [name],
    );
    if (rowCount === 0) {
      if (this.items.some((i) => i.name === name)) {
        throw new PgwardError('CONFLICT', `policy "${name}" is defined in the configuration file`, {
          hint: 'remove it from the `policies:` list of the configuration and restart',
        });
      }
      throw new PgwardError('NOT_FOUND', `no policy is named "${name}"`);
    }
    await this.changed(`policy "${name}" deleted by ${by}`);
  }

  private async changed(reason: string): Promise<void> {
    await this.reload();
    await this.events?.publish({ kind: 'policies', reason });
  }

  /** The policies that apply to a person with these groups on a connection, as they are now. */
  setFor(connection: string, groups: readonly string[]): PolicySet {
    if (this.compiled.length === 0) return NO_POLICIES;
    const key = `${connection}\0${groups.join('\0')}`;
    let set = this.sets.get(key);
    if (set === undefined) {
      set = policiesFor(this.compiled, connection, groups);
      if (this.sets.size >= MAX_SETS) this.sets.clear();
      this.sets.set(key, set);
    }
    return set;
  }
}
