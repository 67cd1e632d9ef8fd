import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, beforeEach, describe, it } from 'node:test';
import { stringify } from 'yaml';
import { loadConfig } from '../src/config/load.js';
import { providerFromSeedRow } from '../src/config/provider_formats.js';
import { type ProviderInput, providerSchema } from '../src/config/schema.js';
import { IdpPageWalker } from '../src/dev/dev_login.js';
import type { DevUser } from '../src/dev/dev_users.js';
import { PgwardError } from '../src/errors.js';
import { EntraGraph, GRAPH_GROUPS_TTL_MS } from '../src/identity/entra_graph.js';
import { TokenVerifier, USERINFO_TTL_MS, type VerifiedIdentity } from '../src/identity/token_verifier.js';
import { call, deviceLogin } from './support/api.js';
import { runCli } from './support/cli.js';
import { startTestStack, type TestStack } from './support/dev_stack.js';
import { type FakeGraph, groupIds, startFakeGraph } from './support/fake_graph.js';
import { quietLog } from './support/quiet_log.js';
import { tempDir } from './support/temp_dir.js';
import {
  auth0AccessClaims,
  cognitoAccessClaims,
  startUserinfoIssuer,
  type UserinfoIssuer,
} from './support/userinfo_issuer.js';
import { startVendorIdps, TENANT_A, TENANT_B, TENANT_C, type VendorIdps } from './support/vendor_idps.js';

/** Object ids (oid) of people in too many groups, and the app registration's secret for Graph. */
const GIL_OID = '44444444-4444-4444-8444-444444444444';
const HUE_OID = '55555555-5555-4555-8555-555555555555';
const GRAPH_SECRET = 'graph-app-secret-never-shown';
const overage = (tid: string, oid?: string) => ({
  tid,
  ...(oid ? { oid } : {}),
  groups: undefined,
  hasgroups: true,
  _claim_names: { groups: 'src1' },
});

/** The configuration's answer to one provider: its problems, as `loadConfig` words them. */
function problems(provider: Record<string, unknown>): string {
  const file = path.join(tempDir('preset-config'), 'pgward.yaml');
  writeFileSync(file, stringify({ providers: [{ name: 'p', clientId: 'pgward', ...provider }] }));
  try {
    loadConfig({ file, env: {} });
    return '';
  } catch (err) {
    assert.ok(err instanceof PgwardError && err.code === 'CONFIG_INVALID', String(err));
    return err.message.replace(/ \(from [^)]*\)/g, '');
  }
}

describe('provider presets: settings', () => {
  it('keeps a generic provider as it was', () => {
    const p = providerSchema.parse({ name: 'g', issuer: 'https://idp.example.com', clientId: 'c' });
    assert.equal(p.type, 'generic');
    assert.deepEqual(p.issuers, ['https://idp.example.com']);
    assert.deepEqual(p.audiences, ['c']);
    assert.deepEqual(p.claims, {
      subject: ['sub'],
      email: ['email'],
      name: ['name'],
      groups: ['groups'],
      roles: [],
    });
    assert.match(problems({}), /providers\.0\.issuer: is required for type generic/);
  });

  it('refuses what is unsafe for each vendor, naming the setting', () => {
    const cases: [Record<string, unknown>, RegExp][] = [
      [{ type: 'google' }, /providers\.0\.google\.hostedDomain: is required: without it any Google account/],
      [
        { type: 'google', google: { hostedDomain: 'company.com', unsafeAllowAnyAccount: true } },
        /providers\.0\.google\.unsafeAllowAnyAccount: contradicts/,
      ],
      [
        { type: 'google', google: { hostedDomain: 'company.com' }, claims: { groups: 'groups' } },
        /providers\.0\.claims\.groups: Google's tokens carry no groups/,
      ],
      [{ type: 'azuread' }, /providers\.0\.azuread\.tenantId: is required/],
      [
        { type: 'azuread', azuread: { tenantId: 'organizations' } },
        /providers\.0\.azuread\.allowedTenants: is required with tenantId organizations: a multi-tenant app would accept every/,
      ],
      [
        { type: 'azuread', azuread: { tenantId: 'consumers' } },
        /providers\.0\.azuread\.tenantId: expected the directory \(tenant\) id/,
      ],
      [
        { type: 'azuread', azuread: { tenantId: TENANT_A }, issuer: 'https://x.example' },
        /providers\.0\.issuer: is derived from azuread\.tenantId/,
      ],
      [
        { type: 'azuread', azuread: { tenantId: TENANT_A }, validation: 'userinfo' },
        /providers\.0\.validation: Entra ID's userinfo is Microsoft Graph's/,
      ],
      [
        { type: 'azuread', azuread: { tenantId: TENANT_A, graph: {} } },
        /providers\.0\.azuread\.graph: needs the provider's clientSecret/,
      ],
      [
        { type: 'auth0', issuer: 'https://company.eu.auth0.com/' },
        /providers\.0\.audience: is required for Auth0/,
      ],
      [
        { type: 'auth0', issuer: 'https://company.eu.auth0.com', audience: 'https://api' },
        /providers\.0\.issuer: Auth0's issuer ends with "\/"/,
      ],
      [
        { type: 'okta', issuer: 'https://company.okta.com/oauth2/aus1' },
        /providers\.0\.audience: is required with the custom authorization server aus1/,
      ],
      [
        { type: 'okta', issuer: 'https://company.okta.com', audience: 'api://pgward' },
        /providers\.0\.audience: the org authorization server's access tokens are for Okta's own APIs/,
      ],
      [
        { type: 'okta', issuer: 'https://company.okta.com/' },
        /providers\.0\.issuer: Okta's issuer has no trailing slash/,
      ],
      [
        { type: 'cognito', cognito: { region: 'eu-west-1', userPoolId: 'us-east-1_Abc' } },
        /providers\.0\.cognito\.userPoolId: is not a pool of region eu-west-1/,
      ],
      [
        { type: 'keycloak', issuer: 'https://sso.example.com' },
        /providers\.0\.issuer: Keycloak's issuer is the realm's URL/,
      ],
      [
        { type: 'generic', issuer: 'https://idp.example.com', google: { hostedDomain: 'a.com' } },
        /providers\.0\.google: is a setting of type google; this provider is type generic/,
      ],
      [
        { type: 'gogle', issuer: 'https://idp.example.com' },
        /providers\.0\.type: expected one of generic, google, azuread/,
      ],
    ];
    for (const [provider, expected] of cases)
      assert.match(problems(provider), expected, JSON.stringify(provider));
  });

  it('derives issuers and audiences from the vendor settings', () => {
    const azure = providerSchema.parse({
      name: 'entra',
      type: 'azuread',
      clientId: 'app-id',
      azuread: { tenantId: 'organizations', allowedTenants: [TENANT_A, TENANT_B] },
    });
    assert.equal(azure.issuer, 'https://login.microsoftonline.com/organizations/v2.0');
    assert.deepEqual(azure.issuers, [
      `https://login.microsoftonline.com/${TENANT_A}/v2.0`,
      `https://sts.windows.net/${TENANT_A}/`,
      `https://login.microsoftonline.com/${TENANT_B}/v2.0`,
      `https://sts.windows.net/${TENANT_B}/`,
    ]);
    assert.deepEqual(azure.audiences, ['app-id', 'api://app-id']);
    const cognito = providerSchema.parse({
      name: 'aws',
      type: 'cognito',
      clientId: 'c',
      cognito: { region: 'eu-west-1', userPoolId: 'eu-west-1_AbC123' },
    });
    assert.equal(cognito.issuer, 'https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_AbC123');
    assert.deepEqual(cognito.claims.groups, ['cognito:groups']);
    const okta = providerSchema.parse({
      name: 'o',
      type: 'okta',
      clientId: 'c',
      issuer: 'https://c.okta.com/oauth2/default',
    });
    assert.deepEqual(okta.audiences, ['api://default']);
    const google = providerSchema.parse({
      name: 'gg',
      type: 'google',
      clientId: 'c',
      google: { hostedDomain: 'Company.com' },
    });
    assert.equal(google.issuer, 'https://accounts.google.com');
    assert.deepEqual(google.google?.hostedDomain, ['company.com']);
    assert.equal(google.claims.groups, null);
  });

  it("reads seed 004's provider rows (azuread, google, saml, windows)", () => {
    const row = (provider_type: string, configuration: Record<string, unknown>) =>
      providerFromSeedRow({ provider_type, configuration });
    const azure = providerSchema.parse({
      name: 'azure-ad',
      ...row('azuread', {
        tenant_id: '12345678-1234-1234-1234-123456789012',
        client_id: 'app-registration-id',
        authority: 'https://login.microsoftonline.com/tenant-id',
        group_claims: ['groups', 'roles'],
        sync_groups: true,
        sync_roles: true,
      }),
    });
    assert.equal(azure.issuer, 'https://login.microsoftonline.com/12345678-1234-1234-1234-123456789012/v2.0');
    assert.deepEqual([azure.claims.groups, azure.claims.roles], [['groups'], [['roles']]]);
    const google = providerSchema.parse({
      name: 'google-oauth',
      ...row('google', {
        client_id: 'google-app-client-id.apps.googleusercontent.com',
        hosted_domain: 'company.com',
        sync_groups: false,
      }),
    });
    assert.deepEqual(google.google?.hostedDomain, ['company.com']);
    // Seed 004's certificate is a placeholder: refused, naming the setting.
    const saml = providerSchema.safeParse({
      name: 'okta-saml',
      clientId: 'urn:pgward',
      ...row('saml', {
        sso_url: 'https://company.okta.com/app/saml/xyz/sso/saml',
        issuer: 'http://www.okta.com/xyz',
        certificate: '-----BEGIN CERTIFICATE-----...',
        group_attribute: 'groups',
        role_attribute: 'roles',
        user_id_attribute: 'uid',
      }),
    });
    assert.deepEqual(
      saml.error?.issues.map((i) => i.path.join('.')),
      ['saml.certificate'],
    );
    const windows = providerSchema.parse({
      name: 'windows-auth',
      issuer: 'https://adfs.company.local/adfs',
      clientId: 'pgward',
      ...row('windows', {
        domain: 'COMPANY.LOCAL',
        trusted_domains: ['PARTNER.COM'],
        group_prefix: 'DOMAIN\\',
        sync_groups: true,
      }),
    });
    assert.deepEqual(windows.adGroups, {
      domain: 'COMPANY.LOCAL',
      trustedDomains: ['PARTNER.COM'],
      groupPrefix: 'DOMAIN\\',
    });
    assert.throws(
      () => row('facebook', {}),
      /provider\.provider_type: "facebook" is not one of seed 004's types/,
    );
  });

  it('explains each preset in `pgward config print`', async () => {
    const dir = tempDir('preset-print');
    const file = path.join(dir, 'pgward.yaml');
    writeFileSync(
      file,
      stringify({
        providers: [
          {
            name: 'google',
            type: 'google',
            clientId: 'c',
            clientSecret: 'never-printed',
            google: { hostedDomain: 'company.com' },
          },
          { name: 'entra', type: 'azuread', clientId: 'c', azuread: { tenantId: TENANT_A } },
        ],
      }),
    );
    const out = await runCli(['config', 'print', '--config', file], { env: { PGWARD_CONFIG: '' } });
    assert.equal(out.code, 0, out.stderr);
    const printed = JSON.parse(out.stdout) as { providers: { explain: string[] }[] };
    assert.match(
      printed.providers[0]!.explain.join('\n'),
      /only accounts of company\.com \(the hd claim is checked on every token\)/,
    );
    assert.match(printed.providers[0]!.explain.join('\n'), /Google's tokens carry no groups/);
    assert.match(printed.providers[1]!.explain.join('\n'), /single tenant 11111111-/);
    assert.match(printed.providers[1]!.explain.join('\n'), /overage/);
    assert.doesNotMatch(out.stdout, /never-printed/);
  });
});

const user = (
  sub: string,
  email: string,
  groups: string[],
  claims: Record<string, unknown> = {},
): DevUser => ({
  sub,
  email,
  name: sub,
  groups,
  claims,
});

describe("provider presets against real OpenID providers issuing the vendors' token shapes", () => {
  let idps: VendorIdps;
  const issuers: Record<string, string> = {};

  before(async () => {
    idps = await startVendorIdps();
    const add = async (key: string, p: string, users: DevUser[], extra: string[] = []) => {
      issuers[key] = (await idps.add(p, users, extra)).issuer;
    };
    await add(
      'google',
      '/google',
      [
        user('g-1', 'ann@company.com', [], { hd: 'company.com' }),
        user('g-2', 'bob@other.com', [], { hd: 'other.com' }),
        user('g-3', 'cat@gmail.com', []),
      ],
      ['hd'],
    );
    // Entra ID: v2.0 issuers per tenant, the v1.0 issuer, and the multi-tenant discovery document.
    await add('azureA', `/${TENANT_A}/v2.0`, [
      user('a-1', 'dan@a.example', ['g-dba'], { tid: TENANT_A, roles: ['Reader'] }),
      user('a-2', 'eve@a.example', [], { tid: TENANT_B }),
      user('a-3', 'fay@a.example', [], overage(TENANT_A)),
      user('a-4', 'gil@a.example', [], overage(TENANT_A, GIL_OID)),
    ]);
    await add('azureB', `/${TENANT_B}/v2.0`, [
      user('b-1', 'gus@b.example', ['g-ops'], { tid: TENANT_B }),
      user('b-2', 'hue@b.example', [], overage(TENANT_B, HUE_OID)),
    ]);
    await add('azureC', `/${TENANT_C}/v2.0`, [user('c-1', 'hal@c.example', ['g-x'], { tid: TENANT_C })]);
    await add('azureOrgs', '/organizations/v2.0', []);
    await add('azureV1', `/v1/${TENANT_A}/`, [user('v1-1', 'ida@a.example', ['g-dba'], { tid: TENANT_A })]);
    await add('okta', '/oauth2/default', [user('o-1', 'jon@okta.example', ['Everyone', 'dba'])]);
    await add('auth0', '/auth0/', [
      user('auth0|1', 'kim@auth0.example', [], {
        'https://pgward.test/groups': ['dba'],
        'https://pgward.test/roles': ['reader'],
      }),
    ]);
    await add('cognito', '/eu-west-1_Pool1', [
      user('cg-1', 'lea@aws.example', [], { 'cognito:groups': ['dba'], token_use: 'access' }),
      user('cg-2', 'max@aws.example', [], { 'cognito:groups': ['dba'] }),
    ]);
    await add('keycloak', '/realms/company', [
      user('kc-1', 'ned@kc.example', ['/team/dba'], {
        realm_access: { roles: ['offline_access', 'dba'] },
        resource_access: { pgward: { roles: ['reader'] }, other: { roles: ['superuser'] } },
      }),
    ]);
    await add('jumpcloud', '/jc/', [user('jc-1', 'ola@jc.example', ['Engineering'])]);
    await add('windows', '/adfs', [
      user('w-1', 'pat@company.local', [
        'COMPANY\\DBAs',
        'partner\\Ops',
        'EVIL\\Admins',
        'DOMAIN\\Readers',
        'plain',
      ]),
    ]);
  });
  after(async () => {
    await idps?.close();
  });

  /** A verifier for `providers` (each with the dev client id unless it says otherwise). */
  function verifier(...providers: Record<string, unknown>[]): TokenVerifier {
    return verifierWith(new EntraGraph(), ...providers);
  }
  function verifierWith(graph: EntraGraph, ...providers: Record<string, unknown>[]): TokenVerifier {
    return new TokenVerifier(
      providers.map((p, i) =>
        providerSchema.parse({
          name: `p${i}`,
          clientId: 'pgward',
          algorithms: ['RS256'],
          ...p,
        } as ProviderInput),
      ),
      quietLog,
      undefined,
      undefined,
      { graph },
    );
  }
  async function refused(v: TokenVerifier, token: string, code: string, message?: RegExp): Promise<void> {
    await assert.rejects(v.verify(token), (err: unknown) => {
      assert.ok(err instanceof PgwardError, String(err));
      assert.equal(err.code, code, err.message);
      if (message) assert.match(err.message, message);
      return true;
    });
  }
  const access = async (key: string, email: string) => (await idps.tokens(issuers[key]!, email)).access_token;
  const idToken = async (key: string, email: string) => (await idps.tokens(issuers[key]!, email)).id_token;
  const ok = async (v: TokenVerifier, token: string): Promise<VerifiedIdentity> => v.verify(token);

  it('google: accepts the hosted domain, refuses another domain and a consumer account, and gives no groups', async () => {
    const v = verifier({
      type: 'google',
      issuer: issuers['google'],
      google: { hostedDomain: 'company.com' },
    });
    const ann = await ok(v, await idToken('google', 'ann@company.com'));
    assert.equal(ann.email, 'ann@company.com');
    assert.deepEqual(ann.groups, []);
    await refused(v, await idToken('google', 'bob@other.com'), 'TOKEN_ORGANIZATION', /belongs to other\.com/);
    await refused(
      v,
      await idToken('google', 'cat@gmail.com'),
      'TOKEN_ORGANIZATION',
      /not part of a Workspace domain/,
    );
    // Waived explicitly, the consumer account signs in.
    const any = verifier({
      type: 'google',
      issuer: issuers['google'],
      google: { unsafeAllowAnyAccount: true },
    });
    assert.equal((await ok(any, await idToken('google', 'cat@gmail.com'))).email, 'cat@gmail.com');
  });

  const azure = (settings: Record<string, unknown>) => ({
    type: 'azuread',
    azuread: { authority: idps.origin, v1Authority: `${idps.origin}/v1`, ...settings },
  });

  it('azuread: single tenant takes v2.0 and v1.0 tokens with groups and roles, and refuses other tenants', async () => {
    const v = verifier(azure({ tenantId: TENANT_A }));
    const dan = await ok(v, await access('azureA', 'dan@a.example'));
    assert.deepEqual(dan.groups, ['g-dba']);
    assert.deepEqual(dan.roles, ['Reader']);
    assert.deepEqual((await ok(v, await access('azureV1', 'ida@a.example'))).groups, ['g-dba']);
    // A token of tenant B's issuer, and one of tenant A's issuer naming tenant B.
    await refused(
      v,
      await access('azureB', 'gus@b.example'),
      'TOKEN_ORGANIZATION',
      new RegExp(`tenant ${TENANT_B} is not allowed`),
    );
    await refused(v, await access('azureA', 'eve@a.example'), 'TOKEN_ORGANIZATION');
    const noV1 = verifier(azure({ tenantId: TENANT_A, acceptV1Tokens: false }));
    await refused(noV1, await access('azureV1', 'ida@a.example'), 'TOKEN_ORGANIZATION');
  });

  it('azuread: refuses the groups overage with a message instead of signing in without groups', async () => {
    const v = verifier(azure({ tenantId: TENANT_A }));
    await refused(v, await access('azureA', 'fay@a.example'), 'TOKEN_CLAIMS', /too many groups \(overage\)/);
  });

  describe('azuread: the groups overage read from Microsoft Graph (azuread.graph)', () => {
    let graph: FakeGraph;
    let clock = 0;
    const reader = () => new EntraGraph(() => Date.now() + clock);
    const GIL_GROUPS = groupIds('aaaaaaaa', 250);
    before(async () => {
      graph = await startFakeGraph({ clientId: 'pgward', clientSecret: GRAPH_SECRET });
    });
    after(async () => {
      await graph?.close();
    });
    beforeEach(() => {
      clock = 0;
      graph.mode = 'normal';
      graph.pageSize = 100;
      graph.tokenRequests = 0;
      graph.graphRequests = 0;
      graph.people.set(GIL_OID, { tid: TENANT_A, groups: GIL_GROUPS });
      graph.people.set(HUE_OID, { tid: TENANT_B, groups: groupIds('bbbbbbbb', 3) });
    });
    const withGraph = (settings: Record<string, unknown>, secret = GRAPH_SECRET) => ({
      ...azure({ ...settings, graph: { graphUrl: graph.url, authority: graph.url } }),
      clientSecret: secret,
    });
    async function failsClosed(v: TokenVerifier, token: string, message: RegExp): Promise<PgwardError> {
      let caught: PgwardError | undefined;
      await assert.rejects(v.verify(token), (err: unknown) => {
        assert.ok(err instanceof PgwardError, String(err));
        assert.equal(err.code, 'IDP_UNREACHABLE', err.message);
        assert.match(err.message, /too many groups for Entra ID's token \(overage\)/);
        assert.match(err.message, message);
        caught = err;
        return true;
      });
      const shown = JSON.stringify({ message: caught!.message, hint: caught!.hint, detail: caught!.detail });
      assert.doesNotMatch(shown, new RegExp(GRAPH_SECRET));
      return caught!;
    }

    it('reads every page of group ids as the app, reusing its token and the answer for a minute', async () => {
      const v = verifierWith(reader(), withGraph({ tenantId: TENANT_A }));
      const token = await access('azureA', 'gil@a.example');
      const gil = await ok(v, token);
      assert.deepEqual([...gil.groups].sort(), [...GIL_GROUPS].sort());
      assert.equal(graph.graphRequests, 3, 'three pages of 100');
      assert.equal(graph.tokenRequests, 1);
      assert.deepEqual(graph.lastTokenRequest, {
        grant_type: 'client_credentials',
        client_id: 'pgward',
        client_secret: '(masked)',
        scope: `${graph.url}/.default`,
      });
      await ok(v, token);
      assert.equal(graph.graphRequests, 3, 'the answer is reused');
      clock += GRAPH_GROUPS_TTL_MS + 1_000;
      assert.equal((await ok(v, token)).groups.length, 250);
      assert.deepEqual(
        [graph.graphRequests, graph.tokenRequests],
        [6, 1],
        'read again with the same app token',
      );
      // Shortly before the app token's hour ends, a new one is asked for.
      clock += 3_599_000 - 5 * 60_000;
      await ok(v, token);
      assert.equal(graph.tokenRequests, 2);
    });

    it('gets one app token per tenant of a multi-tenant app', async () => {
      const v = verifierWith(
        reader(),
        withGraph({ tenantId: 'organizations', allowedTenants: [TENANT_A, TENANT_B] }),
      );
      assert.equal((await ok(v, await access('azureA', 'gil@a.example'))).groups.length, 250);
      assert.deepEqual(
        (await ok(v, await access('azureB', 'hue@b.example'))).groups,
        groupIds('bbbbbbbb', 3),
      );
      assert.equal(graph.tokenRequests, 2);
    });

    it('fails closed when Graph refuses, is down or slow, or the app secret is wrong, never "no groups"', async () => {
      const token = await access('azureA', 'gil@a.example');
      graph.mode = 'forbidden';
      const forbidden = await failsClosed(
        verifierWith(reader(), withGraph({ tenantId: TENANT_A })),
        token,
        /answered 403/,
      );
      assert.match(forbidden.hint ?? '', /GroupMember\.Read\.All/);
      graph.mode = 'down';
      await failsClosed(verifierWith(reader(), withGraph({ tenantId: TENANT_A })), token, /did not answer/);
      graph.mode = 'slow';
      const started = Date.now();
      await failsClosed(verifierWith(reader(), withGraph({ tenantId: TENANT_A })), token, /did not answer/);
      assert.ok(Date.now() - started < 8_000, `bounded: ${Date.now() - started} ms`);
      graph.mode = 'normal';
      const wrong = verifierWith(reader(), withGraph({ tenantId: TENANT_A }, 'a-wrong-secret'));
      const refused = await failsClosed(wrong, token, /answered 401 to pgward's client credentials/);
      assert.doesNotMatch(JSON.stringify(refused), /a-wrong-secret/);
      // Someone Graph does not know in that tenant.
      graph.people.delete(GIL_OID);
      await failsClosed(verifierWith(reader(), withGraph({ tenantId: TENANT_A })), token, /answered 404/);
      // A failure is not kept: once Graph answers, the person signs in.
      graph.people.set(GIL_OID, { tid: TENANT_A, groups: GIL_GROUPS });
      const v = verifierWith(reader(), withGraph({ tenantId: TENANT_A }));
      graph.mode = 'forbidden';
      await failsClosed(v, token, /answered 403/);
      graph.mode = 'normal';
      assert.equal((await ok(v, token)).groups.length, 250);
      // An app token Graph no longer takes is dropped: the next sign-in gets a new one.
      clock += GRAPH_GROUPS_TTL_MS + 1_000;
      graph.revokeTokens();
      await failsClosed(v, token, /answered 401 to reading their groups/);
      const before = graph.tokenRequests;
      assert.equal((await ok(v, token)).groups.length, 250);
      assert.equal(graph.tokenRequests, before + 1);
    });

    it('caps the pages and groups, and sends the app token to Graph only', async () => {
      const token = await access('azureA', 'gil@a.example');
      const fresh = () => verifierWith(reader(), withGraph({ tenantId: TENANT_A }));
      graph.people.set(GIL_OID, { tid: TENANT_A, groups: groupIds('cccccccc', 600) });
      graph.pageSize = 999;
      await failsClosed(fresh(), token, /more than 512 groups/);
      graph.people.set(GIL_OID, { tid: TENANT_A, groups: groupIds('dddddddd', 5) });
      graph.pageSize = 1;
      graph.mode = 'endless';
      await failsClosed(fresh(), token, /more than 10 pages/);
      assert.equal(graph.graphRequests, 11, 'no page past the cap');
      graph.mode = 'foreign-next-link';
      await failsClosed(fresh(), token, /next page is not at http:\/\/127\.0\.0\.1/);
    });

    it('refuses an overage without an object id, and a tenant not allowed, without asking Graph', async () => {
      const v = verifierWith(reader(), withGraph({ tenantId: TENANT_A }));
      await refused(v, await access('azureA', 'fay@a.example'), 'TOKEN_CLAIMS', /object id \(oid\)/);
      await refused(v, await access('azureB', 'hue@b.example'), 'TOKEN_ORGANIZATION');
      // Claims of a sign-in's ID token naming another tenant are left to the preset checks.
      const provider = providerSchema.parse({
        name: 'e',
        clientId: 'pgward',
        ...withGraph({ tenantId: TENANT_A }),
      });
      const claims = { sub: 's', ...overage(TENANT_B, HUE_OID) };
      assert.equal(await reader().complete(provider, claims), claims);
      assert.deepEqual([graph.tokenRequests, graph.graphRequests], [0, 0]);
    });
  });

  it('azuread: a multi-tenant app takes only the tenants allowed', async () => {
    const v = verifier(azure({ tenantId: 'organizations', allowedTenants: [TENANT_A, TENANT_B] }));
    assert.deepEqual((await ok(v, await access('azureA', 'dan@a.example'))).groups, ['g-dba']);
    assert.deepEqual((await ok(v, await access('azureB', 'gus@b.example'))).groups, ['g-ops']);
    await refused(
      v,
      await access('azureC', 'hal@c.example'),
      'TOKEN_ORGANIZATION',
      new RegExp(`tenant ${TENANT_C} is not allowed`),
    );
  });

  it('okta: a custom authorization server expects its own audience', async () => {
    const token = await access('okta', 'jon@okta.example');
    await refused(
      verifier({ type: 'okta', issuer: issuers['okta'] }),
      token,
      'TOKEN_AUDIENCE',
      /api:\/\/default/,
    );
    const v = verifier({ type: 'okta', issuer: issuers['okta'], audience: 'pgward' });
    assert.deepEqual((await ok(v, token)).groups, ['Everyone', 'dba']);
  });

  it('auth0: the audience is required and matched, groups and roles come from namespaced claims', async () => {
    const token = await access('auth0', 'kim@auth0.example');
    const base = {
      type: 'auth0',
      issuer: issuers['auth0'],
      auth0: { claimNamespace: 'https://pgward.test/' },
    };
    await refused(verifier({ ...base, audience: 'https://api.company.example' }), token, 'TOKEN_AUDIENCE');
    const kim = await ok(verifier({ ...base, audience: 'pgward' }), token);
    assert.deepEqual(kim.groups, ['dba']);
    assert.deepEqual(kim.roles, ['reader']);
  });

  it('cognito: groups from cognito:groups; an access token must be of this app client; token_use is required', async () => {
    const base = { type: 'cognito', issuer: issuers['cognito'] };
    const token = await access('cognito', 'lea@aws.example');
    assert.deepEqual((await ok(verifier(base), token)).groups, ['dba']);
    await refused(
      verifier({ ...base, clientId: 'another-app-client' }),
      token,
      'TOKEN_AUDIENCE',
      /another app client/,
    );
    await refused(verifier(base), await access('cognito', 'max@aws.example'), 'TOKEN_CLAIMS', /token_use/);
  });

  it("keycloak: realm roles and this client's roles, not another client's", async () => {
    const v = verifier({ type: 'keycloak', issuer: issuers['keycloak'] });
    const ned = await ok(v, await access('keycloak', 'ned@kc.example'));
    assert.deepEqual(ned.roles, ['offline_access', 'dba', 'reader']);
    assert.deepEqual(ned.groups, ['/team/dba']);
  });

  it('jumpcloud: groups from the group attribute', async () => {
    const v = verifier({ type: 'jumpcloud', issuer: issuers['jumpcloud'] });
    assert.deepEqual((await ok(v, await access('jumpcloud', 'ola@jc.example'))).groups, ['Engineering']);
  });

  it('Windows group names: the own domain loses its prefix, trusted ones stay qualified, others are dropped', async () => {
    const token = await access('windows', 'pat@company.local');
    const v = verifier({
      issuer: issuers['windows'],
      adGroups: { domain: 'COMPANY.LOCAL', trustedDomains: ['PARTNER.COM'], groupPrefix: 'DOMAIN\\' },
    });
    assert.deepEqual((await ok(v, token)).groups, ['DBAs', 'partner\\Ops', 'Readers', 'plain']);
    // Without the setting, names are kept exactly as the IdP sends them.
    const plain = verifier({ issuer: issuers['windows'] });
    assert.equal((await ok(plain, token)).groups.length, 5);
  });
});

describe('auth0 and cognito: the email of an access token read from userinfo', () => {
  const API = 'https://api.company.example';
  const NS = 'https://pgward.test/';
  let issuer: UserinfoIssuer;
  let clock = 0;
  before(async () => {
    issuer = await startUserinfoIssuer();
    issuer.people.set('auth0|1', { email: 'kim@auth0.example', email_verified: true, name: 'Kim' });
    issuer.people.set('auth0|2', { name: 'Nobody' });
    issuer.people.set('cg-1', { email: 'lea@aws.example', email_verified: 'true', username: 'cg-1' });
  });
  after(async () => {
    await issuer?.close();
  });
  beforeEach(() => {
    clock = 0;
    issuer.mode = 'normal';
    issuer.userinfoCalls = 0;
  });
  function verifier(p: Record<string, unknown>): TokenVerifier {
    const provider = providerSchema.parse({ name: 'p', clientId: 'pgward', algorithms: ['RS256'], ...p });
    return new TokenVerifier([provider], quietLog, undefined, undefined, { now: () => Date.now() + clock });
  }
  const auth0 = () =>
    verifier({ type: 'auth0', issuer: issuer.auth0, audience: API, auth0: { claimNamespace: NS } });
  const cognito = () => verifier({ type: 'cognito', issuer: issuer.cognito });
  const auth0Token = (sub: string, extra: Record<string, unknown> = {}) =>
    issuer.mint(issuer.auth0, {
      ...auth0AccessClaims(issuer.auth0, sub, API),
      [`${NS}groups`]: ['dba'],
      ...extra,
    });
  async function refused(v: TokenVerifier, token: string, code: string, message: RegExp): Promise<void> {
    await assert.rejects(v.verify(token), (err: unknown) => {
      assert.ok(err instanceof PgwardError, String(err));
      assert.equal(err.code, code, err.message);
      assert.match(err.message, message);
      return true;
    });
  }

  it('auth0: completes an access token without email, reusing the answer for that token for a minute', async () => {
    const v = auth0();
    const token = await auth0Token('auth0|1');
    const kim = await v.verify(token);
    assert.deepEqual([kim.email, kim.emailVerified, kim.groups], ['kim@auth0.example', true, ['dba']]);
    assert.equal(issuer.userinfoCalls, 1);
    await v.verify(token);
    assert.equal(issuer.userinfoCalls, 1, 'reused');
    clock += USERINFO_TTL_MS + 1_000;
    assert.equal((await v.verify(token)).email, 'kim@auth0.example');
    assert.equal(issuer.userinfoCalls, 2, 'asked again after a minute');
    await v.verify(await auth0Token('auth0|1', { jti: 'another token' }));
    assert.equal(issuer.userinfoCalls, 3, 'another token is asked about');
  });

  it("cognito: an access token (no aud, client_id) gets its email from the pool's userinfo", async () => {
    const lea = await cognito().verify(
      await issuer.mint(issuer.cognito, cognitoAccessClaims('cg-1', 'pgward', ['dba'])),
    );
    // Cognito's userinfo says email_verified "true", a string.
    assert.deepEqual([lea.email, lea.emailVerified, lea.groups], ['lea@aws.example', true, ['dba']]);
    assert.equal(issuer.userinfoCalls, 1);
  });

  it('needs no userinfo call for an ID token or an access token that carries the email', async () => {
    const idToken = await issuer.mint(issuer.cognito, {
      sub: 'cg-1',
      aud: 'pgward',
      token_use: 'id',
      email: 'lea@aws.example',
      email_verified: true,
      'cognito:groups': ['dba'],
    });
    assert.equal((await cognito().verify(idToken)).email, 'lea@aws.example');
    const withEmail = await auth0Token('auth0|1', { email: 'kim@auth0.example' });
    assert.equal((await auth0().verify(withEmail)).email, 'kim@auth0.example');
    assert.equal(issuer.userinfoCalls, 0);
  });

  it('refuses a userinfo answer about another subject, or without an email', async () => {
    issuer.mode = 'another-subject';
    await refused(auth0(), await auth0Token('auth0|1'), 'TOKEN_CLAIMS', /userinfo names another subject/);
    issuer.mode = 'normal';
    await refused(
      auth0(),
      await auth0Token('auth0|2'),
      'TOKEN_CLAIMS',
      /neither the token nor p's userinfo gives an email/,
    );
  });

  it('fails closed when userinfo is down, slow, refuses the token or answers too much', async () => {
    const v = auth0();
    const token = await auth0Token('auth0|1');
    issuer.mode = 'down';
    await refused(v, token, 'IDP_UNREACHABLE', /userinfo endpoint, which gives it, failed/);
    issuer.mode = 'slow';
    const started = Date.now();
    await refused(v, token, 'IDP_UNREACHABLE', /did not answer/);
    assert.ok(Date.now() - started < 7_000, `bounded: ${Date.now() - started} ms`);
    issuer.mode = 'unauthorized';
    await refused(v, token, 'TOKEN_INVALID', /does not accept this token/);
    issuer.mode = 'huge';
    await refused(v, token, 'IDP_UNREACHABLE', /oversized/);
    // A token Auth0 did not issue for its userinfo too (no openid scope) is refused there.
    issuer.mode = 'normal';
    const apiOnly = await issuer.mint(issuer.auth0, { sub: 'auth0|1', aud: [API], scope: 'read' });
    await refused(v, apiOnly, 'TOKEN_INVALID', /ask for the openid and email scopes/);
    // Failures are not kept.
    assert.equal((await v.verify(token)).email, 'kim@auth0.example');
  });
});

describe('a preset provider at the gateway: sign-in, the wire, the API and the CLI', () => {
  let idps: VendorIdps;
  let google: string;
  let entra: string;
  let userinfo: UserinfoIssuer;
  let graph: FakeGraph;
  const API = 'https://api.company.example';
  const mappedGroup = groupIds('eeeeeeee', 300)[299]!;
  let t: TestStack;
  let http: string;
  let admin: string;

  before(async () => {
    idps = await startVendorIdps();
    google = (
      await idps.add(
        '/google',
        [
          user('g-1', 'ann@company.com', [], { hd: 'company.com' }),
          user('g-2', 'bob@other.com', [], { hd: 'other.com' }),
        ],
        ['hd'],
      )
    ).issuer;
    // Entra ID's app registration is confidential: pgward holds its secret, for Graph too.
    entra = (
      await idps.add(
        `/${TENANT_A}/v2.0`,
        [user('a-4', 'gil@a.example', [], overage(TENANT_A, GIL_OID))],
        ['tid', 'oid', 'hasgroups', '_claim_names'],
        GRAPH_SECRET,
      )
    ).issuer;
    graph = await startFakeGraph({ clientId: 'pgward', clientSecret: GRAPH_SECRET });
    graph.people.set(GIL_OID, { tid: TENANT_A, groups: groupIds('eeeeeeee', 300) });
    userinfo = await startUserinfoIssuer();
    userinfo.people.set('auth0|1', { email: 'Kim@Auth0.example', email_verified: true });
    const file = path.join(tempDir('preset-stack'), 'pgward.yaml');
    writeFileSync(
      file,
      stringify({
        providers: [
          {
            name: 'google',
            type: 'google',
            issuer: google,
            clientId: 'pgward',
            algorithms: ['RS256'],
            google: { hostedDomain: 'company.com' },
          },
          {
            name: 'auth0',
            type: 'auth0',
            issuer: userinfo.auth0,
            clientId: 'auth0-client-id',
            audience: API,
            algorithms: ['RS256'],
            mappings: { groups: { dba: ['viewer'] } },
          },
          {
            name: 'entra-graph',
            type: 'azuread',
            clientId: 'pgward',
            clientSecret: GRAPH_SECRET,
            algorithms: ['RS256'],
            azuread: {
              tenantId: TENANT_A,
              authority: idps.origin,
              v1Authority: `${idps.origin}/v1`,
              graph: { graphUrl: graph.url, authority: graph.url },
            },
            mappings: { groups: { [mappedGroup]: ['viewer'] } },
          },
        ],
      }),
    );
    t = await startTestStack({ PGWARD_CONFIG: file });
    http = t.stack.info.http;
    admin = (await deviceLogin(http, t.stack.info.idp, 'admin@example.com')).access_token;
  });
  after(async () => {
    await t?.close();
    await idps?.close();
    await graph?.close();
    await userinfo?.close();
  });

  it('auth0: a person whose access token has no email signs up on the wire with the email of userinfo', async () => {
    const token = await userinfo.mint(userinfo.auth0, {
      ...auth0AccessClaims(userinfo.auth0, 'auth0|1', API),
      groups: ['dba'],
    });
    const client = await t.client('kim@auth0.example', { password: token });
    assert.equal((await client.query('select current_user')).rows[0].current_user, 'kim@auth0.example');
    await client.end();
    const { rows } = await t.store().query(
      `SELECT u.email, i.provider_user_id FROM pgward.user_info u JOIN pgward.user_identity i USING (user_id)
         JOIN pgward.provider p USING (provider_id) WHERE p.code = 'auth0'`,
    );
    assert.deepEqual(rows, [{ email: 'kim@auth0.example', provider_user_id: 'auth0|1' }]);
    assert.equal(userinfo.userinfoCalls, 1);
  });

  it('azuread: a person in too many groups gets them from Graph on the wire and at sign-in', async () => {
    const { access_token } = await idps.tokens(entra, 'gil@a.example');
    const client = await t.client('gil@a.example', { password: access_token });
    assert.equal((await client.query('select current_user')).rows[0].current_user, 'gil@a.example');
    await client.end();
    const grant = await deviceLogin(http, entra, 'gil@a.example', 'entra-graph');
    assert.ok(grant.person.groups.includes('viewer'), JSON.stringify(grant.person.groups));
    const { rows } = await t.store().query(
      `SELECT cardinality(i.provider_groups) AS n FROM pgward.user_identity i
         JOIN pgward.provider p USING (provider_id) WHERE p.code = 'entra-graph'`,
    );
    assert.deepEqual(rows, [{ n: 300 }]);
    assert.equal(graph.tokenRequests, 1, 'one app token for both');
  });

  it('signs in the hosted domain through the gateway, with groups from pgward only', async () => {
    const grant = await deviceLogin(http, google, 'ann@company.com', 'google');
    assert.equal(grant.person.email, 'ann@company.com');
    assert.deepEqual(grant.person.groups, []);
    const member = await call(http, 'PUT', '/api/v1/groups/viewer/members/ann@company.com', { token: admin });
    assert.equal(member.status, 204, JSON.stringify(member.body));
    const client = await t.client('ann@company.com', { password: grant.access_token });
    assert.equal((await client.query('select current_user')).rows[0].current_user, 'ann@company.com');
    await client.end();
    const { rows } = await t.store().query("SELECT provider_type FROM pgward.provider WHERE code = 'google'");
    assert.equal(rows[0]?.provider_type, 'google');
  });

  it('signs in at the console (authorization code + PKCE) only for the hosted domain', async () => {
    const ann = new IdpPageWalker(google);
    const done = await ann.walk(
      `${http}/login/google`,
      { email: 'ann@company.com', password: 'password' },
      (l) => l.endsWith('/login/done'),
    );
    assert.ok(done, 'reached /login/done');
    const me = await ann.request(`${http}/api/v1/whoami`);
    assert.equal(((await me.json()) as { email: string }).email, 'ann@company.com');
    const bob = new IdpPageWalker(google);
    // The IdP sends Bob back to the gateway's callback, which refuses his domain.
    const location = await bob.walk(
      `${http}/login/google`,
      { email: 'bob@other.com', password: 'password' },
      (l) => l.includes('/login/callback'),
    );
    const callback = await bob.request(location!);
    assert.equal(callback.status, 401);
    assert.match(await callback.text(), /TOKEN_ORGANIZATION|belongs to other\.com/);
  });

  it('refuses another domain at sign-in and on the wire', async () => {
    await assert.rejects(deviceLogin(http, google, 'bob@other.com', 'google'), /TOKEN_ORGANIZATION/);
    const { id_token } = await idps.tokens(google, 'bob@other.com');
    const refused = await t.refusal('bob@other.com', { password: id_token });
    assert.equal(refused.code, '28P01');
    assert.equal(refused.detail, 'pgward error TOKEN_ORGANIZATION');
    assert.match(refused.message, /belongs to other\.com/);
  });

  it('creates preset providers with `pgward admin create provider --type`, refusing unsafe ones', async () => {
    const env = { PGWARD_GATEWAY: http, PGWARD_TOKEN: admin };
    const unsafe = await runCli(
      ['admin', 'create', 'provider', 'g2', '--type', 'google', '--client-id', 'x'],
      { env },
    );
    assert.notEqual(unsafe.code, 0);
    assert.match(unsafe.stderr, /google\.hostedDomain: is required/);
    const created = await runCli(
      [
        'admin',
        'create',
        'provider',
        'entra',
        '--type',
        'azuread',
        '--client-id',
        'app',
        '--tenant-id',
        TENANT_A,
      ],
      { env },
    );
    assert.equal(created.code, 0, created.stderr);
    assert.match(created.stdout, new RegExp(`login.microsoftonline.com/${TENANT_A}/v2.0`));
    const { rows } = await t.store().query("SELECT provider_type FROM pgward.provider WHERE code = 'entra'");
    assert.equal(rows[0]?.provider_type, 'azuread');
    // A row of seed 004's provider table, as a file.
    const seedRow = path.join(tempDir('seed-row'), 'google.json');
    writeFileSync(
      seedRow,
      JSON.stringify({
        provider_type: 'google',
        configuration: { client_id: 'g.apps.googleusercontent.com', hosted_domain: 'company.com' },
      }),
    );
    const fromSeed = await runCli(['admin', 'create', 'provider', 'google-oauth', '--file', seedRow], {
      env,
    });
    assert.equal(fromSeed.code, 0, fromSeed.stderr);
    assert.match(fromSeed.stdout, /accounts\.google\.com/);
    // Their issuers are the vendors' own: removed, so the gateway stops fetching their keys.
    for (const name of ['entra', 'google-oauth']) {
      const gone = await runCli(['admin', 'delete', 'provider', name], { env });
      assert.equal(gone.code, 0, gone.stderr);
    }
  });
});
