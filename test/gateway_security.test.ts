import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { connect } from 'node:net';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { connect as tlsConnect } from 'node:tls';
import { decodeJwt, exportSPKI, generateKeyPair, importJWK, type JWK, SignJWT } from 'jose';
import type pg from 'pg';
import { createLogger } from '../src/log/logger.js';
import * as encode from '../src/wire/encode.js';
import { PROTOCOL, REQUEST_CODE } from '../src/wire/protocol.js';
import { startTestStack, type TestStack } from './support/dev_stack.js';
import { eventually } from './support/eventually.js';
import { errorIn, exchange as rawExchange } from './support/raw_session.js';

const MAX_CONNECTIONS = 30;

/** Connects with `password` as `user` and returns the error the gateway answered with. */
function refusal(t: TestStack, password: string, user = 'viewer@example.com', database = 'demo') {
  return t.refusal(user, { password, database });
}

/** Sends raw bytes and collects everything the gateway answers until it closes (or `ms` pass). */
const exchange = (t: TestStack, chunks: Buffer[], ms = 3000) => rawExchange(t.stack.info.pg, chunks, { ms });

describe('gateway security', () => {
  let t: TestStack;
  let base: Record<string, unknown>;
  let idpKey: JWK;

  async function signed(
    claims: Record<string, unknown>,
    opts: { key?: Parameters<SignJWT['sign']>[0]; alg?: string; header?: Record<string, unknown> } = {},
  ) {
    const key = opts.key ?? (await importJWK(idpKey, 'RS256'));
    return new SignJWT(claims as never)
      .setProtectedHeader({ alg: opts.alg ?? 'RS256', typ: 'at+jwt', kid: idpKey.kid, ...opts.header })
      .sign(key);
  }

  before(async () => {
    t = await startTestStack({
      PGWARD_PG_MAX_CONNECTIONS: String(MAX_CONNECTIONS),
      PGWARD_PG_MAX_SESSIONS_PER_PERSON: '100',
      // The flood below comes from one address.
      PGWARD_PG_MAX_UNAUTHENTICATED_PER_ADDRESS: '1000',
      PGWARD_PG_MAX_UNAUTHENTICATED: '1000',
    });
    base = decodeJwt(await t.token('viewer@example.com'));
    idpKey = (JSON.parse(readFileSync(path.join(t.dataDir, 'idp', 'keys.json'), 'utf8')) as { signing: JWK })
      .signing;
  });
  after(async () => {
    await t?.close();
  });

  it('accepts a token the test signs with the real IdP key (the attacks below differ only in one thing)', async () => {
    const client = await t.client('viewer@example.com', { password: await signed(base) });
    await client.end();
  });

  const now = () => Math.floor(Date.now() / 1000);
  const attacks: [string, () => Promise<string>, RegExp, string][] = [
    ['garbage instead of a token', async () => 'hunter2', /the password is not a token/, 'TOKEN_MALFORMED'],
    [
      'alg none',
      async () => {
        const enc = (v: unknown) => Buffer.from(JSON.stringify(v)).toString('base64url');
        return `${enc({ alg: 'none', typ: 'JWT' })}.${enc(base)}.`;
      },
      /unsigned tokens \(alg "none"\) are refused/,
      'TOKEN_UNSIGNED',
    ],
    [
      'HS256 signed with the IdP public key',
      async () => {
        const { d: _d, p: _p, q: _q, dp: _dp, dq: _dq, qi: _qi, ...publicJwk } = idpKey;
        const pem = await exportSPKI(
          (await importJWK(publicJwk, 'RS256', { extractable: true })) as Parameters<typeof exportSPKI>[0],
        );
        return signed(base, { alg: 'HS256', key: new TextEncoder().encode(pem) });
      },
      /signing algorithm is not allowed/,
      'TOKEN_ALGORITHM',
    ],
    [
      'forged: another key with the IdP key id',
      async () => signed(base, { key: (await generateKeyPair('RS256')).privateKey }),
      /signature does not verify/,
      'TOKEN_SIGNATURE',
    ],
    [
      'unknown key id',
      async () =>
        signed(base, { key: (await generateKeyPair('RS256')).privateKey, header: { kid: 'attacker' } }),
      /key dev does not publish/,
      'TOKEN_UNKNOWN_KEY',
    ],
    [
      'jku / x5u pointing at the attacker',
      async () =>
        signed(base, {
          key: (await generateKeyPair('RS256')).privateKey,
          header: {
            jku: 'http://127.0.0.1:1/jwks.json',
            x5u: 'http://127.0.0.1:1/cert.pem',
            kid: 'attacker',
          },
        }),
      /names its own key \("jku"\); pgward only trusts the keys its providers publish/,
      'TOKEN_KEY_REFERENCE',
    ],
    [
      'expired',
      async () => signed({ ...base, exp: now() - 3600, iat: now() - 7200 }),
      /token expired at \d{4}-/,
      'TOKEN_EXPIRED',
    ],
    [
      'not yet valid',
      async () => signed({ ...base, nbf: now() + 3600 }),
      /not valid yet/,
      'TOKEN_NOT_YET_VALID',
    ],
    [
      'wrong issuer',
      async () => signed({ ...base, iss: 'https://evil.example.com' }),
      /tokens of issuer https:\/\/evil\.example\.com are not accepted/,
      'TOKEN_UNKNOWN_ISSUER',
    ],
    [
      'wrong audience',
      async () => signed({ ...base, aud: 'another-app' }),
      /not meant for this gateway/,
      'TOKEN_AUDIENCE',
    ],
    [
      'missing exp',
      async () => {
        const { exp: _exp, ...rest } = base;
        return signed(rest);
      },
      /no expiry/,
      'TOKEN_CLAIMS',
    ],
    [
      'another kind of JWT from the same IdP (a logout token)',
      async () => signed(base, { header: { typ: 'logout+jwt' } }),
      /a "logout\+jwt" token is not an access or ID token/,
      'TOKEN_TYPE',
    ],
    [
      'groups claim of the wrong type',
      async () => signed({ ...base, groups: { admin: true } }),
      /groups claim must be an array/,
      'TOKEN_CLAIMS',
    ],
  ];
  for (const [name, make, expected, code] of attacks) {
    it(`refuses a token: ${name} (28P01, ${code})`, async () => {
      const err = await refusal(t, await make());
      assert.equal(err.code, '28P01');
      assert.match(err.message, expected);
      assert.equal(err.detail, `pgward error ${code}`, 'each refusal has its own pgward code');
    });
  }

  it('tells an expired token to log in again', async () => {
    const err = await refusal(t, await signed({ ...base, exp: now() - 60 }));
    assert.match(err.hint ?? '', /pgward login/);
  });

  it('refuses a user name that does not match the token (28000)', async () => {
    const err = await refusal(t, await t.token('viewer@example.com'), 'admin@example.com');
    assert.equal(err.code, '28000');
    assert.match(err.message, /does not match the token \(signed in as viewer@example\.com\)/);
  });

  it('refuses an unknown connection (3D000) and one the person may not use (28000)', async () => {
    const unknown = await refusal(t, await t.token('viewer@example.com'), 'viewer@example.com', 'nope');
    assert.equal(unknown.code, '3D000');
    assert.match(unknown.message, /connection "nope" does not exist/);
    const demo = await t.stack.gateway.connections.find('demo');
    await t.stack.gateway.connections.put({
      name: 'restricted',
      host: demo!.host,
      port: demo!.port,
      database: demo!.database,
      sslmode: 'disable',
      credential: { user: 'nobody', password: 'x' },
      access: { admin: ['app_admin'] },
    });
    const denied = await refusal(t, await t.token('viewer@example.com'), 'viewer@example.com', 'restricted');
    assert.equal(denied.code, '28000');
    assert.match(denied.message, /viewer@example\.com may not use connection "restricted"/);
  });

  it('records refused attempts in the audit trail', async () => {
    await refusal(t, await signed({ ...base, exp: now() - 60 }));
    await t.stack.gateway.audit.flush();
    const { rows } = await t
      .store()
      .query(
        "select email, provider, end_reason from pgward.session where end_reason like 'refused 28P01: token expired%'",
      );
    assert.ok(rows.length >= 1);
    assert.equal(rows[0].email, null, 'an unverified token names nobody');
  });

  describe('malformed bytes get clean errors and the gateway keeps serving', () => {
    const cases: [string, Buffer[], RegExp][] = [
      [
        'protocol 2',
        [encode.startupMessage(0x00020000, { user: 'x' })],
        /unsupported frontend protocol 2\.0/,
      ],
      [
        'startup without user',
        [encode.startupMessage(PROTOCOL.V3_0, { database: 'demo' })],
        /no PostgreSQL user name/,
      ],
      [
        'unencrypted bytes after SSLRequest',
        [Buffer.concat([encode.sslRequest(), encode.startupMessage(PROTOCOL.V3_0, { user: 'x' })])],
        /received unencrypted data after SSL request/,
      ],
      [
        'oversize password message',
        [
          encode.startupMessage(PROTOCOL.V3_0, { user: 'viewer@example.com', database: 'demo' }),
          Buffer.from([0x70, 0x00, 0x01, 0x11, 0x71]),
        ],
        /invalid password message length 70001/,
      ],
      [
        'a query message instead of a password',
        [
          encode.startupMessage(PROTOCOL.V3_0, { user: 'viewer@example.com', database: 'demo' }),
          encode.query('select 1'),
        ],
        /expected a password message, got "Q"/,
      ],
    ];
    for (const [name, chunks, expected] of cases) {
      it(name, async () => {
        const fields = errorIn(await exchange(t, chunks));
        assert.ok(fields, 'an ErrorResponse');
        assert.equal(fields.get('C'), '08P01');
        assert.equal(fields.get('S'), 'FATAL');
        assert.match(fields.get('M') ?? '', expected);
      });
    }

    // PostgreSQL logs these and closes without a word: the peer may not be a PostgreSQL client.
    const silent: [string, Buffer[]][] = [
      ['HTTP instead of PostgreSQL', [Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n')]],
      ['oversize startup length', [Buffer.from([0x7f, 0xff, 0xff, 0xff, 0, 3, 0, 0])]],
      [
        'a Terminate before the startup packet (a driver that connects and ends at once)',
        [Buffer.from([0x58, 0, 0, 0, 4])],
      ],
      ['a startup length below 8', [Buffer.from([0, 0, 0, 4])]],
    ];
    for (const [name, chunks] of silent) {
      it(`${name}: closed without an answer, as PostgreSQL does`, async () => {
        const started = Date.now();
        const answer = await exchange(t, chunks, 5000);
        assert.equal(answer.length, 0, `no bytes, got ${answer.toString('latin1')}`);
        assert.ok(Date.now() - started < 4000, 'the gateway closed the connection itself');
      });
    }

    it('an oversize message after login gets 08P01, not a crash', async () => {
      const token = await t.token('viewer@example.com');
      const header = Buffer.from([0x51, 0x7f, 0xff, 0xff, 0xf0]);
      const fields = errorIn(
        await (async () => {
          const socket = connect({ host: t.stack.info.pg.host, port: t.stack.info.pg.port });
          const received: Buffer[] = [];
          socket.on('data', (d) => {
            received.push(d);
            // Once ReadyForQuery arrives, send the oversize header.
            if (Buffer.concat(received).includes(Buffer.from([0x5a, 0, 0, 0, 5]))) socket.write(header);
          });
          socket.on('error', () => undefined);
          socket.write(
            encode.startupMessage(PROTOCOL.V3_0, { user: 'viewer@example.com', database: 'demo' }),
          );
          socket.write(encode.passwordMessage(token));
          await new Promise((resolve) => socket.on('close', resolve));
          return Buffer.concat(received);
        })(),
      );
      assert.equal(fields?.get('C'), '08P01');
      assert.match(fields?.get('M') ?? '', /over the limit of 67108864/);
    });

    it('answers GSSENCRequest with N and negotiates protocol 3.5 down to 3.2 with unknown options', async () => {
      const gss = Buffer.alloc(8);
      gss.writeInt32BE(8);
      gss.writeInt32BE(REQUEST_CODE.GSSENC, 4);
      const answer = await exchange(
        t,
        [
          gss,
          encode.startupMessage(0x00030005, {
            user: 'viewer@example.com',
            database: 'demo',
            '_pq_.future': 'on',
          }),
        ],
        1500,
      );
      assert.equal(String.fromCharCode(answer[0]!), 'N');
      assert.equal(String.fromCharCode(answer[1]!), 'v');
      const v = answer.subarray(1);
      assert.equal(v.readInt32BE(5), 2, 'our highest minor version, not the client’s');
      assert.equal(v.readInt32BE(9), 1);
      assert.equal(v.toString('utf8', 13, 13 + '_pq_.future'.length), '_pq_.future');
      // Then it asks for the password as usual.
      const next = v.subarray(1 + v.readInt32BE(1));
      assert.equal(String.fromCharCode(next[0]!), 'R');
    });

    it('survives a bounded flood of random garbage and still serves others', async () => {
      let seed = 7;
      const rand = () => {
        seed = (seed * 1103515245 + 12345) & 0x7fffffff;
        return seed;
      };
      for (let round = 0; round < 10; round++) {
        await Promise.all(
          Array.from({ length: 20 }, () => {
            const size = 1 + (rand() % 600);
            const bytes = randomBytes(size);
            // Half of them look like a real start: a plausible length first.
            if (rand() % 2 === 0 && size >= 8) bytes.writeInt32BE(8 + (rand() % 9000), 0);
            return exchange(t, [bytes], 300);
          }),
        );
      }
      const client = await t.client('viewer@example.com');
      assert.equal((await client.query('select 1 as ok')).rows[0].ok, 1);
      await client.end();
    });
  });

  it(`refuses signed-in sessions beyond pg.maxConnections with 53300`, async () => {
    const open: pg.Client[] = [];
    try {
      for (let i = 0; i < MAX_CONNECTIONS; i++) open.push(await t.client('viewer@example.com'));
      const refused = await t.refusal('viewer@example.com', {});
      assert.equal(refused.code, '53300');
      assert.match(refused.message, /too many connections to pgward \(limit 30\)/);
    } finally {
      await Promise.all(open.map((c) => c.end()));
    }
    // Once they are gone, connections are served again.
    const client = await eventually(() => t.client('viewer@example.com').catch(() => undefined), 'a slot');
    await client.end();
  });
});

describe('gateway without plaintext on loopback, logging at trace level', () => {
  let t: TestStack;
  const logged: string[] = [];
  before(async () => {
    const sink = new PassThrough();
    sink.on('data', (line) => logged.push(String(line)));
    const log = createLogger({ level: 'trace', pretty: false, destination: sink });
    t = await startTestStack({ PGWARD_ALLOW_LOOPBACK_PLAINTEXT: 'false' }, log);
  });
  after(async () => {
    await t?.close();
  });

  it('refuses a token sent without TLS (28000) and accepts it over TLS', async () => {
    const plain = await t.psql('viewer@example.com', ['-c', 'select 1'], { sslmode: 'disable' });
    assert.notEqual(plain.code, 0);
    assert.match(plain.stderr, /pgward accepts tokens only over TLS/);
    assert.match(plain.stderr, /sslmode=require/);
    const tls = await t.psql('viewer@example.com', ['-At', '-c', 'select 1'], { sslmode: 'require' });
    assert.equal(tls.code, 0, tls.stderr);
  });

  it('speaks direct TLS (ALPN "postgresql") and refuses it without ALPN', async () => {
    const first = (alpn: string[] | undefined) =>
      new Promise<string>((resolve) => {
        const socket = tlsConnect({
          host: t.stack.info.pg.host,
          port: t.stack.info.pg.port,
          rejectUnauthorized: false,
          ...(alpn ? { ALPNProtocols: alpn } : {}),
        });
        socket.on('secureConnect', () =>
          socket.write(
            encode.startupMessage(PROTOCOL.V3_0, { user: 'viewer@example.com', database: 'demo' }),
          ),
        );
        socket.on('data', (d) => {
          resolve(String.fromCharCode(d[0]!));
          socket.destroy();
        });
        socket.on('error', () => resolve('error'));
        socket.on('close', () => resolve('closed'));
      });
    assert.equal(await first(['postgresql']), 'R', 'asks for the password');
    assert.notEqual(await first(undefined), 'R');
  });

  it('never logs a token, even at trace level', async () => {
    const token = await t.token('viewer@example.com');
    const client = await t.client('viewer@example.com');
    await client.query('select 1');
    await client.end();
    await refusal(t, `${token.slice(0, -4)}AAAA`);
    const all = logged.join('');
    assert.match(all, /session refused/, 'the log did record the sessions');
    assert.ok(!all.includes(token.split('.')[2]!.slice(0, 40)), 'no token signature in the log');
    assert.ok(!all.includes(token.split('.')[1]!.slice(0, 40)), 'no token payload in the log');
  });
});
