/**
 * PostgreSQL's own grammar (libpg-query: the PostgreSQL 18 parser compiled to WASM), behind sync
 * helpers that never throw: a syntax error is a value carrying PostgreSQL's message and position.
 */
import { loadModule, parsePlPgSQLSync, parseSync, scanSync } from 'libpg-query';

let loaded: Promise<void> | undefined;
let ready = false;

/** Loads the WASM parser once; the gateway awaits it at start, before any classify() call. */
export function loadSqlParser(): Promise<void> {
  loaded ??= loadModule().then(() => {
    ready = true;
  });
  return loaded;
}

/** True once loadSqlParser() has finished. */
export function sqlParserReady(): boolean {
  return ready;
}

/** A node of libpg-query's JSON parse tree: `{ TypeName: { ...fields } }`. */
export type PgNode = Record<string, unknown>;

export interface RawStatement {
  /** The statement's node, e.g. `{ SelectStmt: {...} }`. */
  stmt: PgNode;
  /** Byte offset of the statement in the text (UTF-8). */
  start: number;
  /** Byte offset just past the statement (before its `;`, or the end of the text). */
  end: number;
}

/** A syntax error as PostgreSQL reports it. */
export interface SqlSyntaxError {
  message: string;
  /** 1-based character position, as in an ErrorResponse's `P` field; 0 when unknown. */
  position: number;
}

export type ParseOutcome = { ok: true; statements: RawStatement[] } | { ok: false; error: SqlSyntaxError };

function notReady(): never {
  throw new Error('the SQL parser is not loaded: await loadSqlParser() at start');
}

function syntaxError(err: unknown): SqlSyntaxError {
  const details = (err as { sqlDetails?: { message?: string; cursorPosition?: number } }).sqlDetails;
  const message = details?.message ?? (err instanceof Error ? err.message : String(err));
  // libpg-query makes PostgreSQL's 1-based cursor position 0-based; the wire wants it 1-based.
  const position = details?.cursorPosition === undefined ? 0 : details.cursorPosition + 1;
  return { message, position };
}

/** Parses a text of one or more statements; statements carry their byte ranges. */
export function parseSql(text: string, byteLength = Buffer.byteLength(text)): ParseOutcome {
  if (!ready) notReady();
  // libpg-query refuses the empty string; PostgreSQL answers it with EmptyQueryResponse.
  if (text.length === 0) return { ok: true, statements: [] };
  let tree: { stmts?: { stmt: PgNode; stmt_location?: number; stmt_len?: number }[] };
  try {
    tree = parseSync(text) as unknown as typeof tree;
  } catch (err) {
    return { ok: false, error: syntaxError(err) };
  }
  const statements = (tree.stmts ?? []).map((s) => {
    const start = s.stmt_location ?? 0;
    const end = s.stmt_len === undefined || s.stmt_len === 0 ? byteLength : start + s.stmt_len;
    return { stmt: s.stmt, start, end };
  });
  return { ok: true, statements };
}

export type PlPgSqlOutcome = { ok: true; functions: PgNode[] } | { ok: false; error: SqlSyntaxError };

/** Compiles the PL/pgSQL bodies of a DO or CREATE FUNCTION statement's own text. */
export function parsePlPgSql(statementText: string): PlPgSqlOutcome {
  if (!ready) notReady();
  try {
    const out = parsePlPgSQLSync(statementText) as unknown as { plpgsql_funcs?: PgNode[] };
    return { ok: true, functions: out.plpgsql_funcs ?? [] };
  } catch (err) {
    return { ok: false, error: syntaxError(err) };
  }
}

export interface SqlToken {
  /** Byte offsets [start, end) in the scanned text. */
  start: number;
  end: number;
  /** PostgreSQL's token name: SCONST for a string literal, IDENT, ... */
  kind: string;
  text: string;
}

/** PostgreSQL's lexer over a text: the tokens with their byte ranges; undefined if it cannot scan. */
export function scanSql(text: string): SqlToken[] | undefined {
  if (!ready) notReady();
  if (text.length === 0) return [];
  try {
    return scanSync(text).tokens.map((t) => ({
      start: t.start,
      end: t.end,
      kind: t.tokenName,
      text: t.text,
    }));
  } catch {
    return undefined;
  }
}
