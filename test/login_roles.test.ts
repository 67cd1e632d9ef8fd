import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { loginRoleName, loginRoleSuffix, RoleProvisioner } from '../src/upstream/role_provisioner.js';
import type { TestStack } from './support/dev_stack.js';
import { type LoginRoleStack, startLoginRoleStack } from './support/login_roles.js';

/** A write the viewer's own roles refuse (app_readonly) and app_readwrite allows. */
const WRITE = "update users set email = email where username = 'john_doe'";

describe('login roles in a cluster that several connections lead to', () => {
  let s: LoginRoleStack;
  let t: TestStack;
  let superuser: pg.Client;
  let viewerId: string;
  before(async () => {
    s = await startLoginRoleStack();
    ({ t, superuser } = s);
    // A second connection to the same cluster and database, where viewers may write.
    await s.addConnection({
      name: 'demo_reports',
      roleMode: 'provision',
      access: { viewer: ['app_readwrite'] },
    });
  });
  after(async () => {
    await s?.close();
  });

  it('gives each connection its own role: grants on one never take back those of a live session on the other', async () => {
    const reading = await t.client('viewer@example.com');
    try {
      const [{ current_user: readRole }] = (await reading.query('select current_user')).rows;
      assert.equal(readRole, 'viewer@example.com');
      viewerId = await s.userId('viewer@example.com');

      const writing = await t.client('viewer@example.com', { database: 'demo_reports' });
      try {
        const demoReports = (await t.stack.gateway.connections.find('demo_reports'))!;
        const writeRole = loginRoleName('viewer@example.com', loginRoleSuffix(demoReports.id, viewerId));
        assert.equal((await writing.query('select current_user')).rows[0].current_user, writeRole);
        await writing.query(WRITE);
        assert.deepEqual(await s.memberships(writeRole), ['app_readwrite']);
        assert.match((await s.comment(writeRole)) ?? '', new RegExp(`connection ${demoReports.id}`));

        // A connect through "demo" re-checks its own role only...
        const again = await t.psql('viewer@example.com', ['-At', '-c', 'select current_user']);
        assert.equal(again.code, 0, again.stderr);
        assert.equal(again.stdout.trim(), 'viewer@example.com');
        // ...so the live session on demo_reports keeps its grant, and the one on demo stays read-only.
        await writing.query(WRITE);
        await assert.rejects(reading.query(WRITE), /permission denied/);
        assert.deepEqual(await s.memberships('viewer@example.com'), ['app_readonly']);

        // Each role keeps its own password: connects that alternate between the two never
        // set a new one (they did when both connections shared a role).
        const verifiers = async () =>
          (
            await superuser.query(
              `select rolname, rolpassword from pg_authid where rolname = any($1) order by 1`,
              [['viewer@example.com', writeRole]],
            )
          ).rows;
        const before = await verifiers();
        assert.equal(before.length, 2);
        for (const database of ['demo_reports', 'demo', 'demo_reports', 'demo']) {
          const c = await t.client('viewer@example.com', { database });
          await c.end();
        }
        assert.deepEqual(await verifiers(), before);
      } finally {
        await writing.end();
      }
    } finally {
      await reading.end();
    }
  });

  it('provisions with the connection as it is now: a changed credential counts at once', async () => {
    const demoReports = (await t.stack.gateway.connections.find('demo_reports'))!;
    const put = (password: string) =>
      t.stack.gateway.connections.put({
        name: 'demo_reports',
        host: demoReports.host,
        port: demoReports.port,
        database: demoReports.database,
        sslmode: demoReports.sslmode,
        credential: { user: t.stack.target.admin.user, password },
      });
    await put('not the password');
    const refused = await t.refusal('viewer@example.com', { database: 'demo_reports' });
    assert.match(refused.message, /cannot manage database roles on "demo_reports"/);
    await put(t.stack.target.admin.password);
    const c = await t.client('viewer@example.com', { database: 'demo_reports' });
    await c.end();
  });

  it('after a failed login, takes the secret from the vault, where another gateway may have changed it', async () => {
    const demoReports = (await t.stack.gateway.connections.find('demo_reports'))!;
    // A second gateway on the same store, which has the viewer's role on demo_reports cached.
    const other = new RoleProvisioner(t.stack.gateway.connections, 0);
    try {
      const cached = await other.prepare(demoReports, { userId: viewerId, email: 'viewer@example.com' }, [
        'app_readwrite',
      ]);
      // The vault's secret changes under it (as when a gateway gives the role a new one).
      await t.stack.gateway.connections.renameLoginRole(demoReports, viewerId, cached.roleName);
      const reset = await other.prepare(
        demoReports,
        { userId: viewerId, email: 'viewer@example.com' },
        ['app_readwrite'],
        true,
      );
      assert.equal(reset.roleName, cached.roleName);
      assert.notEqual(reset.password, cached.password, 'the vault secret, not the cached one');
      const url = new URL(t.stack.info.target);
      url.username = encodeURIComponent(reset.roleName);
      url.password = encodeURIComponent(reset.password);
      const direct = new pg.Client({ connectionString: url.toString() });
      await direct.connect();
      await direct.end();
      // This gateway's cache is now out of date too: its login fails once, then it recovers.
      const c = await t.client('viewer@example.com', { database: 'demo_reports' });
      await c.end();
    } finally {
      await other.close();
    }
  });

  it('leaves a role of the same name that belongs to someone else alone', async () => {
    // The DBA made a role named like the editor, for another purpose, with a comment saying so.
    await superuser.query(`CREATE ROLE "editor@example.com" NOLOGIN`);
    await superuser.query(`COMMENT ON ROLE "editor@example.com" IS 'owned by the DBA team'`);
    const r = await t.psql('editor@example.com', ['-At', '-c', 'select current_user']);
    assert.equal(r.code, 0, r.stderr);
    const editorId = await s.userId('editor@example.com');
    assert.equal(r.stdout.trim(), loginRoleName('editor@example.com', loginRoleSuffix(s.demo.id, editorId)));
    // Untouched: no login, no memberships, the DBA's comment.
    const [row] = (
      await superuser.query(`select rolcanlogin from pg_roles where rolname = 'editor@example.com'`)
    ).rows;
    assert.equal(row.rolcanlogin, false);
    assert.deepEqual(await s.memberships('editor@example.com'), []);
    assert.equal(await s.comment('editor@example.com'), 'owned by the DBA team');
  });
});
