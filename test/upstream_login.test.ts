import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { UpstreamConnection } from '../src/upstream/upstream.js';
import { upstreamTarget } from '../src/upstream/upstream_target.js';
import { startTestStack, type TestStack } from './support/dev_stack.js';

/**
 * Role mode `shared` and the upstream login methods: the test opens the demo target's pg_hba.conf
 * to md5 and cleartext password logins for two roles, as an older server would ask. Without TLS
 * pgward verified, it answers those only for a connection that accepts the risk.
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
      [
        'provision-prefer',
        'pgward_admin',
        readFileSync(path.join(t.dataDir, 'target-admin.password'), 'utf8').trim(),
        'prefer',
      ],
      ['needs-tls', 'shared_scram', 'scram-secret', 'require'],
      ['wrong-secret', 'shared_scram', 'not-it', 'disable'],
    ] as const) {
      await t.stack.gateway.connections.put({
        name,
        host: demo.host,
        port: demo.port,
        database: demo.database,
        sslmode,
        roleMode: name.startsWith('provision') ? 'provision' : 'shared',
        credential: { user, password },
        access: { viewer: ['app_readonly'] },
      });
    }
  });
  after(async () => {
    await target?.end();
    await t?.close();
  });

  for (const [connection, role] of [['shared-scram', 'shared_scram']] as const) {
    it(`logs in with ${role.replace('shared_', '')} and acts as the shared role (${connection})`, async () => {
      const r = await t.psql(
        'viewer@example.com',
        ['-At', '-c', 'select current_user', '-c', 'show application_name'],
        {
          database: connection,
        },
      );
      assert.equal(r.code, 0, r.stderr);
      assert.deepEqual(r.stdout.trim().split('\n'), [role, 'psql']);
    });
  }

  for (const [connection, method] of [
    ['shared-md5', 'as md5'],
    ['shared-plain', 'in cleartext'],
  ] as const) {
    it(`does not send a vaulted password ${method} without verified TLS (${connection}, finding 8)`, async () => {
      const r = await t.psql('viewer@example.com', ['-c', 'select 1'], { database: connection });
      assert.notEqual(r.code, 0);
      assert.match(
        r.stderr,
        new RegExp(`asks for the password ${method}, which pgward sends only over TLS it verified`),
      );
      assert.match(r.stderr, /HINT: +let the target use scram-sha-256/);
    });
  }

  for (const [connection, user, method] of [
    ['shared-md5', 'shared_md5', 'md5'],
    ['shared-plain', 'shared_plain', 'password'],
  ] as const) {
    it(`logs in with ${method} when the connection accepts the risk (allowUnverifiedPasswordAuth)`, async () => {
      const connection_ = (await t.stack.gateway.connections.find(connection))!;
      const credential = await t.stack.gateway.connections.credential(connection_);
      const target = upstreamTarget(connection_, credential, {}, 5000);
      await assert.rejects(UpstreamConnection.open(target), /sends only over TLS it verified/);
      const conn = await UpstreamConnection.open(
        upstreamTarget({ ...connection_, allowUnverifiedPasswordAuth: true }, credential, {}, 5000),
      );
      try {
        assert.equal(conn.authMethod, method);
        assert.deepEqual(
          await conn.pipeline([{ sql: 'select current_user, $1::text', params: ['x'] }], 'a test'),
          [[[user, 'x']]],
        );
      } finally {
        conn.close();
      }
    });
  }

  it('provision mode with sslmode=prefer against a target without TLS provisions and logs in', async () => {
    const r = await t.psql(
      'viewer@example.com',
      ['-At', '-c', 'select current_user, ssl from pg_stat_ssl where pid = pg_backend_pid()'],
      {
        database: 'provision-prefer',
      },
    );
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout.trim(), /^viewer@example\.com.*\|f$/);
  });

  it('refuses sslmode=require against a target without TLS, saying so', async () => {
    const r = await t.psql('viewer@example.com', ['-c', 'select 1'], { database: 'needs-tls' });
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /the target does not support TLS, but the connection requires sslmode=require/);
  });

  it('reports a vaulted credential the target refuses, with the target’s SQLSTATE and no secret', async () => {
    const err = await t.refusal('viewer@example.com', { database: 'wrong-secret' });
    assert.equal(err.code, '28P01');
    assert.match(err.message, /^target database: password authentication failed for user "shared_scram"/);
    assert.ok(!err.message.includes('not-it'));
  });
});

describe('upstream TLS per sslmode', () => {
  let t: TestStack;
  let cert: string;
  let target: pg.Client;

  before(async () => {
    t = await startTestStack({ PGWARD_PG_ROLE_SYNC_SECONDS: '0' });
    // Turn TLS on in the demo target, with a self-signed certificate for 127.0.0.1.
    const { devCertificate } = await import('../src/dev/dev_tls.js');
    const pems = await devCertificate(path.join(t.dataDir, 'target-tls'));
    cert = readFileSync(pems.certFile, 'utf8');
    const dir = path.join(t.dataDir, 'target');
    writeFileSync(path.join(dir, 'server.crt'), cert);
    writeFileSync(path.join(dir, 'server.key'), readFileSync(pems.keyFile), { mode: 0o600 });
    const { execFileSync } = await import('node:child_process');
    if (process.getuid?.() === 0)
      execFileSync('chown', ['postgres:', path.join(dir, 'server.crt'), path.join(dir, 'server.key')]);
    target = new pg.Client({ connectionString: t.stack.info.target });
    await target.connect();
    await target.query("ALTER SYSTEM SET ssl = 'on'");
    // A role that logs in with md5, over TLS only.
    const hba = path.join(dir, 'pg_hba.conf');
    writeFileSync(hba, `hostssl all tls_md5 127.0.0.1/32 md5\n${readFileSync(hba, 'utf8')}`);
    await target.query("SET password_encryption = 'md5'");
    await target.query("CREATE ROLE tls_md5 LOGIN PASSWORD 'md5-secret' IN ROLE app_readonly");
    await target.query('SELECT pg_reload_conf()');
    const demo = (await t.stack.gateway.connections.find('demo'))!;
    const other = (await import('../src/dev/dev_tls.js')).devCertificate(path.join(t.dataDir, 'other-ca'));
    const otherCa = readFileSync((await other).certFile, 'utf8');
    for (const [name, sslmode, sslCa, host] of [
      ['tls-require', 'require', undefined, '127.0.0.1'],
      ['tls-verify-full', 'verify-full', cert, '127.0.0.1'],
      ['tls-verify-ca', 'verify-ca', cert, '127.0.0.1'],
      ['tls-wrong-ca', 'verify-full', otherCa, '127.0.0.1'],
      ['tls-md5', 'verify-full', cert, '127.0.0.1'],
    ] as const) {
      await t.stack.gateway.connections.put({
        name,
        host,
        port: demo.port,
        database: demo.database,
        sslmode,
        ...(sslCa ? { sslCa } : {}),
        ...(name === 'tls-md5'
          ? { roleMode: 'shared' as const, credential: { user: 'tls_md5', password: 'md5-secret' } }
          : {
              roleMode: 'provision' as const,
              credential: {
                user: 'pgward_admin',
                password: readFileSync(path.join(t.dataDir, 'target-admin.password'), 'utf8').trim(),
              },
            }),
        access: { viewer: ['app_readonly'] },
      });
    }
  });
  after(async () => {
    await target?.end();
    await t?.close();
  });

  for (const connection of ['tls-require', 'tls-verify-full', 'tls-verify-ca']) {
    it(`${connection}: the upstream connection is encrypted`, async () => {
      const r = await t.psql(
        'viewer@example.com',
        ['-At', '-c', 'select ssl from pg_stat_ssl where pid = pg_backend_pid()'],
        {
          database: connection,
        },
      );
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout.trim(), 't');
    });
  }

  it('sends a vaulted password as md5 over TLS it verified (verify-full), without any unsafe option', async () => {
    const r = await t.psql('viewer@example.com', ['-At', '-c', 'select current_user'], {
      database: 'tls-md5',
    });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.trim(), 'tls_md5');
  });

  it('verify-full refuses a target whose certificate another CA signed', async () => {
    const r = await t.psql('viewer@example.com', ['-c', 'select 1'], { database: 'tls-wrong-ca' });
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /cannot manage database roles on "tls-wrong-ca"/);
    assert.match(r.stderr, /DETAIL: +TLS to the target failed: self-signed certificate/);
  });

  it('forwards a cancel to a TLS upstream', async () => {
    const client = await t.client('viewer@example.com', { database: 'tls-verify-full' });
    try {
      const sleeping = client.query('select pg_sleep(30)');
      sleeping.catch(() => undefined);
      await new Promise((resolve) => setTimeout(resolve, 500));
      t.cancel(client);
      await assert.rejects(sleeping, /canceling statement due to user request/);
    } finally {
      await client.end();
    }
  });
});
