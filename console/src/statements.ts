/**
 * Finds the statement at the cursor in the editor's text: statements end at a semicolon that is
 * not inside a string, a quoted identifier, a comment or a dollar-quoted body.
 */

export interface StatementSpan {
  from: number;
  to: number;
  text: string;
}

/** Every statement of `text`, with where it starts and ends (blank ones left out). */
export function splitStatements(text: string): StatementSpan[] {
  const spans: StatementSpan[] = [];
  let start = 0;
  let i = 0;
  const push = (end: number) => {
    const raw = text.slice(start, end);
    const lead = raw.length - raw.trimStart().length;
    const body = raw.trim();
    if (body !== '') spans.push({ from: start + lead, to: start + lead + body.length, text: body });
  };
  while (i < text.length) {
    const c = text[i]!;
    const next = text[i + 1];
    if (c === '-' && next === '-') {
      const nl = text.indexOf('\n', i);
      i = nl === -1 ? text.length : nl + 1;
    } else if (c === '/' && next === '*') {
      let depth = 1;
      i += 2;
      while (i < text.length && depth > 0) {
        if (text[i] === '/' && text[i + 1] === '*') {
          depth++;
          i += 2;
        } else if (text[i] === '*' && text[i + 1] === '/') {
          depth--;
          i += 2;
        } else i++;
      }
    } else if (c === "'" || c === '"') {
      i++;
      while (i < text.length) {
        if (text[i] === c) {
          if (text[i + 1] === c) i += 2;
          else break;
        } else i++;
      }
      i++;
    } else if (c === '$') {
      const tag = /^\$([A-Za-z_][A-Za-z0-9_]*)?\$/.exec(text.slice(i));
      if (tag) {
        const end = text.indexOf(tag[0], i + tag[0].length);
        i = end === -1 ? text.length : end + tag[0].length;
      } else i++;
    } else if (c === ';') {
      push(i);
      start = i + 1;
      i++;
    } else i++;
  }
  push(text.length);
  return spans;
}

/** The statement the cursor is in (or just after); the last one when the cursor is past all. */
export function statementAt(text: string, cursor: number): StatementSpan | undefined {
  const spans = splitStatements(text);
  for (const span of spans) if (cursor <= span.to + 1) return span;
  return spans[spans.length - 1];
}
