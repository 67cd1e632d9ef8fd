import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { stringify } from 'yaml';
import { providerSchema } from '../src/config/schema.js';
import { IdpPageWalker } from '../src/dev/dev_login.js';
import { call, DEVICE_GRANT, deviceLogin, type Grant } from './support/api.js';
import { startTestStack, type TestStack } from './support/dev_stack.js';
import { type FakeGithub, type GithubUser, startFakeGithub } from './support/fake_github.js';
import { tempDir } from './support/temp_dir.js';

const CLIENT = { id: 'Iv1.pgwardtest', secret: 'github-client-secret-never-shown' };

describe('GitHub as an identity provider (OAuth 2.0) against a server that answers like GitHub', () => {
  const octo: GithubUser = {
    id: 583231,
    login: 'octocat',
    name: 'The Octocat',
    email: 'octocat@acme.example',
    orgs: ['acme', 'evilcorp'],
    teams: ['acme/dba', 'evilcorp/root'],
  };
  const mallory: GithubUser = {
    id: 666,
    login: 'mallory',
    name: 'Mallory',
    email: 'mallory@evil.example',
    orgs: ['evilcorp'],
    teams: ['evilcorp/root'],
  };
  let github: FakeGithub;
  let t: TestStack;
  let http: string;

  before(async () => {
    github = await startFakeGithub(CLIENT);
    const file = path.join(tempDir('github-stack'), 'pgward.yaml');
    writeFileSync(
      file,
      stringify({
        providers: [
          {
            name: 'github',
            type: 'github',
            clientId: CLIENT.id,
            clientSecret: CLIENT.secret,
            github: { url: github.url, apiUrl: github.apiUrl, allowedOrganizations: ['ACME'] },
            mappings: { groups: { 'ACME/dba': ['viewer'] } },
          },
        ],
      }),
    );
    t = await startTestStack({ PGWARD_CONFIG: file });
    http = t.stack.info.http;
  });
  after(async () => {
    await t?.close();
    await github?.close();
  });

  /** A device login at the gateway, confirmed at "GitHub" as `user`. */
  async function githubDeviceLogin(user: GithubUser) {
    const started = await call<{ device_code: string; verification_uri: string }>(
      http,
      'POST',
      '/api/v1/auth/device',
      {
        body: { provider: 'github' },
      },
    );
    assert.equal(started.status, 200, JSON.stringify(started.body));
    assert.equal(started.body.verification_uri, `${github.url}/login/device`);
    const poll = () =>
      call<Grant>(http, 'POST', '/api/v1/auth/token', {
        body: { grant_type: DEVICE_GRANT, provider: 'github', device_code: started.body.device_code },
      });
    const pending = await poll();
    assert.equal(pending.body['code' as never], 'LOGIN_PENDING');
    github.signIn(user);
    github.confirmDevices();
    return poll();
  }

  it('refuses a GitHub provider without allowed organisations, and derives the API of GitHub Enterprise', () => {
    const bad = providerSchema.safeParse({ name: 'gh', type: 'github', clientId: 'x' });
    assert.ok(!bad.success);
    assert.deepEqual(bad.error.issues[0]?.path, ['github', 'allowedOrganizations']);
    const ghes = providerSchema.parse({
      name: 'ghes',
      type: 'github',
      clientId: 'x',
      github: { url: 'https://github.company.com', allowedOrganizations: ['acme'] },
    });
    assert.match(ghes.explain.join('\n'), /API https:\/\/github\.company\.com\/api\/v3/);
    assert.deepEqual(ghes.scopes, ['read:user', 'user:email', 'read:org']);
  });

  it('signs in with the device flow; organisation and teams become groups, only in allowed organisations', async () => {
    const grant = await githubDeviceLogin(octo);
    assert.equal(grant.status, 200, JSON.stringify(grant.body));
    assert.equal(grant.body.person.email, 'octocat@acme.example');
    assert.deepEqual(grant.body.person.groups, ['github:ACME', 'github:ACME/dba', 'viewer']);
    const client = await t.client('octocat@acme.example', { password: grant.body.access_token });
    assert.equal((await client.query('select current_user')).rows[0].current_user, 'octocat@acme.example');
    await client.end();
  });

  it('refuses someone outside the allowed organisations', async () => {
    const refused = await githubDeviceLogin(mallory);
    assert.equal(refused.status, 401, JSON.stringify(refused.body));
    assert.equal(refused.body['code' as never], 'TOKEN_ORGANIZATION');
    assert.match(
      String(refused.body['detail' as never] ?? refused.body['message' as never]),
      /not a member of ACME/,
    );
    const wire = await t.refusal('mallory@evil.example', { password: github.issue(mallory) });
    assert.equal(wire.detail, 'pgward error TOKEN_ORGANIZATION');
  });

  it('checks a GitHub token presented as the password at the user endpoint, and refuses a revoked one', async () => {
    const token = github.issue(octo);
    const before = github.hits.get('/user') ?? 0;
    const client = await t.client('octocat@acme.example', { password: token });
    await client.end();
    assert.ok((github.hits.get('/user') ?? 0) > before, 'asked GitHub');
    const other = github.issue(octo);
    github.revoke(other);
    const refused = await t.refusal('octocat@acme.example', { password: other });
    assert.equal(refused.code, '28P01');
    assert.equal(refused.detail, 'pgward error TOKEN_INVALID');
    const unknown = await t.refusal('octocat@acme.example', { password: `gho_${'x'.repeat(36)}` });
    assert.equal(unknown.detail, 'pgward error TOKEN_INVALID');
  });

  it('signs in in a browser (state, PKCE and the client secret checked by GitHub)', async () => {
    github.signIn(octo);
    const browser = new IdpPageWalker(http);
    const done = await browser.walk(`${http}/login/github`, { email: '', password: '' }, (l) =>
      l.endsWith('/login/done'),
    );
    assert.ok(done, 'reached the end of the login');
    const me = await browser.request(`${http}/api/v1/whoami`);
    assert.equal(me.status, 200);
    assert.equal(((await me.json()) as { email: string }).email, 'octocat@acme.example');
  });

  it('ends the sign-in at refresh once the person has left the organisation', async () => {
    const grant = await githubDeviceLogin(octo);
    assert.equal(grant.status, 200);
    const refresh = () =>
      call(http, 'POST', '/api/v1/auth/token', {
        body: { grant_type: 'refresh_token', refresh_token: grant.body.refresh_token },
      });
    const first = await refresh();
    assert.equal(first.status, 200, JSON.stringify(first.body));
    const orgs = octo.orgs;
    octo.orgs = ['evilcorp'];
    try {
      const second = await call(http, 'POST', '/api/v1/auth/token', {
        body: {
          grant_type: 'refresh_token',
          refresh_token: (first.body as { refresh_token: string }).refresh_token,
        },
      });
      assert.equal(second.status, 401, JSON.stringify(second.body));
      assert.equal(second.body['code'], 'TOKEN_REVOKED');
    } finally {
      octo.orgs = orgs;
    }
  });

  it('never shows the client secret', async () => {
    const admin = (await deviceLogin(http, t.stack.info.idp, 'admin@example.com')).access_token;
    const listed = await call(http, 'GET', '/api/v1/providers', { token: admin });
    assert.doesNotMatch(JSON.stringify(listed.body), /never-shown/);
  });
});
