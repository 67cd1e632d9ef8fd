/**
 * `pgward doctor`: what stands between this machine and the databases, one line per check with
 * what to do: the gateway, its TLS (HTTP and PostgreSQL), the clock, the sign-in and its refresh,
 * and a real `select 1` on each connection the person may use. Exits non-zero when one fails.
 */
import { readFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import path from 'node:path';
import { rootCertificates } from 'node:tls';
import pg from 'pg';
import { PgwardError } from '../errors.js';
import { isLoopbackHost } from '../loopback.js';
import { myConnections } from './client_env.js';
import { certificateCheck, clockCheck, type DoctorCheck } from './doctor_verdicts.js';
import { accessToken, api, type GatewaySslMode, gatewayUrl, pgEndpoint } from './gateway_client.js';
import { sslRequest, tlsFacts } from './tls_probe.js';

const PROBE_TIMEOUT_MS = 5_000;
const QUERY_TIMEOUT_MS = 10_000;

const message = (err: unknown) =>
  err instanceof PgwardError
    ? err.message
    : ((err as { code?: string; message?: string }).message ?? String(err)) +
      ((err as { cause?: { code?: string } }).cause?.code
        ? ` (${(err as { cause: { code: string } }).cause.code})`
        : '');

/** The CA file of the gateway, when PGWARD_CA names one, with the system's roots. */
async function trustedCas(): Promise<string[] | undefined> {
  const file = process.env['PGWARD_CA'];
  if (!file) return undefined;
  const pem = await readFile(file, 'utf8').catch((err: Error) => {
    throw new PgwardError('BAD_REQUEST', `PGWARD_CA ${file}: ${err.message}`, {
      hint: "set PGWARD_CA to the gateway's CA certificate file (PEM), or unset it",
    });
  });
  return [pem, ...rootCertificates];
}

/** Runs every check in order; a check whose ground failed is skipped, not failed again. */
export async function doctorChecks(opts: { gateway?: string }): Promise<DoctorCheck[]> {
  const checks: DoctorCheck[] = [];
  const add = (c: DoctorCheck) => checks.push(c);
  let gateway: string;
  try {
    gateway = await gatewayUrl(opts.gateway);
  } catch (err) {
    add({
      check: 'gateway',
      status: 'fail',
      detail: message(err),
      action: (err as PgwardError).hint ?? 'pass --gateway URL',
    });
    return checks;
  }
  const url = new URL(gateway);
  const ca = await trustedCas();

  // Reachable, and the clock (the Date header has whole seconds: half of the round trip is slack).
  let reachable = false;
  const sent = Date.now();
  try {
    const res = await fetch(`${gateway}/livez`, { signal: AbortSignal.timeout(PROBE_TIMEOUT_MS) });
    const received = Date.now();
    reachable = res.ok;
    add(
      res.ok
        ? { check: 'gateway', status: 'ok', detail: `${gateway} answered in ${received - sent} ms` }
        : {
            check: 'gateway',
            status: 'fail',
            detail: `${gateway} answered HTTP ${res.status}`,
            action: 'check that --gateway / PGWARD_GATEWAY is the gateway and not a proxy in front of it',
          },
    );
    add(clockCheck(sent, received, res.headers.get('date')));
    await res.body?.cancel();
  } catch (err) {
    add({
      check: 'gateway',
      status: 'fail',
      detail: `cannot reach ${gateway}: ${message(err)}`,
      action: /CERT|SELF_SIGNED|UNABLE_TO_VERIFY|ERR_TLS/.test(message(err))
        ? 'see http tls below'
        : 'start the gateway, or check --gateway / PGWARD_GATEWAY and your network',
    });
    add({ check: 'clock', status: 'skip', detail: 'the gateway did not answer' });
  }

  // HTTP TLS.
  if (url.protocol === 'https:') {
    const host = url.hostname.replace(/^\[(.*)\]$/, '$1');
    try {
      // The CLI's HTTP client trusts the system's roots and NODE_EXTRA_CA_CERTS, and so does this.
      const facts = await tlsFacts(host, Number(url.port || 443), undefined, undefined);
      add(certificateCheck('http tls', host, facts, 'trust its CA: NODE_EXTRA_CA_CERTS=FILE', false));
    } catch (err) {
      add({
        check: 'http tls',
        status: 'fail',
        detail: `no TLS handshake: ${message(err)}`,
        action: 'check that the gateway serves HTTPS at this port',
      });
    }
  } else {
    add(
      isLoopbackHost(url.hostname)
        ? { check: 'http tls', status: 'ok', detail: 'plain HTTP on loopback' }
        : {
            check: 'http tls',
            status: 'warn',
            detail: 'plain HTTP: your tokens cross the network in the clear',
            action: 'use the https:// URL of the gateway, or ask its operator to serve HTTPS (http.tls)',
          },
    );
  }

  if (!reachable) {
    for (const check of ['pg tls', 'signed in', 'token refresh', 'connections']) {
      add({ check, status: 'skip', detail: 'the gateway did not answer' });
    }
    return checks;
  }

  // PostgreSQL TLS.
  let endpoint: { host: string; port: number; sslmode: GatewaySslMode } | undefined;
  try {
    endpoint = await pgEndpoint(gateway, undefined);
    const { host, port } = endpoint;
    if (endpoint.sslmode === 'disable') {
      add(
        isLoopbackHost(host)
          ? {
              check: 'pg tls',
              status: 'warn',
              detail: `${host}:${port} offers no TLS (plaintext on loopback only)`,
              action: 'enable TLS on the endpoint before anyone reaches it off this machine',
            }
          : {
              check: 'pg tls',
              status: 'fail',
              detail: `${host}:${port} offers no TLS`,
              action: "ask the gateway's operator to enable TLS on the PostgreSQL endpoint",
            },
      );
    } else {
      const facts = await tlsFacts(host, port, await sslRequest(host, port), ca);
      const check = certificateCheck(
        `pg tls`,
        host,
        facts,
        "set PGWARD_CA to the gateway's CA file (pgward passes it to clients as PGSSLROOTCERT)",
        true,
      );
      check.detail = `${host}:${port} ${check.detail}`;
      // libpq verifies against PGSSLROOTCERT or ~/.postgresql/root.crt, not the system's roots.
      const rootCert =
        process.env['PGWARD_CA'] ||
        process.env['PGSSLROOTCERT'] ||
        path.join(homedir(), '.postgresql', 'root.crt');
      const libpqRoot = await readFile(rootCert).then(
        () => true,
        () => false,
      );
      if (check.status === 'ok' && endpoint.sslmode === 'verify-full' && !libpqRoot) {
        add({
          check: 'pg tls',
          status: 'warn',
          detail: `${check.detail}, but psql has no root certificate for verify-full`,
          action: "set PGWARD_CA to the gateway's CA file",
        });
      } else add(check);
    }
  } catch (err) {
    add({
      check: 'pg tls',
      status: 'fail',
      detail: `cannot reach the PostgreSQL endpoint: ${message(err)}`,
      action: "check that the gateway's PostgreSQL port is open to you",
    });
  }

  // The sign-in, then a refresh through the IdP.
  let token: string | undefined;
  try {
    token = await accessToken(gateway);
    const me = await api<{ email: string; provider: string; tokenExpiresAt: string; signIn?: string }>(
      gateway,
      'GET',
      '/api/v1/whoami',
      { token },
    );
    let until = '';
    if (me.signIn) {
      const logins = await api<{ id: string; expiresAt: string }[]>(gateway, 'GET', '/api/v1/me/logins', {
        token,
      });
      const mine = logins.find((l) => l.id === me.signIn);
      if (mine) until = `, sign-in until ${mine.expiresAt}`;
    }
    add({
      check: 'signed in',
      status: 'ok',
      detail: `as ${me.email} via ${me.provider}; token until ${me.tokenExpiresAt}${until}`,
    });
  } catch (err) {
    add({ check: 'signed in', status: 'fail', detail: message(err), action: 'run `pgward login`' });
  }
  if (!token) {
    add({ check: 'token refresh', status: 'skip', detail: 'not signed in' });
  } else if (process.env['PGWARD_TOKEN']) {
    add({ check: 'token refresh', status: 'skip', detail: 'PGWARD_TOKEN is set: pgward uses it as it is' });
  } else {
    try {
      token = await accessToken(gateway, { refresh: true });
      const me = await api<{ tokenExpiresAt: string }>(gateway, 'GET', '/api/v1/whoami', { token });
      add({
        check: 'token refresh',
        status: 'ok',
        detail: `a fresh token, valid until ${me.tokenExpiresAt}`,
      });
    } catch (err) {
      add({
        check: 'token refresh',
        status: 'fail',
        detail: message(err),
        action: 'run `pgward login` (the sign-in ended, or the identity provider refused the refresh)',
      });
    }
  }

  // A real `select 1` on each connection, through the gateway.
  if (!token || !endpoint) {
    add({
      check: 'connections',
      status: 'skip',
      detail: token ? 'the PostgreSQL endpoint did not answer' : 'not signed in',
    });
    return checks;
  }
  let mine: { name: string }[];
  try {
    mine = await myConnections(gateway, token);
  } catch (err) {
    add({
      check: 'connections',
      status: 'fail',
      detail: message(err),
      action: 'run `pgward ls` for the details',
    });
    return checks;
  }
  if (mine.length === 0) {
    add({
      check: 'connections',
      status: 'warn',
      detail: 'you may use no connection',
      action: 'ask an administrator to give one of your groups (`pgward whoami`) access',
    });
  }
  const me = await api<{ email: string }>(gateway, 'GET', '/api/v1/whoami', { token });
  for (const c of mine) add(await selectOne(c.name, me.email, token, endpoint, ca));
  return checks;
}

async function selectOne(
  connection: string,
  email: string,
  token: string,
  endpoint: { host: string; port: number; sslmode: GatewaySslMode },
  ca: string[] | undefined,
): Promise<DoctorCheck> {
  const check = `connection ${connection}`;
  const started = Date.now();
  const client = new pg.Client({
    host: endpoint.host,
    port: endpoint.port,
    user: email,
    password: token,
    database: connection,
    application_name: 'pgward doctor',
    connectionTimeoutMillis: QUERY_TIMEOUT_MS,
    query_timeout: QUERY_TIMEOUT_MS,
    ssl:
      endpoint.sslmode === 'disable'
        ? false
        : { rejectUnauthorized: endpoint.sslmode === 'verify-full', ...(ca ? { ca } : {}) },
  });
  client.on('error', () => undefined);
  try {
    await client.connect();
    await client.query('select 1');
    return { check, status: 'ok', detail: `select 1 answered in ${Date.now() - started} ms` };
  } catch (err) {
    const e = err as { code?: string; message?: string };
    const sqlstate = typeof e.code === 'string' && /^[0-9A-Z]{5}$/.test(e.code) ? e.code : undefined;
    return {
      check,
      status: 'fail',
      detail: `${e.message ?? String(err)}${sqlstate ? ` (SQLSTATE ${sqlstate})` : ''}`,
      action:
        sqlstate?.startsWith('28') || sqlstate === '3D000'
          ? 'your access changed: `pgward ls`, else ask an administrator'
          : sqlstate?.startsWith('08') || sqlstate === '57P03'
            ? 'the target does not answer the gateway: tell its administrator (`pgward admin check conn NAME`)'
            : 'run `pgward psql ' + connection + '` to see more',
    };
  } finally {
    await client.end().catch(() => undefined);
  }
}

/** `pgward doctor [--json]`. */
export async function runDoctor(opts: { gateway?: string; json?: boolean }): Promise<void> {
  const checks = await doctorChecks(opts);
  if (opts.json) process.stdout.write(`${JSON.stringify(checks, null, 2)}\n`);
  else {
    for (const c of checks) {
      process.stdout.write(`${c.status.padEnd(4)}  ${c.check}: ${c.detail}\n`);
      if (c.action && c.status !== 'ok' && c.status !== 'skip')
        process.stdout.write(`      do: ${c.action}\n`);
    }
  }
  const failed = checks.filter((c) => c.status === 'fail').length;
  if (failed > 0) {
    throw new PgwardError('UPSTREAM_FAILED', `${failed} check${failed === 1 ? '' : 's'} failed`, {
      hint: 'each failed line says what to do',
    });
  }
}
