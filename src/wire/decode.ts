/**
 * Decoders of the few messages pgward acts on. Each takes a whole message (type byte and length
 * included) that the framer has already bounded, and reads only the fields it needs.
 */
import { PgwardError } from '../errors.js';

const BODY = 5;

/** Messages whose strings are read in JavaScript when this short (bytes from the string on). */
const SHORT_REST = 32;

/** Reads a NUL-terminated string at `pos`; returns it and the position after the NUL. */
function cstring(message: Buffer, pos: number): [string, number] {
  // The unnamed statement and portal, in most Bind and Execute messages: no call into C++.
  if (message[pos] === 0) return ['', pos + 1];
  // Command tags ("SELECT 1") and most names are short ASCII: read in JavaScript, they cost
  // less than the two calls into C++ below (perf put them at about 1% of the relay's CPU).
  if (message.length - pos <= SHORT_REST) {
    let text = '';
    for (let i = pos; i < message.length; i++) {
      const c = message[i]!;
      if (c === 0) return [text, i + 1];
      if (c >= 0x80) break;
      text += String.fromCharCode(c);
    }
  }
  const end = message.indexOf(0, pos);
  if (end === -1) throw new PgwardError('PROTOCOL_VIOLATION', 'unterminated string in protocol message');
  return [message.toString('utf8', pos, end), end + 1];
}

/** Query: the SQL text. */
export function queryText(message: Buffer): string {
  return cstring(message, BODY)[0];
}

/** Parse: prepared statement name ('' = unnamed) and SQL text. */
export function parseMessage(message: Buffer): { name: string; text: string } {
  const [name, next] = cstring(message, BODY);
  const [text] = cstring(message, next);
  return { name, text };
}

/** Bind: portal name and statement name (parameter values are never decoded). */
export function bindMessage(message: Buffer): { portal: string; statement: string } {
  const [portal, next] = cstring(message, BODY);
  const [statement] = cstring(message, next);
  return { portal, statement };
}

/** Execute: portal name. */
export function executePortal(message: Buffer): string {
  return cstring(message, BODY)[0];
}

/** Close: 'S' statement or 'P' portal, and its name. */
export function closeMessage(message: Buffer): { kind: 'S' | 'P'; name: string } {
  if (message.length < BODY + 2) throw new PgwardError('PROTOCOL_VIOLATION', 'Close message too short');
  const kind = String.fromCharCode(message[BODY]!);
  if (kind !== 'S' && kind !== 'P') throw new PgwardError('PROTOCOL_VIOLATION', 'Close of an unknown kind');
  return { kind, name: cstring(message, BODY + 1)[0] };
}

/** CommandComplete: the command tag, e.g. "SELECT 5" or "INSERT 0 3". */
export function commandTag(message: Buffer): string {
  return cstring(message, BODY)[0];
}

/** Rows affected or returned, from a command tag's last number (undefined when it has none). */
export function tagRows(tag: string): number | undefined {
  // A scan rather than a regular expression: this runs once per statement.
  let i = tag.length;
  while (i > 0 && tag.charCodeAt(i - 1) >= 48 && tag.charCodeAt(i - 1) <= 57) i--;
  if (i === tag.length || i === 0 || tag.charCodeAt(i - 1) !== 32) return undefined;
  return Number(tag.slice(i));
}

/** ErrorResponse / NoticeResponse: the fields by their one-letter codes. */
export function errorFields(message: Buffer): Map<string, string> {
  const fields = new Map<string, string>();
  let pos = BODY;
  while (pos < message.length && message[pos] !== 0) {
    const code = String.fromCharCode(message[pos]!);
    const [value, next] = cstring(message, pos + 1);
    fields.set(code, value);
    pos = next;
  }
  return fields;
}

/** ReadyForQuery: transaction status 'I' idle, 'T' in a transaction, 'E' in a failed transaction. */
export function readyStatus(message: Buffer): 'I' | 'T' | 'E' {
  const status = String.fromCharCode(message[BODY] ?? 0);
  if (status !== 'I' && status !== 'T' && status !== 'E') {
    throw new PgwardError('PROTOCOL_VIOLATION', 'invalid ReadyForQuery status');
  }
  return status;
}

/** ParameterStatus: name and value. */
export function parameterStatus(message: Buffer): [string, string] {
  const [name, next] = cstring(message, BODY);
  return [name, cstring(message, next)[0]];
}

/** Authentication request: its code and the rest of the body. */
export function authenticationRequest(message: Buffer): { code: number; data: Buffer } {
  if (message.length < BODY + 4)
    throw new PgwardError('PROTOCOL_VIOLATION', 'Authentication message too short');
  return { code: message.readInt32BE(BODY), data: message.subarray(BODY + 4) };
}

/** PasswordMessage: the password (here: a token). */
export function passwordText(message: Buffer): string {
  return cstring(message, BODY)[0];
}

/** FunctionCall: the OID of the function (arguments are never decoded, like bind values). */
export function functionCallOid(message: Buffer): number {
  if (message.length < BODY + 4)
    throw new PgwardError('PROTOCOL_VIOLATION', 'FunctionCall message too short');
  return message.readUInt32BE(BODY);
}

/** DataRow: the columns as text (null for SQL NULL); for pgward's own control queries. */
export function dataRow(message: Buffer): (string | null)[] {
  const count = message.readInt16BE(BODY);
  const values: (string | null)[] = [];
  let at = BODY + 2;
  for (let i = 0; i < count; i++) {
    const length = message.readInt32BE(at);
    at += 4;
    if (length < 0) {
      values.push(null);
    } else {
      values.push(message.toString('utf8', at, at + length));
      at += length;
    }
  }
  return values;
}
