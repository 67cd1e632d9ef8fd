import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { call, deviceLogin } from './support/api.js';
import { startTestStack, type TestStack } from './support/dev_stack.js';

describe('REST API', () => {
  let t: TestStack;
  let http: string;
  const tokens: Record<string, string> = {};

  before(async () => {
    t = await startTestStack({
      PGWARD_LOGIN_RATE_LIMIT: '40',
      PGWARD_CORS_ORIGINS: 'http://console.example.com',
    });
    http = t.stack.info.http;
    for (const who of ['admin', 'editor', 'viewer']) {
      tokens[who] = (await deviceLogin(http, t.stack.info.idp, `${who}@example.com`)).access_token;
    }
  });
  after(async () => {
    await t?.close();
  });

  const demoTarget = () => new URL(t.stack.info.target);

  it('publishes an OpenAPI document of its routes', async () => {
    const doc = await call<{ openapi: string; paths: Record<string, unknown> }>(http, 'GET', '/openapi.json');
    assert.equal(doc.status, 200);
    assert.match(doc.body.openapi, /^3\./);
    for (const p of [
      '/api/v1/whoami',
      '/api/v1/connections',
      '/api/v1/connections/{name}',
      '/api/v1/auth/token',
      '/api/v1/statements',
    ]) {
      assert.ok(doc.body.paths[p], p);
    }
  });

  it('answers problems with a stable code: no token, a bad token, bad input, unknown route', async () => {
    const none = await call(http, 'GET', '/api/v1/whoami');
    assert.equal(none.status, 401);
    assert.equal(none.body['code'], 'UNAUTHENTICATED');
    assert.match(String(none.body['hint']), /pgward login/);
    const bad = await call(http, 'GET', '/api/v1/whoami', { token: 'not-a-token' });
    assert.equal(bad.status, 401);
    assert.equal(bad.body['code'], 'TOKEN_MALFORMED');
    const input = await call(http, 'POST', '/api/v1/connections', {
      token: tokens['admin'],
      body: { name: 'Bad Name', host: 'h', database: 'd', port: 70000 },
    });
    assert.equal(input.status, 400);
    assert.equal(input.body['code'], 'BAD_REQUEST');
    assert.match(String(input.body['detail']), /body\.name.*body\.port|body\.port.*body\.name/s);
    const route = await call(http, 'GET', '/api/v1/nope', { token: tokens['admin'] });
    assert.equal(route.status, 404);
    assert.equal(route.body['code'], 'NOT_FOUND');
  });

  it('lets administrators manage connections, and never returns a credential', async () => {
    const target = demoTarget();
    const SECRET = t.stack.target.admin.password;
    const body = {
      name: 'reports',
      host: target.hostname,
      port: Number(target.port),
      database: 'demo',
      sslmode: 'disable',
      // Shared: the demo cluster's roles already belong to the demo connection's provisioning.
      roleMode: 'shared',
      credential: { user: 'pgward_admin', password: SECRET },
      access: { viewer: ['app_readonly'] },
    };
    const denied = await call(http, 'POST', '/api/v1/connections', { token: tokens['viewer'], body });
    assert.equal(denied.status, 403);
    assert.equal(denied.body['code'], 'NOT_ALLOWED');
    const created = await call(http, 'POST', '/api/v1/connections', { token: tokens['admin'], body });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    assert.equal(created.body['hasCredential'], true);
    const again = await call(http, 'POST', '/api/v1/connections', { token: tokens['admin'], body });
    assert.equal(again.status, 409);
    const patched = await call(http, 'PATCH', '/api/v1/connections/reports', {
      token: tokens['admin'],
      body: { access: { viewer: ['app_readonly'], editor: ['app_readwrite'] } },
    });
    assert.equal(patched.status, 200);
    const everything = [
      created,
      patched,
      await call(http, 'GET', '/api/v1/connections/reports', { token: tokens['admin'] }),
      await call(http, 'GET', '/api/v1/connections', { token: tokens['admin'] }),
      await call(http, 'GET', '/api/v1/connections', { token: tokens['viewer'] }),
    ];
    for (const res of everything) {
      const text = JSON.stringify(res.body);
      assert.doesNotMatch(text, new RegExp(SECRET));
      assert.doesNotMatch(text, /password|credential_secret/);
    }
    // The kept credential still logs in: the viewer reaches the new connection through the gateway.
    const client = await t.client('viewer@example.com', { database: 'reports', password: tokens['viewer'] });
    assert.equal((await client.query('select current_user')).rows[0].current_user, 'pgward_admin');
    await client.end();
    const deleted = await call(http, 'DELETE', '/api/v1/connections/reports', { token: tokens['admin'] });
    assert.equal(deleted.status, 204);
    assert.equal(
      (await call(http, 'GET', '/api/v1/connections/reports', { token: tokens['admin'] })).status,
      404,
    );
  });

  it('shows others only the connections their groups may use, as the roles they get', async () => {
    const viewer = await call<unknown[]>(http, 'GET', '/api/v1/connections', { token: tokens['viewer'] });
    assert.deepEqual(viewer.body, [{ name: 'demo', database: 'demo', roles: ['app_readonly'] }]);
    const detail = await call(http, 'GET', '/api/v1/connections/demo', { token: tokens['viewer'] });
    assert.equal(detail.status, 403);
  });

  it('keeps people to their own sessions and statements', async () => {
    const client = await t.client('editor@example.com', { password: tokens['editor'] });
    await client.query('select 41 + 1 as api_audit_probe');
    await client.end();
    await t.stack.gateway.audit.flush();
    const mine = await call<{ email: string }[]>(http, 'GET', '/api/v1/sessions', {
      token: tokens['editor'],
    });
    assert.equal(mine.status, 200);
    assert.ok(mine.body.length > 0);
    assert.ok(mine.body.every((s) => s.email === 'editor@example.com'));
    const theirs = await call(http, 'GET', '/api/v1/sessions?user=editor@example.com', {
      token: tokens['viewer'],
    });
    assert.equal(theirs.status, 403);
    const viewerStatements = await call<unknown[]>(http, 'GET', '/api/v1/statements?text=api_audit_probe', {
      token: tokens['viewer'],
    });
    assert.deepEqual(viewerStatements.body, [], "the viewer does not see the editor's statements");
    const found = await call<{ text: string; email: string }[]>(
      http,
      'GET',
      '/api/v1/statements?text=api_audit_probe&user=editor@example.com',
      { token: tokens['admin'] },
    );
    assert.equal(found.body.length, 1);
    assert.equal(found.body[0]!.email, 'editor@example.com');
    // By session: every statement of that session, and only those.
    const sessionId = (found.body[0] as unknown as { sessionId: string }).sessionId;
    const bySession = await call<{ sessionId: string; text: string }[]>(
      http,
      'GET',
      `/api/v1/statements?session=${sessionId}`,
      { token: tokens['admin'] },
    );
    assert.ok(bySession.body.some((s) => s.text === 'select 41 + 1 as api_audit_probe'));
    assert.ok(bySession.body.every((s) => s.sessionId === sessionId));
    const wildcard = await call<unknown[]>(http, 'GET', '/api/v1/statements?text=%25', {
      token: tokens['admin'],
    });
    assert.ok(
      wildcard.body.every((s) => String((s as { text: string }).text).includes('%')),
      '% matches literally',
    );
  });

  it('manages groups, memberships and mappings, and serves the reports', async () => {
    const admin = tokens['admin'];
    const group = await call(http, 'POST', '/api/v1/groups', { token: admin, body: { name: 'analysts' } });
    assert.equal(group.status, 201);
    const colon = await call(http, 'POST', '/api/v1/groups', { token: admin, body: { name: 'dev:viewer' } });
    assert.equal(colon.status, 400, 'a pgward group cannot pose as a provider group');
    assert.equal(
      (await call(http, 'PUT', '/api/v1/groups/analysts/members/viewer@example.com', { token: admin }))
        .status,
      204,
    );
    const members = await call<{ email: string }[]>(http, 'GET', '/api/v1/groups/analysts/members', {
      token: admin,
    });
    assert.deepEqual(
      members.body.map((m) => m.email),
      ['viewer@example.com'],
    );
    const mapping = await call<{ mappingId: string }>(http, 'POST', '/api/v1/mappings', {
      token: admin,
      body: { provider: 'dev', externalGroup: 'viewer', group: 'analysts' },
    });
    assert.equal(mapping.status, 201);
    const configMappings = await call<{ source: string; mappingId: string }[]>(
      http,
      'GET',
      '/api/v1/mappings?provider=dev',
      {
        token: admin,
      },
    );
    const fromConfig = configMappings.body.find((m) => m.source === 'config')!;
    const refused = await call(http, 'DELETE', `/api/v1/mappings/${fromConfig.mappingId}`, { token: admin });
    assert.equal(refused.status, 400, 'config mappings are changed in the config');
    assert.equal(
      (await call(http, 'DELETE', `/api/v1/mappings/${mapping.body.mappingId}`, { token: admin })).status,
      204,
    );

    const user = await call<{ identities: { provider: string; isLastUsed: boolean }[] }>(
      http,
      'GET',
      '/api/v1/users/viewer@example.com',
      { token: admin },
    );
    assert.equal(user.status, 200);
    assert.deepEqual(
      user.body.identities.map((i) => [i.provider, i.isLastUsed]),
      [['dev', true]],
    );
    const usage = await call<{ provider: string; totalUsers: number }[]>(
      http,
      'GET',
      '/api/v1/reports/provider-usage',
      {
        token: admin,
      },
    );
    assert.equal(usage.body.find((u) => u.provider === 'dev')?.totalUsers, 3);
    const stale = await call(http, 'GET', '/api/v1/reports/stale-identities', { token: admin });
    assert.deepEqual(stale.body, []);
    assert.equal(
      (await call(http, 'GET', '/api/v1/reports/stale-identities', { token: tokens['viewer'] })).status,
      403,
    );
  });

  it('allows CORS only for configured origins', async () => {
    const preflight = (origin: string) =>
      call(http, 'OPTIONS', '/api/v1/whoami', {
        headers: { origin, 'access-control-request-method': 'GET' },
      });
    const allowed = await preflight('http://console.example.com');
    assert.equal(allowed.headers.get('access-control-allow-origin'), 'http://console.example.com');
    const other = await preflight('http://evil.example.com');
    assert.equal(other.headers.get('access-control-allow-origin'), null);
  });

  it('rate-limits the login endpoints per client', async () => {
    let limited: Awaited<ReturnType<typeof call<Record<string, unknown>>>> | undefined;
    for (let i = 0; i < 60 && !limited; i++) {
      const res = await call(http, 'POST', '/api/v1/auth/token', {
        body: { grant_type: 'refresh_token', refresh_token: 'pgw_rt_nope' },
      });
      if (res.status === 429) limited = res;
    }
    assert.ok(limited, 'limited within 60 attempts (limit 40 per minute)');
    assert.equal(limited.body['code'], 'RATE_LIMITED');
    // Other endpoints keep serving.
    assert.equal((await call(http, 'GET', '/api/v1/whoami', { token: tokens['viewer'] })).status, 200);
  });
});
