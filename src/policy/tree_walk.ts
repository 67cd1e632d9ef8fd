/**
 * One walk over a statement's parse tree, at any depth (CTEs, subqueries, joins, nested DML):
 * the relations it reads and writes, the functions it calls, the writes it hides.
 */
import type { SettingChange, TableUse } from './classification.js';
import type { PgNode } from './sql_parser.js';

/** What a walk found; merged upwards from nested statements and PL/pgSQL bodies. */
export interface Uses {
  tables: TableUse[];
  functions: string[];
  settings: SettingChange[];
  /** A data change anywhere: DML in a CTE, SELECT INTO, nextval()/setval(). */
  writes: boolean;
  writeWithoutWhere: boolean;
  lockingRead: boolean;
}

export function emptyUses(): Uses {
  return {
    tables: [],
    functions: [],
    settings: [],
    writes: false,
    writeWithoutWhere: false,
    lockingRead: false,
  };
}

/** Sequence functions that change data: a SELECT calling them is a write. */
const WRITING_FUNCTIONS = new Set(['nextval', 'setval', 'pg_catalog.nextval', 'pg_catalog.setval']);
const SET_CONFIG = new Set(['set_config', 'pg_catalog.set_config']);

/** Walks must stop somewhere: PostgreSQL's own stack limit bounds real trees far below this. */
const MAX_DEPTH = 2000;

export class TreeTooDeep extends Error {}

/** The string value of a `{ String: { sval } }` or A_Const node, else undefined. */
export function stringValue(node: unknown): string | undefined {
  const n = node as PgNode | undefined;
  if (n === undefined || n === null || typeof n !== 'object') return undefined;
  const str = n['String'] as { sval?: string } | undefined;
  if (str !== undefined) return str.sval ?? '';
  const c = n['A_Const'] as Record<string, unknown> | undefined;
  if (c === undefined) return undefined;
  if (c['sval'] !== undefined) return (c['sval'] as { sval?: string }).sval ?? '';
  return undefined;
}

/** A constant's text (strings, numbers, booleans) as SET would read it, else undefined. */
export function constText(node: unknown): string | undefined {
  const s = stringValue(node);
  if (s !== undefined) return s;
  const c = (node as PgNode | undefined)?.['A_Const'] as Record<string, unknown> | undefined;
  if (c === undefined) return undefined;
  if (c['ival'] !== undefined) return String((c['ival'] as { ival?: number }).ival ?? 0);
  if (c['fval'] !== undefined) return (c['fval'] as { fval?: string }).fval ?? '0';
  if (c['boolval'] !== undefined) return (c['boolval'] as { boolval?: boolean }).boolval ? 'on' : 'off';
  return undefined;
}

/** `a.b.c` from a list of String nodes (funcname, object names). */
export function dottedName(list: unknown): string {
  if (!Array.isArray(list)) return '';
  return list.map((n) => stringValue(n) ?? '').join('.');
}

function addTable(uses: Uses, rangeVar: PgNode, access: 'read' | 'write'): void {
  const schema = typeof rangeVar['schemaname'] === 'string' ? rangeVar['schemaname'] : null;
  const name = rangeVar['relname'] as string;
  addTableUse(uses, { schema, name, access });
  // pg_settings' UPDATE rule calls set_config() with the row's name: a setting pgward cannot name.
  if (access === 'write' && name === 'pg_settings' && (schema === null || schema === 'pg_catalog')) {
    uses.settings.push({ name: '?', via: 'set_config', value: null });
  }
}

export function addTableUse(uses: Uses, t: TableUse): void {
  if (!uses.tables.some((u) => u.schema === t.schema && u.name === t.name && u.access === t.access)) {
    uses.tables.push(t);
  }
}

export function addFunction(uses: Uses, name: string): void {
  if (!uses.functions.includes(name)) uses.functions.push(name);
}

/** Folds what `nested` found into `into` (a DO body, a PREPAREd or EXPLAINed statement). */
export function mergeUses(into: Uses, nested: Uses): void {
  for (const t of nested.tables) addTableUse(into, t);
  for (const f of nested.functions) addFunction(into, f);
  into.settings.push(...nested.settings);
  into.writes ||= nested.writes;
  into.writeWithoutWhere ||= nested.writeWithoutWhere;
  into.lockingRead ||= nested.lockingRead;
}

/**
 * Walks a parse tree. `writeTargets` holds the RangeVar objects a statement writes (the caller
 * adds the top-level DDL targets); nested DML adds its own as the walk reaches it.
 */
export function walkTree(root: unknown, uses: Uses, writeTargets: Set<object> = new Set()): void {
  const visit = (node: unknown, ctes: readonly string[], depth: number): void => {
    if (depth > MAX_DEPTH) throw new TreeTooDeep('statement nested too deeply');
    if (node === null || typeof node !== 'object') return;
    if (Array.isArray(node)) {
      for (const item of node) visit(item, ctes, depth + 1);
      return;
    }
    const obj = node as PgNode;
    // A RangeVar appears both wrapped ({ RangeVar: {...} }) and bare (InsertStmt.relation).
    if (typeof obj['relname'] === 'string') {
      const unqualified = obj['schemaname'] === undefined;
      if (!(unqualified && ctes.includes(obj['relname']))) {
        addTable(uses, obj, writeTargets.has(obj) ? 'write' : 'read');
      }
      return;
    }
    let scope = ctes;
    const withClause = obj['withClause'] as
      | { ctes?: { CommonTableExpr?: { ctename?: string } }[] }
      | undefined;
    if (withClause?.ctes !== undefined) {
      scope = [...ctes, ...withClause.ctes.map((c) => c.CommonTableExpr?.ctename ?? '')];
    }
    for (const [key, value] of Object.entries(obj)) {
      const v = value as PgNode;
      switch (key) {
        case 'InsertStmt':
        case 'MergeStmt':
          uses.writes = true;
          if (v['relation']) writeTargets.add(v['relation'] as object);
          break;
        case 'UpdateStmt':
        case 'DeleteStmt':
          uses.writes = true;
          if (v['relation']) writeTargets.add(v['relation'] as object);
          // WHERE CURRENT OF a cursor is a WHERE (one row).
          if (v['whereClause'] === undefined) uses.writeWithoutWhere = true;
          break;
        case 'SelectStmt':
          if (Array.isArray(v['lockingClause']) && v['lockingClause'].length > 0) uses.lockingRead = true;
          if (v['intoClause'] !== undefined) {
            uses.writes = true;
            const rel = (v['intoClause'] as PgNode)['rel'];
            if (rel) writeTargets.add(rel as object);
          }
          break;
        case 'FuncCall':
          visitFuncCall(v, uses);
          break;
        case 'CallStmt':
          // CALL's FuncCall is bare, not wrapped.
          if (v['funccall']) visitFuncCall(v['funccall'] as PgNode, uses);
          break;
      }
      visit(value, scope, depth + 1);
    }
  };
  visit(root, [], 0);
}

function visitFuncCall(call: PgNode, uses: Uses): void {
  const name = dottedName(call['funcname']);
  addFunction(uses, name);
  if (WRITING_FUNCTIONS.has(name)) uses.writes = true;
  if (SET_CONFIG.has(name)) {
    const args = (call['args'] as unknown[] | undefined) ?? [];
    const setting = stringValue(args[0]);
    uses.settings.push({
      name: setting === undefined ? '?' : setting.toLowerCase(),
      via: 'set_config',
      value: constText(args[1]) ?? null,
    });
  }
}
