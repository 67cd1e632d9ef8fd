import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { type DevIdp, startDevIdp } from '../src/dev/dev_idp.js';
import { IdpPageWalker } from '../src/dev/dev_login.js';
import { freePort } from '../src/store/free_port.js';
import { call, deviceLogin } from './support/api.js';
import { startTestStack, type TestStack } from './support/dev_stack.js';
import { quietLog } from './support/quiet_log.js';
import { tempDir } from './support/temp_dir.js';

/**
 * One person, two real IdPs: the dev IdP and "partner" (from a config file, linkByEmail on), which
 * knows viewer@example.com (verified) as an editor. Tokens of both reach the PostgreSQL endpoint.
 */
describe('linking and last-used switching with two real providers', () => {
  let partner: DevIdp;
  let t: TestStack;
  let admin: string;

  before(async () => {
    partner = await startDevIdp({
      dir: tempDir('partner-idp'),
      host: '127.0.0.1',
      port: await freePort(),
      redirectUris: [],
      users: [{ sub: 'p-77', email: 'viewer@example.com', name: 'Vera at Partner', groups: ['writers'] }],
      log: quietLog,
    });
    const file = path.join(tempDir('partner-config'), 'pgward.json');
    writeFileSync(
      file,
      JSON.stringify({
        providers: [
          {
            name: 'partner',
            issuer: partner.issuer,
            clientId: 'pgward',
            audience: 'pgward',
            linkByEmail: true,
            mappings: { groups: { writers: ['editor'] } },
          },
        ],
      }),
    );
    t = await startTestStack({ PGWARD_CONFIG: file });
    admin = (await deviceLogin(t.stack.info.http, t.stack.info.idp, 'admin@example.com')).access_token;
  });
  after(async () => {
    await t?.close();
    await partner?.close();
  });

  async function partnerToken(): Promise<string> {
    const started = (await (
      await fetch(`${partner.issuer}/device/auth`, {
        method: 'POST',
        body: new URLSearchParams({ client_id: 'pgward', scope: 'openid email profile groups' }),
      })
    ).json()) as { device_code: string; verification_uri_complete: string };
    await new IdpPageWalker(partner.issuer).walk(
      started.verification_uri_complete,
      { email: 'viewer@example.com', password: 'password' },
      () => false,
    );
    const res = await fetch(`${partner.issuer}/token`, {
      method: 'POST',
      body: new URLSearchParams({
        grant_type: 'urn:ietf:params:oauth:grant-type:device_code',
        device_code: started.device_code,
        client_id: 'pgward',
      }),
    });
    return ((await res.json()) as { access_token: string }).access_token;
  }

  async function canWrite(token: string): Promise<boolean> {
    const client = await t.client('viewer@example.com', { password: token });
    try {
      await client.query('begin');
      await client.query("insert into users (username, email) values ('link-probe', 'p@x')");
      return true;
    } catch (err) {
      assert.equal((err as { code: string }).code, '42501');
      return false;
    } finally {
      await client.query('rollback').catch(() => undefined);
      await client.end();
    }
  }

  it('joins the partner identity to the same person, and the last-used identity decides', async () => {
    const dev = await t.token('viewer@example.com');
    const viaPartner = await partnerToken();
    assert.equal(await canWrite(dev), false, 'as the dev identity: viewer');
    assert.equal(await canWrite(viaPartner), true, 'as the partner identity: editor (mapped from "writers")');
    // No waiting out the sign-in cache: switching the last-used identity publishes an access
    // event, which empties it.
    assert.equal(await canWrite(dev), false, 'switching back switches permissions back');

    const user = await call<{
      userId: string;
      identities: { provider: string; identityId: string; isLastUsed: boolean }[];
    }>(t.stack.info.http, 'GET', '/api/v1/users/viewer@example.com', { token: admin });
    assert.deepEqual(
      user.body.identities.map((i) => i.provider).sort(),
      ['dev', 'partner'],
      'one person, two identities',
    );
    assert.equal(user.body.identities.find((i) => i.isLastUsed)?.provider, 'dev');

    // An administrator deactivates the partner identity: its tokens are refused, dev's still work.
    const partnerIdentity = user.body.identities.find((i) => i.provider === 'partner')!;
    const off = await call(
      t.stack.info.http,
      'PATCH',
      `/api/v1/users/${user.body.userId}/identities/${partnerIdentity.identityId}`,
      { token: admin, body: { isActive: false } },
    );
    assert.equal(off.status, 200);
    const refused = await t.refusal('viewer@example.com', { password: viaPartner });
    assert.equal(refused.code, '28000');
    assert.match(refused.message, /your partner identity is deactivated in pgward/);
    assert.equal(await canWrite(dev), false);
  });
});
