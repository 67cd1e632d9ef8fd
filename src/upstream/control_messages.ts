/**
 * The extended-protocol messages pgward's own control queries use (PostgreSQL docs, "Message
 * Formats"): the unnamed statement and portal, every parameter and result in text format. Values
 * travel as bind parameters, never inside SQL text.
 */
import { FE } from '../wire/protocol.js';

function message(type: number, body: Buffer): Buffer {
  const out = Buffer.allocUnsafe(5 + body.length);
  out[0] = type;
  out.writeInt32BE(4 + body.length, 1);
  body.copy(out, 5);
  return out;
}

const cstring = (value: string) => Buffer.from(`${value}\0`, 'utf8');

function int16(value: number): Buffer {
  const b = Buffer.allocUnsafe(2);
  b.writeInt16BE(value, 0);
  return b;
}

function int32(value: number): Buffer {
  const b = Buffer.allocUnsafe(4);
  b.writeInt32BE(value, 0);
  return b;
}

/** Parse of the unnamed statement, parameter types left to the server. */
export function parse(sql: string): Buffer {
  return message(FE.PARSE, Buffer.concat([cstring(''), cstring(sql), int16(0)]));
}

/** Bind of the unnamed portal: text parameters (null is SQL NULL), text results. */
export function bind(params: readonly (string | null)[]): Buffer {
  const parts = [cstring(''), cstring(''), int16(0), int16(params.length)];
  for (const value of params) {
    if (value === null) {
      parts.push(int32(-1));
    } else {
      const bytes = Buffer.from(value, 'utf8');
      parts.push(int32(bytes.length), bytes);
    }
  }
  parts.push(int16(0));
  return message(FE.BIND, Buffer.concat(parts));
}

/** Execute of the unnamed portal, every row. */
export function execute(): Buffer {
  return message(FE.EXECUTE, Buffer.concat([cstring(''), int32(0)]));
}

export function sync(): Buffer {
  return message(FE.SYNC, Buffer.alloc(0));
}

/** The columns of a DataRow message, as text (null for SQL NULL). */
export function dataRow(msg: Buffer): (string | null)[] {
  const count = msg.readInt16BE(5);
  const values: (string | null)[] = [];
  let at = 7;
  for (let i = 0; i < count; i++) {
    const length = msg.readInt32BE(at);
    at += 4;
    if (length < 0) {
      values.push(null);
    } else {
      values.push(msg.toString('utf8', at, at + length));
      at += length;
    }
  }
  return values;
}
