/**
 * Signs a dev user in to the dev IdP without a browser: it walks the real authorization code +
 * PKCE flow (authorize → login form → consent → code → token endpoint), as a browser would.
 * Nothing is forged; the dev IdP checks the password and signs the tokens.
 */
import { createHash, randomBytes } from 'node:crypto';
import { PgwardError } from '../errors.js';
import { DEV_CLIENT_ID } from './dev_users.js';

export interface TokenSet {
  access_token: string;
  id_token?: string;
  refresh_token?: string;
  expires_in: number;
  token_type: string;
  scope?: string;
}

const REDIRECT_URI = 'http://127.0.0.1/callback';
const MAX_REDIRECTS = 10;
const TIMEOUT_MS = 10_000;

/** A minimal cookie jar: the dev IdP's cookies, sent back on every request of one login. */
class CookieJar {
  private readonly cookies = new Map<string, string>();
  store(res: Response): void {
    for (const header of res.headers.getSetCookie()) {
      const [pair = ''] = header.split(';');
      const eq = pair.indexOf('=');
      if (eq > 0) this.cookies.set(pair.slice(0, eq).trim(), pair.slice(eq + 1).trim());
    }
  }
  header(): string {
    return [...this.cookies].map(([k, v]) => `${k}=${v}`).join('; ');
  }
}

function unreachable(issuer: string, cause: unknown): PgwardError {
  return new PgwardError('IDP_UNREACHABLE', `the dev IdP at ${issuer} did not answer`, {
    cause,
    hint: 'is `pgward dev` running?',
  });
}

/** Completes a login for `email`/`password` and returns the token endpoint's answer. */
export async function devLogin(opts: { issuer: string; email: string; password: string }): Promise<TokenSet> {
  const jar = new CookieJar();
  const request = async (url: string, init: RequestInit = {}): Promise<Response> => {
    try {
      const res = await fetch(url, {
        ...init,
        redirect: 'manual',
        signal: AbortSignal.timeout(TIMEOUT_MS),
        headers: { ...(init.headers as Record<string, string>), cookie: jar.header() },
      });
      jar.store(res);
      return res;
    } catch (err) {
      throw unreachable(opts.issuer, err);
    }
  };

  const verifier = randomBytes(32).toString('base64url');
  const authorize = new URL('/auth', opts.issuer);
  authorize.search = new URLSearchParams({
    client_id: DEV_CLIENT_ID,
    response_type: 'code',
    redirect_uri: REDIRECT_URI,
    scope: 'openid email profile groups offline_access',
    prompt: 'consent',
    state: randomBytes(16).toString('base64url'),
    nonce: randomBytes(16).toString('base64url'),
    code_challenge: createHash('sha256').update(verifier).digest('base64url'),
    code_challenge_method: 'S256',
    login_hint: opts.email,
  }).toString();

  let res = await request(authorize.toString());
  let submitted = false;
  for (let hop = 0; hop < MAX_REDIRECTS; hop++) {
    const location = res.headers.get('location');
    if (location?.startsWith(REDIRECT_URI)) {
      const params = new URL(location).searchParams;
      const code = params.get('code');
      if (!code) {
        throw new PgwardError(
          'LOGIN_FAILED',
          `the dev IdP refused the login: ${params.get('error_description') ?? params.get('error')}`,
        );
      }
      return exchangeCode(opts.issuer, code, verifier);
    }
    if (location) {
      res = await request(new URL(location, opts.issuer).toString());
      continue;
    }
    // A page without a redirect is the login form; submit it once.
    const page = await res.text();
    const action = /action="(\/interaction\/[A-Za-z0-9_-]+\/login)"/.exec(page)?.[1];
    if (!action || submitted) {
      throw new PgwardError('LOGIN_FAILED', `the dev IdP did not accept ${opts.email} with that password`, {
        hint: 'dev users are admin@, editor@ and viewer@example.com with password "password"',
      });
    }
    submitted = true;
    res = await request(new URL(action, opts.issuer).toString(), {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ email: opts.email, password: opts.password }).toString(),
    });
  }
  throw new PgwardError('LOGIN_FAILED', 'the dev IdP redirected too many times');
}

async function exchangeCode(issuer: string, code: string, verifier: string): Promise<TokenSet> {
  let res: Response;
  try {
    res = await fetch(new URL('/token', issuer), {
      method: 'POST',
      signal: AbortSignal.timeout(TIMEOUT_MS),
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({
        grant_type: 'authorization_code',
        client_id: DEV_CLIENT_ID,
        code,
        redirect_uri: REDIRECT_URI,
        code_verifier: verifier,
      }).toString(),
    });
  } catch (err) {
    throw unreachable(issuer, err);
  }
  const body = (await res.json().catch(() => ({}))) as Partial<TokenSet> & { error?: string };
  if (!res.ok || typeof body.access_token !== 'string') {
    throw new PgwardError(
      'LOGIN_FAILED',
      `the dev IdP token endpoint answered ${res.status} ${body.error ?? ''}`.trim(),
    );
  }
  return body as TokenSet;
}
