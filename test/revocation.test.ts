import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import type pg from 'pg';
import { devLogin } from '../src/dev/dev_login.js';
import { DEV_USERS } from '../src/dev/dev_users.js';
import { type AccessEvent, AccessEvents } from '../src/directory/access_events.js';
import { concerns } from '../src/session/authenticator.js';
import { type EmbeddedCluster, startEmbeddedPostgres } from '../src/store/embedded_postgres.js';
import { createPool } from '../src/store/store.js';
import { call, deviceLogin } from './support/api.js';
import { startTestStack, type TestStack } from './support/dev_stack.js';
import { eventually } from './support/eventually.js';
import { devIdpToken } from './support/idp_tokens.js';
import { createDatabase } from './support/postgres.js';
import { quietLog } from './support/quiet_log.js';
import { removeTempDir, tempDir } from './support/temp_dir.js';

/** Records every event a subscriber hears. */
function recorder(events: AccessEvents): AccessEvent[] {
  const heard: AccessEvent[] = [];
  events.subscribe((e) => heard.push(e));
  return heard;
}

describe('access events between two gateways on one store', () => {
  let root: string;
  let dir: string;
  let cluster: EmbeddedCluster;
  let url: string;
  let pools: pg.Pool[];
  let a: AccessEvents;
  let b: AccessEvents;

  before(async () => {
    root = tempDir('events');
    dir = path.join(root, 'cluster');
    cluster = await startEmbeddedPostgres({ dir, log: quietLog });
    url = await createDatabase(cluster);
    pools = [createPool(url), createPool(url)];
    const retry = { minMs: 50, maxMs: 500 };
    a = new AccessEvents({ url, pool: pools[0]!, log: quietLog, retry, heartbeatMs: 200 });
    b = new AccessEvents({ url, pool: pools[1]!, log: quietLog, retry, heartbeatMs: 200 });
    await Promise.all([a.start(), b.start()]);
  });
  after(async () => {
    await a?.close();
    await b?.close();
    for (const pool of pools ?? []) await pool.end().catch(() => undefined);
    await cluster?.close();
    removeTempDir(root);
  });

  it('delivers each kind to the other gateway, once to the publisher, and ignores forged payloads', async () => {
    assert.ok(a.listening && b.listening);
    const atA = recorder(a);
    const atB = recorder(b);
    const userId = DEV_USERS[0]!.sub;
    const signInId = '7d0f6f43-3f0a-4c59-9a11-6c1f2c6f0b1e';
    await a.publish({ kind: 'person', userId, reason: 'revoked by admin@example.com' });
    await a.publish({ kind: 'sign-in', signInId, reason: 'logout' });
    await a.publish({ kind: 'everyone', reason: 'x'.repeat(10_000) });
    // Anyone who can NOTIFY could send garbage: it is dropped, never delivered.
    await pools[0]!.query(`SELECT pg_notify('pgward_access', 'not json'), pg_notify('pgward_access', $1)`, [
      JSON.stringify({ o: 'someone', e: { kind: 'person', userId: "'; drop table x; --", reason: 'r' } }),
    ]);
    await a.publish({ kind: 'everyone', reason: 'after the forgeries' });
    await b.publish({ kind: 'everyone', reason: 'from b' });
    // Notifications arrive in commit order: once b hears the last of a's, it has heard the forgeries.
    await eventually(
      () => (atB.some((e) => e.reason === 'after the forgeries') ? true : undefined),
      'b to hear a',
      10_000,
      { everyMs: 25 },
    );
    await eventually(
      () => (atA.some((e) => e.reason === 'from b') ? true : undefined),
      'a to hear b',
      10_000,
      { everyMs: 25 },
    );
    const fromA = atB.filter((e) => e.reason !== 'from b');
    assert.deepEqual(fromA.slice(0, 2), [
      { kind: 'person', userId, reason: 'revoked by admin@example.com' },
      { kind: 'sign-in', signInId, reason: 'logout' },
    ]);
    assert.equal(fromA[2]!.kind, 'everyone');
    assert.equal(fromA[2]!.reason.length, 200, 'reasons are capped (payloads stay under 8000 bytes)');
    assert.equal(fromA.length, 4, 'the forged payloads were ignored');
    // a heard its own events at once (not again through the store), then b's.
    assert.deepEqual(
      atA.map((e) => e.reason.slice(0, 20)),
      ['revoked by admin@exa', 'logout', 'x'.repeat(20), 'after the forgeries', 'from b'],
    );
  });

  it("listens again after the store's PostgreSQL restarts, and has everyone recheck", async () => {
    const atA = recorder(a);
    const atB = recorder(b);
    const port = cluster.port;
    await cluster.close();
    await eventually(
      () => (!a.listening && !b.listening ? true : undefined),
      'both to notice the store is gone',
      10_000,
      { everyMs: 25 },
    );
    cluster = await startEmbeddedPostgres({ dir, log: quietLog, port });
    await eventually(() => (a.listening && b.listening ? true : undefined), 'both to listen again', 20_000, {
      everyMs: 25,
    });
    // Events sent while a gateway was not listening are lost: its subscribers recheck everyone.
    for (const heard of [atA, atB]) {
      assert.ok(heard.some((e) => e.kind === 'everyone' && /resumed/.test(e.reason)));
    }
    await a.publish({ kind: 'person', userId: DEV_USERS[1]!.sub, reason: 'after the restart' });
    await eventually(
      () => (atB.some((e) => e.reason === 'after the restart') ? true : undefined),
      'b to hear a after the restart',
      10_000,
      { everyMs: 25 },
    );
  });
});

describe('revocation and the directory as the source of truth, on the dev stack', () => {
  let t: TestStack;
  let http: string;
  let idp: string;
  let admin: string;
  let watcher: AccessEvents;
  let heard: AccessEvent[];

  before(async () => {
    t = await startTestStack();
    http = t.stack.info.http;
    idp = t.stack.info.idp;
    admin = (await deviceLogin(http, idp, 'admin@example.com')).access_token;
    // A second gateway's view of the store: what every other gateway hears.
    watcher = new AccessEvents({ url: t.stack.gateway.store.url, pool: t.store(), log: quietLog });
    await watcher.start();
    heard = recorder(watcher);
  });
  after(async () => {
    await watcher?.close();
    await t?.close();
  });

  const idpToken = async (email: string) =>
    (await devLogin({ issuer: idp, email, password: 'password' })).access_token;
  const whoami = (token: string, cookie?: string) =>
    call(http, 'GET', '/api/v1/whoami', cookie ? { cookie } : { token });
  const adminCall = (method: string, route: string, body?: unknown) =>
    call(http, method, route, { token: admin, ...(body === undefined ? {} : { body }) });
  async function heardAfter(index: number, match: (e: AccessEvent) => boolean, what: string) {
    return eventually(() => heard.slice(index).find(match), what, 10_000, { everyMs: 25 });
  }

  it('revoke user refuses the IdP token issued before it, on the wire (28P01) and the API (401)', async () => {
    const before = await idpToken('viewer@example.com');
    const client = await t.client('viewer@example.com', { password: before });
    await client.end();
    assert.equal((await whoami(before)).status, 200);

    const mark = heard.length;
    const revoked = await adminCall('POST', '/api/v1/users/viewer@example.com/revoke');
    assert.equal(revoked.status, 200, JSON.stringify(revoked.body));
    const person = await adminCall('GET', '/api/v1/users/viewer@example.com');
    assert.deepEqual(await heardAfter(mark, (e) => e.kind === 'person', 'the revocation event'), {
      kind: 'person',
      userId: person.body['userId'],
      reason: 'revoked by admin@example.com',
    });

    const api = await whoami(before);
    assert.equal(api.status, 401);
    assert.equal(api.body['code'], 'TOKEN_REVOKED');
    const wire = await t.refusal('viewer@example.com', { password: before });
    assert.equal(wire.code, '28P01');
    assert.match(wire.message, /sign-in was revoked/);
    assert.match(wire.message, /run `pgward login` again/);

    // A token without iat says nothing about when it was issued: refused once a revocation exists.
    const viewer = DEV_USERS[2]!;
    const noIat = await devIdpToken(t.dataDir, idp, {
      sub: viewer.sub,
      email: viewer.email,
      email_verified: true,
      groups: viewer.groups,
      iat: undefined,
    });
    assert.equal((await whoami(noIat)).body['code'], 'TOKEN_REVOKED');

    // Logging in again works (once past the revocation's second).
    const fresh = await eventually(
      async () => {
        const token = await idpToken('viewer@example.com');
        return (await whoami(token)).status === 200 ? token : undefined;
      },
      'a token issued after the revocation',
      10_000,
      { everyMs: 25 },
    );
    const again = await t.client('viewer@example.com', { password: fresh });
    await again.end();
  });

  it('deactivation applies before the sign-in cache would expire', async () => {
    const token = await idpToken('editor@example.com');
    assert.equal((await whoami(token)).status, 200);
    assert.equal((await whoami(token)).status, 200, 'now cached');
    const started = Date.now();
    const off = await adminCall('PATCH', '/api/v1/users/editor@example.com', { isActive: false });
    assert.equal(off.status, 200);
    try {
      const refused = await whoami(token);
      assert.equal(refused.status, 403, JSON.stringify(refused.body));
      assert.equal(refused.body['code'], 'NOT_ALLOWED');
      const wire = await t.refusal('editor@example.com', { password: token });
      assert.equal(wire.code, '28000');
      assert.match(wire.message, /deactivated/);
      assert.ok(Date.now() - started < 4_000, 'well within the 5 s the cache would hold it');
    } finally {
      await adminCall('PATCH', '/api/v1/users/editor@example.com', { isActive: true });
    }
  });

  it('a person removed from the admin group is no administrator with the same tokens, at once', async () => {
    const own = (await deviceLogin(http, idp, 'editor@example.com')).access_token;
    const fromIdp = await idpToken('editor@example.com');
    assert.equal((await call(http, 'GET', '/api/v1/users', { token: own })).status, 403);
    assert.equal((await adminCall('PUT', '/api/v1/groups/admin/members/editor@example.com')).status, 204);
    for (const token of [own, fromIdp]) {
      assert.equal((await call(http, 'GET', '/api/v1/users', { token })).status, 200, 'made administrator');
    }
    const appAdmin = async (token: string) => {
      const client = await t.client('editor@example.com', { password: token });
      try {
        return (await client.query("select pg_has_role(current_user, 'app_admin', 'member') as a")).rows[0].a;
      } finally {
        await client.end();
      }
    };
    assert.equal(await appAdmin(own), true, 'app_admin in the database too');
    assert.equal((await adminCall('DELETE', '/api/v1/groups/admin/members/editor@example.com')).status, 204);
    for (const token of [own, fromIdp]) {
      const res = await call(http, 'GET', '/api/v1/users', { token });
      assert.equal(res.status, 403, 'the same token, right after');
      assert.equal(res.body['code'], 'NOT_ALLOWED');
      assert.equal((await whoami(token)).body['isAdmin'], false);
    }
    assert.equal(await appAdmin(own), false, 'and app_admin is gone for the same token');
    assert.equal(await appAdmin(fromIdp), false);
  });

  it('recheck tells a live session why it must end: logout, deactivation, revocation', async () => {
    const { auth } = t.stack.gateway;
    const grant = await deviceLogin(http, idp, 'editor@example.com');
    const signedIn = await auth.authenticate(grant.access_token);
    assert.ok(signedIn.signInId && signedIn.issuedAt, 'own tokens carry their sign-in and iat');
    const { userId } = signedIn.person;
    assert.ok(concerns({ kind: 'person', userId, reason: 'r' }, signedIn));
    assert.ok(!concerns({ kind: 'person', userId: DEV_USERS[0]!.sub, reason: 'r' }, signedIn));
    assert.ok(concerns({ kind: 'sign-in', signInId: signedIn.signInId, reason: 'r' }, signedIn));
    assert.ok(!concerns({ kind: 'sign-in', signInId: userId, reason: 'r' }, signedIn));
    assert.ok(concerns({ kind: 'everyone', reason: 'r' }, signedIn));
    const now = await auth.recheck(signedIn);
    assert.ok(now.ok);
    assert.deepEqual(now.person.groups, ['dev:editor', 'editor']);

    // Groups now, not at sign-in: a membership added since shows in the recheck.
    await adminCall('PUT', '/api/v1/groups/viewer/members/editor@example.com');
    const grown = await auth.recheck(signedIn);
    assert.ok(grown.ok && grown.person.groups.includes('viewer'));
    await adminCall('DELETE', '/api/v1/groups/viewer/members/editor@example.com');

    const mark = heard.length;
    assert.equal(
      (await call(http, 'POST', '/api/v1/auth/logout', { token: grant.access_token })).status,
      200,
    );
    assert.deepEqual(await heardAfter(mark, (e) => e.kind === 'sign-in', 'the logout event'), {
      kind: 'sign-in',
      signInId: signedIn.signInId,
      reason: 'sign-in ended: logout',
    });
    const loggedOut = await auth.recheck(signedIn);
    assert.equal(loggedOut.ok, false);
    assert.match((loggedOut as { reason: string }).reason, /sign-in ended/);

    const other = await auth.authenticate(await idpToken('editor@example.com'));
    await adminCall('PATCH', '/api/v1/users/editor@example.com', { isActive: false });
    const deactivated = await auth.recheck(other);
    await adminCall('PATCH', '/api/v1/users/editor@example.com', { isActive: true });
    assert.equal(deactivated.ok, false);
    assert.match((deactivated as { reason: string }).reason, /deactivated/);
    assert.ok((await auth.recheck(other)).ok, 'reactivated');

    await adminCall('POST', '/api/v1/users/editor@example.com/revoke');
    const revoked = await auth.recheck(other);
    assert.equal(revoked.ok, false);
    assert.match((revoked as { reason: string }).reason, /revoked/);
  });

  it('publishes an event at each change that may take access away', async () => {
    const expect = async (
      what: string,
      change: () => Promise<{ status: number }>,
      kind: AccessEvent['kind'],
    ) => {
      const mark = heard.length;
      const res = await change();
      assert.ok(res.status < 300, `${what}: ${res.status}`);
      await heardAfter(mark, (e) => e.kind === kind, what);
    };
    await expect(
      'membership added',
      () => adminCall('PUT', '/api/v1/groups/viewer/members/editor@example.com'),
      'person',
    );
    await expect(
      'membership removed',
      () => adminCall('DELETE', '/api/v1/groups/viewer/members/editor@example.com'),
      'person',
    );
    await adminCall('POST', '/api/v1/groups', { name: 'temporary' });
    const mapping = await adminCall('POST', '/api/v1/mappings', {
      provider: 'dev',
      externalGroup: 'editor',
      group: 'temporary',
    });
    assert.equal(mapping.status, 201);
    const mark = heard.length;
    await expect(
      'mapping removed',
      () => adminCall('DELETE', `/api/v1/mappings/${String(mapping.body['mappingId'])}`),
      'everyone',
    );
    assert.ok(heard.slice(mark).length >= 1);
    await expect('group deleted', () => adminCall('DELETE', '/api/v1/groups/temporary'), 'everyone');
    const demo = await adminCall('GET', '/api/v1/connections/demo');
    await expect(
      'access map changed',
      () => adminCall('PUT', '/api/v1/connections/demo/access', demo.body['access']),
      'everyone',
    );
    await adminCall('POST', '/api/v1/connections', {
      name: 'doomed',
      host: '127.0.0.1',
      port: 1,
      database: 'x',
      credential: { user: 'x', password: 'x' },
      access: { viewer: ['app_readonly'] },
    });
    await expect('connection deleted', () => adminCall('DELETE', '/api/v1/connections/doomed'), 'everyone');
  });
});
