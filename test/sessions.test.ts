import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { decodeJwt, decodeProtectedHeader, importJWK, jwtVerify } from 'jose';
import type pg from 'pg';
import { IdpPageWalker } from '../src/dev/dev_login.js';
import { SigningKeys } from '../src/session/signing_keys.js';
import type { EmbeddedCluster } from '../src/store/embedded_postgres.js';
import { migrate } from '../src/store/migrate.js';
import { createPool } from '../src/store/store.js';
import { SecretBox } from '../src/vault/secret_box.js';
import { call, DEVICE_GRANT, deviceLogin, type Grant } from './support/api.js';
import { startTestStack, type TestStack } from './support/dev_stack.js';
import { createDatabase, startTestPostgres } from './support/postgres.js';
import { quietLog } from './support/quiet_log.js';

describe("pgward's own tokens", () => {
  let t: TestStack;
  let http: string;
  let idp: string;

  before(async () => {
    t = await startTestStack();
    http = t.stack.info.http;
    idp = t.stack.info.idp;
  });
  after(async () => {
    await t?.close();
  });

  const whoami = (token: string) => call(http, 'GET', '/api/v1/whoami', { token });
  async function currentUser(email: string, token: string): Promise<string> {
    const client = await t.client(email, { password: token });
    try {
      return (await client.query('select current_user')).rows[0].current_user;
    } finally {
      await client.end();
    }
  }

  it('device login through the gateway: pending until confirmed, then a signed pgward token', async () => {
    const started = await call<{ device_code: string; verification_uri_complete: string; user_code: string }>(
      http,
      'POST',
      '/api/v1/auth/device',
      { body: {} },
    );
    assert.equal(started.status, 200);
    assert.match(started.body.verification_uri_complete, new RegExp(`^${idp}/device`));
    const pending = await call(http, 'POST', '/api/v1/auth/token', {
      body: { grant_type: DEVICE_GRANT, device_code: started.body.device_code },
    });
    assert.equal(pending.status, 400);
    assert.equal(pending.body['code'], 'LOGIN_PENDING');
    assert.match(pending.headers.get('content-type') ?? '', /application\/problem\+json/);
    await new IdpPageWalker(idp).walk(
      started.body.verification_uri_complete,
      { email: 'editor@example.com', password: 'password' },
      () => false,
    );
    const done = await call<Grant>(http, 'POST', '/api/v1/auth/token', {
      body: { grant_type: DEVICE_GRANT, device_code: started.body.device_code },
    });
    assert.equal(done.status, 200, JSON.stringify(done.body));
    const grant = done.body;
    assert.match(grant.refresh_token, /^pgw_rt_/);
    assert.ok(grant.expires_in > 800 && grant.expires_in <= 900, 'default lifetime 15 minutes');
    const header = decodeProtectedHeader(grant.access_token);
    assert.equal(header.alg, 'ES256');
    assert.equal(header.typ, 'at+jwt');
    const claims = decodeJwt(grant.access_token);
    assert.equal(claims.iss, http);
    assert.equal(claims['email'], 'editor@example.com');
    assert.deepEqual(claims['groups'], ['dev:editor', 'editor']);

    // Anyone can check it against the published keys.
    const jwks = await call<{ keys: { kid: string }[] }>(http, 'GET', '/.well-known/jwks.json');
    const key = jwks.body.keys.find((k) => k.kid === header.kid);
    assert.ok(key, 'the signing key is published');
    await jwtVerify(grant.access_token, await importJWK(key as never, 'ES256'), {
      issuer: http,
      audience: 'pgward',
    });

    const me = await whoami(grant.access_token);
    assert.equal(me.status, 200);
    assert.equal(me.body['email'], 'editor@example.com');
    assert.equal(me.body['isAdmin'], false);
    assert.equal(await currentUser('editor@example.com', grant.access_token), 'editor@example.com');
  });

  it('refresh re-reads the person at the IdP, rotates the refresh token and catches its reuse', async () => {
    const first = await deviceLogin(http, idp, 'viewer@example.com');
    const refreshed = await call<Grant>(http, 'POST', '/api/v1/auth/token', {
      body: { grant_type: 'refresh_token', refresh_token: first.refresh_token },
    });
    assert.equal(refreshed.status, 200, JSON.stringify(refreshed.body));
    assert.notEqual(refreshed.body.refresh_token, first.refresh_token);
    assert.deepEqual(refreshed.body.person.groups, ['dev:viewer', 'viewer']);
    assert.equal(await currentUser('viewer@example.com', refreshed.body.access_token), 'viewer@example.com');

    // The old refresh token again, right away: another request of the same client won; no harm done.
    const race = await call(http, 'POST', '/api/v1/auth/token', {
      body: { grant_type: 'refresh_token', refresh_token: first.refresh_token },
    });
    assert.equal(race.status, 401);
    assert.equal(race.body['code'], 'TOKEN_REVOKED');
    assert.equal((await whoami(refreshed.body.access_token)).status, 200);

    // Later, the old one again means a copy is out there: the whole sign-in is revoked.
    await t
      .store()
      .query("update pgward.login_session set refreshed_at = now() - interval '1 hour' where user_id = $1", [
        first.person.userId,
      ]);
    const replay = await call(http, 'POST', '/api/v1/auth/token', {
      body: { grant_type: 'refresh_token', refresh_token: first.refresh_token },
    });
    assert.equal(replay.status, 401);
    assert.match(String(replay.body['detail']), /already used; the sign-in is revoked/);
    const after = await whoami(refreshed.body.access_token);
    assert.equal(after.status, 401);
    assert.equal(after.body['code'], 'TOKEN_REVOKED');
    const wire = await t.refusal('viewer@example.com', { password: refreshed.body.access_token });
    assert.equal(wire.code, '28P01');
    assert.equal(wire.detail, 'pgward error TOKEN_REVOKED');
  });

  it('revokes one token, or every sign-in of a person', async () => {
    const editor1 = await deviceLogin(http, idp, 'editor@example.com');
    const editor2 = await deviceLogin(http, idp, 'editor@example.com');
    const admin = await deviceLogin(http, idp, 'admin@example.com');

    const revoke = await call(http, 'POST', '/api/v1/auth/revoke', {
      token: editor1.access_token,
      body: { token: editor1.access_token },
    });
    assert.equal(revoke.status, 200);
    assert.equal((await whoami(editor1.access_token)).status, 401);
    assert.equal((await whoami(editor2.access_token)).status, 200, 'other tokens live on');

    const viewer = await deviceLogin(http, idp, 'viewer@example.com');
    const notYours = await call(http, 'POST', '/api/v1/auth/revoke', {
      token: viewer.access_token,
      body: { token: editor2.access_token },
    });
    assert.equal(notYours.status, 403);

    const all = await call<{ revoked: number }>(http, 'POST', '/api/v1/users/editor@example.com/revoke', {
      token: admin.access_token,
    });
    assert.equal(all.status, 200);
    assert.ok(all.body.revoked >= 2);
    assert.equal((await whoami(editor2.access_token)).status, 401);
    const refresh = await call(http, 'POST', '/api/v1/auth/token', {
      body: { grant_type: 'refresh_token', refresh_token: editor2.refresh_token },
    });
    assert.equal(refresh.status, 401);
    assert.equal((await whoami(admin.access_token)).status, 200);
    // Tokens say when they were issued in whole seconds, so a revocation holds until the next
    // second begins: the editor can sign in again from then on (the next test does).
    const { rows } = await t
      .store()
      .query<{ until: number }>(
        "select extract(epoch from revoked_before) * 1000 as until from pgward.user_info where email = 'editor@example.com'",
      );
    const until = Number(rows[0]?.until ?? 0);
    while (Date.now() < until + 50) await new Promise((resolve) => setTimeout(resolve, 50));
  });

  it('logout ends the sign-in; deactivation ends every token of the person at once', async () => {
    const viewer = await deviceLogin(http, idp, 'viewer@example.com');
    const out = await call(http, 'POST', '/api/v1/auth/logout', { token: viewer.access_token });
    assert.equal(out.status, 200);
    assert.equal((await whoami(viewer.access_token)).status, 401);

    const admin = await deviceLogin(http, idp, 'admin@example.com');
    const editor = await deviceLogin(http, idp, 'editor@example.com');
    const off = await call(http, 'PATCH', '/api/v1/users/editor@example.com', {
      token: admin.access_token,
      body: { isActive: false },
    });
    assert.equal(off.status, 200);
    assert.equal((await whoami(editor.access_token)).status, 401);
    const login = await call(http, 'POST', '/api/v1/auth/device', { body: {} });
    assert.equal(login.status, 200, 'starting a login is fine; finishing it is refused');
    await assert.rejects(deviceLogin(http, idp, 'editor@example.com'), /deactivated in pgward/);
    await call(http, 'PATCH', '/api/v1/users/editor@example.com', {
      token: admin.access_token,
      body: { isActive: true },
    });
  });

  it('browser login: code + PKCE with state and nonce, HttpOnly cookies, bad state refused', async () => {
    const page = await call<string>(http, 'GET', '/login');
    assert.match(page.body, /href="\/login\/dev">Sign in with pgward dev IdP/);
    const start = await call(http, 'GET', '/login/dev');
    assert.equal(start.status, 302);
    const authorize = new URL(start.headers.get('location')!);
    assert.equal(authorize.origin, idp);
    for (const p of ['state', 'nonce', 'code_challenge']) assert.ok(authorize.searchParams.get(p), p);
    assert.equal(authorize.searchParams.get('code_challenge_method'), 'S256');
    const loginCookie = start.headers.getSetCookie()[0]!.split(';')[0]!;
    assert.match(start.headers.getSetCookie()[0]!, /HttpOnly/i);

    const walker = new IdpPageWalker(idp);
    const callback = await walker.walk(
      authorize.toString(),
      { email: 'admin@example.com', password: 'password' },
      (l) => l.startsWith(`${http}/login/callback`),
    );
    assert.ok(callback);
    const callbackUrl = new URL(callback);

    // A callback whose state differs from the one this browser started with is refused.
    const forged = new URL(callbackUrl);
    forged.searchParams.set('state', 'attacker');
    const bad = await call(http, 'GET', forged.pathname + forged.search, { cookie: loginCookie });
    assert.equal(bad.status, 401);
    assert.equal(bad.body['code'], 'LOGIN_FAILED');
    const noCookie = await call(http, 'GET', callbackUrl.pathname + callbackUrl.search);
    assert.equal(noCookie.status, 401);

    // The real one (the code was not spent by the refusals: they stop before the token request).
    const ok = await call(http, 'GET', callbackUrl.pathname + callbackUrl.search, { cookie: loginCookie });
    assert.equal(ok.status, 302, JSON.stringify(ok.body));
    assert.equal(ok.headers.get('location'), '/login/done');
    const cookies = ok.headers.getSetCookie();
    const access = cookies.find((c) => c.startsWith('pgward_access='))!;
    assert.match(access, /HttpOnly/i);
    assert.match(access, /SameSite=Strict/i);
    const cookie = access.split(';')[0]!;
    const me = await call(http, 'GET', '/api/v1/whoami', { cookie });
    assert.equal(me.status, 200);
    assert.equal(me.body['email'], 'admin@example.com');
    const done = await call<string>(http, 'GET', '/login/done', { cookie });
    assert.match(done.body, /Signed in as <b>admin@example\.com<\/b>/);
  });

  it('refuses a login whose nonce does not match the ID token', async () => {
    const start = await call(http, 'GET', '/login/dev');
    const authorize = new URL(start.headers.get('location')!);
    const callback = await new IdpPageWalker(idp).walk(
      authorize.toString(),
      { email: 'viewer@example.com', password: 'password' },
      (l) => l.startsWith(`${http}/login/callback`),
    );
    const url = new URL(callback!);
    // The gateway's own sealed state of this very login (same state and PKCE verifier, so the code
    // exchange succeeds), with only the nonce changed: only the nonce check can refuse it.
    const box = new SecretBox(
      Buffer.from(readFileSync(path.join(t.dataDir, 'secret.key'), 'utf8').trim(), 'base64'),
    );
    const sealed = start.headers
      .getSetCookie()[0]!
      .split(';')[0]!
      .replace(/^pgward_login=/, '');
    const state = JSON.parse(box.open(Buffer.from(sealed, 'base64url'), 'pgward_login')) as { nonce: string };
    assert.equal(state.nonce, authorize.searchParams.get('nonce'));
    state.nonce = randomBytes(24).toString('base64url');
    const cookie = `pgward_login=${box.seal(JSON.stringify(state), 'pgward_login').toString('base64url')}`;
    const res = await call(http, 'GET', url.pathname + url.search, { cookie });
    assert.equal(res.status, 401, JSON.stringify(res.body));
    assert.equal(res.body['code'], 'LOGIN_FAILED');
    assert.match(String(res.body['detail']), /nonce/);
  });

  it('CLI browser login: one-time code bound to PKCE and a loopback redirect', async () => {
    const verifier = randomBytes(32).toString('base64url');
    const challenge = createHash('sha256').update(verifier).digest('base64url');
    const redirect = 'http://127.0.0.1:1/pgward/callback';
    const query = (over: Record<string, string> = {}) =>
      `/login/cli?${new URLSearchParams({
        redirect_uri: redirect,
        code_challenge: challenge,
        code_challenge_method: 'S256',
        state: 'cli-state-0123456789',
        ...over,
      })}`;
    // Only loopback IP literals with a port may receive a code (RFC 8252 7.3), and only S256.
    for (const bad of <Record<string, string>[]>[
      { redirect_uri: 'http://attacker.example:8080/cb' },
      { redirect_uri: 'http://localhost:8080/cb' },
      { redirect_uri: 'https://127.0.0.1:8080/cb' },
      { redirect_uri: 'http://127.0.0.1/cb' },
      { redirect_uri: 'http://user@127.0.0.1:9/cb' },
      { code_challenge_method: 'plain' },
      { code_challenge: 'short' },
    ]) {
      const res = await call(http, 'GET', query(bad));
      assert.equal(res.status, 400, JSON.stringify(bad));
    }

    /** Signs in at the IdP; returns the redirect the gateway sends to the CLI's listener. */
    async function signIn(email: string): Promise<URL> {
      const walker = new IdpPageWalker(idp);
      const back = await walker.walk(`${http}${query()}`, { email, password: 'password' }, (l) =>
        l.startsWith(redirect),
      );
      assert.ok(back);
      const url = new URL(back);
      assert.equal(url.searchParams.get('state'), 'cli-state-0123456789');
      return url;
    }
    const exchange = (code: string, codeVerifier: string, redirectUri = redirect) =>
      call(http, 'POST', '/api/v1/auth/token', {
        body: {
          grant_type: 'authorization_code',
          code,
          code_verifier: codeVerifier,
          redirect_uri: redirectUri,
        },
      });

    const code = (await signIn('editor@example.com')).searchParams.get('code')!;
    const granted = await exchange(code, verifier);
    assert.equal(granted.status, 200, JSON.stringify(granted.body));
    assert.equal((granted.body['person'] as { email: string }).email, 'editor@example.com');
    assert.equal(granted.body['sessionId'], undefined);
    assert.equal(
      await currentUser('editor@example.com', String(granted.body['access_token'])),
      'editor@example.com',
    );
    // Once only.
    const replay = await exchange(code, verifier);
    assert.equal(replay.status, 401);
    assert.equal(replay.body['code'], 'LOGIN_FAILED');

    // Someone who saw the redirect but lacks the verifier gets nothing, and ends that sign-in.
    const stolen = (await signIn('editor@example.com')).searchParams.get('code')!;
    const wrong = await exchange(stolen, randomBytes(32).toString('base64url'));
    assert.equal(wrong.status, 401);
    assert.match(String(wrong.body['detail']), /verifier or redirect URI does not match/);
    assert.equal((await exchange(stolen, verifier)).status, 401);
    const { rows } = await t
      .store()
      .query<{ revoked_reason: string }>(
        `SELECT revoked_reason FROM pgward.login_session ORDER BY created_at DESC LIMIT 1`,
      );
    assert.equal(rows[0]?.revoked_reason, 'login code presented with a wrong verifier');
    const elsewhere = (await signIn('editor@example.com')).searchParams.get('code')!;
    assert.equal((await exchange(elsewhere, verifier, 'http://127.0.0.1:2/pgward/callback')).status, 401);
  });

  it('while the IdP is down, issued pgward tokens keep working and new logins say why they fail', async () => {
    const grant = await deviceLogin(http, idp, 'viewer@example.com');
    await t.stack.idp.close();
    assert.equal(await currentUser('viewer@example.com', grant.access_token), 'viewer@example.com');
    assert.equal((await whoami(grant.access_token)).status, 200);
    const login = await call(http, 'POST', '/api/v1/auth/token', {
      body: { grant_type: 'refresh_token', refresh_token: grant.refresh_token },
    });
    assert.equal(login.status, 502);
    assert.equal(login.body['code'], 'IDP_UNREACHABLE');
    assert.match(String(login.body['detail']), /cannot reach the identity provider dev/);
  });
});

describe('signing keys', () => {
  let cluster: EmbeddedCluster;
  let pool: pg.Pool;
  before(async () => {
    cluster = await startTestPostgres();
    pool = createPool(await createDatabase(cluster));
    await migrate(pool, quietLog);
  });
  after(async () => {
    await pool?.end();
    await cluster?.close();
  });

  it('rotate, keep retired keys published while their tokens live, and are sealed at rest', async () => {
    const box = new SecretBox(randomBytes(32));
    const keys = new SigningKeys(pool, box, { rotationMs: 400, tokenLifetimeMs: 2_000 });
    const first = await keys.current();
    assert.equal((await keys.current()).kid, first.kid, 'no rotation within the period');
    // Poll past the rotation period instead of sleeping a guess of it.
    let second = await keys.current();
    for (const deadline = Date.now() + 10_000; second.kid === first.kid && Date.now() < deadline; ) {
      await new Promise((r) => setTimeout(r, 50));
      second = await keys.current();
    }
    assert.notEqual(second.kid, first.kid, 'a new key after the rotation period');
    // Another gateway sharing the store sees both.
    const other = new SigningKeys(pool, box, { rotationMs: 400, tokenLifetimeMs: 2_000 });
    const published = (await other.jwks()).keys.map((k) => k.kid);
    assert.deepEqual(published.sort(), [first.kid, second.kid].sort());
    for (const key of (await other.jwks()).keys)
      assert.equal((key as { d?: string }).d, undefined, 'public only');
    const { rows } = await pool.query<{ private_jwk: Buffer }>('select private_jwk from pgward.signing_key');
    for (const row of rows) assert.doesNotMatch(row.private_jwk.toString('latin1'), /"d"/, 'sealed');
    // Past rotation + lifetime, the first key is no longer published.
    await pool.query("update pgward.signing_key set created_at = now() - interval '1 hour' where kid = $1", [
      first.kid,
    ]);
    const later = new SigningKeys(pool, box, { rotationMs: 400, tokenLifetimeMs: 2_000 });
    assert.equal(await later.publicKey(first.kid), undefined);
  });
});
