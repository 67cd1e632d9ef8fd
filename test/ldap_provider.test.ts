import assert from 'node:assert/strict';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { generate } from 'selfsigned';
import { stringify } from 'yaml';
import { configSchema, providerSchema } from '../src/config/schema.js';
import { PACKAGE_ROOT } from '../src/package_root.js';
import { call, type Grant } from './support/api.js';
import { runCli } from './support/cli.js';
import { startTestStack, type TestStack } from './support/dev_stack.js';
import { type FakeDomainController, startFakeDomainController } from './support/fake_domain_controller.js';
import { type LdapEntry, startTestLdap, type TestLdap } from './support/ldap_server.js';
import { type RecordingRelay, startRecordingRelay } from './support/recording_relay.js';
import { tempDir } from './support/temp_dir.js';

const SUFFIX = 'dc=corp,dc=example';
const SERVICE = `cn=pgward,ou=services,${SUFFIX}`;
const person = (uid: string, extra: Record<string, string> = {}): LdapEntry => ({
  dn: `uid=${uid},ou=people,${SUFFIX}`,
  password: `${uid}-pw`,
  attributes: {
    objectClass: ['inetOrgPerson'],
    uid,
    cn: uid,
    sn: uid,
    mail: `${uid}@corp.example`,
    displayName: uid.toUpperCase(),
    entryUUID: `00000000-0000-4000-8000-${Buffer.from(uid).toString('hex').padStart(12, '0')}`,
    ...extra,
  },
});
const group = (cn: string, members: string[]): LdapEntry => ({
  dn: `cn=${cn},ou=groups,${SUFFIX}`,
  attributes: { objectClass: ['groupOfNames'], cn, member: members },
});
const dn = (kind: 'uid' | 'cn', name: string) =>
  kind === 'uid' ? `uid=${name},ou=people,${SUFFIX}` : `cn=${name},ou=groups,${SUFFIX}`;
const service: LdapEntry = {
  dn: SERVICE,
  password: 'svc-secret',
  attributes: { objectClass: ['applicationProcess', 'simpleSecurityObject'], cn: 'pgward' },
};

/** An Active Directory domain, emulated (slapd has neither IN_CHAIN nor userAccountControl). */
const AD = 'dc=ad,dc=example';
const AD_SERVICE = `cn=pgward,ou=service accounts,${AD}`;
const adUser = (name: string, userAccountControl: string): LdapEntry => ({
  dn: `cn=${name},ou=people,${AD}`,
  password: `${name}-pw`,
  attributes: {
    objectClass: ['user'],
    sAMAccountName: name,
    mail: `${name}@ad.example`,
    displayName: name.toUpperCase(),
    userAccountControl,
  },
});
const adGroup = (cn: string, members: string[]): LdapEntry => ({
  dn: `cn=${cn},ou=groups,${AD}`,
  attributes: { objectClass: ['group'], cn, member: members },
});

describe('LDAP sign-in against OpenLDAP (slapd), over LDAPS and StartTLS', () => {
  let directory: TestLdap;
  /** A directory without a certificate: it answers StartTLS with an error. */
  let clearOnly: TestLdap;
  let dc: FakeDomainController;
  /** Between pgward and slapd's ldap:// listener, recording what pgward sends. */
  let startTlsRelay: RecordingRelay;
  let plainRelay: RecordingRelay;
  let t: TestStack;
  let http: string;
  const entries: LdapEntry[] = [
    service,
    person('alice'),
    person('bob'),
    // Signs in with `pgward login --browser` (the test browser types the password "password").
    { ...person('erin'), password: 'password' },
    // Each signs in through one StartTLS or relayed provider only (LDAP emails are unverified, so
    // a second provider's identity with the same email is not signed up).
    person('frank'),
    { ...person('grace'), password: 'grace-Unm1stakable-pw' },
    { ...person('heidi'), password: 'heidi-Unm1stakable-pw' },
    group('dba', [dn('uid', 'alice'), dn('uid', 'frank')]),
    group('engineering', [dn('cn', 'dba')]),
    group('everyone', [dn('cn', 'engineering'), dn('uid', 'bob')]),
    // A cycle of groups ends.
    group('loop-a', [dn('cn', 'loop-b')]),
    group('loop-b', [dn('cn', 'loop-a'), dn('uid', 'alice')]),
  ];
  const adEntries: LdapEntry[] = [
    {
      dn: AD_SERVICE,
      password: 'ad-secret',
      attributes: { objectClass: ['user'], cn: 'pgward' },
    },
    adUser('dave', '512'),
    // ACCOUNTDISABLE (2) in userAccountControl.
    adUser('carol', '514'),
    adGroup('dba', [`cn=dave,ou=people,${AD}`]),
    adGroup('engineering', [`cn=dba,ou=groups,${AD}`]),
    adGroup('everyone', [`cn=engineering,ou=groups,${AD}`]),
  ];

  before(async () => {
    directory = await startTestLdap({ suffix: SUFFIX, entries, serviceDn: SERVICE });
    clearOnly = await startTestLdap({ suffix: SUFFIX, entries, serviceDn: SERVICE, tls: false });
    dc = await startFakeDomainController(adEntries, AD_SERVICE);
    const slapdPlainPort = Number(new URL(directory.startTlsUrl.replace('ldap:', 'http:')).port);
    startTlsRelay = await startRecordingRelay(slapdPlainPort);
    plainRelay = await startRecordingRelay(slapdPlainPort);
    const other = await generate([{ name: 'commonName', value: 'not the directory' }], { keySize: 2048 });
    const ldap = (extra: Record<string, unknown>) => ({
      url: directory.url,
      ca: directory.ca,
      userBase: `ou=people,${SUFFIX}`,
      groupBase: `ou=groups,${SUFFIX}`,
      userFilter: '(uid={username})',
      lockout: { maxFailures: 3, minutes: 1 },
      ...extra,
    });
    const startTls = (url: string, extra: Record<string, unknown> = {}) =>
      ldap({ url, startTls: true, ...extra });
    const base = { type: 'ldap', clientId: SERVICE, clientSecret: 'svc-secret' };
    const file = path.join(tempDir('ldap-stack'), 'pgward.yaml');
    writeFileSync(
      file,
      stringify({
        providers: [
          {
            ...base,
            name: 'corp-ldap',
            ldap: ldap({ wirePassword: true }),
            mappings: { groups: { engineering: ['viewer'] } },
          },
          {
            type: 'ldap',
            clientId: AD_SERVICE,
            clientSecret: 'ad-secret',
            name: 'corp-ad',
            ldap: {
              url: dc.url,
              ca: dc.ca,
              userBase: `ou=people,${AD}`,
              groupBase: `ou=groups,${AD}`,
              userFilter: '(sAMAccountName={username})',
              nestedGroups: 'ad',
              idAttribute: 'dn',
            },
          },
          { ...base, name: 'bad-ca', ldap: ldap({ ca: other.cert }) },
          { ...base, name: 'corp-starttls', ldap: startTls(directory.startTlsUrl) },
          { ...base, name: 'starttls-bad-ca', ldap: startTls(directory.startTlsUrl, { ca: other.cert }) },
          // The certificate names 127.0.0.1 only.
          {
            ...base,
            name: 'starttls-wrong-host',
            ldap: startTls(directory.startTlsUrl.replace('127.0.0.1', 'localhost')),
          },
          { ...base, name: 'no-starttls', ldap: startTls(clearOnly.startTlsUrl) },
          { ...base, name: 'relay-starttls', ldap: startTls(`ldap://127.0.0.1:${startTlsRelay.port}`) },
          // Plain ldap:// is allowed on loopback: what a clear bind looks like on the relay.
          { ...base, name: 'relay-plain', ldap: ldap({ url: `ldap://127.0.0.1:${plainRelay.port}` }) },
        ],
      }),
    );
    // More sign-ins than the default per-address rate limit allows in a minute.
    t = await startTestStack({ PGWARD_CONFIG: file, PGWARD_LOGIN_RATE_LIMIT: '1000' });
    http = t.stack.info.http;
  });
  after(async () => {
    await t?.close();
    await startTlsRelay?.close();
    await plainRelay?.close();
    await dc?.close();
    await clearOnly?.close();
    await directory?.close();
  });

  const signIn = (username: string, password: string, provider = 'corp-ldap') =>
    call<Grant>(http, 'POST', '/api/v1/auth/password', { body: { provider, username, password } });

  it('refuses plain LDAP off loopback and a provider without the service password, naming the setting', () => {
    const plain = providerSchema.safeParse({
      name: 'l',
      type: 'ldap',
      clientId: SERVICE,
      clientSecret: 'x',
      ldap: { url: 'ldap://dc1.corp.example', userBase: 'dc=corp' },
    });
    assert.ok(!plain.success);
    assert.deepEqual(plain.error.issues[0]?.path, ['ldap', 'url']);
    assert.match(plain.error.issues[0]!.message, /sends passwords in the clear/);
    const startTls = providerSchema.safeParse({
      name: 'l',
      type: 'ldap',
      clientId: SERVICE,
      clientSecret: 'x',
      ldap: { url: 'ldap://dc1.corp.example', startTls: true, userBase: 'dc=corp' },
    });
    assert.ok(startTls.success);
    const noSecret = providerSchema.safeParse({
      name: 'l',
      type: 'ldap',
      clientId: SERVICE,
      ldap: { url: 'ldaps://dc1.corp.example', userBase: 'dc=corp' },
    });
    assert.deepEqual(noSecret.error?.issues[0]?.path, ['clientSecret']);
  });

  it('signs in by bind, with nested groups, and the token opens sessions', async () => {
    const res = await signIn('alice', 'alice-pw');
    assert.equal(res.status, 200, JSON.stringify(res.body));
    assert.equal(res.body.person.email, 'alice@corp.example');
    assert.deepEqual(res.body.person.groups.sort(), [
      'corp-ldap:dba',
      'corp-ldap:engineering',
      'corp-ldap:everyone',
      'corp-ldap:loop-a',
      'corp-ldap:loop-b',
      'viewer',
    ]);
    assert.ok(
      (await directory.binds()).some((b) => b.dn === dn('uid', 'alice') && b.ok && b.tls),
      'the password was checked by a bind over TLS',
    );
    const client = await t.client('alice@corp.example', { password: res.body.access_token });
    assert.equal((await client.query('select current_user')).rows[0].current_user, 'alice@corp.example');
    await client.end();
  });

  it("reads Active Directory's nested groups with LDAP_MATCHING_RULE_IN_CHAIN (emulated domain controller)", async () => {
    const res = await signIn('dave', 'dave-pw', 'corp-ad');
    assert.equal(res.status, 200, JSON.stringify(res.body));
    assert.deepEqual(res.body.person.groups.sort(), [
      'corp-ad:dba',
      'corp-ad:engineering',
      'corp-ad:everyone',
    ]);
    // One question to the domain controller, not one per level of nesting.
    const groupSearches = dc.filters.filter((f) => /member/i.test(f));
    assert.deepEqual(groupSearches, [`(member:1.2.840.113556.1.4.1941:=cn=dave,ou=people,${AD})`]);
  });

  it('refuses a disabled Active Directory account (emulated domain controller)', async () => {
    const res = await signIn('carol', 'carol-pw', 'corp-ad');
    assert.equal(res.status, 403, JSON.stringify(res.body));
    assert.match(String(res.body['detail' as never]), /disabled/);
  });

  it('keeps the directory server and the service account out of the public discovery document', async () => {
    const doc = (await (await fetch(`${http}/.well-known/pgward-configuration`)).json()) as {
      providers: { name: string; type: string }[];
    };
    assert.deepEqual(
      doc.providers.filter((p) => p.type === 'ldap').map((p) => p.name),
      [
        'corp-ldap',
        'corp-ad',
        'bad-ca',
        'corp-starttls',
        'starttls-bad-ca',
        'starttls-wrong-host',
        'no-starttls',
        'relay-starttls',
        'relay-plain',
      ],
    );
    assert.doesNotMatch(JSON.stringify(doc), /ldaps?:|cn=pgward/i);
  });

  it('refuses a wrong password, an unknown user and filter injection alike', async () => {
    for (const [user, password] of [
      ['alice', 'wrong'],
      ['nobody', 'x'],
      ['*', 'alice-pw'],
      ['alice)(uid=*', 'alice-pw'],
    ] as const) {
      const res = await signIn(user, password);
      assert.equal(res.status, 401, `${user}: ${JSON.stringify(res.body)}`);
      assert.equal(res.body['code' as never], 'LOGIN_FAILED');
      assert.match(String(res.body['detail' as never]), /wrong user name or password/);
    }
    assert.equal(
      (await signIn('alice', '')).status,
      400,
      'an empty password is never an (unauthenticated) bind',
    );
  });

  it('locks a user name after repeated wrong passwords, not other people', async () => {
    for (let i = 0; i < 3; i++) assert.equal((await signIn('bob', `guess-${i}`)).status, 401);
    const locked = await signIn('bob', 'bob-pw');
    assert.equal(locked.status, 429, JSON.stringify(locked.body));
    assert.match(String(locked.body['detail' as never]), /too many wrong passwords/);
    const bobs = async () => (await directory.binds()).filter((b) => b.dn === dn('uid', 'bob')).length;
    const binds = await bobs();
    assert.equal(binds, 3, 'each wrong password was a bind');
    await signIn('bob', 'bob-pw');
    assert.equal(await bobs(), binds, 'no bind while locked');
    // Kept in the store, for every gateway on it, under a hash of the name.
    const { rows } = await t
      .store()
      .query(
        "SELECT provider, encode(username_hash, 'hex') AS h FROM pgward.sign_in_failure WHERE locked_until > now()",
      );
    assert.deepEqual(
      rows.map((r) => r.provider),
      ['corp-ldap'],
    );
    assert.doesNotMatch(JSON.stringify(rows), /bob/);
    assert.equal((await signIn('alice', 'alice-pw')).status, 200);
  });

  it('refuses a server whose certificate the CA did not sign or names another host, before any bind (LDAPS, StartTLS)', async () => {
    for (const provider of ['bad-ca', 'starttls-bad-ca', 'starttls-wrong-host']) {
      const before = (await directory.binds()).length;
      const res = await signIn('alice', 'alice-pw', provider);
      assert.equal(res.status, 502, `${provider}: ${JSON.stringify(res.body)}`);
      assert.equal(res.body['code' as never], 'IDP_UNREACHABLE');
      assert.match(
        String(res.body['detail' as never]),
        /has a certificate that is not trusted or not for its host name/,
        provider,
      );
      assert.equal((await directory.binds()).length, before, `${provider}: nothing was bound`);
    }
  });

  it('signs in over ldap:// with StartTLS, binding only once TLS is up', async () => {
    const before = (await directory.binds()).length;
    const res = await signIn('frank', 'frank-pw', 'corp-starttls');
    assert.equal(res.status, 200, JSON.stringify(res.body));
    assert.equal(res.body.person.email, 'frank@corp.example');
    assert.deepEqual(res.body.person.groups.sort(), [
      'corp-starttls:dba',
      'corp-starttls:engineering',
      'corp-starttls:everyone',
    ]);
    const binds = (await directory.binds()).slice(before);
    assert.deepEqual(
      binds.map((b) => b.dn),
      [SERVICE, dn('uid', 'frank')],
    );
    assert.ok(
      binds.every((b) => b.ok && b.tls),
      'slapd saw both binds on connections where TLS was established',
    );
  });

  it('fails closed, before any bind, when the server does not offer StartTLS', async () => {
    const res = await signIn('alice', 'alice-pw', 'no-starttls');
    assert.equal(res.status, 502, JSON.stringify(res.body));
    assert.equal(res.body['code' as never], 'IDP_UNREACHABLE');
    assert.match(String(res.body['detail' as never]), /the LDAP server of no-starttls refused StartTLS/);
    assert.deepEqual(await clearOnly.binds(), [], 'not even the service account was bound');
  });

  it('never sends a password in the clear with StartTLS (what an observer on the network sees)', async () => {
    const grace = 'grace-Unm1stakable-pw';
    const res = await signIn('grace', grace, 'relay-starttls');
    assert.equal(res.status, 200, JSON.stringify(res.body));
    const sent = startTlsRelay.sent();
    assert.ok(sent.includes('1.3.6.1.4.1.1466.20037'), 'the StartTLS request went through the relay');
    assert.ok(!sent.includes(grace), "the person's password is not in the clear");
    assert.ok(!sent.includes('svc-secret'), "the service account's password is not in the clear");
    assert.ok(!sent.includes('uid=grace'), 'nor is their DN');
    // The relay does see a bind without TLS (allowed on loopback only).
    const heidi = 'heidi-Unm1stakable-pw';
    assert.equal((await signIn('heidi', heidi, 'relay-plain')).status, 200);
    assert.ok(plainRelay.sent().includes(heidi));
  });

  it("takes the directory password on the wire, as PostgreSQL's ldap method does; a JWT stays a token", async () => {
    // The startup user name is the LDAP one; the password the directory's.
    const client = await t.client('alice', { password: 'alice-pw' });
    const row = (await client.query('select current_user, session_user')).rows[0];
    assert.ok(row.current_user.length > 0);
    await client.end();
    const wrong = await t.refusal('alice', { password: 'not-alices' });
    assert.equal(wrong.code, '28P01');
    const nobody = await t.refusal('nobody', { password: 'whatever' });
    assert.equal(nobody.code, '28P01');
    // A token is still a token: alice signed in through the API connects with it as her email.
    const res = await signIn('alice', 'alice-pw');
    const withToken = await t.client('alice@corp.example', { password: res.body.access_token });
    await withToken.end();
    // And the session is audited under the person the directory knows.
    await t.stack.gateway.audit.flush();
    const { rows } = await t
      .store()
      .query(
        "select email, provider from pgward.session where email = 'alice@corp.example' and provider = 'corp-ldap'",
      );
    assert.ok(rows.length >= 2);
  });

  it('refuses wire passwords where a password could not be told from a token', () => {
    const ldapProvider = (name: string, wirePassword: boolean) => ({
      name,
      type: 'ldap',
      clientId: SERVICE,
      clientSecret: 'x',
      ldap: { url: 'ldaps://dc1.corp.example', userBase: 'dc=corp', wirePassword },
    });
    const two = configSchema.safeParse({ providers: [ldapProvider('a', true), ldapProvider('b', true)] });
    assert.ok(!two.success);
    assert.deepEqual(two.error.issues[0]?.path, ['providers', 1, 'ldap', 'wirePassword']);
    const opaque = configSchema.safeParse({
      providers: [
        ldapProvider('a', true),
        { name: 'okta', issuer: 'https://corp.okta.example', clientId: 'x', validation: 'userinfo' },
      ],
    });
    assert.ok(!opaque.success);
    assert.match(opaque.error.issues[0]!.message, /opaque tokens/);
    assert.ok(
      configSchema.safeParse({ providers: [ldapProvider('a', true), ldapProvider('b', false)] }).success,
    );
  });

  it('signs in at the console with the gateway form, refusing a form posted from elsewhere', async () => {
    const started = await fetch(`${http}/login/corp-ldap`, { redirect: 'manual' });
    assert.equal(started.status, 302);
    assert.equal(new URL(started.headers.get('location')!).pathname, '/login/ldap/corp-ldap');
    const cookie = started.headers
      .getSetCookie()
      .find((c) => c.startsWith('pgward_login='))!
      .split(';')[0]!;
    const page = await (await fetch(`${http}/login/ldap/corp-ldap`, { headers: { cookie } })).text();
    const state = /name="state" value="([^"]+)"/.exec(page)![1]!;
    const post = (headers: Record<string, string>, form: Record<string, string>) =>
      fetch(`${http}/login/ldap/corp-ldap`, {
        method: 'POST',
        redirect: 'manual',
        headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers },
        body: new URLSearchParams(form),
      });
    assert.equal(
      (await post({}, { username: 'alice', password: 'alice-pw', state })).status,
      401,
      'no login cookie',
    );
    const wrong = await post({ cookie }, { username: 'alice', password: 'nope', state });
    assert.equal(wrong.status, 401);
    assert.match(await wrong.text(), /wrong user name or password/);
    const ok = await post({ cookie }, { username: 'alice', password: 'alice-pw', state });
    assert.equal(ok.status, 302);
    assert.equal(ok.headers.get('location'), '/login/done');
    const access = ok.headers
      .getSetCookie()
      .find((c) => c.startsWith('pgward_access='))!
      .split(';')[0]!;
    const me = await fetch(`${http}/api/v1/whoami`, { headers: { cookie: access } });
    assert.equal(((await me.json()) as { email: string }).email, 'alice@corp.example');
  });

  it('signs in with `pgward login --browser` through the password form', async () => {
    const home = tempDir('ldap-cli');
    const browserLog = path.join(home, 'browser.log');
    const env = { XDG_CONFIG_HOME: home, PGWARD_GATEWAY: http };
    const login = await runCli(['login', '--browser', '--provider', 'corp-ldap'], {
      env: {
        ...env,
        BROWSER: `${process.execPath} ${path.join(PACKAGE_ROOT, 'dist', 'test', 'support', 'walking_browser.js')}`,
        PGWARD_TEST_IDP: http,
        PGWARD_TEST_EMAIL: 'erin',
        PGWARD_TEST_BROWSER_LOG: browserLog,
      },
    });
    assert.equal(
      login.code,
      0,
      `${login.stderr}\n${existsSync(browserLog) ? readFileSync(browserLog, 'utf8') : ''}`,
    );
    assert.match(login.stdout, /as erin@corp\.example \(corp-ldap\)/);
  });

  it('reads the person again at refresh: a group removed in the directory is gone', async () => {
    const grant = await signIn('alice', 'alice-pw');
    await directory.replace(dn('cn', 'dba'), 'member', [dn('uid', 'frank')]);
    try {
      const refreshed = await call<Grant>(http, 'POST', '/api/v1/auth/token', {
        body: { grant_type: 'refresh_token', refresh_token: grant.body.refresh_token },
      });
      assert.equal(refreshed.status, 200, JSON.stringify(refreshed.body));
      assert.deepEqual(refreshed.body.person.groups.sort(), ['corp-ldap:loop-a', 'corp-ldap:loop-b']);
    } finally {
      await directory.replace(dn('cn', 'dba'), 'member', [dn('uid', 'alice'), dn('uid', 'frank')]);
    }
  });
});
