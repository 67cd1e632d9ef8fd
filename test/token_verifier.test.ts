import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { decodeJwt, importJWK, type JWK, SignJWT } from 'jose';
import { providerSchema } from '../src/config/schema.js';
import { type DevIdp, startDevIdp } from '../src/dev/dev_idp.js';
import { devLogin } from '../src/dev/dev_login.js';
import { PgwardError } from '../src/errors.js';
import { mapClaims } from '../src/identity/claims.js';
import { assertIssuedInThePast, TokenVerifier } from '../src/identity/token_verifier.js';
import { freePort } from '../src/store/free_port.js';
import { quietLog } from './support/quiet_log.js';
import { tempDir } from './support/temp_dir.js';

describe('token verification while the IdP is down', () => {
  const dir = tempDir('idp');
  let idp: DevIdp | undefined;
  let verifier: TokenVerifier;
  const tokens: string[] = [];
  let prewarmedAt = 0;

  before(async () => {
    idp = await startDevIdp({
      dir,
      host: '127.0.0.1',
      port: await freePort(),
      redirectUris: [],
      log: quietLog,
    });
    for (const email of ['viewer@example.com', 'editor@example.com', 'admin@example.com']) {
      tokens.push((await devLogin({ issuer: idp.issuer, email, password: 'password' })).access_token);
    }
    const provider = providerSchema.parse({
      name: 'dev',
      issuer: idp.issuer,
      clientId: 'pgward',
      algorithms: ['RS256'],
    });
    // Keys go stale at once and may be fetched again at once: every verification asks the IdP.
    verifier = new TokenVerifier([provider], quietLog, { cacheMaxAgeMs: 1, cooldownMs: 0 });
    await verifier.prewarm();
    assert.equal((await verifier.verify(tokens[0]!)).email, 'viewer@example.com');
    prewarmedAt = Date.now();
    await idp.close();
    idp = undefined;
  });
  after(async () => {
    await idp?.close();
  });

  it('keeps accepting tokens the IdP already issued, with the keys last fetched', async () => {
    // The keys go stale 1 ms after they were fetched: wait for the clock to pass that, no more.
    while (Date.now() - prewarmedAt <= 1) await new Promise((resolve) => setImmediate(resolve));
    const identity = await verifier.verify(tokens[1]!);
    assert.equal(identity.email, 'editor@example.com');
    assert.deepEqual(identity.groups, ['editor']);
  });

  it('says the IdP is unreachable for a token signed with a key it never published', async () => {
    const signing = (JSON.parse(readFileSync(path.join(dir, 'keys.json'), 'utf8')) as { signing: JWK })
      .signing;
    const claims = decodeJwt(tokens[2]!);
    const token = await new SignJWT(claims as never)
      .setProtectedHeader({ alg: 'RS256', typ: 'at+jwt', kid: 'rotated-key' })
      .sign(await importJWK(signing, 'RS256'));
    await assert.rejects(verifier.verify(token), (err: unknown) => {
      assert.ok(err instanceof PgwardError);
      assert.equal(err.code, 'IDP_UNREACHABLE');
      assert.match(err.message, /cannot reach the identity provider dev/);
      return true;
    });
  });

  it('still refuses an expired token while the IdP is down', async () => {
    const signing = (JSON.parse(readFileSync(path.join(dir, 'keys.json'), 'utf8')) as { signing: JWK })
      .signing;
    const claims = decodeJwt(tokens[2]!);
    const now = Math.floor(Date.now() / 1000);
    const token = await new SignJWT({ ...claims, exp: now - 120, iat: now - 600 } as never)
      .setProtectedHeader({ alg: 'RS256', typ: 'at+jwt', kid: signing.kid! })
      .sign(await importJWK(signing, 'RS256'));
    await assert.rejects(verifier.verify(token), /token expired at/);
  });
});

describe('claims and issue time, checked before anything uses them', () => {
  const provider = providerSchema.parse({ name: 'p', issuer: 'https://p.example.com', clientId: 'c' });
  const base = { sub: 's-1', email: 'ada@example.com', email_verified: true, name: 'Ada', groups: ['g'] };

  it('regression: a control character in a claim is TOKEN_CLAIMS, never a store error later', () => {
    for (const bad of [
      { sub: 's\u0000' },
      { email: 'a\u0000@example.com' },
      { name: 'Ada\u0000' },
      { name: 'Ada\r\nFAKE LOG LINE' },
      { name: 'Ada\u009b' },
      { groups: ['g\u0007'] },
      { preferred_username: 'ada\u0000' },
    ]) {
      assert.throws(
        () => mapClaims(provider, { ...base, ...bad }),
        (err: unknown) => err instanceof PgwardError && err.code === 'TOKEN_CLAIMS',
        JSON.stringify(bad),
      );
    }
    assert.equal(
      mapClaims(provider, { ...base, name: 'Ada Lovelace-Byron (née)' }).name,
      'Ada Lovelace-Byron (née)',
    );
  });

  it('reads iat, and refuses one in the future beyond the clock skew', () => {
    const now = Date.now();
    assert.equal(mapClaims(provider, { ...base, iat: 1_700_000_000 }).issuedAt?.getTime(), 1_700_000_000_000);
    assert.equal(mapClaims(provider, base).issuedAt, undefined);
    assertIssuedInThePast({ iat: Math.floor(now / 1000) + 20 }, now);
    assert.throws(
      () => assertIssuedInThePast({ iat: Math.floor(now / 1000) + 120 }, now),
      (err: unknown) => err instanceof PgwardError && err.code === 'TOKEN_NOT_YET_VALID',
    );
    assert.throws(
      () => assertIssuedInThePast({ iat: 'yesterday' as never }, now),
      (err: unknown) => err instanceof PgwardError && err.code === 'TOKEN_CLAIMS',
    );
  });
});
