/**
 * The CLI's side of the gateway: which gateway (`--gateway`, PGWARD_GATEWAY, else the last one
 * logged in to), its HTTP API with problems turned back into PgwardErrors, and the credentials
 * cached per gateway in the user's config dir (file mode 0600) and refreshed when they run low.
 */
import { chmod, mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import path from 'node:path';
import { ERRORS, type ErrorCode, PgwardError } from '../errors.js';
import { isLoopbackHost } from '../loopback.js';

const TIMEOUT_MS = 15_000;
/** Refresh an access token when it has less than this left. */
const REFRESH_MARGIN_MS = 60_000;

export interface Credentials {
  access_token: string;
  refresh_token: string;
  expires_at: number;
  email: string;
  provider: string;
}

interface CredentialFile {
  current?: string;
  gateways: Record<string, Credentials>;
}

function configDir(): string {
  const base = process.env['XDG_CONFIG_HOME'] || path.join(homedir(), '.config');
  return path.join(base, 'pgward');
}

const credentialPath = () => path.join(configDir(), 'credentials.json');

async function readCredentialFile(): Promise<CredentialFile> {
  try {
    return JSON.parse(await readFile(credentialPath(), 'utf8')) as CredentialFile;
  } catch {
    return { gateways: {} };
  }
}

async function writeCredentialFile(file: CredentialFile): Promise<void> {
  await mkdir(configDir(), { recursive: true, mode: 0o700 });
  const tmp = `${credentialPath()}.${process.pid}.tmp`;
  await writeFile(tmp, `${JSON.stringify(file, null, 2)}\n`, { mode: 0o600 });
  await chmod(tmp, 0o600);
  await rename(tmp, credentialPath());
}

/** The gateway to talk to: the flag, PGWARD_GATEWAY, or the last one logged in to. */
export async function gatewayUrl(flag: string | undefined): Promise<string> {
  const url = flag ?? process.env['PGWARD_GATEWAY'] ?? (await readCredentialFile()).current;
  if (!url) {
    throw new PgwardError('BAD_REQUEST', 'which gateway? none is set', {
      hint: 'pass --gateway URL or set PGWARD_GATEWAY (e.g. http://127.0.0.1:8080 for `pgward dev`)',
    });
  }
  return url.replace(/\/$/, '');
}

export async function saveCredentials(gateway: string, credentials: Credentials): Promise<void> {
  const file = await readCredentialFile();
  file.gateways[gateway] = credentials;
  file.current = gateway;
  await writeCredentialFile(file);
}

export async function forgetCredentials(gateway: string): Promise<Credentials | undefined> {
  const file = await readCredentialFile();
  const old = file.gateways[gateway];
  delete file.gateways[gateway];
  if (file.current === gateway) delete file.current;
  await writeCredentialFile(file);
  return old;
}

/** A problem answer of the API, as the PgwardError it was. */
function fromProblem(status: number, body: unknown): PgwardError {
  const p = (body ?? {}) as { code?: string; detail?: string; hint?: string };
  const code = (p.code && p.code in ERRORS ? p.code : status === 404 ? 'NOT_FOUND' : 'INTERNAL') as ErrorCode;
  return new PgwardError(
    code,
    p.detail ?? `the gateway answered HTTP ${status}`,
    p.hint ? { hint: p.hint } : {},
  );
}

/** Calls the gateway's API; throws the problem it answers as a PgwardError. */
export async function api<T>(
  gateway: string,
  method: string,
  route: string,
  opts: { token?: string; body?: unknown } = {},
): Promise<T> {
  let res: Response;
  try {
    res = await fetch(`${gateway}${route}`, {
      method,
      signal: AbortSignal.timeout(TIMEOUT_MS),
      headers: {
        ...(opts.body === undefined ? {} : { 'content-type': 'application/json' }),
        ...(opts.token ? { authorization: `Bearer ${opts.token}` } : {}),
      },
      body: opts.body === undefined ? undefined : JSON.stringify(opts.body),
    });
  } catch (err) {
    throw new PgwardError('UPSTREAM_FAILED', `cannot reach the gateway at ${gateway}`, {
      cause: err,
      hint: 'check --gateway / PGWARD_GATEWAY and that the gateway is running',
    });
  }
  const text = await res.text();
  const body = text === '' ? null : JSON.parse(text);
  if (!res.ok) throw fromProblem(res.status, body);
  return body as T;
}

/**
 * A valid access token for the gateway: PGWARD_TOKEN, else the cached one (refreshed through the
 * gateway, and so through the IdP, when it is about to expire, or at once with `refresh`).
 */
export async function accessToken(gateway: string, opts: { refresh?: boolean } = {}): Promise<string> {
  const fromEnv = process.env['PGWARD_TOKEN'];
  if (fromEnv) return fromEnv;
  const file = await readCredentialFile();
  const cached = file.gateways[gateway];
  if (!cached) {
    throw new PgwardError('UNAUTHENTICATED', `not logged in to ${gateway}`, { hint: 'run `pgward login`' });
  }
  if (!opts.refresh && cached.expires_at - Date.now() > REFRESH_MARGIN_MS) return cached.access_token;
  const grant = await api<{ access_token: string; refresh_token: string; expires_in: number }>(
    gateway,
    'POST',
    '/api/v1/auth/token',
    { body: { grant_type: 'refresh_token', refresh_token: cached.refresh_token } },
  ).catch((err: unknown) => {
    if (err instanceof PgwardError && err.httpStatus === 401) {
      throw new PgwardError(err.code, `your sign-in ended: ${err.message}`, { hint: 'run `pgward login`' });
    }
    throw err;
  });
  await saveCredentials(gateway, {
    ...cached,
    access_token: grant.access_token,
    refresh_token: grant.refresh_token,
    expires_at: Date.now() + grant.expires_in * 1000,
  });
  return grant.access_token;
}

export type GatewaySslMode = 'disable' | 'require' | 'verify-full';

/**
 * Where the gateway's PostgreSQL endpoint is, from its discovery document, and how to reach it:
 * the given sslmode, else verify-full (require on loopback, where nobody sits in between and the
 * certificate is often self-signed; disable when the endpoint has no TLS).
 */
export async function pgEndpoint(
  gateway: string,
  sslmode: GatewaySslMode | undefined,
): Promise<{ host: string; port: number; sslmode: GatewaySslMode }> {
  const { pg } = await api<{ pg: { host: string; port: number; tls: boolean } }>(
    gateway,
    'GET',
    '/.well-known/pgward-configuration',
  );
  // A gateway listening on every address is reached at the host of its HTTP URL.
  const host = ['0.0.0.0', '::'].includes(pg.host) ? new URL(gateway).hostname : pg.host;
  return {
    host,
    port: pg.port,
    sslmode: sslmode ?? (!pg.tls ? 'disable' : isLoopbackHost(host) ? 'require' : 'verify-full'),
  };
}
