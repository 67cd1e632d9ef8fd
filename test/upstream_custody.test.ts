import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { PgwardError } from '../src/errors.js';
import { RoleProvisioner } from '../src/upstream/role_provisioner.js';
import { UpstreamConnection } from '../src/upstream/upstream.js';
import type { SslMode } from '../src/vault/connections.js';
import { call } from './support/api.js';
import { startTestStack, type TestStack } from './support/dev_stack.js';
import { type FakeTarget, startFakeTarget } from './support/fake_target.js';
import { addPerson } from './support/people.js';

const SECRET = 'vaulted-secret-do-not-send';

const fakeTarget = (port: number, sslmode: SslMode, allowUnverifiedPasswordAuth?: boolean) => ({
  name: 'elsewhere',
  host: '127.0.0.1',
  port,
  database: 'db',
  sslmode,
  sslCa: undefined,
  user: 'pgward_admin',
  password: SECRET,
  params: {},
  timeoutMs: 2000,
  ...(allowUnverifiedPasswordAuth === undefined ? {} : { allowUnverifiedPasswordAuth }),
});

describe('the vaulted credential cannot be led away (finding 8)', () => {
  for (const method of ['cleartext', 'md5'] as const) {
    for (const sslmode of ['disable', 'prefer'] as const) {
      it(`a server asking for ${method} over sslmode=${sslmode} never receives the password`, async () => {
        const fake = await startFakeTarget(method);
        try {
          await assert.rejects(
            UpstreamConnection.open(fakeTarget(fake.port, sslmode)),
            (err: PgwardError) => {
              assert.equal(err.code, 'UPSTREAM_PASSWORD_REFUSED');
              assert.match(err.message, /which pgward sends only over TLS it verified/);
              assert.ok(!err.message.includes(SECRET) && !err.hint?.includes(SECRET));
              return true;
            },
          );
          assert.equal(fake.accepted, 1);
          assert.deepEqual(fake.passwords, []);
        } finally {
          await fake.close();
        }
      });
    }
    it(`with allowUnverifiedPasswordAuth, ${method} is answered (the explicit, unsafe choice)`, async () => {
      const fake = await startFakeTarget(method);
      try {
        const conn = await UpstreamConnection.open(fakeTarget(fake.port, 'prefer', true));
        conn.close();
        assert.equal(fake.passwords.length, 1);
        assert.equal(conn.authMethod, method === 'cleartext' ? 'password' : 'md5');
        if (method === 'cleartext') assert.equal(fake.passwords[0], SECRET);
        else assert.match(fake.passwords[0]!, /^md5[0-9a-f]{32}$/);
      } finally {
        await fake.close();
      }
    });
  }
});

describe('connection changes that could lead the credential away need it again', () => {
  let t: TestStack;
  let fake: FakeTarget;
  let admin: string;
  before(async () => {
    t = await startTestStack({ PGWARD_PG_ROLE_SYNC_SECONDS: '0' });
    admin = await t.token('admin@example.com');
    fake = await startFakeTarget('cleartext');
    const demo = (await t.stack.gateway.connections.find('demo'))!;
    for (const [name, roleMode] of [
      ['custody', 'provision'],
      ['custody-shared', 'shared'],
    ] as const) {
      await t.stack.gateway.connections.put({
        name,
        host: demo.host,
        port: demo.port,
        database: demo.database,
        sslmode: 'prefer',
        roleMode,
        credential: { user: 'pgward_admin', password: SECRET },
        access: { viewer: ['app_readonly'] },
      });
    }
  });
  after(async () => {
    await fake?.close();
    await t?.close();
  });

  const patch = (name: string, body: Record<string, unknown>) =>
    call<{ detail: string; hint?: string; code: string }>(
      t.stack.info.http,
      'PATCH',
      `/api/v1/connections/${name}`,
      {
        token: admin,
        body,
      },
    );

  for (const [field, body] of [
    ['host', { host: 'localhost' }],
    ['port', { port: 5999 }],
    ['database', { database: 'other' }],
    ['sslmode', { sslmode: 'disable' }],
    ['allowUnverifiedPasswordAuth', { allowUnverifiedPasswordAuth: true }],
  ] as const) {
    it(`PATCH ${field} without the credential is refused with 400 naming ${field}`, async () => {
      const res = await patch('custody', body);
      assert.equal(res.status, 400, JSON.stringify(res.body));
      assert.match(
        res.body.detail,
        new RegExp(`changing ${field} of connection "custody" needs the credential again`),
      );
      const unchanged = (await t.stack.gateway.connections.find('custody'))!;
      assert.equal(unchanged.host, '127.0.0.1');
      assert.equal(unchanged.sslmode, 'prefer');
      assert.equal(unchanged.allowUnverifiedPasswordAuth, false);
    });
  }

  it('another CA for a connection that verifies certificates needs the credential again', async () => {
    const connections = t.stack.gateway.connections;
    const base = {
      name: 'custody-ca',
      host: '127.0.0.1',
      port: 5432,
      database: 'demo',
      sslmode: 'verify-full' as const,
    };
    await connections.put({
      ...base,
      sslCa: 'CA ONE',
      credential: { user: 'pgward_admin', password: SECRET },
    });
    await assert.rejects(connections.put({ ...base, sslCa: 'CA TWO' }), (err: PgwardError) => {
      assert.equal(err.code, 'BAD_REQUEST');
      assert.equal(err.message, 'changing sslCa of connection "custody-ca" needs the credential again');
      return true;
    });
    await connections.put({ ...base, sslCa: 'CA ONE' });
  });

  it('a change that cannot lead it away (stronger TLS, access, role mode) needs no credential', async () => {
    const res = await patch('custody', { sslmode: 'require', access: { viewer: ['app_readonly'] } });
    assert.equal(res.status, 200, JSON.stringify(res.body));
    const back = await patch('custody', {
      sslmode: 'prefer',
      credential: { user: 'pgward_admin', password: SECRET },
    });
    assert.equal(back.status, 200, JSON.stringify(back.body));
  });

  it('PATCH host to a server that asks for cleartext: with the credential sent again, still never over unverified TLS', async () => {
    const res = await patch('custody', {
      host: '127.0.0.1',
      port: fake.port,
      credential: { user: 'pgward_admin', password: SECRET },
    });
    assert.equal(res.status, 200, JSON.stringify(res.body));
    const refused = await t.refusal('viewer@example.com', { database: 'custody' });
    assert.equal(refused.code, '08006');
    assert.match(
      refused.message,
      /asks for the password in cleartext, which pgward sends only over TLS it verified/,
    );
    assert.deepEqual(fake.passwords, [], 'the provisioning login did not send it');
  });

  it('the relay login of a shared connection does not send the vaulted password to it either', async () => {
    const res = await patch('custody-shared', {
      host: '127.0.0.1',
      port: fake.port,
      credential: { user: 'pgward_admin', password: SECRET },
    });
    assert.equal(res.status, 200, JSON.stringify(res.body));
    const refused = await t.refusal('viewer@example.com', { database: 'custody-shared' });
    assert.match(refused.message, /asks for the password in cleartext/);
    assert.deepEqual(fake.passwords, []);
  });

  it("provisioning logins follow the connection's allowUnverifiedPasswordAuth", async () => {
    const res = await patch('custody', {
      allowUnverifiedPasswordAuth: true,
      credential: { user: 'pgward_admin', password: SECRET },
    });
    assert.equal(res.status, 200, JSON.stringify(res.body));
    assert.equal(
      (res.body as unknown as { allowUnverifiedPasswordAuth: boolean }).allowUnverifiedPasswordAuth,
      true,
    );
    const connection = (await t.stack.gateway.connections.find('custody'))!;
    const provisioner = new RoleProvisioner(t.stack.gateway.connections, 0, { timeoutMs: 500 });
    try {
      // The fake lets pgward in and then never answers the provisioning: the password went out.
      await assert.rejects(
        provisioner.prepare(connection, await addPerson(t, 'p@example.com'), ['app_readonly']),
      );
      assert.deepEqual(fake.passwords, [SECRET]);
    } finally {
      await provisioner.close();
    }
  });
});
