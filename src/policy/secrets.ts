/**
 * Password literals in statement texts, found from PostgreSQL's own parse and lexer (never a
 * regular expression over the text), and their redaction for the audit.
 */
import type { Classification } from './classification.js';
import { classify } from './classify.js';
import { type PgNode, type RawStatement, type SqlToken, scanSql } from './sql_parser.js';

type Range = Classification['secrets'][number];

/** What a redacted secret reads as in the recorded text. */
export const REDACTED = "'[redacted]'";

/** A string literal token: SCONST ('...', E'...', $$...$$), or U&'...' (which the scanner leaves unnamed). */
function isString(t: SqlToken): boolean {
  return t.kind === 'SCONST' || t.kind === 'USCONST' || /^u&'/i.test(t.text);
}

/**
 * The byte ranges of password literals in one parsed statement: `PASSWORD 'x'` of CREATE/ALTER
 * ROLE|USER|GROUP, `password 'x'` in OPTIONS of user mappings and servers; with `wholeBody`
 * (a DO or function body holding one), every string literal of the statement.
 */
export function findPasswordSecrets(
  raw: RawStatement,
  text: string,
  bytes: Buffer,
  wholeBody: boolean,
): Range[] {
  const locations: number[] = [];
  collectPasswordOptions(raw.stmt, locations);
  const conninfo = CONNINFO_HINT.test(text);
  if (locations.length === 0 && !wholeBody && !conninfo) return [];
  const tokens = scanSql(text);
  if (tokens === undefined) return [{ start: raw.start, end: raw.end }];
  const inStatement = tokens.filter((t) => t.start >= raw.start && t.end <= raw.end && isString(t));
  if (wholeBody) return inStatement.map(range);
  const found: Range[] = [];
  // Connection strings (CREATE SUBSCRIPTION ... CONNECTION, dblink_connect(...)) holding one.
  if (conninfo) for (const t of inStatement) if (CONNINFO_SECRET.test(t.text)) found.push(range(t));
  for (const location of locations) {
    const literal = inStatement.find((t) => t.start >= location);
    if (literal !== undefined && found.some((f) => f.start === literal.start)) continue;
    // Not found means the parse and the lexer disagree: hide the rest of the statement.
    found.push(
      literal === undefined ? { start: location, end: Math.min(raw.end, bytes.length) } : range(literal),
    );
  }
  return found;
}

/** A text that may hold a connection string with a password: conninfo `password=` or a URI's `user:pass@`. */
const CONNINFO_HINT = /password|:\/\//i;
/** Inside one string literal: a conninfo password or a URI with user:password@. */
const CONNINFO_SECRET = /password\s*=|:\/\/[^\s/@]*:[^\s/@]*@/i;

function range(t: SqlToken): Range {
  return { start: t.start, end: t.end };
}

/** DefElem locations of `password` options with a value (PASSWORD NULL has none), at any depth. */
function collectPasswordOptions(node: unknown, out: number[]): void {
  if (node === null || typeof node !== 'object') return;
  if (Array.isArray(node)) {
    for (const item of node) collectPasswordOptions(item, out);
    return;
  }
  const def = (node as PgNode)['DefElem'] as PgNode | undefined;
  if (def !== undefined && String(def['defname']).toLowerCase() === 'password' && def['arg'] !== undefined) {
    out.push(typeof def['location'] === 'number' ? def['location'] : 0);
  }
  for (const value of Object.values(node as PgNode)) collectPasswordOptions(value, out);
}

/**
 * A text that does not parse may still hold a password (a typo after it): every string literal
 * after a PASSWORD keyword is hidden; when even the lexer fails, the whole text is.
 */
export function secretsOnSyntaxError(text: string, bytes: Buffer): Range[] {
  if (!/password/i.test(text)) return [];
  const tokens = scanSql(text);
  if (tokens === undefined) return [{ start: 0, end: bytes.length }];
  const keyword = tokens.findIndex(
    (t) => bytes.subarray(t.start, t.end).toString('latin1').toLowerCase() === 'password',
  );
  if (keyword < 0) {
    // The word is inside a literal or an identifier: hide every literal.
    return tokens.filter((t) => isString(t)).map(range);
  }
  return tokens
    .slice(keyword)
    .filter((t) => isString(t))
    .map(range);
}

/** The text with each secret byte range replaced by '[redacted]' (ranges are UTF-8 byte offsets). */
export function redactSecrets(text: string, secrets: readonly Range[]): string {
  if (secrets.length === 0) return text;
  const bytes = Buffer.from(text, 'utf8');
  const sorted = [...secrets].sort((a, b) => a.start - b.start);
  const parts: Buffer[] = [];
  let at = 0;
  const replacement = Buffer.from(REDACTED);
  for (const s of sorted) {
    const start = Math.min(Math.max(s.start, 0), bytes.length);
    const end = Math.min(Math.max(s.end, start), bytes.length);
    if (end <= at) continue;
    // Overlapping ranges extend the secret already replaced.
    if (start >= at) parts.push(bytes.subarray(at, start), replacement);
    at = end;
  }
  parts.push(bytes.subarray(at));
  return Buffer.concat(parts).toString('utf8');
}

/**
 * The text as the audit records it: password literals redacted. Uses the classification when
 * the relay has one; otherwise parses only texts that could hold a password at all.
 */
export function redactForAudit(text: string, classification?: Classification): string {
  if (classification !== undefined) return redactSecrets(text, classification.secrets);
  if (!CONNINFO_HINT.test(text)) return text;
  return redactSecrets(text, classify(text).secrets);
}

/** The text with every string literal (dollar-quoted bodies included) redacted. */
export function redactStrings(text: string): string {
  const tokens = scanSql(text);
  if (tokens === undefined) return REDACTED;
  return redactSecrets(text, tokens.filter(isString).map(range));
}
