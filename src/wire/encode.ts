/** Builders of the protocol messages pgward sends itself (both directions). */
import { AUTH, BE, FE, REQUEST_CODE } from './protocol.js';

/** A message: type byte, length, body. */
function message(type: number, body: Buffer): Buffer {
  const out = Buffer.allocUnsafe(5 + body.length);
  out[0] = type;
  out.writeInt32BE(4 + body.length, 1);
  body.copy(out, 5);
  return out;
}

function cstring(value: string): Buffer {
  return Buffer.from(`${value}\0`, 'utf8');
}

function int32(value: number): Buffer {
  const b = Buffer.allocUnsafe(4);
  b.writeInt32BE(value, 0);
  return b;
}

export type Severity = 'ERROR' | 'FATAL' | 'PANIC' | 'WARNING' | 'NOTICE' | 'INFO' | 'LOG';

export interface ErrorFields {
  severity: Severity;
  code: string;
  message: string;
  detail?: string | undefined;
  hint?: string | undefined;
  /** 1-based character position of the error in the statement (field P). */
  position?: number | undefined;
}

function fields(f: ErrorFields): Buffer {
  const parts = [
    Buffer.from('S'),
    cstring(f.severity),
    Buffer.from('V'),
    cstring(f.severity),
    Buffer.from('C'),
    cstring(f.code),
    Buffer.from('M'),
    cstring(f.message),
  ];
  if (f.detail) parts.push(Buffer.from('D'), cstring(f.detail));
  if (f.hint) parts.push(Buffer.from('H'), cstring(f.hint));
  if (f.position) parts.push(Buffer.from('P'), cstring(String(f.position)));
  parts.push(Buffer.from([0]));
  return Buffer.concat(parts);
}

export function errorResponse(f: ErrorFields): Buffer {
  return message(BE.ERROR, fields(f));
}

export function authenticationOk(): Buffer {
  return message(BE.AUTHENTICATION, int32(AUTH.OK));
}

export function authenticationCleartextPassword(): Buffer {
  return message(BE.AUTHENTICATION, int32(AUTH.CLEARTEXT));
}

export function parameterStatus(name: string, value: string): Buffer {
  return message(BE.PARAMETER_STATUS, Buffer.concat([cstring(name), cstring(value)]));
}

/** BackendKeyData: a 4-byte process id and a secret of 4 bytes (3.0) or up to 256 (3.2). */
export function backendKeyData(pid: number, secret: Buffer): Buffer {
  return message(BE.BACKEND_KEY_DATA, Buffer.concat([int32(pid), secret]));
}

export function readyForQuery(status: 'I' | 'T' | 'E'): Buffer {
  return message(BE.READY_FOR_QUERY, Buffer.from(status));
}

/** NegotiateProtocolVersion: the newest minor we support, and the `_pq_.` options we do not. */
export function negotiateProtocolVersion(minor: number, unsupported: string[]): Buffer {
  return message(
    BE.NEGOTIATE_PROTOCOL_VERSION,
    Buffer.concat([int32(minor), int32(unsupported.length), ...unsupported.map(cstring)]),
  );
}

/** StartupMessage: length, protocol version, name/value pairs, terminating zero. */
export function startupMessage(version: number, params: Record<string, string>): Buffer {
  const body = Buffer.concat([
    int32(version),
    ...Object.entries(params).flatMap(([k, v]) => [cstring(k), cstring(v)]),
    Buffer.from([0]),
  ]);
  return Buffer.concat([int32(body.length + 4), body]);
}

export function sslRequest(): Buffer {
  return Buffer.concat([int32(8), int32(REQUEST_CODE.SSL)]);
}

export function cancelRequest(pid: number, secret: Buffer): Buffer {
  return Buffer.concat([int32(12 + secret.length), int32(REQUEST_CODE.CANCEL), int32(pid), secret]);
}

export function passwordMessage(password: string): Buffer {
  return message(FE.PASSWORD, cstring(password));
}

/** SASLInitialResponse: mechanism name, then the client-first-message with its length. */
export function saslInitialResponse(mechanism: string, data: Buffer): Buffer {
  return message(FE.PASSWORD, Buffer.concat([cstring(mechanism), int32(data.length), data]));
}

export function saslResponse(data: Buffer): Buffer {
  return message(FE.PASSWORD, data);
}

export function query(sql: string): Buffer {
  return message(FE.QUERY, cstring(sql));
}

export function terminate(): Buffer {
  return message(FE.TERMINATE, Buffer.alloc(0));
}

/** Execute: run a portal, at most `maxRows` rows (0: all). */
export function execute(portal: string, maxRows = 0): Buffer {
  return message(FE.EXECUTE, Buffer.concat([cstring(portal), int32(maxRows)]));
}

export function sync(): Buffer {
  return message(FE.SYNC, Buffer.alloc(0));
}

/** Flush: the target sends what it has buffered (an extended batch's answers before its Sync). */
export function flush(): Buffer {
  return message(FE.FLUSH, Buffer.alloc(0));
}

function int16(value: number): Buffer {
  const b = Buffer.allocUnsafe(2);
  b.writeInt16BE(value, 0);
  return b;
}

/** Parse: a statement (`name`, '' = unnamed), parameter types left to the server. */
export function parse(sql: string, name = ''): Buffer {
  return message(FE.PARSE, Buffer.concat([cstring(name), cstring(sql), int16(0)]));
}

/** Bind: text parameters (null is SQL NULL), text results. */
export function bind(params: readonly (string | null)[], portal = '', statement = ''): Buffer {
  const parts = [cstring(portal), cstring(statement), int16(0), int16(params.length)];
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
