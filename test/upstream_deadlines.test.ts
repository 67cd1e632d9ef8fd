import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { PgwardError } from '../src/errors.js';
import { RoleProvisioner } from '../src/upstream/role_provisioner.js';
import { UpstreamConnection, type UpstreamTarget } from '../src/upstream/upstream.js';
import type { SslMode } from '../src/vault/connections.js';
import { startTestStack, type TestStack } from './support/dev_stack.js';
import { type FakeBehaviour, type FakeTarget, startFakeTarget } from './support/fake_target.js';
import { addPerson } from './support/people.js';

const DEADLINE_MS = 300;

const target = (port: number, sslmode: SslMode): UpstreamTarget => ({
  name: 'stalled',
  host: '127.0.0.1',
  port,
  database: 'db',
  sslmode,
  sslCa: undefined,
  user: 'someone',
  password: 'secret',
  params: {},
  timeoutMs: DEADLINE_MS,
});

/** Opens a connection to a fake target; resolves with the error and how long it took. */
async function failure(
  behaviour: FakeBehaviour,
  sslmode: SslMode,
  then?: (c: UpstreamConnection) => Promise<unknown>,
) {
  const fake = await startFakeTarget(behaviour);
  const started = Date.now();
  try {
    const conn = await UpstreamConnection.open(target(fake.port, sslmode));
    try {
      await then?.(conn);
    } finally {
      conn.close();
    }
  } catch (err) {
    return { err: err as PgwardError, ms: Date.now() - started };
  } finally {
    await fake.close();
  }
  throw new Error('the upstream step did not fail');
}

describe('deadlines on every upstream step (issue 16: no deadline after the TCP connect)', () => {
  for (const [what, behaviour, sslmode, step] of [
    ['accepts TCP and says nothing', 'silent', 'prefer', 'the TLS request'],
    ['accepts TCP and says nothing', 'silent', 'disable', 'the login'],
    ["answers 'S' to SSLRequest and stalls", 'tls-then-stall', 'require', 'the TLS handshake'],
    ['stalls after the startup message', 'stall-after-startup', 'prefer', 'the login'],
  ] as const) {
    it(`a target that ${what} (sslmode ${sslmode}) fails ${step} within the deadline`, async () => {
      const { err, ms } = await failure(behaviour, sslmode);
      assert.ok(err instanceof PgwardError, String(err));
      assert.equal(err.code, 'UPSTREAM_TIMEOUT');
      assert.equal(err.sqlstate, '08006');
      assert.equal(err.message, `target database "stalled" did not answer ${step} within 0.3 s`);
      assert.ok(ms >= DEADLINE_MS - 20 && ms < DEADLINE_MS + 1500, `took ${ms} ms`);
    });
  }

  it('a control query the target never answers (DISCARD ALL) fails within the deadline and closes', async () => {
    let conn: UpstreamConnection | undefined;
    const { err, ms } = await failure('stall-queries', 'disable', async (c) => {
      conn = c;
      const started = Date.now();
      try {
        await c.query('DISCARD ALL');
      } finally {
        assert.ok(Date.now() - started < DEADLINE_MS + 1500);
      }
    });
    assert.equal(err.code, 'UPSTREAM_TIMEOUT');
    assert.equal(
      err.message,
      'target database "stalled" did not answer a control query (DISCARD ALL) within 0.3 s',
    );
    assert.ok(ms < 2 * DEADLINE_MS + 1500);
    assert.equal(conn?.alive, false, 'a connection past its deadline is not reused');
  });

  it('a target that is starting up gives 57P03, not a generic failure', async () => {
    const { err } = await failure('starting-up', 'prefer');
    assert.equal(err.code, 'UPSTREAM_STARTING');
    assert.equal(err.sqlstate, '57P03');
    assert.match(err.message, /starting up/);
  });

  it('an unreachable port fails at once, naming the connection and address', async () => {
    const fake = await startFakeTarget('silent');
    await fake.close();
    await assert.rejects(UpstreamConnection.open(target(fake.port, 'prefer')), (err: PgwardError) => {
      assert.equal(err.code, 'UPSTREAM_FAILED');
      assert.equal(err.message, `cannot reach target database "stalled" at 127.0.0.1:${fake.port}`);
      assert.equal(err.detail, 'ECONNREFUSED');
      return true;
    });
  });
});

describe('deadlines through the gateway and in provisioning', () => {
  let t: TestStack;
  let fake: FakeTarget;
  before(async () => {
    t = await startTestStack({ PGWARD_PG_ROLE_SYNC_SECONDS: '0', PGWARD_PG_UPSTREAM_TIMEOUT_SECONDS: '1' });
    fake = await startFakeTarget('silent');
    for (const [name, roleMode] of [
      ['stalled-shared', 'shared'],
      ['stalled-provision', 'provision'],
    ] as const) {
      await t.stack.gateway.connections.put({
        name,
        host: '127.0.0.1',
        port: fake.port,
        database: 'demo',
        sslmode: 'prefer',
        roleMode,
        credential: { user: 'pgward_admin', password: 'irrelevant' },
        access: { viewer: ['app_readonly'] },
      });
    }
  });
  after(async () => {
    await fake?.close();
    await t?.close();
  });

  it('role provisioning against a stalled target fails within the deadline, naming the connection', async () => {
    const connection = (await t.stack.gateway.connections.find('stalled-provision'))!;
    const provisioner = new RoleProvisioner(t.stack.gateway.connections, 0, { timeoutMs: DEADLINE_MS });
    const person = await addPerson(t, 'nobody@example.com');
    const started = Date.now();
    try {
      await assert.rejects(provisioner.prepare(connection, person, ['app_readonly']), (err: PgwardError) => {
        assert.equal(err.code, 'UPSTREAM_TIMEOUT');
        assert.equal(
          err.message,
          'target database "stalled-provision" did not answer the TLS request within 0.3 s',
        );
        return true;
      });
      assert.ok(Date.now() - started < DEADLINE_MS + 1500);
    } finally {
      await provisioner.close();
    }
  });

  it('a session to a stalled target ends with 08006 within pg.upstreamTimeoutSeconds', async () => {
    for (const database of ['stalled-provision', 'stalled-shared']) {
      const started = Date.now();
      const err = await t.refusal('viewer@example.com', { database });
      const ms = Date.now() - started;
      assert.equal(err.code, '08006', `${database}: ${err.message}`);
      assert.match(err.message, /did not answer the TLS request within 1 s/);
      assert.ok(ms < 5000, `${database}: took ${ms} ms`);
    }
  });
});
