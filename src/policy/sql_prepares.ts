/**
 * What each SQL-level prepared statement name (PREPARE name AS ...) of a session may run, so an
 * EXECUTE is judged by the statement it runs. A name keeps every statement it was prepared with
 * until DEALLOCATE ALL or DISCARD ALL: pgward sees a PREPARE before the target says whether it
 * worked, and a PREPARE of a name that exists fails at the target, so the name runs one of them.
 */
import type { StatementInfo } from './classification.js';

/** Names per session, and statements per name: past either, the name is unknown (refused by policies). */
const MAX_NAMES = 10_000;
const MAX_VERSIONS = 8;

export class SqlPrepares {
  private readonly names = new Map<string, StatementInfo[]>();
  private overflowed = new Set<string>();

  /** Follows the PREPAREs and DEALLOCATE/DISCARD ALLs of a text about to run. */
  track(statements: readonly StatementInfo[]): void {
    for (const s of statements) {
      if (s.prepare) this.add(s.prepare.name.toLowerCase(), s.prepare.statement);
      else if (s.command === 'DISCARD ALL' || s.command === 'DEALLOCATE ALL') this.clear();
    }
  }

  private add(name: string, statement: StatementInfo): void {
    const versions = this.names.get(name);
    if (versions === undefined) {
      if (this.names.size >= MAX_NAMES) {
        this.overflowed.add(name);
        return;
      }
      this.names.set(name, [statement]);
    } else if (versions.length >= MAX_VERSIONS) {
      this.overflowed.add(name);
    } else {
      versions.push(statement);
    }
  }

  /** The statements an EXECUTE of `name` may run; undefined when pgward cannot say. */
  resolve(name: string): readonly StatementInfo[] | undefined {
    const key = name.toLowerCase();
    return this.overflowed.has(key) ? undefined : this.names.get(key);
  }

  clear(): void {
    this.names.clear();
    this.overflowed = new Set();
  }
}
