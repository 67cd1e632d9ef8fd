/**
 * Statement classification on PostgreSQL's own grammar: classify(text) gives one StatementInfo
 * per statement of a Query text. The class table is documented in docs/policies.md.
 */
import { inspectDoBody, inspectFunctionBody } from './bodies.js';
import type { Classification, StatementClass, StatementInfo } from './classification.js';
import { findPasswordSecrets, secretsOnSyntaxError } from './secrets.js';
import { functionSettings, readWriteOption, settingsOf } from './settings.js';
import { type PgNode, parseSql, type RawStatement } from './sql_parser.js';
import { commandTag } from './statement_commands.js';
import { constText, emptyUses, mergeUses, TreeTooDeep, type Uses, walkTree } from './tree_walk.js';

/** Texts longer than this are not parsed (a longer statement is refused where a rule needs it). */
export const MAX_CLASSIFY_BYTES = 1024 * 1024;
/** Nesting of EXECUTE 'literal' inside DO bodies inside literals...: deeper is unknown. */
const MAX_NESTING = 8;

/** Classifies every statement of a text (a Query message may hold several). */
export function classify(text: string): Classification {
  return classifyNested(text, 0);
}

/** Classifies a text found inside another statement (a DO body, an EXECUTE literal). */
export function classifyNested(text: string, nesting: number): Classification {
  const bytes = Buffer.from(text, 'utf8');
  if (bytes.length > MAX_CLASSIFY_BYTES) {
    return unknownText(`the statement is longer than ${MAX_CLASSIFY_BYTES} bytes`, text, bytes);
  }
  if (nesting > MAX_NESTING) return unknownText('SQL nested too deeply inside DO bodies', text, bytes);
  const parsed = parseSql(text, bytes.length);
  if (!parsed.ok) {
    return {
      statements: [unknownInfo('UNKNOWN', `syntax error: ${parsed.error.message}`)],
      secrets: secretsOnSyntaxError(text, bytes),
      syntaxError: parsed.error,
    };
  }
  const statements: StatementInfo[] = [];
  const secrets: Classification['secrets'] = [];
  for (const raw of parsed.statements) {
    try {
      const ctx: Context = { bytes, raw, nesting, bodyHasSecret: false };
      statements.push(infoOf(raw.stmt, ctx));
      secrets.push(...findPasswordSecrets(raw, text, bytes, ctx.bodyHasSecret));
    } catch (err) {
      if (!(err instanceof TreeTooDeep || err instanceof RangeError)) throw err;
      statements.push(unknownInfo('UNKNOWN', 'the statement is nested too deeply to inspect'));
    }
  }
  return { statements, secrets };
}

/** Per statement: the text it came from, for bodies and secrets. */
export interface Context {
  bytes: Buffer;
  raw: RawStatement;
  nesting: number;
  /** Set when a DO or function body holds a password literal: the whole body is a secret. */
  bodyHasSecret: boolean;
}

function unknownText(reason: string, text: string, bytes: Buffer): Classification {
  return { statements: [unknownInfo('UNKNOWN', reason)], secrets: secretsOnSyntaxError(text, bytes) };
}

/** A statement pgward cannot decide; fails closed wherever a rule depends on it. */
export function unknownInfo(command: string, reason: string): StatementInfo {
  return { ...baseInfo('unknown', command, emptyUses()), unknownReason: reason, opaqueSql: reason };
}

function baseInfo(cls: StatementClass, command: string, uses: Uses): StatementInfo {
  return {
    class: cls,
    command,
    tables: uses.tables,
    functions: uses.functions,
    changesRole: false,
    writeWithoutWhere: uses.writeWithoutWhere,
    settings: uses.settings,
    readWrite: false,
    lockingRead: uses.lockingRead,
  };
}

/** Statement types that change a role, its stored settings, or the settings its logins get. */
const ROLE_CHANGING = new Set([
  'CreateRoleStmt',
  'AlterRoleStmt',
  'AlterRoleSetStmt',
  'DropRoleStmt',
  'GrantRoleStmt',
  'ReassignOwnedStmt',
  'DropOwnedStmt',
  'AlterDatabaseSetStmt',
  'AlterSystemStmt',
]);
const ROLE_OBJECT_STATEMENTS = new Set(['RenameStmt', 'CommentStmt', 'SecLabelStmt']);

const DCL = new Set([
  'GrantStmt',
  'GrantRoleStmt',
  'AlterDefaultPrivilegesStmt',
  'CreateRoleStmt',
  'AlterRoleStmt',
  'AlterRoleSetStmt',
  'DropRoleStmt',
  'ReassignOwnedStmt',
  'DropOwnedStmt',
]);
const UTILITY = new Set([
  'DiscardStmt',
  'ListenStmt',
  'NotifyStmt',
  'UnlistenStmt',
  'VacuumStmt',
  'ClusterStmt',
  'ReindexStmt',
  'CheckPointStmt',
  'LoadStmt',
  'DeallocateStmt',
  'ClosePortalStmt',
  'AlterSystemStmt',
]);
/** Fields of a DDL statement that name the relation it changes. */
const DDL_TARGETS = ['relation', 'view', 'sequence', 'table'];
const DROPPED_RELATIONS = new Set([
  'OBJECT_TABLE',
  'OBJECT_VIEW',
  'OBJECT_MATVIEW',
  'OBJECT_SEQUENCE',
  'OBJECT_FOREIGN_TABLE',
  'OBJECT_INDEX',
]);

function isDdlType(type: string): boolean {
  return /^(Create|Alter|Drop|Define|Comment|SecLabel|Rename|Import|Index|View|Rule|Composite)/.test(type);
}

/** The StatementInfo of one statement node (`{ SelectStmt: {...} }`). */
export function infoOf(stmt: PgNode, ctx: Context): StatementInfo {
  const type = Object.keys(stmt)[0] ?? '';
  const node = (stmt[type] ?? {}) as PgNode;
  const command = commandTag(type, node);
  switch (type) {
    case 'ExplainStmt':
      return explainInfo(node, ctx);
    case 'PrepareStmt':
      return prepareInfo(node, ctx);
    case 'DeclareCursorStmt': {
      const inner = infoOf(node['query'] as PgNode, ctx);
      return { ...inner, command, declare: { cursor: String(node['portalname'] ?? '') } };
    }
    case 'DoStmt':
      return inspectDoBody(node, command, ctx);
    case 'CreateFunctionStmt':
      return inspectFunctionBody(node, command, ctx);
  }
  const uses = emptyUses();
  const writeTargets = new Set<object>();
  let cls: StatementClass;
  if (type === 'SelectStmt') {
    walkTree(stmt, uses, writeTargets);
    cls = uses.writes ? 'write' : 'read';
  } else if (
    type === 'InsertStmt' ||
    type === 'UpdateStmt' ||
    type === 'DeleteStmt' ||
    type === 'MergeStmt'
  ) {
    walkTree(stmt, uses, writeTargets);
    cls = 'write';
  } else if (type === 'CopyStmt') {
    if (node['is_from'] === true && node['relation']) writeTargets.add(node['relation'] as object);
    walkTree(stmt, uses, writeTargets);
    cls = node['is_from'] === true || uses.writes ? 'write' : 'read';
    if (node['is_program'] === true) {
      return { ...unknownInfo(command, 'COPY runs a program on the database server'), ...usesOnly(uses) };
    }
  } else if (type === 'CreateTableAsStmt') {
    const into = node['into'] as PgNode | undefined;
    if (into?.['rel']) writeTargets.add(into['rel'] as object);
    walkTree(stmt, uses, writeTargets);
    cls = node['is_select_into'] === true ? 'write' : 'ddl';
    // CREATE TABLE ... AS EXECUTE name runs a prepared statement.
    const executed = (node['query'] as PgNode | undefined)?.['ExecuteStmt'] as PgNode | undefined;
    if (executed) {
      const info = baseInfo(cls, command, uses);
      info.execute = { name: String(executed['name'] ?? '') };
      return info;
    }
  } else if (type === 'RefreshMatViewStmt' || type === 'LockStmt' || type === 'TruncateStmt') {
    markRelations(node, writeTargets);
    walkTree(stmt, uses, writeTargets);
    cls = type === 'TruncateStmt' ? 'truncate' : 'write';
  } else if (type === 'VariableSetStmt') {
    const info = baseInfo(
      node['kind'] === 'VAR_SET_MULTI' && node['name'] === 'TRANSACTION' ? 'transaction' : 'utility',
      command,
      uses,
    );
    info.settings = settingsOf(node);
    info.readWrite = node['kind'] === 'VAR_SET_MULTI' && readWriteOption(node['args']);
    return info;
  } else if (type === 'TransactionStmt') {
    return { ...baseInfo('transaction', command, uses), readWrite: readWriteOption(node['options']) };
  } else if (type === 'ConstraintsSetStmt') {
    cls = 'transaction';
  } else if (type === 'FetchStmt') {
    return { ...baseInfo('read', command, uses), fetch: { cursor: String(node['portalname'] ?? '') } };
  } else if (type === 'VariableShowStmt') {
    cls = 'read';
  } else if (type === 'ExecuteStmt') {
    walkTree(node['params'], uses);
    return { ...baseInfo('utility', command, uses), execute: { name: String(node['name'] ?? '') } };
  } else if (type === 'CallStmt') {
    walkTree(stmt, uses);
    return {
      ...baseInfo('unknown', command, uses),
      unknownReason: 'CALL runs a procedure whose body pgward does not see',
    };
  } else if (UTILITY.has(type)) {
    walkTree(stmt, uses);
    cls = 'utility';
    if (type === 'DiscardStmt' && node['target'] === 'DISCARD_ALL') {
      uses.settings.push({ name: 'all', via: 'reset', value: null });
    }
  } else if (DCL.has(type)) {
    // GRANT/REVOKE on tables changes them (their privileges).
    if (type === 'GrantStmt') markRelations({ relations: node['objects'] }, writeTargets);
    walkTree(stmt, uses, writeTargets);
    cls = 'dcl';
  } else if (isDdlType(type)) {
    // ALTER FUNCTION ... SET applies whenever the function runs (and lexes its body).
    if (type === 'AlterFunctionStmt') uses.settings.push(...functionSettings(node['actions']));
    for (const field of DDL_TARGETS) {
      const target = node[field];
      if (target !== null && typeof target === 'object') writeTargets.add(target);
    }
    walkTree(stmt, uses, writeTargets);
    if (type === 'DropStmt' && DROPPED_RELATIONS.has(String(node['removeType']))) droppedTables(node, uses);
    cls = type === 'RenameStmt' && node['renameType'] === 'OBJECT_ROLE' ? 'dcl' : 'ddl';
  } else {
    return unknownInfo(command, `pgward does not classify ${command} statements`);
  }
  const info = baseInfo(cls, command, uses);
  info.changesRole = ROLE_CHANGING.has(type) || (ROLE_OBJECT_STATEMENTS.has(type) && isRoleObject(node));
  if (node['behavior'] === 'DROP_CASCADE') info.cascades = true;
  return info;
}

function usesOnly(uses: Uses): Partial<StatementInfo> {
  return { tables: uses.tables, functions: uses.functions, settings: uses.settings };
}

function isRoleObject(node: PgNode): boolean {
  return node['objtype'] === 'OBJECT_ROLE' || node['renameType'] === 'OBJECT_ROLE';
}

function markRelations(node: PgNode, writeTargets: Set<object>): void {
  const rels = [node['relation'], ...((node['relations'] as unknown[] | undefined) ?? [])];
  for (const r of rels) {
    if (r === undefined || r === null || typeof r !== 'object') continue;
    writeTargets.add(((r as PgNode)['RangeVar'] as object | undefined) ?? r);
  }
}

function droppedTables(node: PgNode, uses: Uses): void {
  for (const obj of (node['objects'] as PgNode[] | undefined) ?? []) {
    const names = ((obj['List'] as PgNode | undefined)?.['items'] as unknown[] | undefined) ?? [];
    const parts = names.map((n) => (n as { String?: { sval?: string } }).String?.sval ?? '');
    if (parts.length === 0) continue;
    const name = parts[parts.length - 1] ?? '';
    const schema = parts.length > 1 ? (parts[parts.length - 2] ?? null) : null;
    if (!uses.tables.some((t) => t.schema === schema && t.name === name && t.access === 'write')) {
      uses.tables.push({ schema, name, access: 'write' });
    }
  }
}

/** EXPLAIN runs its statement only with ANALYZE; without it, nothing is read or written. */
function explainInfo(node: PgNode, ctx: Context): StatementInfo {
  const inner = infoOf(node['query'] as PgNode, ctx);
  const analyze = ((node['options'] as PgNode[] | undefined) ?? []).some((o) => {
    const d = o['DefElem'] as PgNode | undefined;
    return d?.['defname'] === 'analyze' && isTrue(d['arg']);
  });
  if (analyze) return { ...inner, command: 'EXPLAIN' };
  const planned: StatementInfo = {
    ...baseInfo('read', 'EXPLAIN', emptyUses()),
    tables: inner.tables.map((t) => ({ ...t, access: 'read' as const })),
    functions: inner.functions,
  };
  if (inner.execute !== undefined) planned.execute = inner.execute;
  return planned;
}

/** A boolean option's value: no argument means true (EXPLAIN (ANALYZE)). */
function isTrue(arg: unknown): boolean {
  if (arg === undefined) return true;
  const text = (constText(arg) ?? (arg as { Boolean?: { boolval?: boolean } }).Boolean?.boolval)?.toString();
  return text === undefined || !/^(f|fa|fal|fals|false|n|no|of|off|0)$/i.test(text);
}

/** PREPARE runs nothing; its statement's uses are reported on it too, so rules refuse early. */
function prepareInfo(node: PgNode, ctx: Context): StatementInfo {
  const inner = infoOf(node['query'] as PgNode, ctx);
  return {
    ...inner,
    class: 'utility',
    command: 'PREPARE',
    readWrite: false,
    prepare: { name: String(node['name'] ?? ''), statement: inner },
  };
}

/** Folds a nested statement's info into an outer one (DO body, function body). */
export function mergeInto(outer: StatementInfo, innerInfo: StatementInfo, uses: Uses): void {
  // A PREPARE in a body counts as what it prepares; it and EXECUTEs are kept for the session.
  const inner = innerInfo.prepare ? innerInfo.prepare.statement : innerInfo;
  if (innerInfo.prepare || innerInfo.execute || innerInfo.nested) {
    if (outer.nested === undefined) outer.nested = { prepares: [], executes: [] };
    const nested = outer.nested;
    if (innerInfo.prepare) nested.prepares.push(innerInfo.prepare);
    if (innerInfo.execute) nested.executes.push(innerInfo.execute.name);
    if (innerInfo.nested) {
      nested.prepares.push(...innerInfo.nested.prepares);
      nested.executes.push(...innerInfo.nested.executes);
    }
  }
  if (inner.cascades) outer.cascades = true;
  mergeUses(uses, {
    tables: inner.tables,
    functions: inner.functions,
    settings: inner.settings,
    writes: inner.class === 'write',
    writeWithoutWhere: inner.writeWithoutWhere,
    lockingRead: inner.lockingRead,
  });
  outer.changesRole ||= inner.changesRole;
  outer.readWrite ||= inner.readWrite;
  if (inner.opaqueSql !== undefined && outer.opaqueSql === undefined) outer.opaqueSql = inner.opaqueSql;
  if (CLASS_RANK[inner.class] > CLASS_RANK[outer.class]) outer.class = inner.class;
}

/** Which class a DO body takes when its statements differ: the one a rule would care most about. */
const CLASS_RANK: Record<StatementClass, number> = {
  read: 0,
  transaction: 1,
  utility: 2,
  write: 3,
  truncate: 4,
  ddl: 5,
  dcl: 6,
  unknown: 7,
};

export { baseInfo };
