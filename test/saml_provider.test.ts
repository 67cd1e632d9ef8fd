import assert from 'node:assert/strict';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { stringify } from 'yaml';
import { providerSchema } from '../src/config/schema.js';
import { IdpPageWalker } from '../src/dev/dev_login.js';
import { PACKAGE_ROOT } from '../src/package_root.js';
import { call } from './support/api.js';
import { runCli } from './support/cli.js';
import { startTestStack, type TestStack } from './support/dev_stack.js';
import {
  type ResponseOptions,
  readAuthnRequest,
  type SamlIdp,
  type SamlUser,
  startSamlIdp,
} from './support/saml_idp.js';
import { tempDir } from './support/temp_dir.js';

const SP_ENTITY = 'urn:pgward:test-gateway';

describe('SAML 2.0 sign-in against a SAML IdP run in the test', () => {
  const sam: SamlUser = {
    email: 'sam@corp.example',
    uid: 'u-1001',
    groups: ['dba', 'ops'],
    roles: ['reader'],
  };
  let idp: SamlIdp;
  let t: TestStack;
  let http: string;

  before(async () => {
    idp = await startSamlIdp([sam]);
    const file = path.join(tempDir('saml-stack'), 'pgward.yaml');
    writeFileSync(
      file,
      stringify({
        providers: [
          {
            name: 'corp-saml',
            type: 'saml',
            displayName: 'Corp SAML',
            clientId: SP_ENTITY,
            saml: {
              ssoUrl: idp.ssoUrl,
              idpIssuer: idp.issuer,
              certificate: idp.certificate,
              groupAttribute: 'groups',
              roleAttribute: 'roles',
              userIdAttribute: 'uid',
            },
            mappings: { groups: { dba: ['viewer'] }, roles: { reader: ['editor'] } },
          },
        ],
      }),
    );
    t = await startTestStack({ PGWARD_CONFIG: file });
    http = t.stack.info.http;
  });
  after(async () => {
    await t?.close();
    await idp?.close();
  });

  const acsUrl = () => `${http}/login/saml/corp-saml/acs`;

  /** Starts a console login; returns the login cookie and the AuthnRequest it sent. */
  async function start(): Promise<{ cookie: string; requestId: string; relayState: string }> {
    const res = await fetch(`${http}/login/corp-saml`, { redirect: 'manual' });
    assert.equal(res.status, 302);
    const location = new URL(res.headers.get('location')!);
    assert.equal(location.origin + location.pathname, idp.ssoUrl);
    const cookie = res.headers
      .getSetCookie()
      .find((c) => c.startsWith('pgward_login='))!
      .split(';')[0]!;
    const request = readAuthnRequest(location.searchParams.get('SAMLRequest')!);
    assert.equal(request.acsUrl, acsUrl());
    assert.equal(request.issuer, SP_ENTITY);
    return { cookie, requestId: request.id, relayState: location.searchParams.get('RelayState')! };
  }
  /** Posts a response to the ACS as the browser that started the login. */
  async function post(started: { cookie: string; relayState: string }, samlResponse: string) {
    const res = await fetch(acsUrl(), {
      method: 'POST',
      redirect: 'manual',
      headers: { 'content-type': 'application/x-www-form-urlencoded', cookie: started.cookie },
      body: new URLSearchParams({ SAMLResponse: samlResponse, RelayState: started.relayState }),
    });
    return { status: res.status, location: res.headers.get('location'), text: await res.text() };
  }
  const respond = (started: { requestId: string }, extra: Partial<ResponseOptions> = {}) =>
    idp.response({
      requestId: started.requestId,
      acsUrl: acsUrl(),
      audience: SP_ENTITY,
      user: sam,
      ...extra,
    });

  it('refuses a SAML provider without a valid IdP certificate, naming the setting', () => {
    const bad = providerSchema.safeParse({
      name: 's',
      type: 'saml',
      clientId: SP_ENTITY,
      saml: {
        ssoUrl: 'https://idp.example/sso',
        idpIssuer: 'x',
        certificate: '-----BEGIN CERTIFICATE-----...',
      },
    });
    assert.ok(!bad.success);
    assert.deepEqual(bad.error.issues[0]?.path, ['saml', 'certificate']);
  });

  it('publishes the SP metadata (entity id and assertion consumer service)', async () => {
    const res = await fetch(`${http}/login/saml/corp-saml/metadata`);
    assert.equal(res.status, 200);
    const xml = await res.text();
    assert.match(xml, new RegExp(`entityID="${SP_ENTITY}"`));
    assert.match(
      xml,
      new RegExp(`AssertionConsumerService[^>]+Location="${acsUrl().replace(/[.]/g, '\\.')}"`),
    );
  });

  it('signs in at the console through the IdP, with groups and roles from the attributes', async () => {
    const browser = new IdpPageWalker(idp.url);
    const done = await browser.walk(
      `${http}/login/corp-saml`,
      { email: sam.email, password: 'password' },
      (l) => l.endsWith('/login/done'),
    );
    assert.ok(done, 'the login reached /login/done');
    const me = await browser.request(`${http}/api/v1/whoami`);
    assert.equal(me.status, 200);
    const body = (await me.json()) as { email: string; groups: string[] };
    assert.equal(body.email, sam.email);
    assert.deepEqual(body.groups.sort(), ['corp-saml:dba', 'corp-saml:ops', 'editor', 'viewer']);
    // Then pgward's own token opens sessions, as with any provider.
    const token = browser['cookies' as never] as Map<string, string>;
    const client = await t.client(sam.email, { password: token.get('pgward_access')! });
    assert.equal((await client.query('select current_user')).rows[0].current_user, sam.email);
    await client.end();
  });

  it('re-posts the cross-site response from its own page, so the login cookie is checked', async () => {
    const started = await start();
    const res = await fetch(acsUrl(), {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ SAMLResponse: respond(started), RelayState: started.relayState }),
    });
    assert.equal(res.status, 200);
    const page = await res.text();
    assert.match(page, /name="bounced" value="1"/);
    // Without the browser's login cookie even the bounced post is refused (login CSRF).
    const bounced = await fetch(acsUrl(), {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({
        SAMLResponse: respond(started),
        RelayState: started.relayState,
        bounced: '1',
      }),
    });
    assert.equal(bounced.status, 401);
  });

  it('accepts a good response once, and refuses it replayed', async () => {
    const started = await start();
    const good = respond(started);
    const first = await post(started, good);
    assert.equal(first.status, 302, first.text);
    assert.equal(first.location, '/login/done');
    const again = await post(started, good);
    assert.equal(again.status, 401);
    assert.match(again.text, /used already/);
    // Remembered in the store, so a replay at another gateway on it is refused as well.
    const { rows } = await t.store().query('SELECT provider FROM pgward.saml_assertion_seen');
    assert.ok(rows.some((r) => r.provider === 'corp-saml'));
  });

  it('refuses a tampered, unsigned, expired, wrongly addressed or foreign response', async () => {
    const cases: [Partial<ResponseOptions>, RegExp][] = [
      [{ tamper: (xml) => xml.replace('>ops<', '>admin<') }, /not valid: .*signature/i],
      [{ unsigned: true }, /not valid: .*signature/i],
      [{ audience: 'urn:someone-else' }, /not valid: .*audience/i],
      // The bearer confirmation's NotOnOrAfter has passed.
      [{ lifetimeSeconds: -120 }, /not valid: No valid subject confirmation/i],
      [{ issuer: 'https://evil.example/idp' }, /not valid: .*issuer/i],
      [{ requestId: '_not-this-login' }, /not valid: .*InResponseTo/i],
    ];
    for (const [fault, message] of cases) {
      const started = await start();
      const res = await post(started, respond(started, fault));
      assert.equal(res.status, 401, `${JSON.stringify(Object.keys(fault))}: ${res.text}`);
      assert.match(res.text, message, JSON.stringify(Object.keys(fault)));
    }
  });

  it('signs in with `pgward login --browser` through the SAML IdP', async () => {
    const home = tempDir('saml-cli');
    const browserLog = path.join(home, 'browser.log');
    const env = { XDG_CONFIG_HOME: home, PGWARD_GATEWAY: http };
    const login = await runCli(['login', '--browser', '--provider', 'corp-saml'], {
      env: {
        ...env,
        BROWSER: `${process.execPath} ${path.join(PACKAGE_ROOT, 'dist', 'test', 'support', 'walking_browser.js')}`,
        PGWARD_TEST_IDP: idp.url,
        PGWARD_TEST_EMAIL: sam.email,
        PGWARD_TEST_BROWSER_LOG: browserLog,
      },
    });
    assert.equal(
      login.code,
      0,
      `${login.stderr}\n${existsSync(browserLog) ? readFileSync(browserLog, 'utf8') : ''}`,
    );
    assert.match(login.stdout, /as sam@corp\.example \(corp-saml\)/);
    const refreshed = await runCli(['whoami', '--json'], { env });
    assert.equal((JSON.parse(refreshed.stdout) as { email: string }).email, sam.email, refreshed.stderr);
  });

  it('refuses a device login for a SAML provider with a hint', async () => {
    const res = await call(http, 'POST', '/api/v1/auth/device', { body: { provider: 'corp-saml' } });
    assert.equal(res.status, 400);
    assert.match(String(res.body['hint']), /login --browser --provider corp-saml/);
  });
});
