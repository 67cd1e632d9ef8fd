import assert from 'node:assert/strict';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { inflateRawSync } from 'node:zlib';
import { stringify } from 'yaml';
import { providerSchema } from '../src/config/schema.js';
import { IdpPageWalker } from '../src/dev/dev_login.js';
import { PACKAGE_ROOT } from '../src/package_root.js';
import { call } from './support/api.js';
import { runCli } from './support/cli.js';
import { startTestStack, type TestStack } from './support/dev_stack.js';
import {
  AES256_CBC,
  keyPair,
  querySignatureHolds,
  type ResponseOptions,
  readAuthnRequest,
  type SamlIdp,
  type SamlUser,
  startSamlIdp,
  TRIPLEDES_CBC,
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
  /** enc-saml's person: one email has one person, and SAML emails are not verified. */
  const sue: SamlUser = { email: 'sue@corp.example', uid: 'u-1002', groups: ['dba'] };
  let idp: SamlIdp;
  /** The IdP of `enc-saml`: it encrypts, wants signed requests, and does single logout. */
  let idp2: SamlIdp;
  /** The gateway's key pair for enc-saml, and someone else's. */
  let sp: { key: string; cert: string };
  let other: { key: string; cert: string };
  let spKeyFile: string;
  let t: TestStack;
  let http: string;

  before(async () => {
    idp = await startSamlIdp([sam]);
    idp2 = await startSamlIdp([sue]);
    sp = await keyPair('pgward test gateway');
    other = await keyPair('someone else');
    const dir = tempDir('saml-stack');
    spKeyFile = path.join(dir, 'saml-sp.key');
    writeFileSync(spKeyFile, sp.key, { mode: 0o600 });
    const file = path.join(dir, 'pgward.yaml');
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
          {
            name: 'enc-saml',
            type: 'saml',
            clientId: SP_ENTITY,
            saml: {
              ssoUrl: idp2.ssoUrl,
              idpIssuer: idp2.issuer,
              certificate: idp2.certificate,
              groupAttribute: 'groups',
              sp: { certificate: sp.cert, privateKeyFile: spKeyFile },
              requireEncryptedAssertions: true,
              signRequests: true,
              sloUrl: idp2.sloUrl,
            },
            mappings: { groups: { dba: ['viewer'] } },
          },
        ],
      }),
    );
    t = await startTestStack({ PGWARD_CONFIG: file });
    http = t.stack.info.http;
    Object.assign(idp2.settings, {
      encryptTo: sp.cert,
      requestsSignedBy: sp.cert,
      spSloUrl: sloUrl(),
    });
  });
  after(async () => {
    await t?.close();
    await idp?.close();
    await idp2?.close();
  });

  const acsUrl = (name = 'corp-saml') => `${http}/login/saml/${name}/acs`;
  const sloUrl = () => `${http}/login/saml/enc-saml/slo`;
  const idpOf = (name: string) => (name === 'corp-saml' ? idp : idp2);

  type Started = { provider: string; cookie: string; requestId: string; relayState: string; query: string };
  /** Starts a console login; returns the login cookie and the AuthnRequest it sent. */
  async function start(provider = 'corp-saml'): Promise<Started> {
    const res = await fetch(`${http}/login/${provider}`, { redirect: 'manual' });
    assert.equal(res.status, 302);
    const location = new URL(res.headers.get('location')!);
    assert.equal(location.origin + location.pathname, idpOf(provider).ssoUrl);
    const cookie = res.headers
      .getSetCookie()
      .find((c) => c.startsWith('pgward_login='))!
      .split(';')[0]!;
    const request = readAuthnRequest(location.searchParams.get('SAMLRequest')!);
    assert.equal(request.acsUrl, acsUrl(provider));
    assert.equal(request.issuer, SP_ENTITY);
    return {
      provider,
      cookie,
      requestId: request.id,
      relayState: location.searchParams.get('RelayState')!,
      query: location.search.slice(1),
    };
  }
  /** Posts a response to the ACS as the browser that started the login. */
  async function post(started: Omit<Started, 'requestId' | 'query'>, samlResponse: string) {
    const res = await fetch(acsUrl(started.provider), {
      method: 'POST',
      redirect: 'manual',
      headers: { 'content-type': 'application/x-www-form-urlencoded', cookie: started.cookie },
      body: new URLSearchParams({ SAMLResponse: samlResponse, RelayState: started.relayState }),
    });
    const access = res.headers
      .getSetCookie()
      .find((c) => c.startsWith('pgward_access='))
      ?.split(';')[0]
      ?.slice('pgward_access='.length);
    return { status: res.status, location: res.headers.get('location'), text: await res.text(), access };
  }
  const respond = (started: { provider?: string; requestId: string }, extra: Partial<ResponseOptions> = {}) =>
    idpOf(started.provider ?? 'corp-saml').response({
      requestId: started.requestId,
      acsUrl: acsUrl(started.provider),
      audience: SP_ENTITY,
      user: started.provider === 'enc-saml' ? sue : sam,
      ...extra,
    });
  const whoami = (token: string) =>
    fetch(`${http}/api/v1/whoami`, { headers: { authorization: `Bearer ${token}` } }).then((r) => r.status);

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
      body: new URLSearchParams({ SAMLResponse: await respond(started), RelayState: started.relayState }),
    });
    assert.equal(res.status, 200);
    const page = await res.text();
    assert.match(page, /name="bounced" value="1"/);
    // Without the browser's login cookie even the bounced post is refused (login CSRF).
    const bounced = await fetch(acsUrl(), {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({
        SAMLResponse: await respond(started),
        RelayState: started.relayState,
        bounced: '1',
      }),
    });
    assert.equal(bounced.status, 401);
  });

  it('accepts a good response once, and refuses it replayed', async () => {
    const started = await start();
    const good = await respond(started);
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
      const res = await post(started, await respond(started, fault));
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

  // ---- encrypted assertions, signed requests, single logout (provider enc-saml) -------------

  it("refuses a gateway key pair that cannot be used, naming the setting, never the key's text", () => {
    const parse = (saml: Record<string, unknown>) =>
      providerSchema.safeParse({
        name: 's',
        type: 'saml',
        clientId: SP_ENTITY,
        saml: { ssoUrl: 'https://idp.example/sso', idpIssuer: 'x', certificate: idp.certificate, ...saml },
      });
    const cases: [Record<string, unknown>, (string | number)[], RegExp][] = [
      [
        { sp: { certificate: sp.cert, privateKeyFile: '/nonexistent/key.pem' } },
        ['saml', 'sp', 'privateKeyFile'],
        /cannot read .*ENOENT/,
      ],
      [
        { sp: { certificate: other.cert, privateKeyFile: spKeyFile } },
        ['saml', 'sp', 'certificate'],
        /not the certificate of this private key/,
      ],
      [
        { sp: { certificate: sp.cert, privateKeyFile: path.join(PACKAGE_ROOT, 'package.json') } },
        ['saml', 'sp', 'privateKeyFile'],
        /PEM private key/,
      ],
      [{ sp: { certificate: sp.cert } }, ['saml', 'sp', 'privateKeyFile'], /exactly one/],
      [
        { sp: { certificate: sp.cert, privateKeyEnv: 'PGWARD_TEST_NO_SUCH_KEY' } },
        ['saml', 'sp', 'privateKeyEnv'],
        /is not set/,
      ],
      [{ requireEncryptedAssertions: true }, ['saml', 'requireEncryptedAssertions'], /needs saml\.sp/],
      [{ signRequests: true }, ['saml', 'signRequests'], /needs saml\.sp/],
    ];
    for (const [saml, where, message] of cases) {
      const bad = parse(saml);
      assert.ok(!bad.success, JSON.stringify(saml));
      assert.deepEqual(bad.error.issues[0]?.path, where);
      assert.match(bad.error.issues[0]!.message, message);
      assert.doesNotMatch(JSON.stringify(bad.error.issues), /PRIVATE KEY|MII/);
    }
    process.env['PGWARD_TEST_SAML_KEY'] = sp.key.replace(/\n/g, '\\n');
    try {
      assert.ok(parse({ sp: { certificate: sp.cert, privateKeyEnv: 'PGWARD_TEST_SAML_KEY' } }).success);
    } finally {
      delete process.env['PGWARD_TEST_SAML_KEY'];
    }
  });

  it('publishes the encryption and signing certificate and the single logout service in the metadata', async () => {
    const xml = await (await fetch(`${http}/login/saml/enc-saml/metadata`)).text();
    const der = sp.cert.replace(/-----[^-]+-----|\s/g, '');
    assert.match(xml, /AuthnRequestsSigned="true"/);
    for (const use of ['encryption', 'signing']) {
      const descriptor =
        new RegExp(`<KeyDescriptor use="${use}">[\\s\\S]*?</KeyDescriptor>`).exec(xml)?.[0] ?? '';
      assert.ok(descriptor.replace(/\s/g, '').includes(der), `${use} certificate`);
    }
    assert.match(xml, /<EncryptionMethod Algorithm="http:\/\/www\.w3\.org\/2009\/xmlenc11#aes256-gcm"\/>/);
    assert.match(xml, new RegExp(`SingleLogoutService[^>]+Location="${sloUrl().replace(/[.]/g, '\\.')}"`));
    // Without a key pair, nothing of it.
    const plain = await (await fetch(`${http}/login/saml/corp-saml/metadata`)).text();
    assert.doesNotMatch(plain, /KeyDescriptor|SingleLogoutService|AuthnRequestsSigned="true"/);
  });

  it('signs the AuthnRequest, and the IdP that wants signed requests checks it', async () => {
    const started = await start('enc-saml');
    assert.ok(
      querySignatureHolds(started.query, sp.cert),
      'the query signature holds for the gateway certificate',
    );
    assert.ok(!querySignatureHolds(started.query, other.cert));
    // The IdP's check is real: an altered request is refused there.
    const altered = started.query.replace(/RelayState=[^&]+/, 'RelayState=someone-elses');
    assert.equal((await fetch(`${idp2.ssoUrl}?${altered}`)).status, 403);
    assert.equal((await fetch(`${idp2.ssoUrl}?${started.query}`)).status, 200);
    // Without signRequests, no signature.
    assert.doesNotMatch((await start()).query, /Signature=/);
  });

  it('signs in with an assertion encrypted to the gateway (AES-256-GCM in the browser, AES-256-CBC)', async () => {
    const browser = new IdpPageWalker(idp2.url);
    const done = await browser.walk(
      `${http}/login/enc-saml`,
      { email: sue.email, password: 'password' },
      (l) => l.endsWith('/login/done'),
    );
    assert.ok(done, 'the login reached /login/done');
    const me = await browser.request(`${http}/api/v1/whoami`);
    assert.equal(me.status, 200);
    assert.equal(((await me.json()) as { email: string }).email, sue.email);
    const started = await start('enc-saml');
    const cbc = await post(started, await respond(started, { algorithm: AES256_CBC }));
    assert.equal(cbc.status, 302, cbc.text);
    assert.equal(cbc.location, '/login/done');
  });

  it('refuses plain, foreign-key, unsigned-inside and weakly encrypted assertions', async () => {
    const cases: [string, Partial<ResponseOptions>, RegExp][] = [
      ['plain', { plain: true }, /not encrypted, and saml\.requireEncryptedAssertions is set/],
      // Encrypted to another key: the gateway cannot read it.
      ['another key', { encryptTo: '' }, /could not be decrypted with this gateway's key, or is not signed/],
      // Anyone can encrypt to the published certificate: the assertion inside must be the IdP's.
      [
        'unsigned inside',
        { unsigned: true },
        /could not be decrypted with this gateway's key, or is not signed/,
      ],
      // A signed Response does not stand in for the assertion's own signature.
      [
        'signed response, unsigned assertion',
        { unsigned: true, signResponse: true },
        /could not be decrypted with this gateway's key, or is not signed/,
      ],
      ['3DES', { algorithm: TRIPLEDES_CBC }, /encryption algorithm .*tripledes-cbc is not accepted/],
      // Altered ciphertext (CBC: the IV) gets the same answer as every failure before the signature.
      [
        'altered ciphertext',
        {
          algorithm: AES256_CBC,
          tamper: (xml) =>
            xml.replace(/(<xenc:CipherValue>)(.)/, (_m, tag, c) => `${tag}${c === 'A' ? 'B' : 'A'}`),
        },
        /could not be decrypted with this gateway's key, or is not signed/,
      ],
      // Checks on the signed assertion's contents still name themselves.
      ['audience', { audience: 'urn:someone-else' }, /not valid: SAML assertion audience mismatch/],
      ['expired', { lifetimeSeconds: -120 }, /not valid: No valid subject confirmation/],
    ];
    for (const [name, fault, message] of cases) {
      const started = await start('enc-saml');
      const res = await post(
        started,
        await respond(started, fault.encryptTo === '' ? { ...fault, encryptTo: other.cert } : fault),
      );
      assert.equal(res.status, 401, `${name}: ${res.text}`);
      assert.match(res.text, message, name);
    }
    // A provider without a key pair cannot read an encrypted assertion, and says why.
    const started = await start();
    const res = await post(started, await respond(started, { encryptTo: sp.cert }));
    assert.equal(res.status, 401);
    assert.match(res.text, /encrypted, but this gateway has no key for it/);
  });

  /** A sign-in at enc-saml in IdP session `sessionIndex`; returns its access token. */
  async function signInAt(sessionIndex: string): Promise<string> {
    const started = await start('enc-saml');
    const res = await post(started, await respond(started, { sessionIndex }));
    assert.equal(res.status, 302, res.text);
    return res.access!;
  }
  const slo = (query: string) => fetch(`${sloUrl()}?${query}`, { redirect: 'manual' });

  it('signs out at the IdP: the console sign-out sends a signed LogoutRequest for its session', async () => {
    const browser = new IdpPageWalker(idp2.url);
    await browser.walk(`${http}/login/enc-saml`, { email: sue.email, password: 'password' }, (l) =>
      l.endsWith('/login/done'),
    );
    const token = (browser['cookies' as never] as Map<string, string>).get('pgward_access')!;
    assert.equal(await whoami(token), 200);
    // The console's form posts from the gateway's origin.
    const out = await browser.request(`${http}/logout`, { method: 'POST', headers: { origin: http } });
    assert.equal(out.status, 303);
    const location = new URL(out.headers.get('location')!);
    assert.equal(location.origin + location.pathname, idp2.sloUrl);
    assert.ok(querySignatureHolds(location.search.slice(1), sp.cert));
    // The IdP takes it (it checks the signature) and answers at the gateway's SLO service.
    const answered = await browser.request(location.toString());
    assert.equal(answered.status, 302);
    assert.ok(answered.headers.get('location')!.startsWith(sloUrl()));
    const request = idp2.logoutRequests.at(-1)!;
    assert.equal(request.nameId, sue.email);
    assert.match(request.sessionIndex ?? '', /^_s[0-9a-f]{16}$/);
    const back = await browser.request(answered.headers.get('location')!);
    assert.equal(back.status, 303);
    assert.equal(back.headers.get('location'), '/login');
    assert.equal(await whoami(token), 401);
  });

  it("ends the IdP session's sign-ins on the IdP's signed LogoutRequest, and answers it", async () => {
    const a = await signInAt('_session-a');
    const b = await signInAt('_session-b');
    // A PostgreSQL session opened with the sign-in's token ends with it.
    const client = await t.client(sue.email, { password: a });
    const ended = new Promise<{ code?: string; message: string }>((resolve) =>
      client.once('error', (err) => resolve(err as { code?: string; message: string })),
    );
    const { query, id } = idp2.logoutRedirect({
      destination: sloUrl(),
      nameId: sue.email,
      sessionIndex: '_session-a',
      relayState: 'rs-1',
    });
    const res = await slo(query);
    assert.equal(res.status, 303, await res.text());
    const location = new URL(res.headers.get('location')!);
    assert.equal(location.origin + location.pathname, idp2.sloUrl);
    assert.ok(querySignatureHolds(location.search.slice(1), sp.cert), 'the LogoutResponse is signed');
    assert.equal(location.searchParams.get('RelayState'), 'rs-1');
    const answer = inflateRawSync(
      Buffer.from(location.searchParams.get('SAMLResponse')!, 'base64'),
    ).toString();
    assert.match(answer, new RegExp(`InResponseTo="${id}"`));
    assert.match(answer, /status:Success/);
    assert.equal(await whoami(a), 401);
    assert.equal(await whoami(b), 200, 'another IdP session of the same person stays');
    const err = await ended;
    assert.equal(err.code, '57P01');
    assert.match(err.message, /sign-in ended/);
    await client.end().catch(() => undefined);
    // Without a SessionIndex, every sign-in of that NameID ends; by HTTP-POST (XML signature).
    const form = idp2.logoutPost({ destination: sloUrl(), nameId: sue.email });
    const posted = await fetch(sloUrl(), {
      method: 'POST',
      redirect: 'manual',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ SAMLRequest: form.SAMLRequest }),
    });
    assert.equal(posted.status, 303, await posted.text());
    assert.equal(await whoami(b), 401);
  });

  it('refuses an IdP LogoutRequest that is unsigned, forged, altered, misaddressed, stale or replayed', async () => {
    const token = await signInAt('_session-c');
    const base = { destination: sloUrl(), nameId: sue.email, sessionIndex: '_session-c' };
    const replayed = idp2.logoutRedirect({ ...base, sessionIndex: '_session-none' }).query;
    assert.equal((await slo(replayed)).status, 303);
    const otherSession = idp2.logoutRedirect({ ...base, sessionIndex: '_session-none' }).query;
    const cases: [string, string, RegExp][] = [
      ['unsigned', idp2.logoutRedirect({ ...base, unsigned: true }).query, /it is not signed/],
      [
        'another key',
        idp2.logoutRedirect({ ...base, signingKey: other.key }).query,
        /signature is not valid/,
      ],
      [
        'altered',
        idp2.logoutRedirect({
          ...base,
          sessionIndex: '_session-none',
          tamper: (q) =>
            q.replace(/SAMLRequest=[^&]+/, /SAMLRequest=[^&]+/.exec(idp2.logoutRedirect(base).query)![0]),
        }).query,
        /signature is not valid/,
      ],
      [
        'given twice',
        `${otherSession}&${/SAMLRequest=[^&]+/.exec(idp2.logoutRedirect(base).query)![0]}`,
        /given twice/,
      ],
      [
        'misaddressed',
        idp2.logoutRedirect({ ...base, destination: `${http}/elsewhere` }).query,
        /addressed to/,
      ],
      ['stale', idp2.logoutRedirect({ ...base, ageSeconds: 600 }).query, /IssueInstant/],
      ['foreign issuer', idp2.logoutRedirect({ ...base, issuer: 'https://evil.example' }).query, /issuer/i],
      ['replayed', replayed, /used already/],
    ];
    for (const [name, query, message] of cases) {
      const res = await slo(query);
      assert.equal(res.status, 401, `${name}: ${res.status}`);
      assert.match(await res.text(), message, name);
    }
    const unsignedPost = await fetch(sloUrl(), {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ SAMLRequest: idp2.logoutPost({ ...base, unsigned: true }).SAMLRequest }),
    });
    assert.equal(unsignedPost.status, 401);
    assert.match(await unsignedPost.text(), /signature/i);
    assert.equal(await whoami(token), 200, 'no refused request ended the sign-in');
    // A provider without sloUrl has no single logout service.
    assert.equal((await fetch(`${http}/login/saml/corp-saml/slo?${replayed}`)).status, 404);
  });
});
