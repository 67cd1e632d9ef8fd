/**
 * Signs a dev user in to the dev IdP without a browser: it walks the real authorization code +
 * PKCE flow (authorize → sign-in form → consent → code → token endpoint), as a browser would.
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
const MAX_STEPS = 15;
const TIMEOUT_MS = 10_000;

const ENTITIES: Record<string, string> = {
  '&amp;': '&',
  '&lt;': '<',
  '&gt;': '>',
  '&quot;': '"',
  '&#39;': "'",
};

function attribute(tag: string, name: string): string | undefined {
  const value = new RegExp(`\\s${name}="([^"]*)"`, 'i').exec(tag)?.[1];
  return value?.replace(/&(amp|lt|gt|quot|#39);/g, (e) => ENTITIES[e]!);
}

/** The first POST form of a page: its action and the fields it would submit. */
function firstForm(html: string): { action: string; fields: URLSearchParams } | undefined {
  const form = /<form\b[^>]*method="post"[^>]*>([\s\S]*?)<\/form>/i.exec(html);
  if (!form) return undefined;
  const action = attribute(form[0].slice(0, form[0].indexOf('>') + 1), 'action');
  if (!action) return undefined;
  const fields = new URLSearchParams();
  for (const input of form[1]!.match(/<input\b[^>]*>/gi) ?? []) {
    const name = attribute(input, 'name');
    if (name) fields.set(name, attribute(input, 'value') ?? '');
  }
  return { action, fields };
}

/**
 * A cookie-keeping HTTP client that walks the dev IdP's pages as a browser without JavaScript
 * would: it follows redirects and submits each page's form, filling in email and password.
 * Used by `pgward dev token` and by tests that complete device logins headlessly.
 */
export class IdpPageWalker {
  private readonly cookies = new Map<string, string>();

  constructor(private readonly base: string) {}

  async request(url: string, init: RequestInit = {}): Promise<Response> {
    let res: Response;
    try {
      res = await fetch(new URL(url, this.base), {
        ...init,
        redirect: 'manual',
        signal: AbortSignal.timeout(TIMEOUT_MS),
        headers: {
          ...(init.headers as Record<string, string>),
          cookie: [...this.cookies].map(([k, v]) => `${k}=${v}`).join('; '),
        },
      });
    } catch (err) {
      throw unreachable(this.base, err);
    }
    for (const header of res.headers.getSetCookie()) {
      const [pair = ''] = header.split(';');
      const eq = pair.indexOf('=');
      if (eq > 0) this.cookies.set(pair.slice(0, eq).trim(), pair.slice(eq + 1).trim());
    }
    return res;
  }

  /**
   * Walks from `url` until a redirect for which `stop` is true (its URL is returned) or a page
   * with no form (undefined). Refuses to submit the sign-in form twice: that means a wrong password.
   */
  async walk(
    url: string,
    credentials: { email: string; password: string },
    stop: (location: string) => boolean,
  ) {
    let res = await this.request(url);
    let signedIn = false;
    for (let step = 0; step < MAX_STEPS; step++) {
      const location = res.headers.get('location');
      if (location) {
        if (stop(location)) return location;
        res = await this.request(location);
        continue;
      }
      const form = firstForm(await res.text());
      if (!form) return undefined;
      if (form.fields.has('password')) {
        if (signedIn) {
          throw new PgwardError(
            'LOGIN_FAILED',
            `the dev IdP did not accept ${credentials.email} with that password`,
            {
              hint: 'dev users are admin@, editor@ and viewer@example.com with password "password"',
            },
          );
        }
        signedIn = true;
        // The dev IdP asks for an email; a directory's form (LDAP) for a user name.
        form.fields.set(form.fields.has('username') ? 'username' : 'email', credentials.email);
        form.fields.set('password', credentials.password);
      }
      res = await this.request(form.action, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: form.fields.toString(),
      });
    }
    throw new PgwardError('LOGIN_FAILED', 'the dev IdP sign-in did not finish');
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

  const walker = new IdpPageWalker(opts.issuer);
  const callback = await walker.walk(authorize.toString(), opts, (location) =>
    location.startsWith(REDIRECT_URI),
  );
  const params = new URL(callback ?? REDIRECT_URI).searchParams;
  const code = params.get('code');
  if (!code) {
    const reason = params.get('error_description') ?? params.get('error') ?? 'no authorization code';
    throw new PgwardError('LOGIN_FAILED', `the dev IdP refused the login: ${reason}`);
  }
  return exchangeCode(opts.issuer, code, verifier);
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
