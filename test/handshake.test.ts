/**
 * The handshake state machine (src/wire/handshake.ts) without sockets: every stream is fed whole,
 * split in two at every byte, and one byte at a time, and must give the same steps each way.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { PgwardError } from '../src/errors.js';
import * as encode from '../src/wire/encode.js';
import { Handshake, type HandshakeOptions, MAX_BEFORE_AUTH } from '../src/wire/handshake.js';
import { LIMITS, PROTOCOL, REQUEST_CODE } from '../src/wire/protocol.js';
import { MalformedStartup } from '../src/wire/startup.js';

const ENDPOINT: HandshakeOptions = { tls: true, plaintextAllowed: false, highestMinor: 2 };
const LOOPBACK: HandshakeOptions = { tls: true, plaintextAllowed: true, highestMinor: 2 };
const PLAIN: HandshakeOptions = { tls: false, plaintextAllowed: true, highestMinor: 0 };

const ssl = encode.sslRequest();
const gss = (() => {
  const b = Buffer.alloc(8);
  b.writeInt32BE(8, 0);
  b.writeInt32BE(REQUEST_CODE.GSSENC, 4);
  return b;
})();
const startup = (params: Record<string, string> = {}, version: number = PROTOCOL.V3_0) =>
  encode.startupMessage(version, { user: 'viewer@example.com', database: 'demo', ...params });
const password = encode.passwordMessage('the-token');
const query = encode.query('select 1');

interface Outcome {
  /** Each step, as a short text (what the caller would do). */
  steps: string[];
  /** The error that ended the handshake: its class, code and message. */
  error?: string;
  /** What was left after the password. */
  rest: string;
}

const show = (b: Buffer) => b.toString('latin1');

/**
 * Feeds a stream into a machine and takes every step after each chunk, as a caller does. The
 * stream comes in phases: the plaintext bytes, then (with TLS) the bytes read inside TLS; a
 * phase is pushed only once a TLS step was taken (and TLS completed) in the one before.
 */
function drive(opts: HandshakeOptions, phases: Buffer[][]): Outcome {
  const h = new Handshake(opts);
  const steps: string[] = [];
  let phase = 0;
  let tlsAsked = false;
  try {
    while (phase < phases.length) {
      for (const chunk of phases[phase]!) {
        h.push(chunk);
        for (let step = h.next(); step.kind !== 'more'; step = h.next()) {
          switch (step.kind) {
            case 'reply':
              steps.push(`reply ${show(step.reply)}`);
              break;
            case 'start-tls':
              steps.push(`start-tls ${show(step.reply)}`);
              tlsAsked = true;
              break;
            case 'direct-tls':
              // What was read belongs to the TLS layer.
              steps.push(`direct-tls ${step.received.length}`);
              tlsAsked = true;
              break;
            case 'cancel':
              steps.push(`cancel ${step.pid} ${step.secret.toString('hex')}`);
              break;
            case 'startup': {
              const p = step.startup;
              steps.push(
                `startup 3.${p.minor} user=${p.params.get('user')} db=${p.params.get('database')} reply=${show(step.reply)}`,
              );
              break;
            }
            case 'password':
              steps.push(`password ${step.password}`);
              break;
          }
        }
      }
      phase++;
      if (phase < phases.length) {
        if (!tlsAsked) break;
        h.tlsUp();
        tlsAsked = false;
      }
    }
  } catch (err) {
    const e = err as PgwardError;
    return {
      steps,
      error: `${e instanceof MalformedStartup ? 'malformed' : 'refused'} ${e.code}: ${e.message}`,
      rest: '',
    };
  }
  return { steps, rest: show(h.rest()) };
}

/**
 * The outcome of a stream (its plaintext part, and what comes inside TLS) fed whole; asserted
 * the same with each part split in two at every byte, and fed byte by byte.
 */
function everySplit(opts: HandshakeOptions, plain: Buffer, inside?: Buffer): Outcome {
  const parts = inside ? [plain, inside] : [plain];
  const whole = drive(
    opts,
    parts.map((p) => [p]),
  );
  parts.forEach((part, i) => {
    for (let cut = 0; cut <= part.length; cut++) {
      const phases = parts.map((p, j) => (j === i ? [p.subarray(0, cut), p.subarray(cut)] : [p]));
      assert.deepEqual(drive(opts, phases), whole, `part ${i} split at ${cut}`);
    }
  });
  assert.deepEqual(
    drive(
      opts,
      parts.map((p) => [...p].map((b) => Buffer.from([b]))),
    ),
    whole,
    'byte by byte',
  );
  return whole;
}

const askPassword = show(encode.authenticationCleartextPassword());

describe('handshake state machine', () => {
  it('plaintext where allowed: startup, password asked, password; pipelined bytes are left over', () => {
    const out = everySplit(PLAIN, Buffer.concat([startup(), password, query]));
    assert.deepEqual(out.steps, [
      `startup 3.0 user=viewer@example.com db=demo reply=${askPassword}`,
      'password the-token',
    ]);
    assert.equal(out.error, undefined);
    assert.equal(out.rest, show(query));
  });

  it('SSLRequest answered S with a certificate; startup and password inside TLS', () => {
    const out = everySplit(ENDPOINT, ssl, Buffer.concat([startup(), password]));
    assert.deepEqual(out.steps, [
      'start-tls S',
      `startup 3.0 user=viewer@example.com db=demo reply=${askPassword}`,
      'password the-token',
    ]);
  });

  it('SSLRequest answered N without a certificate', () => {
    const out = everySplit(PLAIN, Buffer.concat([ssl, startup(), password]));
    assert.deepEqual(out.steps.slice(0, 1), ['reply N']);
    assert.equal(out.steps.length, 3);
  });

  it('GSSENCRequest answered N, then SSLRequest (libpq with gssencmode=prefer)', () => {
    const out = everySplit(ENDPOINT, Buffer.concat([gss, ssl]), Buffer.concat([startup(), password]));
    assert.deepEqual(out.steps.slice(0, 2), ['reply N', 'start-tls S']);
    assert.equal(out.steps.length, 4);
    assert.equal(out.error, undefined);
  });

  it('SSLRequest answered N, then GSSENCRequest answered N', () => {
    const out = everySplit(PLAIN, Buffer.concat([ssl, gss, startup(), password]));
    assert.deepEqual(out.steps.slice(0, 2), ['reply N', 'reply N']);
    assert.equal(out.error, undefined);
  });

  it('refuses a second SSLRequest, before or inside TLS', () => {
    const plain = everySplit(PLAIN, Buffer.concat([ssl, ssl, startup()]));
    assert.deepEqual(plain.steps, ['reply N']);
    assert.equal(plain.error, 'refused PROTOCOL_VIOLATION: SSLRequest sent again; only one is allowed');
    const inside = everySplit(ENDPOINT, ssl, Buffer.concat([ssl, startup()]));
    assert.deepEqual(inside.steps, ['start-tls S']);
    assert.match(inside.error ?? '', /SSLRequest sent again/);
  });

  it('refuses a second GSSENCRequest, and one inside TLS', () => {
    assert.match(everySplit(PLAIN, Buffer.concat([gss, gss])).error ?? '', /GSSENCRequest sent again/);
    assert.match(everySplit(ENDPOINT, ssl, gss).error ?? '', /GSSENCRequest inside an encrypted connection/);
  });

  it('refuses plaintext bytes sent after SSLRequest, before the TLS handshake, wherever they are split', () => {
    // Whole, the machine sees them before it answers; split after the SSLRequest, they come
    // while TLS is being set up (a caller reads them only if its transport delivered them).
    const stream = Buffer.concat([ssl, startup()]);
    for (let cut = 0; cut <= stream.length; cut++) {
      const out = drive(ENDPOINT, [[stream.subarray(0, cut), stream.subarray(cut)]]);
      assert.equal(
        out.error,
        'refused PROTOCOL_VIOLATION: received unencrypted data after SSL request',
        `split at ${cut}`,
      );
      assert.deepEqual(out.steps, cut === ssl.length ? ['start-tls S'] : [], `split at ${cut}`);
    }
  });

  it('refuses a cleartext StartupMessage where TLS is required, and accepts it inside TLS', () => {
    const out = everySplit(ENDPOINT, Buffer.concat([startup(), password]));
    assert.deepEqual(out.steps, []);
    assert.equal(out.error, 'refused NOT_ALLOWED: pgward accepts tokens only over TLS');
    // Also after an SSLRequest answered N (no certificate, TLS still required).
    const noCert = everySplit({ ...ENDPOINT, tls: false }, Buffer.concat([ssl, startup()]));
    assert.deepEqual(noCert.steps, ['reply N']);
    assert.match(noCert.error ?? '', /only over TLS/);
    // A loopback client with plaintext allowed.
    assert.equal(everySplit(LOOPBACK, Buffer.concat([startup(), password])).steps.length, 2);
  });

  it('hands a CancelRequest to the caller, in plaintext or inside TLS, and reads nothing after it', () => {
    const secret = Buffer.alloc(32, 0xab);
    const cancel = encode.cancelRequest(4242, secret);
    const plain = everySplit(PLAIN, Buffer.concat([cancel, startup()]));
    assert.deepEqual(plain.steps, [`cancel 4242 ${secret.toString('hex')}`]);
    assert.equal(plain.error, undefined);
    const inside = everySplit(ENDPOINT, ssl, cancel);
    assert.deepEqual(inside.steps, ['start-tls S', `cancel 4242 ${secret.toString('hex')}`]);
    // A cancel needs no TLS even where tokens do (it carries no secret of the person).
    assert.deepEqual(everySplit(ENDPOINT, cancel).steps, [`cancel 4242 ${secret.toString('hex')}`]);
  });

  it('direct TLS: a TLS record as the first byte; only where a certificate is configured, only first', () => {
    const hello = Buffer.from([0x16, 0x03, 0x01, 0x00, 0x05, 1, 2, 3, 4, 5]);
    const out = drive(ENDPOINT, [[hello]]);
    assert.deepEqual(out.steps, [`direct-tls ${hello.length}`]);
    // Split: the first chunk goes to TLS, and so does what follows (the caller reads it there).
    assert.deepEqual(drive(ENDPOINT, [[hello.subarray(0, 1)]]).steps, ['direct-tls 1']);
    // After direct TLS neither SSLRequest nor GSSENCRequest makes sense.
    const h = new Handshake(ENDPOINT);
    h.push(hello);
    assert.equal(h.next().kind, 'direct-tls');
    h.tlsUp();
    h.push(ssl);
    assert.throws(() => h.next(), /SSLRequest sent again/);
    const noCert = drive(PLAIN, [[hello]]);
    assert.equal(noCert.error, 'malformed PROTOCOL_VIOLATION: direct TLS is not configured');
    // After an SSLRequest answered N, 0x16 is read as a startup length: malformed.
    assert.match(drive(PLAIN, [[ssl, hello]]).error ?? '', /^malformed .*invalid startup packet length/);
  });

  const malformed: [string, Buffer][] = [
    ['HTTP', Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n')],
    ['a Terminate before any startup', Buffer.from([0x58, 0, 0, 0, 4])],
    ['a length below 8', Buffer.from([0, 0, 0, 4])],
    ['a length over the startup cap', Buffer.from([0, 0, 0x27, 0x11, 0, 3, 0, 0])],
    ['an SSLRequest of the wrong length', Buffer.from([0, 0, 0, 12, 0x04, 0xd2, 0x16, 0x2f, 0, 0, 0, 0])],
    ['a cancel key over 256 bytes', encode.cancelRequest(1, Buffer.alloc(LIMITS.CANCEL_KEY_BYTES + 1))],
  ];
  for (const [name, bytes] of malformed) {
    it(`${name}: MalformedStartup (closed without an answer)`, () => {
      const out = everySplit(ENDPOINT, bytes);
      assert.deepEqual(out.steps, []);
      assert.match(out.error ?? '', /^malformed PROTOCOL_VIOLATION/);
    });
  }

  it('answers a bad but well-framed startup with an error (protocol 2, no user)', () => {
    assert.match(
      everySplit(PLAIN, encode.startupMessage(0x00020000, { user: 'u' })).error ?? '',
      /^refused PROTOCOL_VIOLATION: unsupported frontend protocol 2\.0/,
    );
    assert.match(
      everySplit(PLAIN, encode.startupMessage(PROTOCOL.V3_0, { database: 'd' })).error ?? '',
      /^refused .*no PostgreSQL user name/,
    );
  });

  it('refuses replication connections', () => {
    const out = everySplit(PLAIN, startup({ replication: 'database' }));
    assert.equal(out.error, 'refused NOT_ALLOWED: replication connections are not supported through pgward');
    assert.equal(everySplit(PLAIN, startup({ replication: 'false' })).error, undefined);
  });

  it('negotiates down to its own highest minor version, naming the options it does not know', () => {
    const out = everySplit(LOOPBACK, Buffer.concat([startup({ '_pq_.future': 'on' }, 0x00030005), password]));
    const negotiate = encode.negotiateProtocolVersion(2, ['_pq_.future']);
    assert.deepEqual(out.steps, [
      `startup 3.2 user=viewer@example.com db=demo reply=${show(negotiate)}${askPassword}`,
      'password the-token',
    ]);
    // 3.2 where the listener speaks 3.2: nothing to negotiate.
    assert.match(everySplit(LOOPBACK, startup({}, PROTOCOL.V3_2)).steps[0]!, /^startup 3\.2 .* reply=R/);
    // `pgward connect` speaks 3.0.
    assert.match(
      everySplit(PLAIN, startup({}, PROTOCOL.V3_2)).steps[0]!,
      new RegExp(`^startup 3\\.0 .* reply=${show(encode.negotiateProtocolVersion(0, []))}R`),
    );
  });

  it('wants a password message: another message, or one over the cap, is refused before its body', () => {
    const notPassword = everySplit(PLAIN, Buffer.concat([startup(), query]));
    assert.equal(notPassword.error, 'refused PROTOCOL_VIOLATION: expected a password message, got "Q"');
    const oversize = everySplit(
      PLAIN,
      Buffer.concat([startup(), Buffer.from([0x70, 0x00, 0x01, 0x11, 0x71])]),
    );
    assert.equal(
      oversize.error,
      'refused PROTOCOL_VIOLATION: invalid password message length 70001 (at most 65539)',
    );
    const unterminated = Buffer.from([0x70, 0, 0, 0, 7, 0x61, 0x62, 0x63]);
    assert.match(everySplit(PLAIN, Buffer.concat([startup(), unterminated])).error ?? '', /unterminated/);
  });

  it('tells the caller to stop reading past what any handshake needs', () => {
    const h = new Handshake(PLAIN);
    assert.equal(h.push(Buffer.alloc(MAX_BEFORE_AUTH)), true);
    assert.equal(h.push(Buffer.alloc(1)), false);
  });

  it('step() waits for bytes, and fails when the client goes away', async () => {
    const h = new Handshake(PLAIN);
    const first = h.step();
    const bytes = startup();
    h.push(bytes.subarray(0, 3));
    h.push(bytes.subarray(3));
    assert.equal((await first).kind, 'startup');
    const second = h.step();
    h.end();
    await assert.rejects(second, /the client went away during login/);
  });

  it('never throws from push(), even for bytes it refuses', () => {
    const h = new Handshake(ENDPOINT);
    h.push(ssl);
    assert.equal(h.next().kind, 'start-tls');
    assert.doesNotThrow(() => h.push(startup()));
    assert.throws(() => h.next(), /received unencrypted data after SSL request/);
  });
});
