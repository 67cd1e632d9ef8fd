/**
 * The rule that is always on: nobody changes a role through pgward (pgward provisions and
 * renews them), and nothing runs SQL that pgward cannot inspect, since it could change one.
 * Also refused: settings that would make PostgreSQL lex a text differently from pgward.
 */
import type { Classification, Refusal, SettingChange, StatementInfo } from './classification.js';
import { classify } from './classify.js';
import type { DecisionCache } from './decision_cache.js';
import { firstLook, needsParseForBuiltins } from './first_look.js';
import { redactForAudit, redactStrings } from './secrets.js';
import type { SqlSyntaxError } from './sql_parser.js';

export const PROTECT_PGWARD = 'protect-pgward';
const INSUFFICIENT_PRIVILEGE = '42501';
const SYNTAX_ERROR = '42601';
const PROGRAM_LIMIT_EXCEEDED = '54000';
const HINT = 'pgward manages your database role; ask an administrator to change access';

/** Bump when protectPgward's decisions change, so cached decisions are not reused. */
export const BUILTIN_RULES_VERSION = 1;

/** What the built-in rules decided about one statement text. */
export interface Judgement {
  /** Set when the statement must not run. */
  refusal?: Refusal;
  /** The text to record when it differs from the real one (secrets redacted). */
  recordAs?: string;
  /** What policies made of it, for the audit record (absent: no policy applied). */
  decision?: AuditDecision;
}

/** A statement's decision as the audit records it. */
export interface AuditDecision {
  decision: 'allowed' | 'refused' | 'observed';
  /** JSON array of { policy, rule, outcome, message }. */
  decidedBy: string;
}

const ALLOWED: Judgement = {};

/**
 * The built-in rule for one Query or Parse text, the cheap way: the first look, then (only when
 * it cannot clear the text) the cache, then a parse. Undefined: allowed and recorded as it is.
 */
export function checkBuiltins(text: string, cache?: DecisionCache<Judgement>): Judgement | undefined {
  if (!needsParseForBuiltins(firstLook(text))) {
    // A plain statement may still carry a connection string with a password (dblink).
    const recorded = redactForAudit(text);
    return recorded === text ? undefined : { recordAs: recorded };
  }
  const cached = cache?.get(text, BUILTIN_RULES_VERSION);
  if (cached !== undefined) return cached === ALLOWED ? undefined : cached;
  const classification = classify(text);
  const refusal = protectPgward(classification);
  let recordAs = redactForAudit(text, classification);
  // A refused role change whose password sits inside dynamic SQL (a DO body) has no literal to
  // find: every string in it is withheld from the audit instead.
  if (refusal && /password/i.test(recordAs)) recordAs = redactStrings(recordAs);
  const judgement: Judgement = refusal ? { refusal } : {};
  if (recordAs !== text) judgement.recordAs = recordAs;
  const decided = judgement.refusal || judgement.recordAs !== undefined ? judgement : ALLOWED;
  cache?.set(text, BUILTIN_RULES_VERSION, decided);
  return decided === ALLOWED ? undefined : decided;
}

/** A refusal when any statement of the text would change a role or run SQL pgward cannot see. */
export function protectPgward(c: Classification): Refusal | undefined {
  if (c.syntaxError !== undefined) return parseFailure(c.syntaxError);
  const n = c.statements.length;
  for (let i = 0; i < n; i++) {
    const s = c.statements[i] as StatementInfo;
    const where = n > 1 ? ` (statement ${i + 1} of ${n})` : '';
    if (s.changesRole) {
      return refuse(
        `${s.command}${where} changes a database role, which pgward manages; it is not allowed through pgward`,
        'ROLE_CHANGE_DENIED',
        HINT,
      );
    }
    if (s.unknownReason?.startsWith('the statement is longer than')) {
      return {
        sqlstate: PROGRAM_LIMIT_EXCEEDED,
        message: `${s.unknownReason}${where}: pgward cannot check it`,
        detail: 'pgward error STATEMENT_TOO_LONG',
        hint: 'split the statement, or load large data with COPY',
        rule: PROTECT_PGWARD,
      };
    }
    if (s.opaqueSql !== undefined) {
      return refuse(
        `${s.command}${where} is not allowed through pgward: ${s.opaqueSql}, and it could change a database role`,
        'UNINSPECTABLE_SQL_DENIED',
        'write the SQL as literal statements (EXECUTE of a string literal is inspected), or ask an administrator',
      );
    }
    for (const setting of s.settings) {
      const why = unsafeSetting(setting);
      if (why !== undefined) return refuse(`${s.command}${where}: ${why}`, 'SETTING_DENIED', undefined);
    }
  }
  return undefined;
}

function refuse(message: string, code: string, hint: string | undefined): Refusal {
  const r: Refusal = {
    sqlstate: INSUFFICIENT_PRIVILEGE,
    message,
    detail: `pgward error ${code}`,
    rule: PROTECT_PGWARD,
  };
  if (hint !== undefined) r.hint = hint;
  return r;
}

/** A syntax error as PostgreSQL itself reports it (42601, its message and position). */
export function parseFailure(error: SqlSyntaxError): Refusal {
  const r: Refusal = { sqlstate: SYNTAX_ERROR, message: error.message, rule: 'parse' };
  if (error.position > 0) r.position = error.position;
  return r;
}

/** parse_bool's spellings of true (unique prefixes of true/yes, on, 1). */
const TRUE_VALUE = /^(t|tr|tru|true|y|ye|yes|on|1)$/i;

/**
 * Client encodings in which every byte below 0x80 is the ASCII character (so quotes and
 * backslashes mean what pgward reads), after PostgreSQL's name cleaning (alphanumerics,
 * lower case). SJIS, BIG5, GBK, UHC, GB18030 and JOHAB are not: a trail byte can be `\`.
 */
const LEXER_SAFE_ENCODINGS = new Set([
  'utf8',
  'unicode',
  'sqlascii',
  'muleinternal',
  'eucjp',
  'euccn',
  'euckr',
  'euctw',
  'eucjis2004',
  'koi8',
  'koi8r',
  'koi8u',
  'alt',
  'win',
  'win866',
  'win874',
  'cp866',
  'cp874',
  'tcvn',
  'tcvn5712',
  'vscii',
  ...Array.from({ length: 10 }, (_, k) => `latin${k + 1}`),
  ...[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 13, 14, 15, 16].map((k) => `iso8859${k}`),
  ...[0, 1, 2, 3, 4, 5, 6, 7, 8].map((k) => `win125${k}`),
  ...[0, 1, 2, 3, 4, 5, 6, 7, 8].map((k) => `cp125${k}`),
]);

/** Whether a client_encoding keeps SQL texts lexing the same for pgward and PostgreSQL. */
export function isLexerSafeClientEncoding(name: string): boolean {
  return LEXER_SAFE_ENCODINGS.has(name.toLowerCase().replace(/[^a-z0-9]/g, ''));
}

function unsafeSetting(s: SettingChange): string | undefined {
  if (s.name === '?') {
    return 'a setting whose name is not a literal (set_config() of an expression, UPDATE pg_settings) is not allowed through pgward: it cannot be checked; use SET';
  }
  if (s.via === 'reset') return undefined;
  if (s.name === 'standard_conforming_strings' && (s.value === null || !TRUE_VALUE.test(s.value.trim()))) {
    return 'standard_conforming_strings must stay on through pgward (pgward reads statements as PostgreSQL does with it on)';
  }
  if (s.name === 'client_encoding' && (s.value === null || !isLexerSafeClientEncoding(s.value))) {
    return `client_encoding ${s.value ?? '(computed)'} is not allowed through pgward: in it a quote or backslash byte can hide inside a character; use UTF8`;
  }
  return undefined;
}

/** Settings a read-only session keeps on. */
const READ_ONLY_SETTINGS = new Set(['default_transaction_read_only', 'transaction_read_only']);

/**
 * Why a client's startup settings (parameters of the startup packet, and `-c name=value` in its
 * `options`) must not reach the target: the rules SET is held to, for settings no statement
 * shows. Undefined: they may.
 */
export function startupSettingsRefusal(
  settings: Record<string, string>,
  readOnly: boolean,
): string | undefined {
  for (const [key, value] of Object.entries(settings)) {
    const pairs = key === 'options' ? optionSettings(value) : [[key, value] as const];
    if (typeof pairs === 'string') return pairs;
    for (const [name, v] of pairs) {
      const lower = name.toLowerCase();
      const why = unsafeSetting({ name: lower, via: 'set', value: v });
      if (why !== undefined) return `startup setting ${name}: ${why}`;
      if (readOnly && READ_ONLY_SETTINGS.has(lower) && !TRUE_VALUE.test(v.trim())) {
        return `startup setting ${name}: this connection is read-only for you (a policy says so)`;
      }
    }
  }
  return undefined;
}

/**
 * The settings of a startup `options` value as PostgreSQL reads it (pg_split_opts: words split
 * at unescaped spaces, `\` escapes the next character; `-c name=value`, `-cname=value` or
 * `--name=value`, dashes in names read as underscores). Any other switch is refused.
 */
function optionSettings(options: string): [string, string][] | string {
  const words: string[] = [];
  let word = '';
  let inWord = false;
  for (let i = 0; i < options.length; i++) {
    const c = options[i]!;
    if (c === '\\' && i + 1 < options.length) {
      word += options[++i];
      inWord = true;
    } else if (/\s/.test(c)) {
      if (inWord) words.push(word);
      word = '';
      inWord = false;
    } else {
      word += c;
      inWord = true;
    }
  }
  if (inWord) words.push(word);
  const out: [string, string][] = [];
  for (let i = 0; i < words.length; i++) {
    const w = words[i]!;
    let assignment: string | undefined;
    if (w === '-c') assignment = words[++i];
    else if (w.startsWith('-c')) assignment = w.slice(2);
    else if (w.startsWith('--')) assignment = w.slice(2);
    const eq = assignment?.indexOf('=') ?? -1;
    if (assignment === undefined || eq < 1) {
      return `startup option "${w}" is not allowed through pgward; only -c name=value settings are`;
    }
    out.push([assignment.slice(0, eq).replaceAll('-', '_'), assignment.slice(eq + 1)]);
  }
  return out;
}
