/**
 * The cheap first look at a Query text, without the parser: where its statements end and the
 * keyword each begins with. A full parse costs tens of microseconds and pgbench -M simple sends
 * a new text every time; this lets plain reads and writes that no rule concerns pass unparsed.
 *
 * It lexes as PostgreSQL's scan.l does with standard_conforming_strings on (the built-in rules
 * refuse turning it off): whitespace [ \t\n\r\f\v], -- comments to \n or \r, nested /* *\/
 * comments, '...' with '' doubled, E'...' with backslash escapes, "identifiers" with "" doubled,
 * $tag$ dollar quotes $tag$. U&'...', B'...', X'...' and N'...' lex as '...' does.
 */

export type FirstLook =
  | {
      /** Non-empty statements (top-level `;` boundaries). */
      count: number;
      /** Each statement's first word, uppercased; '' when it starts with something else. */
      keywords: string[];
      /**
       * Names set_config or pg_settings (whose UPDATE rule calls it), or has a U&"..."
       * identifier that could spell them: any statement can then change a setting.
       */
      mentionsSettings: boolean;
    }
  | 'unsure';

const SPACE = new Uint8Array(128);
for (const c of ' \t\n\r\f\v') SPACE[c.charCodeAt(0)] = 1;

function isIdentStart(c: number): boolean {
  return (c >= 97 && c <= 122) || (c >= 65 && c <= 90) || c === 95 || c >= 128;
}
function isIdentCont(c: number): boolean {
  return isIdentStart(c) || (c >= 48 && c <= 57) || c === 36;
}
function isDigit(c: number): boolean {
  return c >= 48 && c <= 57;
}

/**
 * Statement boundaries and leading keywords, or 'unsure' when the text cannot be lexed safely.
 * `numbers`, when given, receives the [start, end) of every numeric literal.
 */
export function firstLook(text: string, numbers?: number[]): FirstLook {
  const n = text.length;
  const keywords: string[] = [];
  let i = 0;
  let depth = 0;
  /** Whether the current statement has its first token yet. */
  let started = false;
  let afterBegin = false;
  let mentionsSettings = false;
  while (i < n) {
    const c = text.charCodeAt(i);
    if (c < 128 && SPACE[c] === 1) {
      i++;
      continue;
    }
    if (c === 0) return 'unsure';
    // -- comment, to the end of the line (\n or \r)
    if (c === 45 && text.charCodeAt(i + 1) === 45) {
      i += 2;
      while (i < n) {
        const d = text.charCodeAt(i);
        if (d === 10 || d === 13) break;
        i++;
      }
      continue;
    }
    // /* nested */ comment
    if (c === 47 && text.charCodeAt(i + 1) === 42) {
      let nest = 1;
      i += 2;
      while (i < n && nest > 0) {
        const d = text.charCodeAt(i);
        if (d === 47 && text.charCodeAt(i + 1) === 42) {
          nest++;
          i += 2;
        } else if (d === 42 && text.charCodeAt(i + 1) === 47) {
          nest--;
          i += 2;
        } else {
          i++;
        }
      }
      if (nest > 0) return 'unsure';
      continue;
    }
    if (c === 59) {
      // `;` inside parentheses is a CREATE RULE action list or a syntax error: let the parser say.
      if (depth !== 0) return 'unsure';
      started = false;
      afterBegin = false;
      i++;
      continue;
    }
    const first = !started;
    started = true;
    if (isIdentStart(c)) {
      const start = i;
      i++;
      while (i < n && isIdentCont(text.charCodeAt(i))) i++;
      const length = i - start;
      if (length === 1 && (c === 101 || c === 69) && text.charCodeAt(i) === 39) {
        i = skipEscapeString(text, i + 1);
        if (i < 0) return 'unsure';
        if (first) keywords.push('');
        afterBegin = false;
        continue;
      }
      if (first) keywords.push(length <= 10 ? text.slice(start, i).toUpperCase() : '');
      if (length === 10 || length === 11) mentionsSettings ||= isSettingsName(text.slice(start, i));
      // BEGIN ATOMIC bodies hold `;` that do not end the statement.
      if (afterBegin && length === 6 && sameWord(text, start, 'atomic')) return 'unsure';
      afterBegin = length === 5 && sameWord(text, start, 'begin');
      continue;
    }
    afterBegin = false;
    if (first) keywords.push('');
    if (c === 39) {
      i = skipQuoted(text, i + 1, 39);
      if (i < 0) return 'unsure';
    } else if (c === 34) {
      const start = i + 1;
      i = skipQuoted(text, start, 34);
      if (i < 0) return 'unsure';
      const length = i - 1 - start;
      if (length === 10 || length === 11) mentionsSettings ||= isSettingsName(text.slice(start, i - 1));
      // U&"..." (the U was read as a word, then &): its escapes can spell any name.
      if (text.charCodeAt(start - 2) === 38) mentionsSettings = true;
    } else if (c === 36) {
      i = skipDollar(text, i);
      if (i < 0) return 'unsure';
    } else if (isDigit(c)) {
      // Numbers, with PostgreSQL's trailing identifier characters (but not `$`).
      const start = i;
      i++;
      while (i < n) {
        const d = text.charCodeAt(i);
        if (!(isIdentCont(d) || d === 46) || d === 36) break;
        i++;
      }
      numbers?.push(start, i);
    } else {
      if (c === 40) depth++;
      else if (c === 41) depth--;
      i++;
    }
  }
  if (depth !== 0) return 'unsure';
  return { count: keywords.length, keywords, mentionsSettings };
}

/** Whether text at `at` is `lower` in any case (ASCII letters). */
function sameWord(text: string, at: number, lower: string): boolean {
  for (let k = 0; k < lower.length; k++) {
    if ((text.charCodeAt(at + k) | 0x20) !== lower.charCodeAt(k)) return false;
  }
  return true;
}

/** set_config or pg_settings, in any case (a quoted "SET_CONFIG" names another function; fine). */
function isSettingsName(word: string): boolean {
  const lower = word.toLowerCase();
  return lower === 'set_config' || lower === 'pg_settings';
}

/** Past a '...' or "..." whose opening quote is before `i`; -1 when unterminated. */
function skipQuoted(text: string, i: number, quote: number): number {
  for (;;) {
    const at = text.indexOf(quote === 39 ? "'" : '"', i);
    if (at < 0) return -1;
    if (text.charCodeAt(at + 1) === quote) {
      i = at + 2;
      continue;
    }
    return at + 1;
  }
}

/** Past an E'...' string (backslash escapes any character, '' doubles); -1 when unterminated. */
function skipEscapeString(text: string, i: number): number {
  const n = text.length;
  while (i < n) {
    const c = text.charCodeAt(i);
    if (c === 92) {
      i += 2;
    } else if (c === 39) {
      if (text.charCodeAt(i + 1) === 39) i += 2;
      else return i + 1;
    } else {
      i++;
    }
  }
  return -1;
}

/** Past a $tag$...$tag$ string starting at `i` (a `$`), or past a `$n` parameter; -1 when unterminated. */
function skipDollar(text: string, i: number): number {
  const n = text.length;
  let j = i + 1;
  if (j < n && isDigit(text.charCodeAt(j))) {
    while (j < n && isDigit(text.charCodeAt(j))) j++;
    return j;
  }
  if (j < n && isIdentStart(text.charCodeAt(j))) {
    j++;
    while (j < n && isIdentCont(text.charCodeAt(j)) && text.charCodeAt(j) !== 36) j++;
  }
  if (text.charCodeAt(j) !== 36) return i + 1; // a lone `$`: an operator character or an error
  const tag = text.slice(i, j + 1);
  const end = text.indexOf(tag, j + 1);
  return end < 0 ? -1 : end + tag.length;
}

/**
 * Statements that can never change a role, whatever follows their first word: plannable
 * statements (SELECT, INSERT, UPDATE, DELETE, MERGE, WITH, VALUES, TABLE; PREPARE, EXPLAIN and
 * DECLARE take only these, EXECUTE runs only what PREPARE took), transaction control, cursors,
 * LISTEN/NOTIFY, LOCK, and RESET/DISCARD (back to values the session started with). A text
 * that names set_config or pg_settings is parsed whatever it starts with: the rules refuse
 * settings that would change how texts lex.
 * Not here, so parsed: SET (the rules refuse settings that would change how texts lex), COPY
 * (PROGRAM runs a command on the server), CALL, DO, and everything else.
 */
const NEVER_CHANGES_ROLE = new Set([
  'SELECT',
  'INSERT',
  'UPDATE',
  'DELETE',
  'MERGE',
  'WITH',
  'VALUES',
  'TABLE',
  'BEGIN',
  'START',
  'COMMIT',
  'END',
  'ROLLBACK',
  'ABORT',
  'SAVEPOINT',
  'RELEASE',
  'SHOW',
  'FETCH',
  'MOVE',
  'CLOSE',
  'DECLARE',
  'LISTEN',
  'NOTIFY',
  'UNLISTEN',
  'PREPARE',
  'EXECUTE',
  'DEALLOCATE',
  'EXPLAIN',
  'LOCK',
  'RESET',
  'DISCARD',
]);

/** False only when every statement begins with a keyword that can never change a role. */
export function needsParseForBuiltins(look: FirstLook): boolean {
  if (look === 'unsure' || look.mentionsSettings) return true;
  for (const k of look.keywords) if (!NEVER_CHANGES_ROLE.has(k)) return true;
  return false;
}

const ZEROS = '0'.repeat(32);

/**
 * The text with the digits of its numeric literals made 0, or undefined when it cannot be lexed
 * safely. Texts that differ only in their numbers (pgbench -M simple, ORMs without bind
 * parameters) share one shape, and their classifications differ only in setting values, which
 * policies do not judge. Lengths and so error positions stay the same.
 */
export function numberShape(text: string): string | undefined {
  const numbers: number[] = [];
  if (firstLook(text, numbers) === 'unsure') return undefined;
  if (numbers.length === 0) return text;
  let out = '';
  let from = 0;
  for (let k = 0; k < numbers.length; k += 2) {
    const start = numbers[k]!;
    const end = numbers[k + 1]!;
    out += text.slice(from, start);
    let i = start;
    while (i < end && isDigit(text.charCodeAt(i))) i++;
    // Most numbers are digits only; 1.5e10, 0x1F keep their other characters.
    out += ZEROS.length >= i - start ? ZEROS.slice(0, i - start) : '0'.repeat(i - start);
    for (; i < end; i++) out += isDigit(text.charCodeAt(i)) ? '0' : text[i];
    from = end;
  }
  return out + text.slice(from);
}
