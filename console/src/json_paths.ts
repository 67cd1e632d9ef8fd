/**
 * Where each value of a JSON text is, by the path the policy API names it with
 * (`rules[0].deny[1]`): the editor marks a validation error at its value, in place.
 */

export interface Span {
  from: number;
  to: number;
}

/** Every value's span by path ('' is the whole document); undefined when the text is not JSON. */
export function jsonSpans(text: string): Map<string, Span> | undefined {
  const spans = new Map<string, Span>();
  let i = 0;
  const ws = () => {
    while (i < text.length && /\s/.test(text[i]!)) i++;
  };
  const fail = (): never => {
    throw new SyntaxError(`unexpected ${text[i] ?? 'end'} at ${i}`);
  };
  const string = (): string => {
    const start = i;
    if (text[i] !== '"') fail();
    i++;
    while (i < text.length && text[i] !== '"') i += text[i] === '\\' ? 2 : 1;
    if (text[i] !== '"') fail();
    i++;
    return JSON.parse(text.slice(start, i)) as string;
  };
  const value = (path: string): void => {
    ws();
    const from = i;
    const c = text[i];
    if (c === '{') {
      i++;
      ws();
      if (text[i] === '}') i++;
      else {
        for (;;) {
          ws();
          const key = string();
          ws();
          if (text[i] !== ':') fail();
          i++;
          value(path === '' ? key : `${path}.${key}`);
          ws();
          if (text[i] === ',') i++;
          else if (text[i] === '}') {
            i++;
            break;
          } else fail();
        }
      }
    } else if (c === '[') {
      i++;
      ws();
      if (text[i] === ']') i++;
      else {
        for (let n = 0; ; n++) {
          value(`${path}[${n}]`);
          ws();
          if (text[i] === ',') i++;
          else if (text[i] === ']') {
            i++;
            break;
          } else fail();
        }
      }
    } else if (c === '"') string();
    else {
      const m = /^(-?\d+(\.\d+)?([eE][+-]?\d+)?|true|false|null)/.exec(text.slice(i));
      if (!m) fail();
      i += m![0].length;
    }
    spans.set(path, { from, to: i });
  };
  try {
    value('');
    ws();
    return i === text.length ? spans : undefined;
  } catch {
    return undefined;
  }
}

/** The span of `path`, or of its nearest parent that exists (a missing field marks its object). */
export function spanOf(spans: Map<string, Span>, path: string): Span | undefined {
  let p = path;
  for (;;) {
    const span = spans.get(p);
    if (span) return span;
    if (p === '') return undefined;
    const cut = Math.max(p.lastIndexOf('.'), p.lastIndexOf('['));
    p = cut <= 0 ? '' : p.slice(0, cut);
  }
}
