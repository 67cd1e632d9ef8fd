/**
 * Attacks on identity, as the person a rule restricts: forged and bent tokens of pgward's own and
 * of the IdP, hostile claims, someone else's email, cross-origin requests riding the console's
 * cookie, and hostile text on the login pages.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { decodeJwt, exportJWK, generateKeyPair, type JWTPayload, SignJWT } from 'jose';
import { DEV_USERS } from '../src/dev/dev_users.js';
import { call, deviceLogin, type Grant } from './support/api.js';
import { startTestStack, type TestStack } from './support/dev_stack.js';
import { devIdpToken, gatewaySigningKey } from './support/idp_tokens.js';

describe('identity attacks', () => {
  let t: TestStack;
  let http: string;
  let idp: string;
  let admin: Grant;

  before(async () => {
    t = await startTestStack();
    http = t.stack.info.http;
    idp = t.stack.info.idp;
    admin = await deviceLogin(http, idp, 'admin@example.com');
  });
  after(async () => {
    await t?.close();
  });

  const whoami = (token: string) => call(http, 'GET', '/api/v1/whoami', { token });
  /** The API's and the wire's answers to a token. */
  async function refusedEverywhere(token: string, code: string, email = 'viewer@example.com') {
    const api = await whoami(token);
    assert.equal(api.status, 401, `API: ${JSON.stringify(api.body)}`);
    assert.equal(api.body['code'], code);
    const wire = await t.refusal(email, { password: token });
    assert.equal(wire.code, '28P01', wire.message);
    assert.equal(wire.detail, `pgward error ${code}`);
  }

  describe("pgward's own tokens", () => {
    let claims: JWTPayload;
    before(async () => {
      claims = decodeJwt((await deviceLogin(http, idp, 'viewer@example.com')).access_token);
    });

    /** Signs `payload` as the gateway would, unless told otherwise. */
    async function own(
      payload: JWTPayload,
      header: Record<string, unknown> = {},
      key?: Parameters<SignJWT['sign']>[0],
    ): Promise<string> {
      const signing = await gatewaySigningKey(t.dataDir, t.store());
      return new SignJWT(payload)
        .setProtectedHeader({ alg: 'ES256', kid: signing.kid, typ: 'at+jwt', ...header })
        .sign(key ?? (signing.privateKey as Parameters<SignJWT['sign']>[0]));
    }
    const now = () => Math.floor(Date.now() / 1000);

    it('accepts the forgery baseline: the same claims, signed with the gateway key', async () => {
      assert.equal((await whoami(await own(claims))).status, 200);
    });

    it('refuses another audience', async () => {
      await refusedEverywhere(await own({ ...claims, aud: 'someone-else' }), 'TOKEN_AUDIENCE');
    });

    it('refuses a token that is not an access token (typ)', async () => {
      await refusedEverywhere(await own(claims, { typ: 'JWT' }), 'TOKEN_TYPE');
      await refusedEverywhere(await own(claims, { typ: 'logout+jwt' }), 'TOKEN_TYPE');
    });

    it('refuses tokens that lack a claim pgward puts in its tokens', async () => {
      for (const missing of ['jti', 'sid', 'iat', 'sub', 'exp', 'email', 'groups']) {
        const { [missing]: _, ...rest } = claims;
        const res = await whoami(await own(rest));
        assert.equal(res.status, 401, missing);
        assert.equal(res.body['code'], 'TOKEN_CLAIMS', missing);
      }
    });

    it('refuses alg none, a token signed with another key, and another algorithm', async () => {
      const signing = await gatewaySigningKey(t.dataDir, t.store());
      const encode = (part: unknown) => Buffer.from(JSON.stringify(part)).toString('base64url');
      const none = `${encode({ alg: 'none', typ: 'at+jwt', kid: signing.kid })}.${encode(claims)}.`;
      await refusedEverywhere(none, 'TOKEN_UNSIGNED');

      const { privateKey } = await generateKeyPair('ES256');
      await refusedEverywhere(await own(claims, {}, privateKey), 'TOKEN_SIGNATURE');
      await refusedEverywhere(
        await own(claims, { kid: 'not-a-pgward-key' }, privateKey),
        'TOKEN_UNKNOWN_KEY',
      );

      // HS256 keyed with the public key, as if it were a shared secret.
      const publicJwk = await exportJWK((await generateKeyPair('ES256')).publicKey);
      const secret = new TextEncoder().encode(JSON.stringify(publicJwk));
      const hs = await new SignJWT(claims)
        .setProtectedHeader({ alg: 'HS256', kid: signing.kid, typ: 'at+jwt' })
        .sign(secret);
      await refusedEverywhere(hs, 'TOKEN_ALGORITHM');
    });

    it('refuses an expired token and one issued in the future', async () => {
      await refusedEverywhere(
        await own({ ...claims, iat: now() - 7200, exp: now() - 3600 }),
        'TOKEN_EXPIRED',
      );
      await refusedEverywhere(
        await own({ ...claims, iat: now() + 3600, exp: now() + 7200 }),
        'TOKEN_NOT_YET_VALID',
      );
      // Within the clock skew, a token from a slightly fast clock is fine.
      assert.equal((await whoami(await own({ ...claims, iat: now() + 10 }))).status, 200);
    });

    it('does not take groups or admin status from the token, but from the directory', async () => {
      const forged = await own({ ...claims, adm: true, groups: ['admin', 'dev:admin'] });
      const me = await whoami(forged);
      assert.equal(me.status, 200);
      assert.equal(me.body['isAdmin'], false);
      assert.deepEqual(me.body['groups'], ['dev:viewer', 'viewer']);
      assert.equal((await call(http, 'GET', '/api/v1/users', { token: forged })).status, 403);
    });
  });

  describe("the IdP's tokens", () => {
    const viewer = DEV_USERS[2]!;
    const idpToken = (claims: Record<string, unknown>, header?: { typ?: string }) =>
      devIdpToken(
        t.dataDir,
        idp,
        { sub: viewer.sub, email: viewer.email, email_verified: true, groups: viewer.groups, ...claims },
        header,
      );

    it('refuses a control character in a claim with TOKEN_CLAIMS, not an internal error', async () => {
      for (const claims of [
        { name: 'Vera\u0000Viewer' },
        { name: 'Vera\nadmin logged in' },
        { groups: ['viewer\u0000'] },
        { sub: `${viewer.sub}\u0000` },
        { email: 'viewer\u0000@example.com' },
      ]) {
        await refusedEverywhere(await idpToken(claims), 'TOKEN_CLAIMS');
      }
    });

    it('refuses a token issued in the future beyond the clock skew', async () => {
      const now = Math.floor(Date.now() / 1000);
      await refusedEverywhere(await idpToken({ iat: now + 3600, exp: now + 7200 }), 'TOKEN_NOT_YET_VALID');
    });

    it("regression: an unverified email in the person's own token does not rename them", async () => {
      const token = await idpToken({ email: 'admin@example.com', email_verified: false });
      const me = await whoami(token);
      assert.equal(me.status, 200, JSON.stringify(me.body));
      assert.equal(me.body['email'], 'viewer@example.com', 'still the directory email');
      const victim = await call(http, 'GET', '/api/v1/users/admin@example.com', {
        token: admin.access_token,
      });
      assert.equal(victim.status, 200, 'the other person is still the only one with that email');
      const self = await call(http, 'GET', '/api/v1/users/viewer@example.com', { token: admin.access_token });
      assert.equal(self.status, 200);

      // The unverified email does not decide who the startup user is: the directory's does.
      const asVictim = await t.refusal('admin@example.com', { password: token });
      assert.equal(asVictim.code, '28000');
      assert.match(asVictim.message, /signed in as viewer@example\.com/);
      const client = await t.client('viewer@example.com', { password: token });
      await client.end();

      // A verified change of email is the IdP's word and renames.
      const verified = await idpToken({ email: 'vera@example.com', email_verified: true });
      assert.equal((await whoami(verified)).body['email'], 'vera@example.com');
      assert.equal((await whoami(await idpToken({}))).body['email'], 'viewer@example.com');
    });

    it("refuses to sign up a new identity under someone else's unverified email", async () => {
      const token = await idpToken({
        sub: 'a-stranger',
        email: 'admin@example.com',
        email_verified: false,
        groups: [],
      });
      const res = await whoami(token);
      assert.equal(res.status, 403);
      assert.match(String(res.body['detail']), /has not verified the email admin@example\.com/);
      const users = await call<{ email: string }[]>(http, 'GET', '/api/v1/users?email=admin@example.com', {
        token: admin.access_token,
      });
      assert.equal(users.body.length, 1);
    });
  });

  describe("cross-origin requests with the console's cookie", () => {
    const login = async () => (await deviceLogin(http, idp, 'viewer@example.com')).access_token;
    const logout = (headers: Record<string, string>, token: string, bearer = false) =>
      call(http, 'POST', '/api/v1/auth/logout', {
        ...(bearer ? { token } : { cookie: `pgward_access=${token}` }),
        headers,
      });

    it('refuses a state-changing cookie request from another origin, or from nowhere it names', async () => {
      const token = await login();
      for (const headers of <Record<string, string>[]>[
        { origin: 'http://127.0.0.1:1' },
        { origin: http.replace(/:(\d+)$/, (_m, port: string) => `:${Number(port) + 1}`) },
        { origin: 'null' },
        { 'sec-fetch-site': 'same-site' },
        { 'sec-fetch-site': 'cross-site' },
        {},
      ]) {
        const res = await logout(headers, token);
        assert.equal(res.status, 403, JSON.stringify(headers));
        assert.equal(res.body['code'], 'NOT_ALLOWED');
        assert.match(String(res.body['detail']), /cookies/);
      }
      assert.equal((await whoami(token)).status, 200, 'nothing was logged out');
      // Reading with the cookie from anywhere is unaffected (CORS decides who may read answers).
      const read = await call(http, 'GET', '/api/v1/whoami', {
        cookie: `pgward_access=${token}`,
        headers: { origin: 'http://127.0.0.1:1' },
      });
      assert.equal(read.status, 200);
    });

    it("accepts the gateway's own origin, a typed request, and bearer tokens from anywhere", async () => {
      assert.equal((await logout({ origin: new URL(http).origin }, await login())).status, 200);
      assert.equal((await logout({ 'sec-fetch-site': 'same-origin' }, await login())).status, 200);
      assert.equal((await logout({ 'sec-fetch-site': 'none' }, await login())).status, 200);
      assert.equal((await logout({ origin: 'http://127.0.0.1:1' }, await login(), true)).status, 200);
    });
  });

  describe('login pages', () => {
    const hostile = `<img src=x onerror="alert(1)">'&`;
    const escaped = '&lt;img src=x onerror=&quot;alert(1)&quot;&gt;&#39;&amp;';

    it('escape a hostile provider name on the sign-in page', async () => {
      const created = await call(http, 'POST', '/api/v1/providers', {
        token: admin.access_token,
        body: { name: 'hostile', displayName: hostile, issuer: 'https://idp.invalid', clientId: 'x' },
      });
      assert.equal(created.status, 201, JSON.stringify(created.body));
      try {
        const page = await call<string>(http, 'GET', '/login');
        assert.ok(page.body.includes(`Sign in with ${escaped}`), page.body);
        assert.ok(!page.body.includes('<img'), 'no markup of the provider');
      } finally {
        await call(http, 'DELETE', '/api/v1/providers/hostile', { token: admin.access_token });
      }
    });

    it('escape a hostile email on the signed-in page', async () => {
      const email = `<script>alert(1)</script>"'@example.com`;
      const token = await devIdpToken(t.dataDir, idp, {
        sub: 'hostile-person',
        email,
        email_verified: true,
        groups: [],
      });
      const page = await call<string>(http, 'GET', '/login/done', { cookie: `pgward_access=${token}` });
      assert.equal(page.status, 200, String(page.body));
      assert.ok(
        page.body.includes('&lt;script&gt;alert(1)&lt;/script&gt;&quot;&#39;@example.com'),
        page.body,
      );
      assert.ok(!page.body.includes('<script>'));
    });
  });
});
