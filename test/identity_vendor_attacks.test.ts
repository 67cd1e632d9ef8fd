/**
 * An attacker's pass over the identity providers (issue 18): someone with an account at some IdP
 * (or none) trying to be signed in as somebody else, into a group they are not in, or from an
 * organisation that is not allowed. Tokens are signed by a real OpenID provider's key (the dev
 * IdP, oidc-provider) and published in its JWKS, as the vendors' own would be; providers point
 * their `jwksUri` there, the way Entra ID's tenants share one key set. GitHub is a server that
 * answers like GitHub. Each attempt that pgward holds is a passing test; one that needs a fix in
 * a file another change owns is marked `todo`, naming the file.
 */
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { decodeJwt, exportJWK, generateKeyPair, importJWK, type JWK, type JWTPayload, SignJWT } from 'jose';
import { stringify } from 'yaml';
import { type ProviderInput, providerSchema } from '../src/config/schema.js';
import { type DevIdp, startDevIdp } from '../src/dev/dev_idp.js';
import { PgwardError } from '../src/errors.js';
import { mapClaims } from '../src/identity/claims.js';
import { TokenVerifier } from '../src/identity/token_verifier.js';
import { freePort } from '../src/store/free_port.js';
import { call, deviceLogin } from './support/api.js';
import { startTestStack, type TestStack } from './support/dev_stack.js';
import { type FakeGithub, type GithubUser, startFakeGithub } from './support/fake_github.js';
import { devIdpToken, gatewaySigningKey } from './support/idp_tokens.js';
import { quietLog } from './support/quiet_log.js';
import { tempDir } from './support/temp_dir.js';
import { TENANT_A, TENANT_B, TENANT_C } from './support/vendor_idps.js';

const ENTRA = 'https://login.microsoftonline.com';
const V1 = 'https://sts.windows.net';
const GOOGLE = 'https://accounts.google.com';
const COGNITO = 'https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_Pool1';
/** An Entra ID group (object id) mapped to pgward's admin group at the gateway. */
const DBA_GROUP = '0b9d0000-0000-4000-8000-00000000dba0';

/** A real OpenID provider whose key signs what the attacker wants signed. */
interface Forge {
  idp: DevIdp;
  jwksUri: string;
  kid: string;
  /** A token for `claims` signed with the IdP's key (RS256); `header` overrides the header. */
  sign(claims: JWTPayload & Record<string, unknown>, header?: Record<string, unknown>): Promise<string>;
}

async function startForge(): Promise<Forge> {
  const dir = tempDir('forge-idp');
  const idp = await startDevIdp({
    dir,
    host: '127.0.0.1',
    port: await freePort(),
    redirectUris: [],
    log: quietLog,
  });
  const { signing } = JSON.parse(readFileSync(path.join(dir, 'keys.json'), 'utf8')) as { signing: JWK };
  const key = await importJWK(signing, 'RS256');
  return {
    idp,
    jwksUri: `${idp.issuer}/jwks`,
    kid: signing.kid!,
    sign(claims, header = {}) {
      const now = Math.floor(Date.now() / 1000);
      return new SignJWT({ iat: now, exp: now + 3600, aud: 'pgward', ...claims })
        .setProtectedHeader({ alg: 'RS256', kid: signing.kid!, typ: 'JWT', ...header })
        .sign(key);
    },
  };
}

async function refused(promise: Promise<unknown>, code: string, message?: RegExp): Promise<void> {
  await assert.rejects(promise, (err: unknown) => {
    assert.ok(err instanceof PgwardError, String(err));
    assert.equal(err.code, code, err.message);
    if (message) assert.match(err.message, message);
    return true;
  });
}

describe('vendor attacks at the token verifier', () => {
  let forge: Forge;
  before(async () => {
    forge = await startForge();
  });
  after(async () => {
    await forge?.idp.close();
  });

  /** A verifier for one provider whose keys are the forge's. */
  const verifier = (p: Record<string, unknown>) =>
    new TokenVerifier(
      [
        providerSchema.parse({
          name: 'p',
          clientId: 'pgward',
          algorithms: ['RS256'],
          jwksUri: forge.jwksUri,
          ...p,
        } as ProviderInput),
      ],
      quietLog,
    );
  const person = { sub: 's-1', email: 'ann@company.com', email_verified: true };

  describe('google', () => {
    const google = () => verifier({ type: 'google', google: { hostedDomain: 'company.com' } });
    const token = (claims: Record<string, unknown>) => forge.sign({ iss: GOOGLE, ...person, ...claims });

    it('takes its Workspace domain, in any case (hd is the domain Google signs)', async () => {
      assert.equal((await google().verify(await token({ hd: 'company.com' }))).email, 'ann@company.com');
      assert.equal((await google().verify(await token({ hd: 'COMPANY.com' }))).email, 'ann@company.com');
    });

    it('refuses hd absent, another domain, look-alikes of the domain and hd that is not a string', async () => {
      const v = google();
      await refused(v.verify(await token({})), 'TOKEN_ORGANIZATION', /no hd claim/);
      for (const hd of [
        'other.com',
        'company.com.',
        ' company.com',
        'company.com.evil.com',
        'evilcompany.com',
        'compаny.com', // Cyrillic а
        'company.co',
        '',
      ]) {
        await refused(v.verify(await token({ hd })), 'TOKEN_ORGANIZATION', undefined);
      }
      for (const hd of [['company.com'], { domain: 'company.com' }, true]) {
        await refused(v.verify(await token({ hd })), 'TOKEN_ORGANIZATION', /no hd claim/);
      }
    });

    it('refuses a consumer account, even one whose email is at the Workspace domain', async () => {
      await refused(
        google().verify(await token({ email: 'ann@gmail.com' })),
        'TOKEN_ORGANIZATION',
        /not part of a Workspace domain/,
      );
      // A consumer Google account can be made for any address (its email is verified by mail).
      await refused(google().verify(await token({ email: 'ceo@company.com' })), 'TOKEN_ORGANIZATION');
    });

    it('decides by hd, not by the email domain', async () => {
      // A Workspace account of another domain whose email claims the company's domain is refused.
      await refused(
        google().verify(await token({ hd: 'other.com', email: 'ceo@company.com' })),
        'TOKEN_ORGANIZATION',
        /belongs to other\.com/,
      );
    });

    it('refuses a token of another issuer signed with the same keys', async () => {
      await refused(
        google().verify(await token({ hd: 'company.com', iss: 'https://accounts.google.com/' })),
        'TOKEN_UNKNOWN_ISSUER',
      );
    });
  });

  describe('azuread (Entra ID)', () => {
    const single = () => verifier({ type: 'azuread', azuread: { tenantId: TENANT_A } });
    const multi = (tenantId = 'organizations') =>
      verifier({ type: 'azuread', azuread: { tenantId, allowedTenants: [TENANT_A, TENANT_B] } });
    const v2 = (tenant: string) => `${ENTRA}/${tenant}/v2.0`;
    const token = (claims: Record<string, unknown>) =>
      forge.sign({ iss: v2(TENANT_A), tid: TENANT_A, ...person, email_verified: undefined, ...claims });

    it('accepts its tenant in v2.0 and v1.0 tokens', async () => {
      assert.equal((await single().verify(await token({}))).email, 'ann@company.com');
      await single().verify(await token({ iss: `${V1}/${TENANT_A}/` }));
    });

    it('refuses another tenant: by issuer, by tid, and tid of an allowed tenant under another issuer', async () => {
      await refused(
        single().verify(await token({ iss: v2(TENANT_C), tid: TENANT_C })),
        'TOKEN_ORGANIZATION',
        new RegExp(`tenant ${TENANT_C} is not allowed`),
      );
      // Tenant C's token claiming tenant A: the issuer is what Entra ID signs per tenant.
      await refused(single().verify(await token({ iss: v2(TENANT_C) })), 'TOKEN_ORGANIZATION');
      // An allowed tenant's issuer naming another tenant, allowed or not.
      await refused(multi().verify(await token({ tid: TENANT_B })), 'TOKEN_ORGANIZATION');
      await refused(single().verify(await token({ tid: TENANT_C })), 'TOKEN_ORGANIZATION');
      await refused(
        multi().verify(await token({ iss: `${V1}/${TENANT_C}/`, tid: TENANT_C })),
        'TOKEN_ORGANIZATION',
      );
    });

    it('refuses tid absent, not a string, or in another case of letters than its issuer', async () => {
      for (const tid of [undefined, 42, [TENANT_A], { id: TENANT_A }]) {
        await refused(single().verify(await token({ tid })), 'TOKEN_ORGANIZATION');
      }
    });

    it('refuses tokens of the common, organizations and consumers authorities and the issuer template', async () => {
      for (const tenant of ['common', 'organizations', 'consumers', '{tenantid}', '']) {
        await refused(
          multi('common').verify(await token({ iss: v2(tenant), tid: tenant })),
          'TOKEN_UNKNOWN_ISSUER',
        );
      }
    });

    it('refuses v1/v2 issuer confusion and v1.0 tokens when they are turned off', async () => {
      for (const iss of [
        `${V1}/${TENANT_A}/v2.0`,
        `${ENTRA}/${TENANT_A}/`,
        `${ENTRA}/${TENANT_A}`,
        `${V1}/${TENANT_A}`,
        `${ENTRA}/${TENANT_A}/v2.0/`,
        `https://login.microsoftonline.us/${TENANT_A}/v2.0`,
      ]) {
        await assert.rejects(single().verify(await token({ iss })), PgwardError, iss);
      }
      const noV1 = verifier({ type: 'azuread', azuread: { tenantId: TENANT_A, acceptV1Tokens: false } });
      await refused(noV1.verify(await token({ iss: `${V1}/${TENANT_A}/` })), 'TOKEN_ORGANIZATION');
    });

    it('confirmed not exploitable: a tid that is only a substring of the issuer cannot cross tenants', async () => {
      // tid is compared with iss.includes(`/${tid}/`): "" and the host name pass that test, but
      // only in a token whose issuer is already an allowed tenant's, which only Entra ID signs.
      for (const tid of ['', 'login.microsoftonline.com']) {
        await refused(single().verify(await token({ iss: v2(TENANT_C), tid })), 'TOKEN_ORGANIZATION');
        await refused(multi().verify(await token({ iss: v2(TENANT_C), tid })), 'TOKEN_ORGANIZATION');
      }
    });

    it('refuses a tid that is not exactly the tenant of its issuer ("" or the host name)', {
      todo: 'needs fix in src/identity/preset_checks.ts',
    }, async () => {
      for (const tid of ['', 'login.microsoftonline.com', 'v2.0']) {
        await refused(single().verify(await token({ tid })), 'TOKEN_ORGANIZATION');
      }
      await refused(
        single().verify(await token({ iss: `${V1}/${TENANT_A}/`, tid: 'sts.windows.net' })),
        'TOKEN_ORGANIZATION',
      );
    });

    it('refuses every groups overage marker, and keeps roles and groups apart', async () => {
      const v = single();
      for (const marker of [{ hasgroups: true }, { _claim_names: { groups: 'src1' } }]) {
        await refused(v.verify(await token({ ...marker })), 'TOKEN_CLAIMS', /overage/);
      }
      const both = await v.verify(await token({ groups: [DBA_GROUP], roles: ['Database.Reader'] }));
      assert.deepEqual([both.groups, both.roles], [[DBA_GROUP], ['Database.Reader']]);
    });
  });

  describe('cognito', () => {
    const cognito = (clientId = 'pgward') => verifier({ type: 'cognito', issuer: COGNITO, clientId });
    const token = (claims: Record<string, unknown>) => forge.sign({ iss: COGNITO, ...person, ...claims });

    it('takes an ID token for its app client and an access token of its app client', async () => {
      await cognito().verify(await token({ token_use: 'id' }));
      await cognito().verify(await token({ token_use: 'access', aud: undefined, client_id: 'pgward' }));
    });

    it('refuses token_use missing or unknown, and tokens of another app client', async () => {
      for (const token_use of [undefined, 'ID', 'refresh', 'id ', ['id'], true]) {
        await refused(cognito().verify(await token({ token_use })), 'TOKEN_CLAIMS', /token_use/);
      }
      // An ID token of another app client; an access token of another, or of none.
      await refused(
        cognito().verify(await token({ token_use: 'id', aud: 'other-client' })),
        'TOKEN_AUDIENCE',
      );
      for (const client_id of ['other-client', undefined, ['pgward'], 'PGWARD']) {
        await refused(
          cognito().verify(await token({ token_use: 'access', aud: undefined, client_id })),
          'TOKEN_AUDIENCE',
          /another app client/,
        );
      }
      // An ID token whose aud is another app client's does not pass as an access token by its client_id.
      await refused(
        cognito().verify(await token({ token_use: 'id', aud: 'other-client', client_id: 'pgward' })),
        'TOKEN_AUDIENCE',
      );
      // Another pool signed with the same keys.
      await refused(
        cognito().verify(await token({ iss: `${COGNITO.slice(0, -1)}2`, token_use: 'id' })),
        'TOKEN_UNKNOWN_ISSUER',
      );
    });
  });

  describe('keycloak and okta', () => {
    const REALM = 'https://sso.company.test/realms/company';
    it("keycloak: counts the realm's roles and this client's, never another client's", async () => {
      const v = verifier({ type: 'keycloak', issuer: REALM });
      const claims = {
        iss: REALM,
        ...person,
        aud: ['pgward', 'account'],
        azp: 'other',
        realm_access: { roles: ['reader'] },
        resource_access: { other: { roles: ['admin'] }, 'pgward.x': { roles: ['admin'] } },
      };
      assert.deepEqual((await v.verify(await forge.sign(claims))).roles, ['reader']);
      // A client id with a dot is one segment, not a path.
      const dotted = verifier({ type: 'keycloak', issuer: REALM, clientId: 'pgward.x' });
      assert.deepEqual((await dotted.verify(await forge.sign({ ...claims, aud: 'pgward.x' }))).roles, [
        'reader',
        'admin',
      ]);
      // Another realm with the same keys, and a token for another client only.
      await refused(v.verify(await forge.sign({ ...claims, iss: `${REALM}2` })), 'TOKEN_UNKNOWN_ISSUER');
      await refused(v.verify(await forge.sign({ ...claims, aud: 'account' })), 'TOKEN_AUDIENCE');
    });

    it('okta: the org server takes ID tokens only; a custom server its own audience only', async () => {
      const ORG = 'https://company.okta.test';
      const org = verifier({ type: 'okta', issuer: ORG });
      await org.verify(await forge.sign({ iss: ORG, ...person }));
      // The org server's access tokens are for Okta's own APIs.
      await refused(org.verify(await forge.sign({ iss: ORG, ...person, aud: ORG })), 'TOKEN_AUDIENCE');
      const custom = verifier({ type: 'okta', issuer: `${ORG}/oauth2/default` });
      const fromDefault = { iss: `${ORG}/oauth2/default`, ...person };
      await custom.verify(await forge.sign({ ...fromDefault, aud: 'api://default' }));
      // Its ID token (audience: the client id), and another server's access token.
      await refused(custom.verify(await forge.sign(fromDefault)), 'TOKEN_AUDIENCE');
      await refused(
        custom.verify(await forge.sign({ ...fromDefault, iss: `${ORG}/oauth2/aus2`, aud: 'api://default' })),
        'TOKEN_UNKNOWN_ISSUER',
      );
      await refused(org.verify(await forge.sign({ ...fromDefault, aud: 'pgward' })), 'TOKEN_UNKNOWN_ISSUER');
    });
  });

  describe('tokens bent on the wire', () => {
    const ISS = 'https://idp.company.test';
    const generic = () => verifier({ issuer: ISS });
    const claims = { iss: ISS, ...person, groups: ['viewer'] };
    const encode = (part: unknown) => Buffer.from(JSON.stringify(part)).toString('base64url');

    it('refuses alg none in any spelling, and HS256 keyed with the published keys', async () => {
      const body = encode({ ...claims, exp: Math.floor(Date.now() / 1000) + 600 });
      await refused(generic().verify(`${encode({ alg: 'none' })}.${body}.`), 'TOKEN_UNSIGNED');
      for (const alg of ['None', 'NONE', 'nOnE']) {
        await refused(generic().verify(`${encode({ alg })}.${body}.`), 'TOKEN_ALGORITHM');
      }
      const jwks = await (await fetch(forge.jwksUri)).text();
      const jwk = (JSON.parse(jwks) as { keys: JWK[] }).keys[0]!;
      for (const secret of [jwks, JSON.stringify(jwk), jwk.n!]) {
        const hs = await new SignJWT(claims)
          .setProtectedHeader({ alg: 'HS256', kid: forge.kid })
          .setExpirationTime('10m')
          .sign(new TextEncoder().encode(secret));
        await refused(generic().verify(hs), 'TOKEN_ALGORITHM');
      }
    });

    it('refuses kid games and keys the token brings itself', async () => {
      const { privateKey, publicKey } = await generateKeyPair('RS256');
      const own = (header: Record<string, unknown>) =>
        new SignJWT(claims)
          .setProtectedHeader({ alg: 'RS256', ...header })
          .setExpirationTime('10m')
          .sign(privateKey);
      await refused(generic().verify(await own({ kid: forge.kid })), 'TOKEN_SIGNATURE');
      await refused(generic().verify(await own({})), 'TOKEN_SIGNATURE');
      for (const kid of ['other', '../../jwks', '', forge.kid.toUpperCase()]) {
        await refused(generic().verify(await own({ kid })), 'TOKEN_UNKNOWN_KEY', undefined);
      }
      const jwk = await exportJWK(publicKey);
      for (const header of [
        { jwk },
        { jku: 'https://evil.test/jwks' },
        { x5u: 'https://evil.test/cert' },
        { x5c: ['MIIB'] },
      ]) {
        await refused(generic().verify(await own({ kid: forge.kid, ...header })), 'TOKEN_KEY_REFERENCE');
      }
    });

    it('refuses oversized tokens and claims', async () => {
      await refused(generic().verify(`${'a'.repeat(40_000)}.${'b'.repeat(25_000)}.c`), 'TOKEN_MALFORMED');
      const v = generic();
      for (const extra of [
        { groups: Array.from({ length: 513 }, (_, i) => `g${i}`) },
        { groups: ['x'.repeat(257)] },
        { groups: [''] },
        { groups: [['viewer']] },
        { groups: { viewer: true } },
        { name: 'n'.repeat(257) },
        { sub: 's'.repeat(256) },
        { email: `${'e'.repeat(320)}@x.test` },
        { email: 'no-at-sign' },
        { email: 'a@b@c' },
        { email: ['ann@company.com'] },
        { email: 'ann@company.com ' },
        { email: 'ann@company.com\u00a0' },
        { email: '\u2028ann@company.com' },
      ]) {
        await refused(v.verify(await forge.sign({ ...claims, ...extra })), 'TOKEN_CLAIMS', undefined);
      }
    });

    it('reads nested claim paths exactly: no prototype, no dotted keys, no arrays as objects', async () => {
      const v = verifier({ issuer: ISS, claims: { groups: '$.org.groups', roles: '$.org.roles' } });
      const read = async (extra: Record<string, unknown>) =>
        v.verify(await forge.sign({ ...claims, ...extra }));
      assert.deepEqual((await read({ org: { groups: ['dba'] } })).groups, ['dba']);
      const tries: Record<string, unknown>[] = [
        { 'org.groups': ['dba'] },
        { org: [{ groups: ['dba'] }] },
        { org: JSON.parse('{"__proto__": {"groups": ["dba"]}}') },
        JSON.parse('{"__proto__": {"org": {"groups": ["dba"]}}}'),
        { org: { constructor: { groups: ['dba'] } } },
      ];
      for (const extra of tries) {
        const got = await read(extra);
        assert.deepEqual([got.groups, got.roles], [[], []], JSON.stringify(extra));
      }
      // A verified email is not lent by a `__proto__` object either.
      const proto = await read({
        email_verified: undefined,
        ...JSON.parse('{"__proto__": {"email_verified": true}}'),
      });
      assert.equal(proto.emailVerified, false);
      await refused(read({ org: { groups: { dba: true } } }), 'TOKEN_CLAIMS');
    });
  });

  describe('Windows group names', () => {
    const groupsOf = (adGroups: Record<string, unknown>, groups: string[]) =>
      mapClaims(
        providerSchema.parse({ name: 'ad', issuer: 'https://adfs.company.test', clientId: 'c', adGroups }),
        { sub: 's', email: 'pat@company.local', groups },
      ).groups;
    const ad = { domain: 'COMPANY.LOCAL', trustedDomains: ['PARTNER.COM'] };

    it("drops other domains' groups: look-alike, longer, prefixed, empty and nested domain names", () => {
      assert.deepEqual(
        groupsOf(ad, [
          'COMPANY\\DBAs',
          'company.local\\Ops',
          'EVIL\\Admins',
          'COMPANYX\\Admins',
          'COMPANY.LOCAL.EVIL.COM\\Admins',
          'EVIL.COMPANY.LOCAL\\Admins',
          'XCOMPANY\\Admins',
          'COMPANY \\Admins',
          '\\Admins',
          'COMPANY\\',
          'EVIL\\COMPANY\\Admins',
          'PARTNER.COM.EVIL\\Admins',
          'C0MPANY\\Admins',
          'СOMPANY\\Admins', // Cyrillic С
          'partner\\Ops',
        ]),
        ['DBAs', 'Ops', 'partner\\Ops'],
      );
    });

    it('keeps names with a Unicode backslash look-alike as they are, so they never pass for a domain group', () => {
      const lookAlikes = ['EVIL＼Admins', 'EVIL∖Admins', 'EVIL⧵Admins', 'EVIL﹨Admins'];
      const groups = groupsOf(ad, lookAlikes);
      assert.deepEqual(groups, lookAlikes);
      assert.ok(!groups.includes('Admins'));
    });

    it("refuses domains that only upper-case to the company's own (dotless i, long s, ligatures)", () => {
      // JavaScript's toUpperCase maps ı → I, ſ → S and ﬁ → FI: other names, other domains.
      assert.deepEqual(groupsOf({ domain: 'SALES.LOCAL' }, ['ſALES\\Admins', 'SALEſ.LOCAL\\Admins']), []);
      assert.deepEqual(groupsOf({ domain: 'FINANCE.LOCAL' }, ['ﬁNANCE\\Admins', 'fınance\\Admins']), []);
      assert.deepEqual(
        groupsOf({ domain: 'COMPANY.LOCAL', groupPrefix: 'FINANCE\\' }, ['ﬁNANCE\\XAdmins']),
        [],
      );
    });
  });
});

describe('vendor attacks at the gateway: linking, groups, the wire and GitHub', () => {
  const GH = { id: 'Iv1.pgwardattacks', secret: 'github-secret-of-the-attack-tests' };
  let forge: Forge;
  let github: FakeGithub;
  let t: TestStack;
  let http: string;
  let admin: string;
  const ISS = {
    partner: 'https://partner.idp.test',
    other: 'https://other.idp.test',
    alt: 'https://alt.idp.test',
  };

  before(async () => {
    forge = await startForge();
    github = await startFakeGithub(GH);
    const file = path.join(tempDir('vendor-attacks'), 'pgward.yaml');
    const common = { clientId: 'pgward', algorithms: ['RS256'], jwksUri: forge.jwksUri };
    writeFileSync(
      file,
      stringify({
        providers: [
          { name: 'partner', issuer: ISS.partner, linkByEmail: true, ...common },
          { name: 'other', issuer: ISS.other, ...common },
          // An email read from another claim than the one email_verified speaks of.
          { name: 'alt', issuer: ISS.alt, linkByEmail: true, claims: { email: 'mail' }, ...common },
          {
            name: 'entra',
            type: 'azuread',
            azuread: { tenantId: TENANT_A },
            mappings: { groups: { [DBA_GROUP]: ['admin'] }, roles: { 'Database.Reader': ['viewer'] } },
            ...common,
          },
          {
            name: 'github',
            type: 'github',
            clientId: GH.id,
            clientSecret: GH.secret,
            github: { url: github.url, apiUrl: github.apiUrl, allowedOrganizations: ['ACME'] },
            mappings: { groups: { 'ACME/dba': ['viewer'] } },
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
    await github?.close();
    await forge?.idp.close();
  });

  type Me = { userId: string; email: string; groups: string[]; isAdmin: boolean; provider: string };
  const whoami = (token: string) =>
    call<Me & { code?: string; detail?: string }>(http, 'GET', '/api/v1/whoami', { token });
  const at = (provider: keyof typeof ISS, claims: Record<string, unknown>) =>
    forge.sign({ iss: ISS[provider], email_verified: true, ...claims });
  /** Signs `claims` in and answers who pgward says they are (fails the test unless 200). */
  async function me(token: string): Promise<Me> {
    const res = await whoami(token);
    assert.equal(res.status, 200, JSON.stringify(res.body));
    return res.body;
  }
  const victim = async (email: string) =>
    (
      await call<{ userId: string }>(http, 'GET', `/api/v1/users/${encodeURIComponent(email)}`, {
        token: admin,
      })
    ).body;
  const adminId = async () => (await victim('admin@example.com')).userId;

  describe('account linking', () => {
    it('links a verified email of a linkByEmail provider to the person who verified it elsewhere (the rule)', async () => {
      const viewer = await me(await t.token('viewer@example.com'));
      const linked = await me(await at('partner', { sub: 'p-vera', email: 'viewer@example.com' }));
      assert.equal(linked.userId, viewer.userId);
      // An ASCII case difference is the same mailbox, and links too.
      const shouted = await me(await at('partner', { sub: 'p-vera-2', email: 'Viewer@EXAMPLE.com' }));
      assert.equal(shouted.userId, viewer.userId);
    });

    it('does not link or sign up on an email_verified that is not the boolean true', async () => {
      for (const email_verified of ['true', 'True', 1, 'yes', ['true'], { value: true }, null]) {
        const res = await whoami(
          await at('partner', {
            sub: `p-adm-${JSON.stringify(email_verified)}`,
            email: 'admin@example.com',
            email_verified,
          }),
        );
        assert.equal(res.status, 403, JSON.stringify([email_verified, res.body]));
        assert.match(String(res.body.detail), /has not verified the email admin@example\.com/);
      }
    });

    it('does not link from a provider without linkByEmail', async () => {
      // Vera verified her address at the dev IdP and at partner (above); other does not link.
      const vera = await me(await t.token('viewer@example.com'));
      const other = await me(await at('other', { sub: 'o-vera', email: 'viewer@example.com' }));
      assert.notEqual(other.userId, vera.userId);
      assert.ok(!other.groups.includes('viewer'));
    });

    it('does not link Unicode look-alikes, other normal forms, or trailing dots of the email', async () => {
      await me(await at('other', { sub: 'o-jose', email: 'josé@example.com' }));
      const jose = (await victim('josé@example.com')).userId;
      for (const [sub, email, owner] of [
        ['p-cyr', 'admin@exаmple.com', adminId], // Cyrillic а
        ['p-dot', 'admin@example.com.', adminId],
        ['p-zw', 'admin@example.com\u200b', adminId],
        ['p-fw', 'ａdmin@example.com', adminId],
        ['p-nfd', 'jose\u0301@example.com', async () => jose],
      ] as const) {
        const got = await me(await at('partner', { sub, email }));
        assert.notEqual(got.userId, await owner(), email);
        assert.equal(got.isAdmin, false, email);
        const wire = await t.refusal('admin@example.com', { password: await at('partner', { sub, email }) });
        assert.equal(wire.code, '28000', email);
      }
      for (const email of [' admin@example.com', 'admin@example.com ', 'admin@example.com\t']) {
        const res = await whoami(await at('partner', { sub: 'p-space', email }));
        assert.equal(res.status, 401);
        assert.equal(res.body.code, 'TOKEN_CLAIMS');
      }
    });

    it('regression: an email whose Unicode lower case is ASCII (Kelvin sign K) does not take that address', async () => {
      const kate = await me(await at('other', { sub: 'o-kate', email: 'kate@example.com' }));
      const kelvin = await whoami(await at('partner', { sub: 'p-kelvin', email: '\u212Aate@example.com' }));
      assert.notEqual(kelvin.body.userId, kate.userId, 'not linked to kate');
      assert.notEqual(kelvin.body.email, 'kate@example.com', 'not recorded under her address');
      const wire = await t.refusal('kate@example.com', {
        password: await at('partner', { sub: 'p-kelvin', email: '\u212Aate@example.com' }),
      });
      assert.equal(wire.code, '28000');
    });

    it('regression: a verified email is only the one email_verified speaks of, not another claim', async () => {
      const res = await whoami(
        await at('alt', {
          sub: 'alt-1',
          email: 'mallory@evil.test',
          email_verified: true,
          mail: 'admin@example.com',
        }),
      );
      assert.equal(res.status, 403, JSON.stringify(res.body));
      assert.match(String(res.body.detail), /has not verified the email admin@example\.com/);
      const { rows } = await t
        .store()
        .query(
          "SELECT 1 FROM pgward.user_identity i JOIN pgward.provider p USING (provider_id) WHERE p.code = 'alt'",
        );
      assert.equal(rows.length, 0, 'no alt identity joined anyone');
    });

    it('does not link to a person whose email is unverified, or only verified at the same provider', async () => {
      const una = await me(
        await at('other', { sub: 'o-una', email: 'una@example.com', email_verified: false }),
      );
      assert.notEqual(
        (await me(await at('partner', { sub: 'p-una', email: 'una@example.com' }))).userId,
        una.userId,
      );
      const pia = await me(await at('partner', { sub: 'p-pia', email: 'pia@example.com' }));
      assert.notEqual(
        (await me(await at('partner', { sub: 'p-pia-2', email: 'pia@example.com' }))).userId,
        pia.userId,
      );
    });

    it('does not link to a person through a deactivated identity or a deactivated person', async () => {
      const dora = await me(await at('other', { sub: 'o-dora', email: 'dora@example.com' }));
      const { body } = await call<{ identities: { identityId: string; provider: string }[] }>(
        http,
        'GET',
        `/api/v1/users/${dora.userId}`,
        { token: admin },
      );
      const identity = body.identities.find((i) => i.provider === 'other')!;
      const off = await call(
        http,
        'PATCH',
        `/api/v1/users/${dora.userId}/identities/${identity.identityId}`,
        {
          token: admin,
          body: { isActive: false },
        },
      );
      assert.equal(off.status, 200, JSON.stringify(off.body));
      assert.notEqual(
        (await me(await at('partner', { sub: 'p-dora', email: 'dora@example.com' }))).userId,
        dora.userId,
      );

      const finn = await me(await at('other', { sub: 'o-finn', email: 'finn@example.com' }));
      const gone = await call(http, 'PATCH', `/api/v1/users/${finn.userId}`, {
        token: admin,
        body: { isActive: false },
      });
      assert.equal(gone.status, 200, JSON.stringify(gone.body));
      assert.notEqual(
        (await me(await at('partner', { sub: 'p-finn', email: 'finn@example.com' }))).userId,
        finn.userId,
      );
    });
  });

  describe('entra at the gateway', () => {
    const entra = (claims: Record<string, unknown>) =>
      forge.sign({ iss: `${ENTRA}/${TENANT_A}/v2.0`, tid: TENANT_A, ...claims });

    it('maps groups by group and roles by role, never one for the other', async () => {
      assert.equal(
        (await me(await entra({ sub: 'e-1', email: 'e1@a.test', groups: [DBA_GROUP] }))).isAdmin,
        true,
      );
      assert.ok(
        (
          await me(await entra({ sub: 'e-2', email: 'e2@a.test', roles: ['Database.Reader'] }))
        ).groups.includes('viewer'),
      );
      const swapped = await me(
        await entra({ sub: 'e-3', email: 'e3@a.test', roles: [DBA_GROUP], groups: ['Database.Reader'] }),
      );
      assert.equal(swapped.isAdmin, false);
      assert.deepEqual(swapped.groups, ['entra:Database.Reader']);
    });

    it("never takes another person's address from an Entra ID email (it sends no email_verified)", async () => {
      const res = await whoami(await entra({ sub: 'e-adm', email: 'admin@example.com' }));
      assert.equal(res.status, 403, JSON.stringify(res.body));
      assert.match(String(res.body.detail), /has not verified the email admin@example\.com/);
    });
  });

  describe('token confusion on the wire', () => {
    async function refusedEverywhere(token: string, code: string, user = 'viewer@example.com') {
      const api = await whoami(token);
      assert.equal(api.status, 401, JSON.stringify(api.body));
      assert.equal(api.body.code, code);
      const wire = await t.refusal(user, { password: token });
      assert.equal(wire.code, '28P01', wire.message);
      assert.equal(wire.detail, `pgward error ${code}`);
    }

    it("refuses another provider's token re-labelled with this one's issuer, under either key id", async () => {
      const dev = decodeJwt(await t.token('viewer@example.com'));
      const relabelled = await devIdpToken(t.dataDir, ISS.partner, { ...dev, iss: ISS.partner });
      await refusedEverywhere(relabelled, 'TOKEN_UNKNOWN_KEY');
      const { signing } = JSON.parse(readFileSync(path.join(t.dataDir, 'idp', 'keys.json'), 'utf8')) as {
        signing: JWK;
      };
      const underForgeKid = await new SignJWT({ ...dev, iss: ISS.partner })
        .setProtectedHeader({ alg: 'RS256', kid: forge.kid, typ: 'at+jwt' })
        .sign(await importJWK(signing, 'RS256'));
      await refusedEverywhere(underForgeKid, 'TOKEN_SIGNATURE');
    });

    it("refuses an IdP's token claiming the gateway's issuer, and pgward's token claiming an IdP's", async () => {
      const own = decodeJwt((await deviceLogin(http, t.stack.info.idp, 'viewer@example.com')).access_token);
      const asGateway = await forge.sign({ ...own }, { typ: 'at+jwt' });
      await refusedEverywhere(asGateway, 'TOKEN_ALGORITHM');
      const signing = await gatewaySigningKey(t.dataDir, t.store());
      const asPartner = await new SignJWT({ ...own, iss: ISS.partner })
        .setProtectedHeader({ alg: 'ES256', kid: signing.kid, typ: 'at+jwt' })
        .sign(signing.privateKey as Parameters<SignJWT['sign']>[0]);
      await refusedEverywhere(asPartner, 'TOKEN_ALGORITHM');
      // pgward's refresh token is no password either.
      const grant = await deviceLogin(http, t.stack.info.idp, 'viewer@example.com');
      await refusedEverywhere(grant.refresh_token, 'TOKEN_MALFORMED');
    });

    it('refuses a token of this IdP for another audience, and its logout token', async () => {
      await refusedEverywhere(
        await at('partner', { sub: 'p-aud', email: 'aud@x.test', aud: 'other-app' }),
        'TOKEN_AUDIENCE',
      );
      await refusedEverywhere(
        await forge.sign({ iss: ISS.partner, sub: 'p-aud', email: 'aud@x.test' }, { typ: 'logout+jwt' }),
        'TOKEN_TYPE',
      );
    });
  });

  describe('github', () => {
    let next = 7000;
    const ghUser = (login: string, orgs: string[], teams: string[] = []): GithubUser => ({
      id: next++,
      login,
      name: login,
      email: `${login}@acme.test`,
      orgs,
      teams,
    });

    it('regression: refuses a GitHub token issued to another OAuth app (or a personal token)', async () => {
      const octo = ghUser('octo', ['acme'], ['acme/dba']);
      assert.ok((await me(github.issue(octo))).groups.includes('viewer'), "a token of pgward's app");
      const res = await whoami(github.issue(octo, 'Iv1.someone-elses-app'));
      assert.equal(res.status, 401, JSON.stringify(res.body));
      assert.equal(res.body.code, 'TOKEN_INVALID');
      assert.match(String(res.body.detail), /another application/);
    });

    it('refuses a token of another GitHub (github.com against an Enterprise server)', async () => {
      const elsewhere = await startFakeGithub(GH);
      try {
        const res = await whoami(elsewhere.issue(ghUser('far', ['acme'])));
        assert.equal(res.status, 401);
        assert.equal(res.body.code, 'TOKEN_INVALID');
      } finally {
        await elsewhere.close();
      }
    });

    it('keeps organisations and teams apart by case and organisation; teams alone admit nobody', async () => {
      const cased = await me(
        github.issue(ghUser('cased', ['Acme', 'evilcorp'], ['ACME/DBA', 'evilcorp/dba', 'acme/ops'])),
      );
      assert.deepEqual(cased.groups, ['github:ACME', 'github:ACME/DBA', 'github:ACME/ops']);
      // A team of ACME without membership of ACME itself.
      const res = await whoami(github.issue(ghUser('teamonly', ['evilcorp'], ['ACME/dba'])));
      assert.equal(res.body.code, 'TOKEN_ORGANIZATION');
    });

    it('knows a person by the numeric id: a rename keeps them, the old login taken by another is someone else', async () => {
      const first = ghUser('renamer', ['acme']);
      const before = await me(github.issue(first));
      first.login = 'renamed';
      assert.equal((await me(github.issue(first))).userId, before.userId);
      const squatter = { ...ghUser('renamer', ['acme']), email: 'squatter@acme.test' };
      const other = await me(github.issue(squatter));
      assert.notEqual(other.userId, before.userId);
      assert.equal(other.email, 'squatter@acme.test');
    });

    it('reads at most 500 organisations and teams, failing closed beyond', async () => {
      const many = (n: number, last: string) => [...Array.from({ length: n }, (_, i) => `org-${i}`), last];
      const res = await whoami(github.issue(ghUser('joiner', many(550, 'acme'))));
      assert.equal(res.status, 401);
      assert.equal(res.body.code, 'TOKEN_ORGANIZATION');
      const teams = [...Array.from({ length: 550 }, (_, i) => `acme/t-${i}`), 'acme/dba'];
      const busy = await me(github.issue(ghUser('busy', ['acme'], teams)));
      assert.ok(!busy.groups.includes('viewer'), 'acme/dba was past the cap');
      assert.ok(busy.groups.length <= 512);
    });

    it('refuses malformed and oversized answers', async () => {
      const big = { ...ghUser('big', ['acme']), name: 'x'.repeat(1_100_000) };
      const res = await whoami(github.issue(big));
      assert.equal(res.body.code, 'IDP_UNREACHABLE', JSON.stringify(res.body));
      for (const odd of [
        { ...ghUser('odd', ['acme']), id: '7' as unknown as number },
        { ...ghUser('x'.repeat(40), ['acme']) },
        { ...ghUser('odd\nadmin', ['acme']) },
      ]) {
        const answer = await whoami(github.issue(odd));
        assert.equal(answer.body.code, 'TOKEN_CLAIMS', JSON.stringify(answer.body));
      }
    });
  });
});
