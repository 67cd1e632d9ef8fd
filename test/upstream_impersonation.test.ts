/**
 * A target impersonator is refused (issue 15, finding 13): each test here fails if the
 * protection it names is taken out. The SCRAM client must check the server's final signature
 * (and that there is one), and verify-full must check the certificate's host name; the weaker
 * sslmodes accept what their contract says they accept, so the refusal is about the name only.
 */
import assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';
import { generate } from 'selfsigned';
import { PgwardError } from '../src/errors.js';
import { UpstreamConnection, type UpstreamTarget } from '../src/upstream/upstream.js';
import type { SslMode } from '../src/vault/ssl_mode.js';
import {
  type FakeBehaviour,
  type FakeOptions,
  type FakeTarget,
  startFakeTarget,
} from './support/fake_target.js';

const PASSWORD = 'the-vaulted-secret';

const target = (port: number, sslmode: SslMode, sslCa?: string): UpstreamTarget => ({
  name: 'orders',
  host: '127.0.0.1',
  port,
  database: 'orders',
  sslmode,
  sslCa,
  user: 'pgward_admin',
  password: PASSWORD,
  params: {},
  timeoutMs: 5_000,
});

/** Logs in to a fake target; resolves with the open connection's TLS state, or the error. */
async function login(
  behaviour: FakeBehaviour,
  sslmode: SslMode,
  opts: FakeOptions & { sslCa?: string } = {},
): Promise<{ tls: string } | { err: PgwardError }> {
  const fake: FakeTarget = await startFakeTarget(behaviour, { password: PASSWORD, ...opts });
  try {
    const conn = await UpstreamConnection.open(target(fake.port, sslmode, opts.sslCa));
    conn.close();
    return { tls: conn.tls };
  } catch (err) {
    return { err: err as PgwardError };
  } finally {
    await fake.close();
  }
}

/** A self-signed certificate (its own CA) for the given names only. */
async function certificateFor(altNames: ({ type: 2; value: string } | { type: 7; ip: string })[]) {
  const pems = await generate([{ name: 'commonName', value: 'fake target' }], {
    keySize: 2048,
    algorithm: 'sha256',
    extensions: [
      { name: 'basicConstraints', cA: false },
      { name: 'keyUsage', digitalSignature: true, keyEncipherment: true },
      { name: 'extKeyUsage', serverAuth: true },
      { name: 'subjectAltName', altNames },
    ],
  });
  return { key: pems.private, cert: pems.cert };
}

describe('SCRAM: the target must prove it knows the verifier', () => {
  it('a target that knows the password completes SCRAM (the control: the fake does SCRAM right)', async () => {
    const r = await login('scram', 'disable');
    assert.deepEqual(r, { tls: 'none' });
  });

  it('a target that completes SCRAM with a made-up server signature is refused', async () => {
    const r = await login('scram-wrong-signature', 'disable');
    assert.ok('err' in r, 'the impersonator was accepted');
    assert.ok(r.err instanceof PgwardError, String(r.err));
    assert.equal(r.err.code, 'UPSTREAM_FAILED');
    assert.equal(r.err.sqlstate, '08006');
    assert.equal(r.err.message, 'SCRAM login to the target failed: the server signature does not match');
  });

  it('a target that skips the server-final message and says AuthenticationOk is refused', async () => {
    const r = await login('scram-skip-final', 'disable');
    assert.ok('err' in r, 'the impersonator was accepted');
    assert.equal(r.err.code, 'UPSTREAM_FAILED');
    assert.equal(
      r.err.message,
      'SCRAM login to the target failed: the server ended the exchange without proving its identity',
    );
  });
});

describe('TLS: verify-full checks the host name, verify-ca and require do not', () => {
  let otherName: { key: string; cert: string };
  let ownName: { key: string; cert: string };
  before(async () => {
    // Valid (its own CA) but for another name than the address pgward dials (127.0.0.1).
    otherName = await certificateFor([{ type: 2, value: 'other.example.com' }]);
    ownName = await certificateFor([{ type: 7, ip: '127.0.0.1' }]);
  });

  it('verify-full accepts a certificate for the host it dials (the control)', async () => {
    const r = await login('scram', 'verify-full', { tls: ownName, sslCa: ownName.cert });
    assert.deepEqual(r, { tls: 'verified' });
  });

  it('verify-full refuses a certificate the CA signed for another name', async () => {
    const r = await login('scram', 'verify-full', { tls: otherName, sslCa: otherName.cert });
    assert.ok('err' in r, 'a certificate for another name was accepted under verify-full');
    assert.equal(r.err.code, 'UPSTREAM_FAILED');
    assert.match(r.err.message, /^TLS to the target failed: .*IP: 127\.0\.0\.1 is not in the cert's list/);
  });

  it('verify-full refuses a certificate for "localhost" when it dials 127.0.0.1 (no default name)', async () => {
    const localhost = await certificateFor([{ type: 2, value: 'localhost' }]);
    const r = await login('scram', 'verify-full', { tls: localhost, sslCa: localhost.cert });
    assert.ok('err' in r, 'an IP target was checked against "localhost"');
    assert.match(r.err.message, /IP: 127\.0\.0\.1 is not in the cert's list/);
  });

  const accepted: [SslMode, boolean, string][] = [
    ['verify-ca', true, 'verified'],
    ['require', true, 'verified'],
    ['require', false, 'unverified'],
    ['prefer', false, 'unverified'],
  ];
  for (const [sslmode, withCa, tls] of accepted) {
    it(`${sslmode}${withCa ? ' with the CA' : ''} accepts that certificate (${tls}): the chain only is its contract`, async () => {
      const r = await login('scram', sslmode, {
        tls: otherName,
        ...(withCa ? { sslCa: otherName.cert } : {}),
      });
      assert.deepEqual(r, { tls });
    });
  }

  it('verify-ca still refuses a certificate of another CA', async () => {
    const r = await login('scram', 'verify-ca', { tls: otherName, sslCa: ownName.cert });
    assert.ok('err' in r);
    assert.match(r.err.message, /^TLS to the target failed: self-signed certificate/);
  });
});
