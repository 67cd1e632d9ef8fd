/**
 * What a statement does, as the rest of pgward sees it: the one vocabulary shared by the
 * built-in rules, policies, the audit and the console. Produced from PostgreSQL's own grammar
 * (libpg-query) by `classify.ts`; policy decisions are pure functions over these values.
 */

/** Statement classes, as policy documents name them. Extend, never rename. */
export const STATEMENT_CLASSES = [
  'read',
  'write',
  'ddl',
  'dcl',
  'truncate',
  'utility',
  'transaction',
  'unknown',
] as const;
export type StatementClass = (typeof STATEMENT_CLASSES)[number];

/** A table (or view, sequence) a statement reads or writes. */
export interface TableUse {
  /** Schema as PostgreSQL reads it (unquoted folded to lower case, quoted exact), or null. */
  schema: string | null;
  /** Relation name, folded the same way. */
  name: string;
  access: 'read' | 'write';
}

/** A run-time setting a statement changes: SET, RESET, set_config(), SET TRANSACTION. */
export interface SettingChange {
  /** Lowercased setting name; 'all' for RESET ALL and DISCARD ALL; '?' when not a literal. */
  name: string;
  via: 'set' | 'reset' | 'set_config';
  /** The literal value when there is one. */
  value: string | null;
}

export interface StatementInfo {
  class: StatementClass;
  /** The command as PostgreSQL's command tag names it: SELECT, ALTER ROLE, DO, ... */
  command: string;
  tables: TableUse[];
  /** Functions called, lowercased, with their schema when written (`pg_catalog.set_config`). */
  functions: string[];
  /** Changes a role: its password, attributes, stored settings, name, comment or memberships. */
  changesRole: boolean;
  /** An UPDATE or DELETE without WHERE, at any depth (CTE, EXPLAIN ANALYZE, PREPARE, DO). */
  writeWithoutWhere: boolean;
  settings: SettingChange[];
  /** BEGIN / START TRANSACTION / SET TRANSACTION / SET SESSION CHARACTERISTICS ... READ WRITE. */
  readWrite: boolean;
  /** SELECT ... FOR UPDATE / FOR SHARE (takes row locks: a write for read-only purposes). */
  lockingRead: boolean;
  /** PREPARE name AS statement: the statement it prepares. */
  prepare?: { name: string; statement: StatementInfo };
  /** EXECUTE name (also CREATE TABLE AS EXECUTE): resolved by the caller from the session's PREPAREs. */
  execute?: { name: string };
  /** PREPAREs and EXECUTEs inside a DO or function body (dynamic SQL of literals). */
  nested?: { prepares: { name: string; statement: StatementInfo }[]; executes: string[] };
  /** FETCH or MOVE from a cursor: resolved by the caller from the session's DECLAREs. */
  fetch?: { cursor: string };
  /** DECLARE name CURSOR FOR ...: the cursor it opens (the statement is this info). */
  declare?: { cursor: string };
  /** DROP ... CASCADE, TRUNCATE ... CASCADE: reaches objects the statement does not name. */
  cascades?: boolean;
  /** Why the class is unknown (unparsable, dynamic SQL in a DO body, too long, ...). */
  unknownReason?: string;
  /**
   * Why this statement runs or stores SQL pgward cannot see, when it does: EXECUTE of a computed
   * string in a DO or function body, a body in a language pgward does not read. Fails closed.
   */
  opaqueSql?: string;
}

export interface Classification {
  /** One entry per statement of the text (a Query message may hold several). */
  statements: StatementInfo[];
  /**
   * Byte ranges [start, end) of secrets in the text (password literals of CREATE/ALTER ROLE),
   * found from the parse: the audit records the text with these replaced.
   */
  secrets: { start: number; end: number }[];
  /** PostgreSQL's syntax error when the text does not parse (then one 'unknown' statement). */
  syntaxError?: { message: string; position: number };
}

/** A statement refused before it reaches the target: sent to the client as an ErrorResponse. */
export interface Refusal {
  sqlstate: string;
  /** A message a person can act on; never holds a secret. */
  message: string;
  detail?: string;
  hint?: string;
  /** 1-based character position in the text (syntax errors), as the ErrorResponse `P` field. */
  position?: number;
  /** The rule that refused: 'protect-pgward', 'parse', or a policy's rule. */
  rule: string;
}
