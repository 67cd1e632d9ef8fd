/**
 * `pgward doctor`: what stands between this machine and the databases, one line per check with
 * what to do: the gateway, its TLS (HTTP and PostgreSQL), the clock, the sign-in and its refresh,
 * and a real `select 1` on each connection the person may use. Exits non-zero when one fails.
 */
import { readFile } from 'node:fs/promises';
import { isIP, connect as netConnect, type Socket } from 'node:net';
import { homedir } from 'node:os';
import path from 'node:path';
import {
  type ConnectionOptions,
  checkServerIdentity,
  type PeerCertificate,
  rootCertificates,
  connect as tlsConnect,
} from 'node:tls';
import pg from 'pg';
import { PgwardError } from '../errors.js';
import { isLoopbackHost } from '../loopback.js';
import { myConnections } from './client_env.js';
import { accessToken, api, type GatewaySslMode, gatewayUrl, pgEndpoint } from './gateway_client.js';

export type CheckStatus = 'ok' | 'warn' | 'fail' | 'skip';

export interface DoctorCheck {
  check: string;
  status: CheckStatus;
  detail: string;
  /** What to do about it (for warn and fail). */
  action?: string;
}

const PROBE_TIMEOUT_MS = 5_000;
const QUERY_TIMEOUT_MS = 10_000;
/** pgward accepts tokens up to 30 s before or after their times (docs/identity.md). */
const SKEW_FAIL_MS = 30_000;
const SKEW_WARN_MS = 5_000;
/** A certificate that ends sooner than this is a warning. */
const EXPIRY_WARN_MS = 14 * 24 * 3600_000;
/** PostgreSQL's SSLRequest: length 8, code 80877103 (protocol docs, "SSL Session Encryption"). */
const SSL_REQUEST = Buffer.from([0, 0, 0, 8, 4, 210, 22, 47]);

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
  return file ? [await readFile(file, 'utf8'), ...rootCertificates] : undefined;
}

interface TlsFacts {
  cert: PeerCertificate;
  /** Why the chain is not trusted, when it is not. */
  untrusted: string | undefined;
  /** Why the certificate does not name the host, when it does not. */
  wrongName: string | undefined;
}

/** A TLS handshake on `socket` (or a new one to host:port), and what it showed of the certificate. */
function tlsFacts(
  host: string,
  port: number,
  socket: Socket | undefined,
  ca: string[] | undefined,
): Promise<TlsFacts> {
  return new Promise((resolve, reject) => {
    const opts: ConnectionOptions = {
      ...(socket ? { socket } : { host, port }),
      ...(isIP(host) ? {} : { servername: host }),
      ...(ca ? { ca } : {}),
      rejectUnauthorized: false,
    };
    const tls = tlsConnect(opts, () => {
      const cert = tls.getPeerCertificate();
      const identity = checkServerIdentity(host, cert);
      resolve({
        cert,
        untrusted: tls.authorized ? undefined : String(tls.authorizationError),
        wrongName: identity?.message,
      });
      tls.destroy();
    });
    tls.setTimeout(PROBE_TIMEOUT_MS, () => tls.destroy(new Error('no TLS handshake within 5 s')));
    tls.once('error', reject);
  });
}

/** Asks the PostgreSQL endpoint for TLS (SSLRequest) and answers the socket once it said `S`. */
function sslRequest(host: string, port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = netConnect({ host, port });
    socket.setTimeout(PROBE_TIMEOUT_MS, () => socket.destroy(new Error('no answer within 5 s')));
    socket.once('error', reject);
    socket.once('connect', () => socket.write(SSL_REQUEST));
    socket.once('data', (answer) => {
      socket.setTimeout(0);
      socket.removeListener('error', reject);
      if (answer[0] === 0x53) resolve(socket);
      else {
        socket.destroy();
        reject(new Error('the endpoint answered SSLRequest without TLS'));
      }
    });
  });
}

/**
 * One check on a certificate: trust, host name, expiry. `loopbackRelaxed`: on loopback an
 * unverified certificate is fine, as it is to the PostgreSQL clients (sslmode=require there).
 */
function certificateCheck(
  name: string,
  host: string,
  facts: TlsFacts,
  fixTrust: string,
  loopbackRelaxed: boolean,
): DoctorCheck {
  const relaxed = loopbackRelaxed && isLoopbackHost(host);
  const ends = new Date(facts.cert.valid_to);
  const left = ends.getTime() - Date.now();
  const until = `valid until ${ends.toISOString()}`;
  if (left <= 0) {
    return {
      check: name,
      status: 'fail',
      detail: `the certificate expired at ${ends.toISOString()}`,
      action: "ask the gateway's operator to renew it",
    };
  }
  if (facts.untrusted && !relaxed) {
    return {
      check: name,
      status: 'fail',
      detail: `the certificate is not trusted: ${facts.untrusted}`,
      action: fixTrust,
    };
  }
  if (facts.wrongName && !relaxed) {
    return {
      check: name,
      status: 'fail',
      detail: facts.wrongName,
      action: 'use the host name the certificate names, or ask the operator for a certificate for this one',
    };
  }
  if (left < EXPIRY_WARN_MS) {
    return {
      check: name,
      status: 'warn',
      detail: `${until}: under 14 days left`,
      action: "ask the gateway's operator to renew it",
    };
  }
  const trust = facts.untrusted
    ? `not verified (${facts.untrusted}), accepted on loopback`
    : 'trusted, names the host';
  return { check: name, status: 'ok', detail: `${trust}, ${until}` };
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
    const date = Date.parse(res.headers.get('date') ?? '');
    if (Number.isNaN(date)) {
      add({ check: 'clock', status: 'skip', detail: 'the gateway sent no Date header' });
    } else {
      const skew = (sent + received) / 2 - (date + 500);
      const slack = (received - sent) / 2 + 500;
      const off = Math.max(0, Math.abs(skew) - slack);
      const side = skew > 0 ? 'ahead of' : 'behind';
      const detail = `this machine is ${(Math.abs(skew) / 1000).toFixed(1)} s ${side} the gateway`;
      const action = 'set the clock right (NTP: e.g. `timedatectl set-ntp true`); tokens allow 30 s';
      add(
        off > SKEW_FAIL_MS
          ? { check: 'clock', status: 'fail', detail, action }
          : off > SKEW_WARN_MS
            ? { check: 'clock', status: 'warn', detail, action }
            : {
                check: 'clock',
                status: 'ok',
                detail: `within ${Math.ceil((Math.abs(skew) + slack) / 1000)} s of the gateway`,
              },
      );
    }
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
