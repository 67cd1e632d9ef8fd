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

/** What a session's SQL names run: prepared statements and cursors, as pgward saw them made. */
export interface SessionStatements {
  prepared(name: string): readonly StatementInfo[] | undefined;
  cursor(name: string): readonly StatementInfo[] | undefined;
}

export class SqlPrepares implements SessionStatements {
  private readonly names = new Map<string, StatementInfo[]>();
  private readonly cursors = new Map<string, StatementInfo[]>();
  private overflowed = new Set<string>();

  /** Follows the PREPAREs, DECLAREs and DEALLOCATE/DISCARD ALLs of a text about to run. */
  track(statements: readonly StatementInfo[]): void {
    for (const s of statements) {
      if (s.prepare) this.add(this.names, s.prepare.name.toLowerCase(), s.prepare.statement);
      for (const p of s.nested?.prepares ?? []) this.add(this.names, p.name.toLowerCase(), p.statement);
      if (s.declare) this.add(this.cursors, s.declare.cursor.toLowerCase(), s);
      if (s.command === 'DISCARD ALL' || s.command === 'DEALLOCATE ALL') this.names.clear();
      if (s.command === 'DISCARD ALL') this.cursors.clear();
    }
  }

  private add(map: Map<string, StatementInfo[]>, name: string, statement: StatementInfo): void {
    const versions = map.get(name);
    if (versions === undefined) {
      if (map.size >= MAX_NAMES) {
        this.overflowed.add(name);
        return;
      }
      map.set(name, [statement]);
    } else if (versions.length >= MAX_VERSIONS) {
      this.overflowed.add(name);
    } else {
      versions.push(statement);
    }
  }

  /** The statements an EXECUTE of `name` may run; undefined when pgward cannot say. */
  prepared(name: string): readonly StatementInfo[] | undefined {
    const key = name.toLowerCase();
    return this.overflowed.has(key) ? undefined : this.names.get(key);
  }

  /** The statements a FETCH from cursor `name` may read; undefined when pgward cannot say. */
  cursor(name: string): readonly StatementInfo[] | undefined {
    const key = name.toLowerCase();
    return this.overflowed.has(key) ? undefined : this.cursors.get(key);
  }

  clear(): void {
    this.names.clear();
    this.cursors.clear();
    this.overflowed = new Set();
  }
}
