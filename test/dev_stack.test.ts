import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createRemoteJWKSet, jwtVerify } from 'jose';
import pg from 'pg';
import { devLogin, IdpPageWalker } from '../src/dev/dev_login.js';
import type { DevInfo } from '../src/dev/dev_stack.js';
import { freePort } from '../src/store/free_port.js';
import { runCli, startDev as startDevProcess, stopProcess } from './support/cli.js';
import { tempDir } from './support/temp_dir.js';

const READY_LIMIT_MS = 60_000;

/** Starts `pgward dev` and waits until it is ready. */
const startDev = (dataDir: string, ports: { http: number; pg: number; idp: number }) =>
  startDevProcess({ dataDir, ports, limitMs: READY_LIMIT_MS });

function readDevInfo(dataDir: string): DevInfo {
  return JSON.parse(readFileSync(path.join(dataDir, 'dev.json'), 'utf8')) as DevInfo;
}

/** The store's superuser URL, read the way an operator would: its password file and pid file. */
function storeUrl(dataDir: string): string {
  const password = readFileSync(path.join(dataDir, 'store.password'), 'utf8').trim();
  const port = readFileSync(path.join(dataDir, 'store', 'postmaster.pid'), 'utf8').split('\n')[3];
  return `postgresql://postgres:${encodeURIComponent(password)}@127.0.0.1:${port}/postgres`;
}

async function query<T extends pg.QueryResultRow>(
  url: string,
  sql: string,
  params: unknown[] = [],
): Promise<T[]> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return (await client.query<T>(sql, params)).rows;
  } finally {
    await client.end();
  }
}

async function verifyWithIdp(token: string, issuer: string) {
  const discovery = (await (await fetch(`${issuer}/.well-known/openid-configuration`)).json()) as {
    jwks_uri: string;
  };
  const { payload, protectedHeader } = await jwtVerify(
    token,
    createRemoteJWKSet(new URL(discovery.jwks_uri)),
    {
      issuer,
      audience: 'pgward',
      algorithms: ['RS256'],
    },
  );
  return { payload, protectedHeader };
}

describe('pgward dev', () => {
  const dataDir = path.join(tempDir('dev'), 'data');
  let ports: { http: number; pg: number; idp: number };
  let child: Awaited<ReturnType<typeof startDev>>;

  before(async () => {
    ports = { http: await freePort(), pg: await freePort(), idp: await freePort() };
    child = await startDev(dataDir, ports);
  });
  after(async () => {
    if (child) await stopProcess(child);
  });

  it('reports every component healthy (details for an administrator only)', async () => {
    const anyone = await fetch(`http://127.0.0.1:${ports.http}/healthz`);
    assert.equal(anyone.status, 200);
    assert.deepEqual(await anyone.json(), { status: 'ok' });
    const admin = await devLogin({
      issuer: `http://127.0.0.1:${ports.idp}`,
      email: 'admin@example.com',
      password: 'password',
    });
    const res = await fetch(`http://127.0.0.1:${ports.http}/healthz`, {
      headers: { authorization: `Bearer ${admin.access_token}` },
    });
    assert.equal(res.status, 200);
    const body = (await res.json()) as { status: string; components: Record<string, { ok: boolean }> };
    assert.equal(body.status, 'ok');
    assert.deepEqual(Object.keys(body.components).sort(), [
      'audit',
      'demo_target',
      'dev_idp',
      'identity_providers',
      'postgres_endpoint',
      'store',
    ]);
    for (const component of Object.values(body.components)) assert.equal(component.ok, true);
  });

  it('writes dev.json as DESIGN.md says, readable by its owner only', async () => {
    const info = readDevInfo(dataDir);
    assert.equal(info.http, `http://127.0.0.1:${ports.http}`);
    assert.deepEqual(info.pg, { host: '127.0.0.1', port: ports.pg });
    assert.equal(info.idp, `http://127.0.0.1:${ports.idp}`);
    const mode = (await import('node:fs')).statSync(path.join(dataDir, 'dev.json')).mode & 0o777;
    assert.equal(mode, 0o600);
    // The target URL reaches the demo database with the sample schema and roles of seed 002.
    const users = await query<{ username: string }>(info.target, 'SELECT username FROM users ORDER BY id');
    assert.deepEqual(
      users.map((u) => u.username),
      ['john_doe', 'jane_smith', 'admin_user'],
    );
    const roles = await query<{ rolname: string }>(
      info.target,
      "SELECT rolname FROM pg_roles WHERE rolname LIKE 'app\\_%' ORDER BY 1",
    );
    assert.deepEqual(
      roles.map((r) => r.rolname),
      ['app_admin', 'app_readonly', 'app_readwrite'],
    );
  });

  it('`pgward dev token` prints a token that verifies against the dev IdP JWKS and carries groups', async () => {
    const result = await runCli(['dev', 'token', 'viewer@example.com', '--data-dir', dataDir]);
    assert.equal(result.code, 0, result.stderr);
    const token = result.stdout.trim();
    const { payload, protectedHeader } = await verifyWithIdp(token, readDevInfo(dataDir).idp);
    assert.equal(protectedHeader.typ, 'at+jwt');
    assert.deepEqual(payload['groups'], ['viewer']);
    assert.equal(payload['email'], 'viewer@example.com');
    assert.equal(typeof payload.exp, 'number');
  });

  it('`pgward dev token --gateway` finds the IdP through the gateway', async () => {
    const result = await runCli([
      'dev',
      'token',
      'editor@example.com',
      '--gateway',
      `http://127.0.0.1:${ports.http}`,
    ]);
    assert.equal(result.code, 0, result.stderr);
    const { payload } = await verifyWithIdp(result.stdout.trim(), readDevInfo(dataDir).idp);
    assert.deepEqual(payload['groups'], ['editor']);
  });

  it('`pgward dev token` refuses a wrong password with a non-zero exit', async () => {
    const result = await runCli([
      'dev',
      'token',
      'viewer@example.com',
      '--password',
      'nope',
      '--data-dir',
      dataDir,
    ]);
    assert.equal(result.code, 77);
    assert.match(result.stderr, /did not accept viewer@example.com/);
    assert.equal(result.stdout, '');
  });

  it('completes a device authorization grant through the sign-in pages', async () => {
    const { idp } = readDevInfo(dataDir);
    const started = await fetch(`${idp}/device/auth`, {
      method: 'POST',
      body: new URLSearchParams({ client_id: 'pgward', scope: 'openid email groups offline_access' }),
    });
    assert.equal(started.status, 200);
    const device = (await started.json()) as {
      device_code: string;
      user_code: string;
      verification_uri_complete: string;
    };
    const poll = async () => {
      const res = await fetch(`${idp}/token`, {
        method: 'POST',
        body: new URLSearchParams({
          grant_type: 'urn:ietf:params:oauth:grant-type:device_code',
          device_code: device.device_code,
          client_id: 'pgward',
        }),
      });
      return (await res.json()) as { error?: string; access_token?: string; refresh_token?: string };
    };
    assert.equal((await poll()).error, 'authorization_pending');
    const walker = new IdpPageWalker(idp);
    await walker.walk(
      device.verification_uri_complete,
      { email: 'editor@example.com', password: 'password' },
      () => false,
    );
    const tokens = await poll();
    assert.ok(tokens.access_token, JSON.stringify(tokens));
    assert.ok(tokens.refresh_token);
    const { payload } = await verifyWithIdp(tokens.access_token, idp);
    assert.deepEqual(payload['groups'], ['editor']);
    assert.equal(payload['email'], 'editor@example.com');
  });

  it('escapes what it reflects on the sign-in page', async () => {
    const { idp } = readDevInfo(dataDir);
    const url = new URL('/auth', idp);
    url.search = new URLSearchParams({
      client_id: 'pgward',
      response_type: 'code',
      redirect_uri: 'http://127.0.0.1/callback',
      scope: 'openid',
      code_challenge: 'x'.repeat(43),
      code_challenge_method: 'S256',
      login_hint: '"><script>alert(1)</script>',
    }).toString();
    const walker = new IdpPageWalker(idp);
    const first = await walker.request(url.toString());
    const page = await (await walker.request(first.headers.get('location')!)).text();
    assert.match(page, /&quot;&gt;&lt;script&gt;alert\(1\)&lt;\/script&gt;/);
    assert.ok(!page.includes('<script>alert(1)'));
  });

  it('comes back with the same data after a restart', async () => {
    const before = readDevInfo(dataDir);
    const tokens = await devLogin({ issuer: before.idp, email: 'admin@example.com', password: 'password' });
    assert.ok(tokens.refresh_token, 'the dev IdP issues refresh tokens');
    await query(
      storeUrl(dataDir),
      "INSERT INTO pgward.tenant (code, name) VALUES ('restart-probe', 'Probe')",
    );
    await query(
      before.target,
      "INSERT INTO users (username, email) VALUES ('restart_probe', 'probe@example.com')",
    );

    assert.equal(await stopProcess(child), 0, 'a clean stop exits 0');
    child = await startDev(dataDir, ports);
    const afterInfo = readDevInfo(dataDir);

    const tenants = await query(
      storeUrl(dataDir),
      "SELECT 1 FROM pgward.tenant WHERE code = 'restart-probe'",
    );
    assert.equal(tenants.length, 1);
    const users = await query(afterInfo.target, "SELECT 1 FROM users WHERE username = 'restart_probe'");
    assert.equal(users.length, 1);
    // The signing key survived: a token from before the restart still verifies.
    await verifyWithIdp(tokens.access_token, afterInfo.idp);
    // The IdP's grants survived: the refresh token from before the restart still works.
    const refreshed = await fetch(`${afterInfo.idp}/token`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({
        grant_type: 'refresh_token',
        refresh_token: tokens.refresh_token!,
        client_id: 'pgward',
      }),
    });
    assert.equal(refreshed.status, 200, await refreshed.clone().text());
    const body = (await refreshed.json()) as { access_token: string };
    const { payload } = await verifyWithIdp(body.access_token, afterInfo.idp);
    assert.deepEqual(payload['groups'], ['admin']);
  });
});
