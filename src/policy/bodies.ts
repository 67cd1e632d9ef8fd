/**
 * DO blocks and CREATE FUNCTION/PROCEDURE bodies: every SQL statement and expression inside is
 * classified and merged into the outer statement's info. EXECUTE of a string literal (or of
 * literals joined with ||) is classified too; EXECUTE of anything computed cannot be seen, so
 * the statement gets `opaqueSql` and fails closed.
 */
import type { StatementInfo } from './classification.js';
import { baseInfo, type Context, classifyNested, infoOf, mergeInto } from './classify.js';
import { functionSettings } from './settings.js';
import { type PgNode, parsePlPgSql, parseSql } from './sql_parser.js';
import { emptyUses, stringValue, type Uses, walkTree } from './tree_walk.js';

/** PL/pgSQL statement fields that hold SQL text computed at run time. */
const DYNAMIC_FIELDS: Record<string, string> = {
  PLpgSQL_stmt_dynexecute: 'query',
  PLpgSQL_stmt_dynfors: 'query',
  PLpgSQL_stmt_open: 'dynquery',
  PLpgSQL_stmt_return_query: 'dynquery',
};

/** PL/pgSQL's parse modes (RawParseMode): 0 is a whole SQL statement, 3-5 an assignment. */
const PARSE_MODE_STATEMENT = 0;
const PARSE_MODE_ASSIGN = new Set([3, 4, 5]);

/** Languages whose function bodies name compiled code, not SQL (creating them needs superuser). */
const COMPILED_LANGUAGES = new Set(['c', 'internal']);

/** A DO block: its class is the strongest class among the statements of its body. */
export function inspectDoBody(node: PgNode, command: string, ctx: Context): StatementInfo {
  const info = baseInfo('read', command, emptyUses());
  const uses = usesOf(info);
  const language = (defElemString(node['args'], 'language') ?? 'plpgsql').toLowerCase();
  if (language !== 'plpgsql') {
    opaque(info, `a DO block in LANGUAGE ${language} cannot be inspected`);
  } else {
    inspectPlPgSql(info, uses, ctx);
  }
  finish(info, uses);
  if (info.opaqueSql !== undefined) {
    info.class = 'unknown';
    info.unknownReason = info.opaqueSql;
  }
  return info;
}

/** CREATE FUNCTION/PROCEDURE: DDL, carrying what its body would do when called. */
export function inspectFunctionBody(node: PgNode, command: string, ctx: Context): StatementInfo {
  const body = baseInfo('read', command, emptyUses());
  const uses = usesOf(body);
  const options = node['options'];
  const language = (defElemString(options, 'language') ?? (node['sql_body'] ? 'sql' : '')).toLowerCase();
  if (node['sql_body'] !== undefined) {
    // BEGIN ATOMIC / RETURN bodies are parsed with the CREATE; the grammar takes any statement.
    for (const stmt of bodyStatements(node['sql_body'])) {
      if (stmt['ReturnStmt'] !== undefined) walkTree(stmt, uses);
      else mergeInto(body, infoOf(stmt, ctx), uses);
    }
  } else if (language === 'sql') {
    const source = functionSource(options);
    if (source === undefined) opaque(body, 'the SQL function body cannot be read');
    else mergeText(body, uses, source, ctx);
  } else if (language === 'plpgsql') {
    inspectPlPgSql(body, uses, ctx);
  } else if (!COMPILED_LANGUAGES.has(language)) {
    opaque(body, `a function body in LANGUAGE ${language || '(none)'} cannot be inspected`);
  }
  finish(body, uses);
  // Its SET clauses apply whenever it runs, while PostgreSQL compiles the body too.
  uses.settings.push(...functionSettings(options));
  const info = baseInfo('ddl', command, uses);
  info.writeWithoutWhere = body.writeWithoutWhere;
  info.changesRole = body.changesRole;
  if (body.opaqueSql !== undefined) info.opaqueSql = body.opaqueSql;
  return info;
}

/** Uses that share the info's arrays, so merges land in the info itself. */
function usesOf(info: StatementInfo): Uses {
  return { ...emptyUses(), tables: info.tables, functions: info.functions, settings: info.settings };
}

/** Copies the flags a walk set on `uses` onto the info. */
function finish(info: StatementInfo, uses: Uses): void {
  info.writeWithoutWhere ||= uses.writeWithoutWhere;
  info.lockingRead ||= uses.lockingRead;
  if (uses.writes && (info.class === 'read' || info.class === 'utility' || info.class === 'transaction')) {
    info.class = 'write';
  }
}

/** The statements of a BEGIN ATOMIC body (Lists of statements) or a RETURN body. */
function bodyStatements(node: unknown): PgNode[] {
  if (node === null || typeof node !== 'object') return [];
  const list = (node as PgNode)['List'] as { items?: unknown[] } | undefined;
  if (list !== undefined) return (list.items ?? []).flatMap(bodyStatements);
  return [node as PgNode];
}

function opaque(info: StatementInfo, reason: string): void {
  info.opaqueSql ??= reason;
}

function defElemString(list: unknown, name: string): string | undefined {
  if (!Array.isArray(list)) return undefined;
  for (const item of list) {
    const d = (item as PgNode)['DefElem'] as PgNode | undefined;
    if (d?.['defname'] === name) return stringValue(d['arg']);
  }
  return undefined;
}

/** `AS 'body'` of CREATE FUNCTION: a List of one String (two for C: file, symbol). */
function functionSource(options: unknown): string | undefined {
  if (!Array.isArray(options)) return undefined;
  for (const item of options) {
    const d = (item as PgNode)['DefElem'] as PgNode | undefined;
    if (d?.['defname'] !== 'as') continue;
    const items = ((d['arg'] as PgNode | undefined)?.['List'] as PgNode | undefined)?.['items'];
    return Array.isArray(items) ? stringValue(items[0]) : undefined;
  }
  return undefined;
}

/** Classifies SQL text found in a body and merges each of its statements. */
function mergeText(info: StatementInfo, uses: Uses, text: string, ctx: Context): void {
  const nested = classifyNested(text, ctx.nesting + 1);
  if (nested.secrets.length > 0) ctx.bodyHasSecret = true;
  for (const s of nested.statements) mergeInto(info, s, uses);
}

function inspectPlPgSql(info: StatementInfo, uses: Uses, ctx: Context): void {
  const text = ctx.bytes.subarray(ctx.raw.start, ctx.raw.end).toString('utf8');
  const compiled = parsePlPgSql(text);
  if (!compiled.ok) {
    opaque(info, `the PL/pgSQL body does not compile: ${compiled.error.message}`);
    return;
  }
  const visit = (node: unknown, dynamicField: string | undefined): void => {
    if (node === null || typeof node !== 'object') return;
    if (Array.isArray(node)) {
      for (const item of node) visit(item, undefined);
      return;
    }
    for (const [key, value] of Object.entries(node as PgNode)) {
      if (key === 'PLpgSQL_expr') {
        const expr = value as { query?: string; parseMode?: number };
        expression(info, uses, expr.query ?? '', expr.parseMode ?? 0, dynamicField !== undefined, ctx);
        continue;
      }
      const field = DYNAMIC_FIELDS[key];
      if (field !== undefined && value !== null && typeof value === 'object') {
        for (const [f, v] of Object.entries(value as PgNode)) visit(v, f === field ? f : undefined);
        continue;
      }
      visit(value, undefined);
    }
  };
  visit(compiled.functions, undefined);
}

function expression(
  info: StatementInfo,
  uses: Uses,
  query: string,
  mode: number,
  dynamic: boolean,
  ctx: Context,
): void {
  if (!dynamic && mode === PARSE_MODE_STATEMENT) {
    mergeText(info, uses, query, ctx);
    return;
  }
  // An expression (or `target := expression`) reads as the target list of a SELECT.
  const source = PARSE_MODE_ASSIGN.has(mode) ? query.replace(/^[^:=]*:?=/s, '') : query;
  const select = `SELECT ${source}\n`;
  if (!dynamic) {
    mergeText(info, uses, select, ctx);
    return;
  }
  const parsed = parseSql(select);
  const target =
    parsed.ok && parsed.statements.length === 1 ? selectTarget(parsed.statements[0]?.stmt) : undefined;
  if (target !== undefined) walkTree(target, uses);
  const literal = target === undefined ? undefined : foldString(target);
  if (literal === undefined) {
    opaque(info, 'EXECUTE of a computed string (format(), a variable, ...) cannot be inspected');
    info.class = 'unknown';
    return;
  }
  mergeText(info, uses, literal, ctx);
}

function selectTarget(stmt: PgNode | undefined): unknown {
  const select = stmt?.['SelectStmt'] as PgNode | undefined;
  const list = select?.['targetList'] as PgNode[] | undefined;
  if (list?.length !== 1 || Object.keys(select ?? {}).some((k) => !SIMPLE_SELECT_KEYS.has(k)))
    return undefined;
  return (list[0]?.['ResTarget'] as PgNode | undefined)?.['val'];
}
const SIMPLE_SELECT_KEYS = new Set(['targetList', 'limitOption', 'op']);

/** A string literal, or literals joined with ||, possibly cast to text: its value. */
function foldString(node: unknown): string | undefined {
  const literal = stringValue(node);
  if (literal !== undefined) return literal;
  const n = node as PgNode;
  const cast = n['TypeCast'] as PgNode | undefined;
  if (cast !== undefined) return foldString(cast['arg']);
  const op = n['A_Expr'] as PgNode | undefined;
  if (op === undefined || (op['kind'] !== undefined && op['kind'] !== 'AEXPR_OP')) return undefined;
  const name = op['name'] as unknown[] | undefined;
  if (name?.length !== 1 || stringValue(name[0]) !== '||') return undefined;
  const left = foldString(op['lexpr']);
  const right = foldString(op['rexpr']);
  return left === undefined || right === undefined ? undefined : left + right;
}
