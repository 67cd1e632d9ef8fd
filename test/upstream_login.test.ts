import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { startTestStack, type TestStack } from './support/dev_stack.js';

/**
 * Role mode `shared` and the upstream login methods: the test opens the demo target's pg_hba.conf
 * to md5 and cleartext password logins for two roles, as an older server would ask.
 */
describe('upstream login methods and role mode shared', () => {
  let t: TestStack;
  let target: pg.Client;

  before(async () => {
    t = await startTestStack({ PGWARD_PG_ROLE_SYNC_SECONDS: '0' });
    const hba = path.join(t.dataDir, 'target', 'pg_hba.conf');
    writeFileSync(
      hba,
      `host all shared_md5 127.0.0.1/32 md5\nhost all shared_plain 127.0.0.1/32 password\n${readFileSync(hba, 'utf8')}`,
    );
    target = new pg.Client({ connectionString: t.stack.info.target });
    await target.connect();
    await target.query("SET password_encryption = 'md5'");
    await target.query("CREATE ROLE shared_md5 LOGIN PASSWORD 'md5-secret' IN ROLE app_readonly");
    await target.query(
      "RESET password_encryption; CREATE ROLE shared_plain LOGIN PASSWORD 'plain-secret' IN ROLE app_readonly",
    );
    await target.query("CREATE ROLE shared_scram LOGIN PASSWORD 'scram-secret' IN ROLE app_readonly");
    await target.query('SELECT pg_reload_conf()');
    const demo = (await t.stack.gateway.connections.find('demo'))!;
    for (const [name, user, password, sslmode] of [
      ['shared-md5', 'shared_md5', 'md5-secret', 'disable'],
      ['shared-plain', 'shared_plain', 'plain-secret', 'disable'],
      ['shared-scram', 'shared_scram', 'scram-secret', 'prefer'],
      ['needs-tls', 'shared_scram', 'scram-secret', 'require'],
      ['wrong-secret', 'shared_scram', 'not-it', 'disable'],
    ] as const) {
      await t.stack.gateway.connections.put({
        name,
        host: demo.host,
        port: demo.port,
        database: demo.database,
        sslmode,
        roleMode: 'shared',
        credential: { user, password },
        access: { viewer: ['app_readonly'] },
      });
    }
  });
  after(async () => {
    await target?.end();
    await t?.close();
  });

  for (const [connection, role] of [
    ['shared-md5', 'shared_md5'],
    ['shared-plain', 'shared_plain'],
    ['shared-scram', 'shared_scram'],
  ] as const) {
    it(`logs in with ${role.replace('shared_', '')} and acts as the shared role (${connection})`, async () => {
      const r = await t.psql(
        'viewer@example.com',
        ['-At', '-c', 'select current_user', '-c', 'show application_name'],
        {
          database: connection,
        },
      );
      assert.equal(r.code, 0, r.stderr);
      assert.deepEqual(r.stdout.trim().split('\n'), [role, 'psql [viewer@example.com]']);
    });
  }

  it('refuses sslmode=require against a target without TLS, saying so', async () => {
    const r = await t.psql('viewer@example.com', ['-c', 'select 1'], { database: 'needs-tls' });
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /the target does not support TLS, but the connection requires sslmode=require/);
  });

  it('reports a vaulted credential the target refuses, with the target’s SQLSTATE and no secret', async () => {
    const client = new pg.Client({
      host: t.stack.info.pg.host,
      port: t.stack.info.pg.port,
      user: 'viewer@example.com',
      database: 'wrong-secret',
      password: await t.token('viewer@example.com'),
      ssl: { rejectUnauthorized: false },
    });
    client.on('error', () => undefined);
    const err = (await client.connect().then(
      () => assert.fail('connected'),
      (e: unknown) => e,
    )) as { code: string; message: string };
    assert.equal(err.code, '28P01');
    assert.match(err.message, /^target database: password authentication failed for user "shared_scram"/);
    assert.ok(!err.message.includes('not-it'));
  });
});
