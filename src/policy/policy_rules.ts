/**
 * Policy decisions: pure functions over classified statements. A document is compiled once into
 * checks; `decide` runs the checks of every policy that applies to a session over the
 * statements of one text and says whether it runs, and what each policy made of it (refused,
 * or observed: what an observe-mode policy would have refused).
 */
import type { Refusal, StatementClass, StatementInfo, TableUse } from './classification.js';
import { baseInfo } from './classify.js';
import { describeRule, type PolicyDocument, type PolicyRule } from './policy_document.js';
import type { SessionStatements } from './sql_prepares.js';
import { emptyUses } from './tree_walk.js';

export const POLICY_DENIED = 'POLICY_DENIED';
const INSUFFICIENT_PRIVILEGE = '42501';
const PROGRAM_LIMIT_EXCEEDED = '54000';

/** Settings whose change would undo a read-only session. */
const READ_ONLY_SETTINGS = new Set(['transaction_read_only', 'default_transaction_read_only']);
/** Functions that write though called in a SELECT (PostgreSQL refuses most in a read-only transaction too). */
const WRITING_FUNCTIONS = new Set([
  'nextval',
  'setval',
  'lo_import',
  'lo_create',
  'lo_creat',
  'lo_unlink',
  'lo_put',
  'lo_from_bytea',
  'lo_truncate',
  'lo_truncate64',
  'lowrite',
  'dblink_exec',
  'pg_file_write',
  'pg_file_unlink',
  'pg_file_rename',
]);
/**
 * Functions that run SQL given to them as a string (or whole tables and schemas by name): pgward
 * cannot see what they read, so a policy with table or function rules refuses them.
 */
const SQL_RUNNING_FUNCTIONS = new Set([
  'query_to_xml',
  'query_to_xmlschema',
  'query_to_xml_and_xmlschema',
  'table_to_xml',
  'table_to_xmlschema',
  'table_to_xml_and_xmlschema',
  'schema_to_xml',
  'schema_to_xmlschema',
  'schema_to_xml_and_xmlschema',
  'database_to_xml',
  'database_to_xmlschema',
  'database_to_xml_and_xmlschema',
  'cursor_to_xml',
  'cursor_to_xmlschema',
  'ts_stat',
  'ts_rewrite',
  'dblink',
  'dblink_exec',
  'dblink_send_query',
  'dblink_open',
]);

/** Utility statements that change the database though not classed as writes. */
const WRITING_UTILITIES = new Set(['VACUUM', 'ANALYZE', 'CLUSTER', 'REINDEX', 'CHECKPOINT', 'LOAD']);

/** What one statement did against one rule: why it is refused, or undefined. */
type Check = (s: StatementInfo) => string | undefined;

export interface CompiledRule {
  /** `rules[2]` */
  path: string;
  /** `deny ddl, truncate` */
  description: string;
  message: string | undefined;
  check: Check;
}

export interface CompiledPolicy {
  name: string;
  mode: 'enforce' | 'observe';
  connections: ReadonlySet<string>;
  /** null: everyone on those connections. */
  groups: ReadonlySet<string> | null;
  /** Rules judged on statements (limit excluded). */
  rules: CompiledRule[];
  multiStatement: CompiledRule | undefined;
  readOnly: CompiledRule | undefined;
  rowLimit: { rows: number; rule: CompiledRule } | undefined;
  document: PolicyDocument;
}

/** One policy's verdict on one text, for the audit, `policy test` and the console. */
export interface PolicyOutcome {
  policy: string;
  rule: string;
  outcome: 'refused' | 'observed';
  message: string;
}

export interface PolicyDecision {
  refusal?: Refusal;
  outcomes: PolicyOutcome[];
}

/** The policies that apply to one session, with what the relay must do beyond judging texts. */
export interface PolicySet {
  policies: readonly CompiledPolicy[];
  /** An enforce-mode readOnly applies: the session is read-only at the target too. */
  readOnly: boolean;
  /** The strictest enforce-mode row limit, and the observe-mode ones. */
  rowLimit: RowLimit | undefined;
  observedRowLimits: RowLimit[];
}

export interface RowLimit {
  rows: number;
  policy: string;
  rule: CompiledRule;
}

export const NO_POLICIES: PolicySet = Object.freeze({
  policies: [],
  readOnly: false,
  rowLimit: undefined,
  observedRowLimits: [],
});

/** Compiles a validated document. */
export function compilePolicy(document: PolicyDocument): CompiledPolicy {
  const compiled: CompiledPolicy = {
    name: document.name,
    mode: document.mode,
    connections: new Set(document.connections),
    groups: document.groups ? new Set(document.groups) : null,
    rules: [],
    multiStatement: undefined,
    readOnly: undefined,
    rowLimit: undefined,
    document,
  };
  document.rules.forEach((rule, i) => {
    const base = { path: `rules[${i}]`, description: describeRule(rule), message: rule.message };
    if ('limit' in rule) {
      compiled.rowLimit = { rows: rule.limit.rows, rule: { ...base, check: () => undefined } };
    } else if ('readOnly' in rule) {
      compiled.readOnly = { ...base, check: readOnlyCheck };
      compiled.rules.push(compiled.readOnly);
    } else if (rule.deny === 'multi-statement') {
      compiled.multiStatement = { ...base, check: () => undefined };
    } else {
      compiled.rules.push({ ...base, check: denyCheck(rule.deny) });
    }
  });
  return compiled;
}

/** The policies that apply to a person (by their groups) on a connection. */
export function policiesFor(
  all: readonly CompiledPolicy[],
  connection: string,
  groups: readonly string[],
): PolicySet {
  const policies = all.filter(
    (p) => p.connections.has(connection) && (p.groups === null || groups.some((g) => p.groups!.has(g))),
  );
  if (policies.length === 0) return NO_POLICIES;
  let rowLimit: RowLimit | undefined;
  const observedRowLimits: RowLimit[] = [];
  for (const p of policies) {
    if (!p.rowLimit) continue;
    const limit = { rows: p.rowLimit.rows, policy: p.name, rule: p.rowLimit.rule };
    if (p.mode === 'observe') observedRowLimits.push(limit);
    else if (!rowLimit || limit.rows < rowLimit.rows) rowLimit = limit;
  }
  return {
    policies,
    readOnly: policies.some((p) => p.mode === 'enforce' && p.readOnly !== undefined),
    rowLimit,
    observedRowLimits,
  };
}

/** Whether a set judges statement texts at all (a set of only row limits does not). */
export function judgesStatements(set: PolicySet): boolean {
  return set.policies.some((p) => p.rules.length > 0 || p.multiStatement !== undefined);
}

const NO_SESSION: SessionStatements = { prepared: () => undefined, cursor: () => undefined };

/**
 * The decision on one text's statements. `session` gives what an EXECUTE runs (the session's
 * PREPAREs of that name) and what a FETCH reads (its DECLAREs), or undefined when pgward does
 * not know the name.
 */
export function decide(
  set: PolicySet,
  statements: readonly StatementInfo[],
  session: SessionStatements = NO_SESSION,
): PolicyDecision {
  const outcomes: PolicyOutcome[] = [];
  let refusal: Refusal | undefined;
  // Most statements make nothing else run: no copy of the list then.
  const runs = statements.some(expands) ? statements.flatMap((s) => expand(s, session)) : statements;
  for (const p of set.policies) {
    let why: { rule: CompiledRule; reason: string } | undefined;
    if (p.multiStatement && statements.length > 1) {
      why = { rule: p.multiStatement, reason: `a text of ${statements.length} statements` };
    }
    for (let i = 0; why === undefined && i < runs.length; i++) {
      const s = runs[i]!;
      if (s.unknownReason !== undefined && UNKNOWN_PREPARED.has(s) && p.rules.length > 0) {
        why = { rule: UNSEEN_PREPARE, reason: s.unknownReason };
        break;
      }
      for (const rule of p.rules) {
        const reason = rule.check(s);
        if (reason !== undefined) {
          why = { rule, reason };
          break;
        }
      }
    }
    if (why === undefined) continue;
    const message = why.rule.message ?? `${why.reason}: not allowed by policy "${p.name}"`;
    const outcome: PolicyOutcome = {
      policy: p.name,
      rule: `${why.rule.path} (${why.rule.description})`,
      outcome: p.mode === 'enforce' ? 'refused' : 'observed',
      message,
    };
    outcomes.push(outcome);
    if (p.mode === 'enforce' && refusal === undefined) {
      refusal = policyRefusal(INSUFFICIENT_PRIVILEGE, message, p.name, why.rule, why.reason);
    }
  }
  return refusal ? { refusal, outcomes } : { outcomes };
}

/** The refusal of a result past a row limit (54000). */
export function rowLimitRefusal(limit: RowLimit): Refusal {
  const message =
    limit.rule.message ??
    `the result has more than ${limit.rows} rows, the limit of policy "${limit.policy}"`;
  return policyRefusal(
    PROGRAM_LIMIT_EXCEEDED,
    message,
    limit.policy,
    limit.rule,
    `more than ${limit.rows} rows`,
    'add a LIMIT or a narrower WHERE, or fetch in pages with a cursor',
  );
}

function policyRefusal(
  sqlstate: string,
  message: string,
  policy: string,
  rule: CompiledRule,
  reason: string,
  hint = 'ask an administrator if you need this; policies are listed by `pgward ls`',
): Refusal {
  return {
    sqlstate,
    message,
    detail: `pgward error ${POLICY_DENIED}: policy "${policy}", ${rule.path} (${rule.description}): ${reason}`,
    hint,
    rule: `${policy} ${rule.path}`,
  };
}

function expands(s: StatementInfo): boolean {
  return (
    s.prepare !== undefined || s.execute !== undefined || s.nested !== undefined || s.fetch !== undefined
  );
}

/**
 * A statement and what it makes run: PREPARE's statement, EXECUTE's prepared ones (also
 * CREATE TABLE AS EXECUTE, and EXECUTEs inside a DO body, which may name a PREPARE of the same
 * body), and the cursor a FETCH reads.
 */
function expand(s: StatementInfo, session: SessionStatements): StatementInfo[] {
  // PREPARE is judged on what it prepares (its own entry keeps only its class).
  if (s.prepare) return [{ ...s, ...NOTHING_USED }, s.prepare.statement];
  const out = [s];
  const executes = [...(s.execute ? [s.execute.name] : []), ...(s.nested?.executes ?? [])];
  for (const name of executes) {
    const inBody = s.nested?.prepares.filter((p) => p.name.toLowerCase() === name.toLowerCase());
    const prepared = inBody?.length ? inBody.map((p) => p.statement) : session.prepared(name);
    if (prepared === undefined) out.push(unknownPrepared(name, 'prepared statement'));
    else out.push(...prepared);
  }
  if (s.fetch) {
    const declared = session.cursor(s.fetch.cursor);
    if (declared === undefined) out.push(unknownPrepared(s.fetch.cursor, 'cursor'));
    else out.push(...declared.map((d) => ({ ...d, declare: undefined })));
  }
  return out;
}

const NOTHING_USED = {
  tables: [],
  functions: [],
  settings: [],
  writeWithoutWhere: false,
  lockingRead: false,
  readWrite: false,
} satisfies Partial<StatementInfo>;

/** An EXECUTE of a name pgward did not see prepared: every policy refuses what it cannot judge. */
const UNSEEN_PREPARE: CompiledRule = {
  path: 'prepared statements',
  description: 'EXECUTE runs only what pgward saw prepared',
  message: undefined,
  check: () => undefined,
};
const UNKNOWN_PREPARED = new WeakSet<StatementInfo>();

function unknownPrepared(name: string, what: 'prepared statement' | 'cursor'): StatementInfo {
  const info: StatementInfo = {
    ...baseInfo('unknown', what === 'cursor' ? 'FETCH' : 'EXECUTE', emptyUses()),
    unknownReason:
      what === 'cursor'
        ? `cursor "${name}" was not declared through pgward while this policy applied; DECLARE it again`
        : `prepared statement "${name}" was not prepared while this policy applied; PREPARE it again`,
  };
  UNKNOWN_PREPARED.add(info);
  return info;
}

function denyCheck(deny: Exclude<Extract<PolicyRule, { deny: unknown }>['deny'], 'multi-statement'>): Check {
  if (deny === 'write-without-where') {
    return (s) => {
      if (!s.writeWithoutWhere) return undefined;
      return s.command === 'UPDATE' || s.command === 'DELETE'
        ? `${s.command} without WHERE`
        : `${s.command} holds an UPDATE or DELETE without WHERE`;
    };
  }
  if (typeof deny === 'string' || Array.isArray(deny)) {
    const classes = new Set<StatementClass>(Array.isArray(deny) ? deny : [deny]);
    return (s) => {
      if (s.prepare || (s.execute && s.class === 'utility')) return undefined;
      if (classes.has(s.class)) return `${s.command} is a ${s.class} statement`;
      // SELECT ... INTO is classed a write (it is phrased as a query) but creates a table.
      if (classes.has('ddl') && s.command === 'SELECT INTO') return 'SELECT INTO creates a table';
      return undefined;
    };
  }
  if ('functions' in deny) {
    const names = deny.functions.map(splitName);
    return (s) => {
      for (const f of s.functions) {
        const called = splitName(f);
        if (names.some((n) => sameObject(n, called))) return `${s.command} calls ${f}()`;
      }
      return sqlRunner(s);
    };
  }
  const tables = deny.tables.map(splitName);
  const access = deny.access;
  return (s) => {
    const runner = sqlRunner(s);
    if (runner !== undefined) return runner;
    // CASCADE drops or empties tables the statement does not name (a schema's, referencing ones).
    if (s.cascades) return `${s.command} ... CASCADE can reach tables it does not name`;
    for (const t of s.tables) {
      // A view, rule, trigger or function made over a protected table is a way to it.
      if (s.class === 'ddl' && tables.some((n) => sameObject(n, { schema: t.schema, name: t.name }))) {
        return `${s.command} over ${t.schema ? `${t.schema}.` : ''}${t.name}`;
      }
    }
    for (const t of s.tables) {
      if (!touches(t, access)) continue;
      const used = { schema: t.schema, name: t.name };
      if (tables.some((n) => sameObject(n, used))) {
        return `${s.command} ${t.access === 'write' ? 'writes' : 'reads'} ${t.schema ? `${t.schema}.` : ''}${t.name}`;
      }
    }
    return undefined;
  };
}

/** Why a statement's SQL-running function call cannot be checked, if it makes one. */
function sqlRunner(s: StatementInfo): string | undefined {
  for (const f of s.functions) {
    if (SQL_RUNNING_FUNCTIONS.has(splitName(f).name)) {
      return `${s.command} calls ${f}(), which runs SQL pgward cannot check`;
    }
  }
  return undefined;
}

/**
 * `read` matches every use: a write can return the rows it touches (RETURNING) or tell them
 * apart by its row count, so a table nobody may read is one nobody may write either.
 */
function touches(t: TableUse, access: 'read' | 'write' | 'any'): boolean {
  return access === 'write' ? t.access === 'write' : true;
}

function splitName(qualified: string): { schema: string | null; name: string } {
  const dot = qualified.lastIndexOf('.');
  return dot < 0
    ? { schema: null, name: qualified }
    : { schema: qualified.slice(0, dot), name: qualified.slice(dot + 1) };
}

/**
 * Whether a rule's name and a statement's name are the same object. An unqualified name in a
 * statement resolves through search_path, so it matches a rule's name in any schema.
 */
function sameObject(
  rule: { schema: string | null; name: string },
  used: { schema: string | null; name: string },
): boolean {
  return (
    rule.name === used.name && (rule.schema === null || used.schema === null || rule.schema === used.schema)
  );
}

/** What would undo or get around a read-only session. */
function readOnlyCheck(s: StatementInfo): string | undefined {
  // Judged on what they prepare or run (CREATE TABLE AS EXECUTE is DDL itself).
  if (s.prepare || (s.execute && s.class === 'utility')) return undefined;
  switch (s.class) {
    case 'write':
    case 'ddl':
    case 'dcl':
    case 'truncate':
      return `${s.command} writes`;
    case 'unknown':
      return `${s.command} cannot be checked (${s.unknownReason ?? 'unknown statement'})`;
  }
  if (s.readWrite) return `${s.command} starts read-write`;
  if (s.lockingRead) return `${s.command} locks rows (FOR UPDATE/SHARE)`;
  if (WRITING_UTILITIES.has(s.command)) return `${s.command} changes the database`;
  for (const setting of s.settings) {
    if (READ_ONLY_SETTINGS.has(setting.name)) return `${s.command} changes ${setting.name}`;
  }
  for (const f of s.functions) {
    if (WRITING_FUNCTIONS.has(splitName(f).name)) return `${s.command} calls ${f}(), which writes`;
  }
  return undefined;
}
