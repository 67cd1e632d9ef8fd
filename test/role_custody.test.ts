import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { loginRoleMark, RoleProvisioner } from '../src/upstream/role_provisioner.js';
import type { Connection } from '../src/vault/connections.js';
import type { TestStack } from './support/dev_stack.js';
import { type LoginRoleStack, startLoginRoleStack } from './support/login_roles.js';
import { addPerson } from './support/people.js';

/**
 * Login roles that cannot be turned against pgward from inside the database (findings 1, 2 and
 * 12): each test acts directly on the target as the login role (what pgward's wire rules will
 * refuse), to prove the database-side defence holds on its own.
 */
describe('login roles that cannot be turned against pgward', () => {
  let s: LoginRoleStack;
  let t: TestStack;
  let superuser: pg.Client;
  let demo: Connection;

  before(async () => {
    s = await startLoginRoleStack();
    ({ t, superuser, demo } = s);
  });
  after(async () => {
    await s?.close();
  });

  /** A client logged in directly to the target (not through pgward). */
  const direct = async (user: string, password: string) => {
    const url = new URL(t.stack.info.target);
    url.username = encodeURIComponent(user);
    url.password = encodeURIComponent(password);
    const client = new pg.Client({ connectionString: url.toString() });
    client.on('error', () => undefined);
    await client.connect();
    return client;
  };
  const directError = async (user: string, password: string) => {
    try {
      await (await direct(user, password)).end();
    } catch (err) {
      return (err as Error).message;
    }
    return undefined;
  };
  // Finding 12: values in provisioning SQL were quoted literals inside a fixed $pgward$ tag.
  for (const email of [
    "o'brien@example.com",
    'dollar$sign@example.com',
    'a"quote@example.com',
    'tag$pgward$end@example.com',
    "x$pgward$'; drop role pgward_admin; --@example.com",
    'back\\slash\\@example.com',
    `${'long'.repeat(20)}@example.com`,
    `${'ünïcødé'.repeat(8)}@example.com`,
  ]) {
    it(`provisions, logs in and checks a person whose email is ${JSON.stringify(email)}`, async () => {
      const person = await addPerson(t, email);
      const login = await t.stack.gateway.provisioner.prepare(demo, person, ['app_readonly']);
      assert.ok(Buffer.byteLength(login.roleName) <= 63, login.roleName);
      const client = await direct(login.roleName, login.password);
      try {
        assert.equal((await client.query('select current_user as u')).rows[0].u, login.roleName);
      } finally {
        await client.end();
      }
      assert.deepEqual(await s.memberships(login.roleName), ['app_readonly']);
      const found = await s.role(login.roleName);
      assert.equal(found.note, loginRoleMark(demo.id, person.userId));
      assert.equal(found.rolcanlogin, true);
      assert.ok(
        (await superuser.query(`select 1 from pg_roles where rolname = 'pgward_admin'`)).rowCount === 1,
      );
    });
  }

  it('a password the person set themselves stops working when VALID UNTIL passes (finding 1)', async () => {
    const validForMs = 3000;
    const provisioner = new RoleProvisioner(t.stack.gateway.connections, 0, { validForMs });
    try {
      const person = await addPerson(t, 'own-password@example.com');
      const login = await provisioner.prepare(demo, person, ['app_readonly']);
      const until = (await s.role(login.roleName)).rolvaliduntil.getTime();
      assert.ok(until > Date.now() && until <= Date.now() + validForMs + 1000, `VALID UNTIL ${until}`);
      // The person sets their own password, straight on the target as their login role...
      const own = await direct(login.roleName, login.password);
      await own.query(`ALTER ROLE current_user PASSWORD 'x'`);
      await own.end();
      // ...which works at first: the attack is real.
      assert.equal(await directError(login.roleName, 'x'), undefined);
      // Until VALID UNTIL passes.
      const deadline = Date.now() + validForMs + 10_000;
      let refused: string | undefined;
      while (!refused && Date.now() < deadline) {
        refused = await directError(login.roleName, 'x');
        if (!refused) await new Promise((resolve) => setTimeout(resolve, 200));
      }
      assert.match(refused ?? 'still accepted', /password authentication failed/);
      // pgward's next sync renews VALID UNTIL with its own password: 'x' stays refused.
      const renewed = await provisioner.prepare(demo, person, ['app_readonly']);
      assert.match(
        (await directError(renewed.roleName, 'x')) ?? 'accepted',
        /password authentication failed/,
      );
      assert.equal(await directError(renewed.roleName, renewed.password), undefined);
    } finally {
      await provisioner.close();
    }
  });

  it('settings stored on the login role are reset at the next connect, which is refused (finding 2)', async () => {
    const ok = await t.psql('admin@example.com', ['-At', '-c', 'select current_user']);
    assert.equal(ok.code, 0, ok.stderr);
    const person = { userId: await s.userId('admin@example.com'), email: 'admin@example.com' };
    const login = await t.stack.gateway.provisioner.prepare(demo, person, ['app_admin']);
    const own = await direct(login.roleName, login.password);
    await own.query(`ALTER ROLE current_user SET role = 'app_admin'`);
    await own.query(`ALTER ROLE current_user IN DATABASE demo SET search_path = 'elsewhere'`);
    await own.end();
    assert.equal((await s.role(login.roleName)).settings, 2);

    const refused = await t.refusal('admin@example.com', {});
    assert.equal(refused.code, '42501');
    assert.match(
      refused.message,
      /your database login role on "demo" was changed outside pgward \(stored settings\)/,
    );
    assert.match(refused.message, /pgward has undone the change and refused this session/);
    assert.equal((await s.role(login.roleName)).settings, 0);

    const again = await t.psql('admin@example.com', ['-At', '-c', 'show role', '-c', 'show search_path']);
    assert.equal(again.code, 0, again.stderr);
    assert.deepEqual(again.stdout.trim().split('\n'), ['none', '"$user", public']);
  });

  it('a comment, attributes or a membership changed by someone else are repaired or refused', async () => {
    const ok = await t.psql('viewer@example.com', ['-At', '-c', 'select 1']);
    assert.equal(ok.code, 0, ok.stderr);
    const name = 'viewer@example.com';
    const mark = (await s.role(name)).note;
    await superuser.query(`COMMENT ON ROLE "viewer@example.com" IS 'mine now'`);
    await superuser.query(`ALTER ROLE "viewer@example.com" CONNECTION LIMIT 5`);
    const first = await t.refusal('viewer@example.com', {});
    assert.equal(first.code, '42501', first.message);
    assert.match(first.message, /changed outside pgward \(its comment, its attributes\)/);
    const repaired = await s.role(name);
    assert.equal(repaired.note, mark);
    assert.equal(repaired.rolconnlimit, -1);

    // A membership a superuser granted: pgward cannot revoke it, so it refuses every session.
    await superuser.query(`GRANT app_admin TO "viewer@example.com"`);
    for (let i = 0; i < 2; i++) {
      const refused = await t.refusal('viewer@example.com', {});
      assert.equal(refused.code, '42501');
      assert.match(refused.message, /a membership in app_admin granted by someone else/);
      assert.match(refused.hint ?? '', /a database administrator must revoke/);
    }
    await superuser.query(`REVOKE app_admin FROM "viewer@example.com"`);
    const back = await t.psql('viewer@example.com', ['-At', '-c', 'select current_user']);
    assert.equal(back.code, 0, back.stderr);
    assert.deepEqual(await s.memberships(name), ['app_readonly']);
  });

  it('makes every login role a member of pg.loginRoleGroup, for pg_hba.conf to match with +group', async () => {
    await superuser.query('CREATE ROLE pgward_login_roles NOLOGIN');
    await superuser.query(`GRANT pgward_login_roles TO ${t.stack.target.admin.user} WITH ADMIN OPTION`);
    const provisioner = new RoleProvisioner(t.stack.gateway.connections, 0, { group: 'pgward_login_roles' });
    try {
      const person = await addPerson(t, 'grouped@example.com');
      const login = await provisioner.prepare(demo, person, ['app_readonly']);
      assert.deepEqual(await s.memberships(login.roleName), ['app_readonly', 'pgward_login_roles']);
      // The group is pgward's own grant: the sync neither revokes it nor calls it a change.
      const again = await provisioner.prepare(demo, person, ['app_readonly']);
      assert.equal(again.roleName, login.roleName);
      assert.deepEqual(await s.memberships(login.roleName), ['app_readonly', 'pgward_login_roles']);
    } finally {
      await provisioner.close();
    }
  });

  it('disablePerson takes LOGIN away on every connection; the next sync gives it back', async () => {
    const signedIn = await t.psql('editor@example.com', ['-At', '-c', 'select 1']);
    assert.equal(signedIn.code, 0, signedIn.stderr);
    const person = { userId: await s.userId('editor@example.com'), email: 'editor@example.com' };
    const login = await t.stack.gateway.provisioner.prepare(demo, person, ['app_readwrite']);
    assert.equal(await directError(login.roleName, login.password), undefined);
    await t.stack.gateway.provisioner.disablePerson(person.userId);
    assert.match(
      (await directError(login.roleName, login.password)) ?? 'accepted',
      /not permitted to log in/,
    );
    assert.equal((await s.role(login.roleName)).rolcanlogin, false);
    // Active again: the next connect through pgward syncs, and LOGIN is back.
    const r = await t.psql('editor@example.com', ['-At', '-c', 'select current_user']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(await directError(login.roleName, login.password), undefined);
  });
});
