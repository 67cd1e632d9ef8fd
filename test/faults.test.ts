/**
 * Faults with real processes: `pgward dev` runs as a child process, and its store's PostgreSQL
 * is stopped (fast shutdown) and started again from outside, as an operator or a crash would.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { decodeBatch, SPOOL_FILE } from '../src/audit/spool.js';
import { devLogin } from '../src/dev/dev_login.js';
import { type EmbeddedCluster, startEmbeddedPostgres } from '../src/store/embedded_postgres.js';
import { freePort } from '../src/store/free_port.js';
import { type CliChild, runCli, startDev as startDevProcess, stopProcess } from './support/cli.js';
import { eventually } from './support/eventually.js';
import { quietLog } from './support/quiet_log.js';
import { removeTempDir, tempDir } from './support/temp_dir.js';

const READY_LIMIT_MS = 90_000;
const SHUTDOWN_SECONDS = 8;

type Child = CliChild;

describe('faults, with the gateway as a real process', () => {
  const root = tempDir('faults');
  const dataDir = path.join(root, 'data');
  const storeDir = path.join(dataDir, 'store');
  const configFile = path.join(root, 'pgward.yaml');
  let ports: { http: number; pg: number; idp: number };
  let child: Child | undefined;
  /** The store's PostgreSQL when the test (not the gateway) runs it. */
  let ownStore: EmbeddedCluster | undefined;
  let editorToken: string;
  let viewerToken: string;
  let adminToken: string;

  const env = () => ({ PGWARD_CONFIG: configFile, PGWARD_LOG_LEVEL: 'info' });

  const startDev = () => startDevProcess({ dataDir, ports, env: env(), limitMs: READY_LIMIT_MS });

  /** The store's port and password, read the way an operator would. */
  function storeAddress(): { port: number; url: string } {
    const password = readFileSync(path.join(dataDir, 'store.password'), 'utf8').trim();
    const port = Number(readFileSync(path.join(storeDir, 'postmaster.pid'), 'utf8').split('\n')[3]);
    return { port, url: `postgresql://postgres:${encodeURIComponent(password)}@127.0.0.1:${port}/postgres` };
  }
  let storePort = 0;
  let storeUrl = '';

  /** Stops the store's PostgreSQL (fast shutdown), whoever runs it; resolves once it is gone. */
  async function stopStore(): Promise<void> {
    if (ownStore) {
      await ownStore.close();
      ownStore = undefined;
      return;
    }
    ({ port: storePort, url: storeUrl } = storeAddress());
    const pid = Number(readFileSync(path.join(storeDir, 'postmaster.pid'), 'utf8').split('\n')[0]);
    process.kill(pid, 'SIGINT');
    await eventually(
      async () => (existsSync(`/proc/${pid}`) ? undefined : true),
      'the store stopped',
      30_000,
      { retryErrors: true },
    );
  }

  /** Starts the store's PostgreSQL again on its data dir and port (run by the test). */
  async function startStore(): Promise<void> {
    ownStore = await startEmbeddedPostgres({ dir: storeDir, log: quietLog, port: storePort });
  }

  async function storeQuery<T extends pg.QueryResultRow>(sql: string, params: unknown[] = []): Promise<T[]> {
    const client = new pg.Client({ connectionString: storeUrl || storeAddress().url });
    await client.connect();
    try {
      return (await client.query<T>(sql, params)).rows;
    } finally {
      await client.end();
    }
  }

  /** Audited statements whose text carries `marker`: how many rows, how many different texts. */
  async function audited(marker: string): Promise<{ n: number; texts: number }> {
    const rows = await storeQuery<{ n: number; texts: number }>(
      'SELECT count(*)::int AS n, count(DISTINCT text)::int AS texts FROM pgward.statement WHERE text LIKE $1',
      [`%${marker}%`],
    );
    return rows[0]!;
  }

  /** Statement records in the spool file that carry `marker` (read-only: the gateway owns it). */
  function spooled(marker: string): number {
    const file = path.join(dataDir, 'audit-spool', SPOOL_FILE);
    if (!existsSync(file)) return 0;
    const bytes = readFileSync(file);
    let count = 0;
    for (let at = 0; at + 12 <= bytes.length; ) {
      const length = bytes.readUInt32BE(at + 4);
      if (at + 12 + length > bytes.length) break;
      const batch = decodeBatch(bytes.subarray(at + 12, at + 12 + length));
      const rows = Buffer.concat(batch.statements.parts).toString('latin1');
      count += rows.split(marker).length - 1;
      at += 12 + length;
    }
    return count;
  }

  async function client(token: string, user = 'editor@example.com'): Promise<pg.Client> {
    const c = new pg.Client({
      host: '127.0.0.1',
      port: ports.pg,
      user,
      database: 'demo',
      password: token,
      ssl: false,
      connectionTimeoutMillis: 20_000,
    });
    c.on('error', () => undefined);
    await c.connect();
    return c;
  }

  /** Runs `n` statements, each text unique and carrying `marker`. */
  async function run(c: pg.Client, marker: string, from: number, n: number): Promise<void> {
    for (let i = from; i < from + n; i++) {
      const { rows } = await c.query(`SELECT ${i} AS n /* ${marker} */`);
      assert.equal(rows[0].n, i);
    }
  }

  before(async () => {
    ports = { http: await freePort(), pg: await freePort(), idp: await freePort() };
    writeFileSync(configFile, `shutdownSeconds: ${SHUTDOWN_SECONDS}\naudit:\n  onStoreDown: spool\n`);
    child = await startDev();
    const issuer = `http://127.0.0.1:${ports.idp}`;
    editorToken = (await devLogin({ issuer, email: 'editor@example.com', password: 'password' }))
      .access_token;
    adminToken = (await devLogin({ issuer, email: 'admin@example.com', password: 'password' })).access_token;
    // Never used before the outage, so the gateway has no sign-in of the viewer cached.
    viewerToken = (await devLogin({ issuer, email: 'viewer@example.com', password: 'password' }))
      .access_token;
  });
  after(async () => {
    // An orderly stop, so that the store and the demo target stop with it (SIGKILL would orphan them).
    if (child) await stopProcess(child, 'SIGTERM', 60_000);
    await ownStore?.close();
    removeTempDir(root);
  });

  it('store stopped mid-session: statements go on, new sessions get 57P03, the API 503, and all statements are in the audit once the store is back', async () => {
    const c = await client(editorToken);
    await run(c, 'faults_a', 1, 5);
    await stopStore();
    // The open session goes on.
    await run(c, 'faults_a', 6, 20);
    // A new session that needs the store (to sign the person in) is told what is wrong and
    // that it is temporary.
    const refused = await client(viewerToken, 'viewer@example.com').then(
      (late) => {
        void late.end();
        return undefined;
      },
      (err: { code?: string; message?: string }) => err,
    );
    assert.ok(refused, 'a new session is refused while the store is down');
    assert.equal(refused.code, '57P03');
    assert.equal(refused.message, 'pgward cannot reach its store; try again shortly');
    // The API: 503 with Retry-After, and no internal detail.
    const api = await fetch(`http://127.0.0.1:${ports.http}/api/v1/connections`, {
      headers: { authorization: `Bearer ${adminToken}` },
    });
    assert.equal(api.status, 503);
    assert.ok(Number(api.headers.get('retry-after')) > 0);
    const problem = (await api.json()) as { code: string; detail: string };
    assert.equal(problem.code, 'STORE_UNAVAILABLE');
    assert.doesNotMatch(JSON.stringify(problem), /127\.0\.0\.1|ECONNREFUSED|\d{4,5}/);
    // Readiness and health tell the truth, and the public answer shows nothing more.
    const ready = await fetch(`http://127.0.0.1:${ports.http}/readyz`);
    assert.equal(ready.status, 503);
    assert.ok(Number(ready.headers.get('retry-after')) > 0);
    const health = await fetch(`http://127.0.0.1:${ports.http}/healthz`);
    assert.equal(health.status, 503);
    assert.deepEqual(await health.json(), { status: 'degraded' });
    assert.equal((await fetch(`http://127.0.0.1:${ports.http}/livez`)).status, 200);
    // The statements of the outage are made durable in the spool meanwhile.
    await eventually(
      async () => (spooled('faults_a') >= 20 ? true : undefined),
      'the outage statements in the spool',
      20_000,
      { retryErrors: true },
    );

    await startStore();
    await eventually(
      async () => {
        const { n } = await audited('faults_a');
        return n >= 25 ? true : undefined;
      },
      'every statement in the audit',
      60_000,
      { retryErrors: true },
    );
    assert.deepEqual(await audited('faults_a'), { n: 25, texts: 25 });
    await c.end();
    await eventually(
      async () => {
        const res = await fetch(`http://127.0.0.1:${ports.http}/readyz`);
        return res.status === 200 ? true : undefined;
      },
      'ready again',
      30_000,
      { retryErrors: true },
    );
  });

  it('regression: shutdown hangs when the store is gone: SIGTERM during an outage exits within shutdownSeconds, and a restart replays the spool', async () => {
    const c = await client(editorToken);
    await stopStore();
    await run(c, 'faults_b', 1, 30);
    await eventually(
      async () => (spooled('faults_b') >= 30 ? true : undefined),
      'the outage statements in the spool',
      20_000,
      { retryErrors: true },
    );
    const began = Date.now();
    const code = await stopProcess(child!, 'SIGTERM', 60_000);
    const took = Date.now() - began;
    const output = child!.output();
    child = undefined;
    assert.ok(took < SHUTDOWN_SECONDS * 1000, `exited after ${took} ms`);
    assert.equal(code, 0, output.slice(-2000));
    assert.doesNotMatch(output, /could not be written/);
    assert.match(output, /audit records are in the spool/);
    await c.end().catch(() => undefined);
    // The next start runs its own store again and replays the spool into it.
    storeUrl = '';
    child = await startDev();
    await eventually(
      async () => {
        const { n } = await audited('faults_b');
        return n >= 30 ? true : undefined;
      },
      'the spooled statements in the audit',
      60_000,
      { retryErrors: true },
    );
    assert.deepEqual(await audited('faults_b'), { n: 30, texts: 30 });
  });

  it('a gateway killed with SIGKILL during an outage loses nothing it had spooled', async () => {
    const c = await client(editorToken);
    await stopStore();
    await run(c, 'faults_c', 1, 40);
    await eventually(
      async () => (spooled('faults_c') >= 40 ? true : undefined),
      'the outage statements in the spool',
      20_000,
      { retryErrors: true },
    );
    await stopProcess(child!, 'SIGKILL');
    child = undefined;
    await c.end().catch(() => undefined);
    storeUrl = '';
    child = await startDev();
    await eventually(
      async () => {
        const { n } = await audited('faults_c');
        return n >= 40 ? true : undefined;
      },
      'the spooled statements in the audit',
      60_000,
      { retryErrors: true },
    );
    assert.deepEqual(await audited('faults_c'), { n: 40, texts: 40 });
  });

  /**
   * Stops every process of the store where it is (SIGSTOP): connections stay open and nothing
   * answers, as with a store on a machine that froze. The returned function lets it go and stops it.
   */
  function stallStore(): () => Promise<void> {
    const postmaster = Number(readFileSync(path.join(storeDir, 'postmaster.pid'), 'utf8').split('\n')[0]);
    const stalled = [
      postmaster,
      ...execFileSync('pgrep', ['-P', String(postmaster)], { encoding: 'utf8' })
        .split('\n')
        .filter((line) => line.trim() !== '')
        .map(Number),
    ];
    for (const pid of stalled) process.kill(pid, 'SIGSTOP');
    return async () => {
      for (const pid of stalled) process.kill(pid, 'SIGCONT');
      process.kill(postmaster, 'SIGINT');
      await eventually(
        async () => (existsSync(`/proc/${postmaster}`) ? undefined : true),
        'the store stopped',
        30_000,
        { retryErrors: true },
      );
    };
  }

  it('a second SIGTERM exits at once, after spooling, while the first shutdown waits for a stalled store', async () => {
    const c = await client(editorToken);
    const release = stallStore();
    try {
      await run(c, 'faults_d', 1, 10);
      const exited = new Promise<number | null>((resolve) => child!.once('exit', resolve));
      child!.kill('SIGTERM');
      await eventually(
        async () => (/shutting down/.test(child!.output()) ? true : undefined),
        'shutting down',
        10_000,
        { retryErrors: true },
      );
      const began = Date.now();
      child!.kill('SIGTERM');
      const code = await exited;
      const took = Date.now() - began;
      const output = child!.output();
      child = undefined;
      assert.equal(code, 143, output.slice(-2000));
      assert.ok(took < 2_000, `exited ${took} ms after the second signal`);
      assert.match(output, /second signal: exiting now/);
      assert.equal(spooled('faults_d'), 10, 'every statement is in the spool');
    } finally {
      await release();
      await c.end().catch(() => undefined);
    }
  });

  it('a stalled store: SIGTERM exits at shutdownSeconds with everything spooled, and a restart replays it once', async () => {
    storeUrl = '';
    child = await startDev();
    const c = await client(editorToken);
    const release = stallStore();
    try {
      await run(c, 'faults_e', 1, 10);
      const began = Date.now();
      const code = await stopProcess(child, 'SIGTERM', 60_000);
      const took = Date.now() - began;
      const output = child.output();
      child = undefined;
      assert.equal(code, 1, output.slice(-2000));
      assert.ok(took < SHUTDOWN_SECONDS * 1000 + 2_000, `exited after ${took} ms`);
      assert.match(output, /shutdown did not finish within shutdownSeconds/);
      assert.equal(spooled('faults_e'), 10, 'every statement is in the spool');
    } finally {
      await release();
      await c.end().catch(() => undefined);
    }
    storeUrl = '';
    child = await startDev();
    await eventually(
      async () => {
        const { n } = await audited('faults_e');
        return n >= 10 ? true : undefined;
      },
      'the spooled statements in the audit',
      60_000,
      { retryErrors: true },
    );
    // Test 4's statements were spooled too (and once only).
    assert.deepEqual(await audited('faults_d'), { n: 10, texts: 10 });
    assert.deepEqual(await audited('faults_e'), { n: 10, texts: 10 });
  });

  it('audit.onStoreDown refuse: while the audit cannot be written, statements are refused with 57P03 and the session goes on', async () => {
    if (child) await stopProcess(child, 'SIGTERM', 60_000);
    writeFileSync(configFile, `shutdownSeconds: ${SHUTDOWN_SECONDS}\naudit:\n  onStoreDown: refuse\n`);
    storeUrl = '';
    child = await startDev();
    const c = await client(editorToken);
    await run(c, 'faults_f', 1, 3);
    await stopStore();
    // Once the audit writer has failed to write, nothing more runs: each statement is refused in place.
    const refused = await eventually(
      async () =>
        c.query("SELECT 'faults_f refused' AS n").then(
          () => undefined,
          (err: { code?: string; message: string; severity?: string }) => err,
        ),
      'a statement refused for the audit',
      30_000,
      { retryErrors: true },
    );
    assert.equal(refused.code, '57P03');
    assert.equal(refused.severity, 'ERROR', 'the session is not ended');
    assert.match(refused.message, /cannot record this session in its audit trail/);
    await startStore();
    await eventually(
      async () =>
        c.query("SELECT 'faults_f back' AS n").then(
          () => true,
          () => undefined,
        ),
      'statements run again once the store is back',
      60_000,
      { retryErrors: true },
    );
    assert.equal((await c.query('SELECT 41 + 1 AS n')).rows[0].n, 42);
    await c.end();
  });
});

describe('a port in use', () => {
  let holder: Server;
  let busy: number;
  before(async () => {
    holder = createServer();
    await new Promise<void>((resolve) => holder.listen(0, '127.0.0.1', resolve));
    busy = (holder.address() as { port: number }).port;
  });
  after(() => holder.close());

  for (const [flag, setting] of [
    ['--pg-port', 'PostgreSQL clients'],
    ['--http-port', 'HTTP'],
    ['--idp-port', 'the dev IdP'],
  ] as const) {
    it(`names the flag to change: pgward dev ${flag} (exit code 78)`, async () => {
      const args = {
        '--pg-port': String(await freePort()),
        '--http-port': String(await freePort()),
        '--idp-port': String(await freePort()),
        [flag]: String(busy),
      };
      const result = await runCli(
        ['dev', '--data-dir', path.join(tempDir('port'), 'data'), ...Object.entries(args).flat()],
        {
          timeoutMs: 120_000,
        },
      );
      assert.equal(result.code, 78, result.stderr);
      assert.match(
        result.stderr,
        new RegExp(`cannot listen for ${setting} on 127\\.0\\.0\\.1:${busy}: the address is in use`),
      );
      assert.match(result.stderr, new RegExp(`hint: choose another port with ${flag}`));
      assert.doesNotMatch(result.stderr, /unexpected error/);
    });
  }

  it('names the setting to change: pgward serve with http.port taken (exit code 78)', async () => {
    const dir = tempDir('port-serve');
    const file = path.join(dir, 'pgward.yaml');
    writeFileSync(
      file,
      [
        `dataDir: ${path.join(dir, 'data')}`,
        `secretKey: ${Buffer.alloc(32, 7).toString('base64')}`,
        'http:',
        `  port: ${busy}`,
        'pg:',
        `  port: ${await freePort()}`,
        '',
      ].join('\n'),
    );
    const result = await runCli(['serve', '--config', file], { timeoutMs: 120_000 });
    assert.equal(result.code, 78, result.stderr);
    assert.match(result.stderr, /the address is in use/);
    assert.match(result.stderr, /hint: choose another port with http\.port \(PGWARD_HTTP_PORT\)/);
  });
});
