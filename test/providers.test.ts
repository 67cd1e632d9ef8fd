import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { decodeJwt, importJWK, type JWK, SignJWT } from 'jose';
import { type DevIdp, startDevIdp } from '../src/dev/dev_idp.js';
import { IdpPageWalker } from '../src/dev/dev_login.js';
import type { DevUser } from '../src/dev/dev_users.js';
import { freePort } from '../src/store/free_port.js';
import { call, deviceLogin } from './support/api.js';
import { startTestStack, type TestStack } from './support/dev_stack.js';
import { quietLog } from './support/quiet_log.js';
import { tempDir } from './support/temp_dir.js';

/**
 * Two real providers at once: the dev IdP (JWT access tokens, groups by name, mapped to the demo
 * groups) and "corp", configured through Hoop's IDP_* variables: opaque access tokens validated
 * by its userinfo endpoint, groups in a namespaced claim, no mappings.
 */
describe('a second, differently configured provider', () => {
  const GROUPS_CLAIM = 'https://app.hoop.dev/groups';
  const corpUsers: DevUser[] = [
    { sub: 'corp-1', email: 'vera@corp.example', name: 'Vera Corp', groups: ['viewer'] },
    { sub: 'corp-2', email: 'root@corp.example', name: 'Root Corp', groups: ['platform'] },
  ];
  let corp: DevIdp;
  let t: TestStack;
  let http: string;
  let admin: string;

  before(async () => {
    corp = await startDevIdp({
      dir: tempDir('corp-idp'),
      host: '127.0.0.1',
      port: await freePort(),
      redirectUris: [],
      users: corpUsers,
      accessTokens: 'opaque',
      groupsClaim: GROUPS_CLAIM,
      log: quietLog,
    });
    t = await startTestStack({
      IDP_ISSUER: `${corp.issuer}?_userinfo=1`,
      IDP_CLIENT_ID: 'pgward',
      IDP_GROUPS_CLAIM: GROUPS_CLAIM,
      IDP_CUSTOM_SCOPES: 'groups,offline_access',
    });
    http = t.stack.info.http;
    admin = (await deviceLogin(http, t.stack.info.idp, 'admin@example.com')).access_token;
  });
  after(async () => {
    await t?.close();
    await corp?.close();
  });

  /** An opaque access token straight from the corp IdP (device grant walked through its pages). */
  const corpToken = (email: string) => idpToken(corp.issuer, email);

  /** An access token straight from an IdP (device grant walked through its pages). */
  async function idpToken(issuer: string, email: string): Promise<string> {
    const started = (await (
      await fetch(`${issuer}/device/auth`, {
        method: 'POST',
        body: new URLSearchParams({ client_id: 'pgward', scope: 'openid email profile groups' }),
      })
    ).json()) as { device_code: string; verification_uri_complete: string };
    await new IdpPageWalker(issuer).walk(
      started.verification_uri_complete,
      { email, password: 'password' },
      () => false,
    );
    const tokens = (await (
      await fetch(`${issuer}/token`, {
        method: 'POST',
        body: new URLSearchParams({
          grant_type: 'urn:ietf:params:oauth:grant-type:device_code',
          device_code: started.device_code,
          client_id: 'pgward',
        }),
      })
    ).json()) as { access_token: string };
    return tokens.access_token;
  }

  it("keeps corp's groups in its namespace until an administrator maps them", async () => {
    const token = await corpToken('vera@corp.example');
    assert.doesNotMatch(token, /\./, 'an opaque token');
    const refused = await t.refusal('vera@corp.example', { password: token });
    assert.equal(refused.code, '28000', 'corp "viewer" is not the pgward group "viewer"');
    assert.match(refused.message, /may not use connection "demo"/);

    const mapping = await call(http, 'POST', '/api/v1/mappings', {
      token: admin,
      body: { provider: 'default', externalGroup: 'viewer', group: 'viewer' },
    });
    assert.equal(mapping.status, 201, JSON.stringify(mapping.body));
    // The same token, at once: the new mapping's access event emptied the sign-in cache.
    const client = await t.client('vera@corp.example', { password: token });
    assert.equal((await client.query('select current_user')).rows[0].current_user, 'vera@corp.example');
    await assert.rejects(client.query('insert into users (username, email) values ($1, $2)', ['x', 'x@y']), {
      code: '42501',
    });
    await client.end();
  });

  it('logs in through corp at the gateway and re-reads groups at the IdP on refresh', async () => {
    const grant = await deviceLogin(http, corp.issuer, 'vera@corp.example', 'default');
    assert.deepEqual(grant.person.groups, ['default:viewer', 'viewer']);
    const client = await t.client('vera@corp.example', { password: grant.access_token });
    await client.end();

    // The IdP removes Vera from "viewer"; her next refresh takes it away.
    corpUsers[0]!.groups = [];
    try {
      const refreshed = await call<{ access_token: string; person: { groups: string[] } }>(
        http,
        'POST',
        '/api/v1/auth/token',
        { body: { grant_type: 'refresh_token', refresh_token: grant.refresh_token } },
      );
      assert.equal(refreshed.status, 200, JSON.stringify(refreshed.body));
      assert.deepEqual(refreshed.body.person.groups, []);
      const refusal = await t.refusal('vera@corp.example', { password: refreshed.body.access_token });
      assert.equal(refusal.code, '28000');
    } finally {
      corpUsers[0]!.groups = ['viewer'];
    }
  });

  it('lists both providers in the usage report', async () => {
    const usage = await call<{ provider: string; totalUsers: number }[]>(
      http,
      'GET',
      '/api/v1/reports/provider-usage',
      {
        token: admin,
      },
    );
    const byName = Object.fromEntries(usage.body.map((u) => [u.provider, u.totalUsers]));
    assert.equal(byName['default'], 1);
    assert.ok((byName['dev'] ?? 0) >= 1);
  });

  it("refuses a token of provider A presented as provider B's", async () => {
    // A genuine dev-IdP (A) token, re-labelled with corp's (B) issuer and re-signed with A's own key.
    const a = await t.token('viewer@example.com');
    const keyA = (
      JSON.parse(readFileSync(path.join(t.dataDir, 'idp', 'keys.json'), 'utf8')) as { signing: JWK }
    ).signing;
    const forged = await new SignJWT({ ...decodeJwt(a), iss: corp.issuer })
      .setProtectedHeader({ alg: 'RS256', typ: 'at+jwt', kid: keyA.kid! })
      .sign(await importJWK(keyA, 'RS256'));
    const err = await t.refusal('viewer@example.com', { password: forged });
    assert.equal(err.code, '28P01');
    assert.equal(err.detail, 'pgward error TOKEN_INVALID');
    assert.match(err.message, /identity provider does not accept this token/);
  });

  it('adds a provider at run time through the API, and refuses its tokens once deactivated', async () => {
    const later = await startDevIdp({
      dir: tempDir('later-idp'),
      host: '127.0.0.1',
      port: await freePort(),
      redirectUris: [],
      users: [{ sub: 'l-1', email: 'lee@later.example', name: 'Lee', groups: ['viewer'] }],
      log: quietLog,
    });
    try {
      const body = {
        name: 'later',
        issuer: later.issuer,
        clientId: 'pgward',
        audience: 'pgward',
        clientSecret: 's3cret-never-shown',
      };
      const viewer = (await deviceLogin(http, t.stack.info.idp, 'viewer@example.com')).access_token;
      assert.equal((await call(http, 'POST', '/api/v1/providers', { token: viewer, body })).status, 403);
      const bad = await call(http, 'POST', '/api/v1/providers', {
        token: admin,
        body: { ...body, algorithms: ['HS256'] },
      });
      assert.equal(bad.status, 400);
      const created = await call(http, 'POST', '/api/v1/providers', { token: admin, body });
      assert.equal(created.status, 201, JSON.stringify(created.body));
      const listed = await call(http, 'GET', '/api/v1/providers', { token: admin });
      assert.match(JSON.stringify(listed.body), /"name":"later".*"source":"api"/);
      assert.doesNotMatch(JSON.stringify(listed.body), /s3cret/);

      const token = await idpToken(later.issuer, 'lee@later.example');
      const client = await t
        .client('lee@later.example', { database: 'demo', password: token })
        .catch((err) => err);
      assert.equal(client.code, '28000', 'known now, but "later:viewer" has no access yet');
      await call(http, 'POST', '/api/v1/mappings', {
        token: admin,
        body: { provider: 'later', externalGroup: 'viewer', group: 'viewer' },
      });
      const ok = await t.client('lee@later.example', { password: token });
      assert.equal((await ok.query('select current_user')).rows[0].current_user, 'lee@later.example');
      await ok.end();

      const off = await call(http, 'PATCH', '/api/v1/providers/later', {
        token: admin,
        body: { isActive: false },
      });
      assert.equal(off.status, 204);
      const refused = await t.refusal('lee@later.example', { password: token });
      assert.equal(refused.detail, 'pgward error TOKEN_UNKNOWN_ISSUER');
      const configured = await call(http, 'PATCH', '/api/v1/providers/dev', {
        token: admin,
        body: { isActive: false },
      });
      assert.equal(configured.status, 400, 'configured providers change in the configuration');
    } finally {
      await later.close();
    }
  });
});
