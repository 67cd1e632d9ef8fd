import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, it } from 'node:test';
import type pg from 'pg';
import { type ProviderConfig, providerSchema } from '../src/config/schema.js';
import { Directory, tenantFromEmail } from '../src/directory/directory.js';
import { DirectoryAdmin } from '../src/directory/directory_admin.js';
import { PgwardError } from '../src/errors.js';
import type { VerifiedIdentity } from '../src/identity/token_verifier.js';
import type { EmbeddedCluster } from '../src/store/embedded_postgres.js';
import { migrate } from '../src/store/migrate.js';
import { createPool } from '../src/store/store.js';
import { createDatabase, startTestPostgres } from './support/postgres.js';
import { quietLog } from './support/quiet_log.js';

const okta = providerSchema.parse({ name: 'okta', issuer: 'https://okta.example.com', clientId: 'a' });
const google = providerSchema.parse({
  name: 'google',
  issuer: 'https://accounts.google.com',
  clientId: 'b',
  linkByEmail: true,
});
const dexInput = { name: 'dex', issuer: 'https://dex.example.com', clientId: 'c' };
const dex = providerSchema.parse(dexInput);

function identity(provider: ProviderConfig, over: Partial<VerifiedIdentity> = {}): VerifiedIdentity {
  return {
    provider,
    subject: 'sub-1',
    email: 'ada@example.com',
    emailVerified: true,
    name: 'Ada',
    preferredUsername: undefined,
    groups: [],
    roles: [],
    expiresAt: new Date(Date.now() + 3600_000),
    ...over,
  };
}

describe('directory (seed 004) on a real store', () => {
  let cluster: EmbeddedCluster;
  let pool: pg.Pool;
  let directory: Directory;
  let admin: DirectoryAdmin;

  before(async () => {
    cluster = await startTestPostgres();
  });
  beforeEach(async () => {
    await pool?.end();
    pool = createPool(await createDatabase(cluster));
    await migrate(pool, quietLog);
    directory = new Directory(pool);
    admin = new DirectoryAdmin(pool);
    await directory.syncProviders([okta, google, dex]);
  });
  after(async () => {
    await pool?.end();
    await cluster.close();
  });

  it('signs a person up just in time from sub, email and name, and finds them again by sub', async () => {
    const first = await directory.signIn(identity(okta, { groups: ['viewer'] }));
    const again = await directory.signIn(identity(okta, { email: 'ada.l@example.com', groups: ['viewer'] }));
    assert.equal(again.userId, first.userId);
    const { rows } = await pool.query('select email, name from pgward.user_info');
    assert.deepEqual(rows, [{ email: 'ada.l@example.com', name: 'Ada' }]);
  });

  it('maps IdP groups by group name and by role name, plus direct memberships', async () => {
    const { rows } = await pool.query<{ group_id: string; name: string }>(
      `insert into pgward.user_group (tenant_id, name)
       select tenant_id, g from pgward.tenant, unnest(array['analysts', 'dbas', 'oncall']) g returning group_id, name`,
    );
    const id = Object.fromEntries(rows.map((r) => [r.name, r.group_id]));
    await pool.query(
      `insert into pgward.user_group_mapping (provider_id, external_group, external_role, group_id)
       select provider_id, 'Data Team', null, $1::uuid from pgward.provider where code = 'okta'
       union all select provider_id, null, 'DatabaseAdmin', $2::uuid from pgward.provider where code = 'okta'`,
      [id['analysts'], id['dbas']],
    );
    const person = await directory.signIn(
      identity(okta, { groups: ['Data Team', 'Other'], roles: ['DatabaseAdmin'] }),
    );
    assert.deepEqual(
      person.groups,
      ['analysts', 'dbas', 'okta:Data Team', 'okta:Other'],
      'mapped groups, plus the IdP groups under the provider namespace',
    );
    await pool.query('insert into pgward.user_group_member (group_id, user_id) values ($1, $2)', [
      id['oncall'],
      person.userId,
    ]);
    const again = await directory.signIn(identity(okta, { groups: ['Data Team'], roles: [] }));
    assert.deepEqual(again.groups, ['analysts', 'okta:Data Team', 'oncall']);
  });

  it("keeps each provider's groups under its own namespace, so providers never collide by name", async () => {
    const person = await directory.signIn(identity(dex, { groups: ['viewer', 'editor'] }));
    assert.deepEqual(person.groups, ['dex:editor', 'dex:viewer']);
    assert.equal(person.isAdmin, false);
    const other = await directory.signIn(
      identity(okta, { subject: 'o-9', email: 'eve@example.com', groups: ['viewer'] }),
    );
    assert.deepEqual(other.groups, ['okta:viewer'], 'okta "viewer" is not dex "viewer"');
    await assert.rejects(
      pool.query(
        `insert into pgward.user_group (tenant_id, name) select tenant_id, 'dex:viewer' from pgward.tenant`,
      ),
      /user_group_plain_name/,
      'no pgward group can pose as a provider group',
    );
    const admin = await directory.signIn(
      identity(dex, { subject: 'sub-2', email: 'root@example.com', groups: ['admin'] }),
    );
    assert.equal(admin.isAdmin, true, 'adminGroups (default ["admin"]) makes an administrator');
  });

  it('syncs group and role mappings from the configuration, replacing the previous ones', async () => {
    const configured = providerSchema.parse({
      ...dexInput,
      mappings: { groups: { 'db-readers': ['viewer'] }, roles: { DBA: ['admin', 'editor'] } },
    });
    await directory.syncProviders([configured]);
    const person = await directory.signIn(identity(configured, { groups: ['db-readers'], roles: ['DBA'] }));
    assert.deepEqual(person.groups, ['admin', 'dex:db-readers', 'editor', 'viewer']);
    assert.equal(person.isAdmin, true, 'the pgward group "admin" makes an administrator');
    await directory.syncProviders([
      providerSchema.parse({ ...dexInput, mappings: { groups: { 'db-readers': ['viewer'] } } }),
    ]);
    const again = await directory.signIn(identity(configured, { groups: ['db-readers'], roles: ['DBA'] }));
    assert.deepEqual(again.groups, ['dex:db-readers', 'viewer'], 'a mapping removed from the config is gone');
  });

  it('links a new identity to an existing person only when allowed and both emails are verified', async () => {
    const person = await directory.signIn(identity(okta, { subject: 'o-1', groups: ['viewer'] }));
    // Google allows linking, and Okta vouched for the same verified email: same person.
    const linked = await directory.signIn(identity(google, { subject: 'g-1', groups: ['editor'] }));
    assert.equal(linked.userId, person.userId);
    assert.deepEqual(linked.groups, ['google:editor'], 'the last-used identity (Google) decides');
    const back = await directory.signIn(identity(okta, { subject: 'o-1', groups: ['viewer'] }));
    assert.deepEqual(back.groups, ['okta:viewer'], 'switching back switches permissions back');
    // Google claiming an unverified email does not link.
    const unverified = await directory.signIn(
      identity(google, { subject: 'g-2', email: 'bob@example.com', emailVerified: false }),
    );
    const bob = await directory.signIn(identity(okta, { subject: 'o-2', email: 'bob@example.com' }));
    assert.notEqual(unverified.userId, bob.userId);
    // Dex does not allow linking even with a verified email.
    const viaDex = await directory.signIn(identity(dex, { subject: 'd-1' }));
    assert.notEqual(viaDex.userId, person.userId);
  });

  it('regression: on a store with a linguistic collation, a look-alike email does not link to a person', async () => {
    // lower() under ICU folds the Kelvin sign (U+212A) to "k"; emails must match by ASCII case only.
    const icu = createPool(await createDatabase(cluster, { icu: true }));
    try {
      await migrate(icu, quietLog);
      const onIcu = new Directory(icu);
      await onIcu.syncProviders([okta, google, dex]);
      const kate = await onIcu.signIn(identity(okta, { subject: 'o-k', email: 'kate@example.com' }));
      const lookAlike = await onIcu.signIn(
        identity(google, { subject: 'g-k', email: '\u212Aate@example.com' }),
      );
      assert.notEqual(lookAlike.userId, kate.userId);
      assert.equal(lookAlike.email, '\u212Aate@example.com');
      const { rows } = await icu.query(`select lower(E'\\u212A') = 'k' as folds`);
      assert.equal(
        rows[0].folds,
        true,
        'the database does fold the look-alike (else this test proves nothing)',
      );
    } finally {
      await icu.end();
    }
  });

  it('refuses inactive people and inactive identities with a clear message', async () => {
    const person = await directory.signIn(identity(okta));
    await pool.query('update pgward.user_info set is_active = false where user_id = $1', [person.userId]);
    await assert.rejects(directory.signIn(identity(okta)), (err: unknown) => {
      assert.ok(err instanceof PgwardError);
      assert.equal(err.code, 'NOT_ALLOWED');
      assert.match(err.message, /ada@example\.com is deactivated in pgward/);
      return true;
    });
    await pool.query(
      'update pgward.user_info set is_active = true; update pgward.user_identity set is_active = false',
    );
    await assert.rejects(directory.signIn(identity(okta)), /your okta identity is deactivated in pgward/);
  });

  it('regression: an unverified email never renames a person nor takes an address that is taken', async () => {
    const ada = await directory.signIn(identity(okta));
    const bob = await directory.signIn(identity(okta, { subject: 'o-2', email: 'bob@example.com' }));
    const renamed = await directory.signIn(
      identity(okta, { email: 'bob@example.com', emailVerified: false }),
    );
    assert.equal(renamed.email, 'ada@example.com', 'the person keeps the email pgward has');
    assert.equal((await admin.user('bob@example.com')).userId, bob.userId, 'bob is still the only bob');
    assert.equal((await admin.user('ada@example.com')).userId, ada.userId);
    await assert.rejects(
      directory.signIn(identity(okta, { subject: 'o-3', email: 'bob@example.com', emailVerified: false })),
      /okta has not verified the email bob@example\.com, which another person in pgward has/,
    );
    const verified = await directory.signIn(identity(okta, { email: 'ada.l@example.com' }));
    assert.equal(verified.email, 'ada.l@example.com', 'a verified email renames');
  });

  it('says where a person stands now: groups of now, deactivation, revocation', async () => {
    const person = await directory.signIn(identity(okta, { groups: ['viewer'] }));
    await admin.createGroup('oncall', undefined);
    await admin.addMember('oncall', person.userId);
    await admin.createGroup('admin', undefined);
    await admin.addMember('admin', person.userId);
    const adminGroups = () => okta.adminGroups;
    let standing = await directory.standing(person.userId, adminGroups);
    assert.ok(standing?.person.groups.includes('oncall'));
    assert.equal(standing?.person.isAdmin, true, 'a member of pgward admin');
    await admin.removeMember('admin', person.userId);
    standing = await directory.standing(person.userId, adminGroups);
    assert.equal(standing?.person.isAdmin, false, 'removed from admin: not an administrator, from now on');
    assert.equal(standing?.revokedBefore, undefined);

    const revokedBefore = await admin.revokePerson(person.userId, 'test');
    standing = await directory.standing(person.userId, adminGroups);
    assert.equal(standing?.revokedBefore?.getTime(), revokedBefore.getTime());
    assert.equal(revokedBefore.getMilliseconds(), 0, 'a whole second, after now');
    assert.ok(revokedBefore.getTime() > Date.now() - 1000);
    // A token issued before the revocation is refused at sign-in, and so is one without iat.
    for (const issuedAt of [new Date(revokedBefore.getTime() - 1), undefined]) {
      await assert.rejects(directory.signIn(identity(okta, { issuedAt })), (err: unknown) => {
        assert.ok(err instanceof PgwardError);
        assert.equal(err.code, 'TOKEN_REVOKED');
        return true;
      });
    }
    await directory.signIn(identity(okta, { issuedAt: revokedBefore }));
    assert.equal(await directory.standing('00000000-0000-4000-8000-000000000000', adminGroups), undefined);
  });

  it('derives the tenant from the email domain in multi-tenant mode', async () => {
    assert.equal(tenantFromEmail('johndoe@google.com'), 'google');
    assert.equal(tenantFromEmail('x@example.co.uk'), 'example.co');
    assert.equal(tenantFromEmail('x@localhost'), 'localhost');
    const multi = new Directory(pool, 'multi');
    await multi.syncProviders([okta]);
    await multi.signIn(identity(okta, { subject: 'j', email: 'johndoe@google.com' }));
    await multi.signIn(identity(okta, { subject: 'k', email: 'kim@acme.io' }));
    const { rows } = await pool.query(
      'select u.email, t.code from pgward.user_info u join pgward.tenant t using (tenant_id) order by 1',
    );
    assert.deepEqual(rows, [
      { email: 'johndoe@google.com', code: 'google' },
      { email: 'kim@acme.io', code: 'acme' },
    ]);
  });

  it('reports provider usage and stale identities (views of seed 004)', async () => {
    await directory.signIn(identity(okta, { subject: 'o-1' }));
    await directory.signIn(identity(okta, { subject: 'o-2', email: 'old@example.com' }));
    await directory.signIn(identity(dex, { subject: 'd-1', email: 'd@example.com' }));
    await pool.query(
      "update pgward.user_identity set last_login_at = now() - interval '120 days' where provider_user_id = 'o-2'",
    );
    const usage = await pool.query(
      'select provider, total_users::int, active_users::int, users_logged_in_30d::int from pgward.provider_usage order by 1',
    );
    assert.deepEqual(usage.rows, [
      { provider: 'dex', total_users: 1, active_users: 1, users_logged_in_30d: 1 },
      { provider: 'google', total_users: 0, active_users: 0, users_logged_in_30d: 0 },
      { provider: 'okta', total_users: 2, active_users: 2, users_logged_in_30d: 1 },
    ]);
    const stale = await pool.query('select email, provider from pgward.stale_identity');
    assert.deepEqual(stale.rows, [{ email: 'old@example.com', provider: 'okta' }]);
  });
});
