/**
 * The first packet of a connection (protocol section "Start-up"): SSLRequest, GSSENCRequest,
 * CancelRequest or StartupMessage. They have no type byte: a 4-byte length, then a 4-byte code.
 */
import { PgwardError } from '../errors.js';
import { LIMITS, REQUEST_CODE } from './protocol.js';

export type StartupPacket =
  | { kind: 'ssl' }
  | { kind: 'gssenc' }
  | { kind: 'cancel'; pid: number; secret: Buffer }
  | {
      kind: 'startup';
      major: number;
      minor: number;
      /** Ordinary parameters (user, database, application_name, options, GUCs). */
      params: Map<string, string>;
      /** Names of protocol options (`_pq_.*`) the client asked for. */
      protocolOptions: string[];
    };

function violation(message: string): PgwardError {
  return new PgwardError('PROTOCOL_VIOLATION', message);
}

/**
 * Bytes that cannot be the start of a PostgreSQL connection (a length out of range): PostgreSQL
 * logs them and closes without an answer, since the peer may not be a PostgreSQL client at all.
 */
export class MalformedStartup extends PgwardError {
  constructor(message: string) {
    super('PROTOCOL_VIOLATION', message);
  }
}

/**
 * Reads one startup packet from the start of `buf`. Returns undefined while it is incomplete;
 * throws PROTOCOL_VIOLATION as soon as the bytes cannot be a valid packet.
 */
export function readStartupPacket(buf: Buffer): { packet: StartupPacket; size: number } | undefined {
  if (buf.length < 4) return undefined;
  const length = buf.readInt32BE(0);
  if (length < 8 || length > LIMITS.STARTUP_BYTES) {
    throw new MalformedStartup(
      `invalid startup packet length ${length} (expected 8 to ${LIMITS.STARTUP_BYTES} bytes)`,
    );
  }
  if (buf.length < length) return undefined;
  const code = buf.readInt32BE(4);
  const body = buf.subarray(8, length);
  switch (code) {
    case REQUEST_CODE.SSL:
    case REQUEST_CODE.GSSENC:
      if (length !== 8) throw new MalformedStartup('invalid SSL/GSS encryption request length');
      return { packet: { kind: code === REQUEST_CODE.SSL ? 'ssl' : 'gssenc' }, size: length };
    case REQUEST_CODE.CANCEL: {
      const secretLength = length - 12;
      if (secretLength < 4 || secretLength > LIMITS.CANCEL_KEY_BYTES)
        throw new MalformedStartup('invalid cancel request length');
      return {
        packet: { kind: 'cancel', pid: body.readInt32BE(0), secret: Buffer.from(body.subarray(4)) },
        size: length,
      };
    }
  }
  const major = code >>> 16;
  const minor = code & 0xffff;
  if (major !== 3)
    throw violation(`unsupported frontend protocol ${major}.${minor}: pgward speaks 3.0 to 3.2`);
  const params = new Map<string, string>();
  const protocolOptions: string[] = [];
  let pos = 0;
  for (;;) {
    const keyEnd = body.indexOf(0, pos);
    if (keyEnd === -1) throw violation('startup packet is not terminated');
    if (keyEnd === pos) {
      if (keyEnd !== body.length - 1) throw violation('unexpected bytes after the end of the startup packet');
      break;
    }
    const valueEnd = body.indexOf(0, keyEnd + 1);
    if (valueEnd === -1) throw violation('startup packet parameter has no value');
    const key = body.toString('utf8', pos, keyEnd);
    const value = body.toString('utf8', keyEnd + 1, valueEnd);
    if (key.startsWith('_pq_.')) protocolOptions.push(key);
    else params.set(key, value);
    pos = valueEnd + 1;
  }
  if (!params.get('user')) throw violation('no PostgreSQL user name specified in startup packet');
  return { packet: { kind: 'startup', major, minor, params, protocolOptions }, size: length };
}
