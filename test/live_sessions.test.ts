/**
 * Revocation that bites on the wire: open sessions end within seconds (57P01, with the reason)
 * when their person is revoked or deactivated, or loses the access they hold (the connection's
 * access map changed, the connection deleted), and the login role loses LOGIN in the target.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { call } from './support/api.js';
import { startTestStack, type TestStack } from './support/dev_stack.js';
import { eventually } from './support/eventually.js';

/** The error that ends a client's session, once it comes. */
function ended(client: pg.Client): Promise<{ code?: string; message: string }> {
  return new Promise((resolve) =>
    client.once('error', (err) => resolve(err as { code?: string; message: string })),
  );
}

describe('live sessions follow the directory', () => {
  let t: TestStack;
  let admin: string;
  let target: pg.Client;
  before(async () => {
    t = await startTestStack();
    admin = await t.token('admin@example.com');
    target = new pg.Client({ connectionString: t.stack.info.target });
    await target.connect();
  });
  after(async () => {
    await target?.end();
    await t?.close();
  });

  it('revoking a person ends their open session with 57P01 and takes LOGIN away in the target', async () => {
    const client = await t.client('editor@example.com');
    const gone = ended(client);
    const started = Date.now();
    const r = await call(t.stack.info.http, 'POST', '/api/v1/users/editor@example.com/revoke', {
      token: admin,
    });
    assert.equal(r.status, 200);
    const err = await gone;
    assert.ok(Date.now() - started < 5000, 'within seconds');
    assert.equal(err.code, '57P01');
    assert.match(err.message, /revoked/);
    await eventually(async () => {
      const { rows } = await target.query(
        "select rolcanlogin from pg_roles where rolname = 'editor@example.com'",
      );
      return rows[0]?.rolcanlogin === false ? true : undefined;
    }, 'NOLOGIN on the login role');
    await client.end().catch(() => undefined);
  });

  it('changing the access map ends the sessions of those who lost access, and only theirs', async () => {
    const viewer = await t.client('viewer@example.com');
    const adminClient = await t.client('admin@example.com');
    const viewerGone = ended(viewer);
    let adminGone = false;
    adminClient.once('error', () => {
      adminGone = true;
    });
    const r = await call(t.stack.info.http, 'PUT', '/api/v1/connections/demo/access', {
      token: admin,
      body: { admin: ['app_admin'], editor: ['app_readwrite'] },
    });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    const err = await viewerGone;
    assert.equal(err.code, '57P01');
    assert.match(err.message, /may no longer use connection "demo"/);
    assert.equal((await adminClient.query('select 1 as ok')).rows[0].ok, 1);
    assert.equal(adminGone, false);
    await viewer.end().catch(() => undefined);
    await adminClient.end();
    await call(t.stack.info.http, 'PUT', '/api/v1/connections/demo/access', {
      token: admin,
      body: { admin: ['app_admin'], editor: ['app_readwrite'], viewer: ['app_readonly'] },
    });
  });

  it('a session whose mapped roles change ends, so it never holds grants it no longer has', async () => {
    const viewer = await t.client('viewer@example.com');
    const gone = ended(viewer);
    await call(t.stack.info.http, 'PUT', '/api/v1/connections/demo/access', {
      token: admin,
      body: { admin: ['app_admin'], editor: ['app_readwrite'], viewer: ['app_readwrite'] },
    });
    const err = await gone;
    assert.equal(err.code, '57P01');
    assert.match(err.message, /roles .* changed/);
    await viewer.end().catch(() => undefined);
    await call(t.stack.info.http, 'PUT', '/api/v1/connections/demo/access', {
      token: admin,
      body: { admin: ['app_admin'], editor: ['app_readwrite'], viewer: ['app_readonly'] },
    });
  });

  it('deactivating a person ends their session', async () => {
    const viewer = await t.client('viewer@example.com');
    const gone = ended(viewer);
    const r = await call(t.stack.info.http, 'PATCH', '/api/v1/users/viewer@example.com', {
      token: admin,
      body: { isActive: false },
    });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    const err = await gone;
    assert.equal(err.code, '57P01');
    await viewer.end().catch(() => undefined);
    await call(t.stack.info.http, 'PATCH', '/api/v1/users/viewer@example.com', {
      token: admin,
      body: { isActive: true },
    });
  });
});
