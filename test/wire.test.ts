import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { PgwardError } from '../src/errors.js';
import * as decode from '../src/wire/decode.js';
import * as encode from '../src/wire/encode.js';
import { MessageFramer, typeFlags } from '../src/wire/framer.js';
import { BE, FE, LIMITS, PROTOCOL, REQUEST_CODE } from '../src/wire/protocol.js';
import { readStartupPacket } from '../src/wire/startup.js';

/** Fixture builder: any typed message. */
function msg(type: string, body: Buffer | string = ''): Buffer {
  const b = typeof body === 'string' ? Buffer.from(body) : body;
  const out = Buffer.alloc(5 + b.length);
  out[0] = type.charCodeAt(0);
  out.writeInt32BE(4 + b.length, 1);
  b.copy(out, 5);
  return out;
}

/** Runs `chunks` through a framer that decodes Q and X and drops X; returns output and decoded. */
function frame(chunks: Buffer[], max = 1 << 20) {
  const seen: string[] = [];
  const framer = new MessageFramer(
    typeFlags([FE.QUERY, FE.TERMINATE]),
    max,
    (type, message) => {
      seen.push(type === FE.QUERY ? `Q:${decode.queryText(message)}` : String.fromCharCode(type));
      return type === FE.TERMINATE ? 'drop' : 'forward';
    },
    'client',
  );
  const out: Buffer[] = [];
  for (const chunk of chunks) out.push(...framer.push(chunk));
  return { out: Buffer.concat(out), seen, atBoundary: framer.atBoundary };
}

const big = Buffer.alloc(3000, 0x61);
const stream = Buffer.concat([
  encode.query('select 1'),
  msg('d', big), // CopyData: streamed, never decoded
  msg('S'), // Sync: empty body, not decoded
  encode.query(`select '${'x'.repeat(100)}'`),
  encode.terminate(),
  encode.query('after terminate'),
]);
const expectedOut = Buffer.concat([
  encode.query('select 1'),
  msg('d', big),
  msg('S'),
  encode.query(`select '${'x'.repeat(100)}'`),
  encode.query('after terminate'),
]);
const expectedSeen = ['Q:select 1', `Q:select '${'x'.repeat(100)}'`, 'X', 'Q:after terminate'];

describe('message framer', () => {
  it('forwards a whole chunk as views of it', () => {
    const input = Buffer.concat([encode.query('a'), msg('d', 'xyz'), encode.query('b')]);
    const framer = new MessageFramer(typeFlags([FE.QUERY]), 1 << 20, () => 'forward', 'client');
    const out = framer.push(input);
    assert.equal(out.length, 1);
    assert.equal(out[0]!.buffer, input.buffer, 'no copy of a chunk of whole messages');
  });

  it('gives the same result wherever the stream is split in two', () => {
    for (let cut = 0; cut <= stream.length; cut++) {
      const r = frame([stream.subarray(0, cut), stream.subarray(cut)]);
      assert.deepEqual(r.out, expectedOut, `split at ${cut}`);
      assert.deepEqual(r.seen, expectedSeen, `split at ${cut}`);
      assert.ok(r.atBoundary);
    }
  });

  it('gives the same result fed one byte at a time', () => {
    const chunks = [...stream].map((b) => Buffer.from([b]));
    const r = frame(chunks);
    assert.deepEqual(r.out, expectedOut);
    assert.deepEqual(r.seen, expectedSeen);
  });

  it('gives the same result in random splits', () => {
    let seed = 42;
    const random = () => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed;
    };
    for (let round = 0; round < 200; round++) {
      const chunks: Buffer[] = [];
      let pos = 0;
      while (pos < stream.length) {
        const size = 1 + (random() % 700);
        chunks.push(stream.subarray(pos, pos + size));
        pos += size;
      }
      const r = frame(chunks);
      assert.deepEqual(r.out, expectedOut);
      assert.deepEqual(r.seen, expectedSeen);
    }
  });

  it('pauses after the message whose handler asks, and resumes with what followed, wherever split', () => {
    // Pause after every Query (as the relay holds client input behind a counted result); the
    // output and the decoded messages must be the same as without pauses, for every split.
    for (let cut = 0; cut <= stream.length; cut++) {
      const seen: string[] = [];
      let framer: MessageFramer;
      framer = new MessageFramer(
        typeFlags([FE.QUERY, FE.TERMINATE]),
        1 << 20,
        (type, message) => {
          seen.push(type === FE.QUERY ? `Q:${decode.queryText(message)}` : String.fromCharCode(type));
          if (type === FE.QUERY) framer.pause();
          return type === FE.TERMINATE ? 'drop' : 'forward';
        },
        'client',
      );
      const out: Buffer[] = [];
      const queue: Buffer[] = [stream.subarray(0, cut), stream.subarray(cut)];
      let pauses = 0;
      while (queue.length > 0) {
        out.push(...framer.push(queue.shift()!));
        const rest = framer.resume();
        if (rest) {
          pauses++;
          queue.unshift(rest as Buffer);
        }
      }
      assert.deepEqual(Buffer.concat(out), expectedOut, `split at ${cut}`);
      assert.deepEqual(seen, expectedSeen, `split at ${cut}`);
      assert.ok(pauses >= 1, 'a pause left bytes to resume with');
    }
  });

  it('keeps what follows a pause as its own copy (the read buffer is reused)', () => {
    let framer: MessageFramer;
    framer = new MessageFramer(
      typeFlags([FE.QUERY]),
      1 << 20,
      () => {
        framer.pause();
        return 'forward';
      },
      'client',
    );
    const chunk = Buffer.concat([encode.query('a'), encode.query('b')]);
    framer.push(chunk);
    chunk.fill(0);
    assert.deepEqual(framer.resume(), encode.query('b'));
  });

  it('streams a large undecoded message without holding it', () => {
    const framer = new MessageFramer(typeFlags([FE.QUERY]), 1 << 30, () => 'forward', 'client');
    const header = msg('d', Buffer.alloc(0));
    header.writeInt32BE(4 + 10_000_000, 1);
    assert.deepEqual(framer.push(header), [header]);
    const part = Buffer.alloc(65536);
    const out = framer.push(part);
    assert.equal(out.length, 1);
    assert.equal(out[0]!.buffer, part.buffer);
    assert.equal(framer.atBoundary, false);
  });

  it('refuses a declared length over the cap before reading the body', () => {
    const header = Buffer.from([FE.QUERY, 0x7f, 0xff, 0xff, 0xff]);
    for (let cut = 1; cut <= 5; cut++) {
      const framer = new MessageFramer(typeFlags([FE.QUERY]), 1 << 20, () => 'forward', 'client');
      assert.throws(
        () => {
          framer.push(header.subarray(0, cut));
          framer.push(header.subarray(cut));
        },
        (err: unknown) =>
          err instanceof PgwardError &&
          err.code === 'PROTOCOL_VIOLATION' &&
          /over the limit/.test(err.message),
      );
    }
  });

  it('refuses a length below 4', () => {
    const framer = new MessageFramer(typeFlags([]), 1 << 20, () => 'forward', 'client');
    assert.throws(() => framer.push(Buffer.from([0x51, 0, 0, 0, 3])), /invalid message length 3/);
  });

  it('reads a length with the top bit set as negative, whole or split, and refuses it', () => {
    const header = Buffer.from([0x51, 0x80, 0, 0, 5]);
    for (let cut = 0; cut <= 4; cut++) {
      const framer = new MessageFramer(typeFlags([]), 1 << 20, () => 'forward', 'client');
      assert.throws(() => {
        framer.push(header.subarray(0, cut));
        framer.push(header.subarray(cut));
      }, /invalid message length -2147483643/);
    }
  });
});

describe('startup packets', () => {
  const startup = encode.startupMessage(PROTOCOL.V3_0, { user: 'viewer@example.com', database: 'demo' });

  it('reads a StartupMessage wherever it is split', () => {
    for (let cut = 0; cut < startup.length; cut++) {
      assert.equal(readStartupPacket(startup.subarray(0, cut)), undefined, `cut ${cut}`);
    }
    const read = readStartupPacket(startup)!;
    assert.equal(read.size, startup.length);
    assert.equal(read.packet.kind, 'startup');
    if (read.packet.kind !== 'startup') return;
    assert.equal(read.packet.minor, 0);
    assert.equal(read.packet.params.get('user'), 'viewer@example.com');
    assert.equal(read.packet.params.get('database'), 'demo');
  });

  it('reads protocol 3.2 and sets `_pq_.` options apart', () => {
    const read = readStartupPacket(
      encode.startupMessage(PROTOCOL.V3_2, { user: 'u', '_pq_.compression': 'on' }),
    )!;
    assert.equal(read.packet.kind, 'startup');
    if (read.packet.kind !== 'startup') return;
    assert.equal(read.packet.minor, 2);
    assert.deepEqual(read.packet.protocolOptions, ['_pq_.compression']);
    assert.equal(read.packet.params.has('_pq_.compression'), false);
  });

  it('reads SSL, GSSENC and cancel requests (4-byte and 3.2 long keys)', () => {
    assert.deepEqual(readStartupPacket(encode.sslRequest())!.packet, { kind: 'ssl' });
    const gss = Buffer.alloc(8);
    gss.writeInt32BE(8, 0);
    gss.writeInt32BE(REQUEST_CODE.GSSENC, 4);
    assert.deepEqual(readStartupPacket(gss)!.packet, { kind: 'gssenc' });
    for (const size of [4, 32, 256]) {
      const secret = Buffer.alloc(size, 7);
      const read = readStartupPacket(encode.cancelRequest(1234, secret))!;
      assert.deepEqual(read.packet, { kind: 'cancel', pid: 1234, secret });
    }
  });

  const bad: [string, Buffer, RegExp][] = [
    ['length too small', Buffer.from([0, 0, 0, 4, 0, 3, 0, 0]), /invalid startup packet length 4/],
    [
      'length over the cap',
      Buffer.from([0, 0, 0x27, 0x11, 0, 3, 0, 0]),
      /invalid startup packet length 10001/,
    ],
    ['negative length', Buffer.from([0xff, 0xff, 0xff, 0xff]), /invalid startup packet length -1/],
    ['protocol 2', encode.startupMessage(0x00020000, { user: 'u' }), /unsupported frontend protocol 2\.0/],
    ['protocol 4', encode.startupMessage(0x00040000, { user: 'u' }), /unsupported frontend protocol 4\.0/],
    ['no user', encode.startupMessage(PROTOCOL.V3_0, { database: 'd' }), /no PostgreSQL user name/],
    [
      'cancel key too long',
      encode.cancelRequest(1, Buffer.alloc(LIMITS.CANCEL_KEY_BYTES + 1)),
      /invalid cancel request/,
    ],
    ['cancel key too short', encode.cancelRequest(1, Buffer.alloc(2)), /invalid cancel request/],
  ];
  for (const [name, bytes, expected] of bad) {
    it(`refuses ${name}`, () => assert.throws(() => readStartupPacket(bytes), expected));
  }

  it('refuses an unterminated parameter list', () => {
    const b = Buffer.from(startup);
    b[b.length - 1] = 0x41;
    b[b.length - 2] = 0x41;
    assert.throws(() => readStartupPacket(b), /not terminated|no value|unexpected bytes/);
  });
});

describe('message decoders', () => {
  it('read the fields pgward acts on', () => {
    const parse = msg('P', Buffer.from('s1\0select $1\0\0\0'));
    assert.deepEqual(decode.parseMessage(parse), { name: 's1', text: 'select $1' });
    const bind = msg('B', Buffer.from('p1\0s1\0\0\0\0\0\0\0'));
    assert.deepEqual(decode.bindMessage(bind), { portal: 'p1', statement: 's1' });
    assert.equal(decode.commandTag(msg('C', 'INSERT 0 3\0')), 'INSERT 0 3');
    assert.equal(decode.tagRows('INSERT 0 3'), 3);
    assert.equal(decode.tagRows('SELECT 5000'), 5000);
    assert.equal(decode.tagRows('BEGIN'), undefined);
    const error = encode.errorResponse({ severity: 'FATAL', code: '28P01', message: 'no' });
    assert.equal(error[0], BE.ERROR);
    const fields = decode.errorFields(error);
    assert.equal(fields.get('C'), '28P01');
    assert.equal(fields.get('M'), 'no');
    assert.equal(decode.readyStatus(encode.readyForQuery('T')), 'T');
    assert.deepEqual(decode.parameterStatus(encode.parameterStatus('a', 'b')), ['a', 'b']);
    assert.throws(() => decode.queryText(msg('Q', 'no terminator')), /unterminated/);
  });

  // Strings in the last 32 bytes of a message are read in JavaScript, longer ones by Buffer.
  it('read short and long strings alike, in any script, and refuse an unterminated one', () => {
    for (const text of ['SELECT 1', 'é', 'SELECT ünïcödé', 'x'.repeat(31), 'x'.repeat(32), 'y'.repeat(200)]) {
      assert.equal(decode.commandTag(msg('C', `${text}\0`)), text);
      assert.equal(decode.queryText(msg('Q', `${text}\0`)), text);
      assert.deepEqual(decode.parameterStatus(encode.parameterStatus(text, text)), [text, text]);
    }
    // The first NUL ends the string, whichever way it is read.
    assert.equal(decode.commandTag(msg('C', 'SELECT 1\0junk\0')), 'SELECT 1');
    assert.deepEqual(decode.parseMessage(msg('P', 's\0t\0\0\0')), { name: 's', text: 't' });
    for (const body of ['', 'SELECT 1', 'é', 'x'.repeat(40)]) {
      assert.throws(() => decode.commandTag(msg('C', body)), /unterminated/);
    }
  });
});
