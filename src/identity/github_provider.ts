/**
 * GitHub as an identity provider (OAuth 2.0, not OpenID Connect): the device flow and the web
 * flow (with state and PKCE) give a GitHub token; who the person is comes from GitHub's REST API
 * with that token (`/user`, `/user/emails`, `/user/orgs`, `/user/teams`), so a token presented
 * to pgward is checked at GitHub, never trusted on its face. Only members of the allowed
 * organisations sign in; their organisations and teams there become IdP groups (`org`,
 * `org/team`). `github.url` and `github.apiUrl` point at GitHub Enterprise Server.
 */
import type { ProviderConfig } from '../config/schema.js';
import { PgwardError } from '../errors.js';
import { emailKey, type MappedClaims } from './claims.js';
import { fetchJson } from './http_json.js';
import { githubApiUrl } from './provider_presets.js';

const TIMEOUT_MS = 10_000;
/** Pages of 100 read from a list endpoint at most (organisations, teams, emails). */
const MAX_PAGES = 5;
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/;

/** GitHub's tokens: `gho_` (OAuth), `ghu_` (GitHub App user) and the other documented prefixes. */
export function looksLikeGithubToken(token: string): boolean {
  return /^gh[opusr]_[A-Za-z0-9_]{20,251}$/.test(token);
}

/** A GitHub token grant answer (errors come with status 200 and an `error`). */
interface TokenAnswer {
  access_token?: string;
  refresh_token?: string;
  error?: string;
  error_description?: string;
}

function settings(provider: ProviderConfig) {
  const g = provider.github;
  if (!g) throw new PgwardError('INTERNAL', `${provider.name} is not a GitHub provider`);
  return { web: provider.issuer, api: githubApiUrl(g), orgs: g.allowedOrganizations };
}

const API_HEADERS = {
  accept: 'application/vnd.github+json',
  'user-agent': 'pgward',
  'x-github-api-version': '2022-11-28',
};

async function api<T>(provider: ProviderConfig, token: string, path: string): Promise<T> {
  try {
    return (await fetchJson(`${settings(provider).api}${path}`, TIMEOUT_MS, {
      ...API_HEADERS,
      authorization: `Bearer ${token}`,
    })) as T;
  } catch (err) {
    if (err instanceof PgwardError && err.detail === '401') {
      throw new PgwardError('TOKEN_INVALID', 'GitHub does not accept this token (revoked or expired)', {
        hint: 'run `pgward login` for a fresh token',
      });
    }
    throw err;
  }
}

/** Every page of a GitHub list endpoint, up to MAX_PAGES of 100. */
async function list<T>(provider: ProviderConfig, token: string, path: string): Promise<T[]> {
  const all: T[] = [];
  for (let page = 1; page <= MAX_PAGES; page++) {
    const items = await api<T[]>(provider, token, `${path}?per_page=100&page=${page}`);
    if (!Array.isArray(items))
      throw new PgwardError('IDP_UNREACHABLE', `GitHub answered ${path} without a list`);
    all.push(...items);
    if (items.length < 100) break;
  }
  return all;
}

const text = (value: unknown, max: number): string | undefined =>
  typeof value === 'string' && value.length > 0 && value.length <= max && !CONTROL.test(value)
    ? value
    : undefined;

/**
 * Refuses a token that GitHub did not issue to this provider's OAuth app ("check a token",
 * `POST /applications/CLIENT_ID/token`, which only the app itself may call). Any app the person
 * authorised holds a token that /user answers for, and must not be able to sign in as them here.
 */
async function assertIssuedToThisApp(provider: ProviderConfig, token: string): Promise<void> {
  if (!provider.clientSecret) {
    throw new PgwardError(
      'TOKEN_INVALID',
      `${provider.name} cannot check that a GitHub token was issued to pgward: it has no clientSecret`,
      { hint: "set the OAuth app's clientSecret, or use pgward's own tokens (pgward login)" },
    );
  }
  const basic = Buffer.from(`${provider.clientId}:${provider.clientSecret}`).toString('base64');
  let answer: { app?: { client_id?: unknown } };
  try {
    answer = (await fetchJson(
      `${settings(provider).api}/applications/${encodeURIComponent(provider.clientId)}/token`,
      TIMEOUT_MS,
      { ...API_HEADERS, authorization: `Basic ${basic}` },
      { access_token: token },
    )) as typeof answer;
  } catch (err) {
    // 404: not a token of this app (or revoked); 422: not a token at all.
    if (err instanceof PgwardError && (err.detail === '404' || err.detail === '422')) answer = {};
    else if (err instanceof PgwardError && err.detail === '401')
      throw new PgwardError(
        'IDP_UNREACHABLE',
        `GitHub does not accept the client id and secret of ${provider.name}`,
      );
    else throw err;
  }
  if (answer.app?.client_id !== provider.clientId) {
    throw new PgwardError(
      'TOKEN_INVALID',
      'this GitHub token was issued to another application, not pgward',
      {
        hint: 'run `pgward login` for a token of pgward',
      },
    );
  }
}

/**
 * Who holds `token` at GitHub, with their groups in the allowed organisations. A token that
 * pgward did not obtain itself (`presented`, the default) must have been issued to its OAuth app.
 */
export async function githubIdentity(
  provider: ProviderConfig,
  token: string,
  source: 'presented' | 'login' = 'presented',
): Promise<MappedClaims> {
  const { orgs: allowed } = settings(provider);
  if (source === 'presented' || provider.clientSecret) await assertIssuedToThisApp(provider, token);
  const user = await api<{ id?: unknown; login?: unknown; name?: unknown; email?: unknown }>(
    provider,
    token,
    '/user',
  );
  const login = text(user.login, 39);
  if (typeof user.id !== 'number' || !login)
    throw new PgwardError('TOKEN_CLAIMS', 'GitHub answered /user without an id and login');
  const [orgs, teams, emails] = await Promise.all([
    list<{ login?: unknown }>(provider, token, '/user/orgs'),
    list<{ slug?: unknown; organization?: { login?: unknown } }>(provider, token, '/user/teams'),
    list<{ email?: unknown; primary?: unknown; verified?: unknown }>(provider, token, '/user/emails'),
  ]);
  // Organisation names are case-insensitive at GitHub; groups use the allow-list's spelling.
  const allowedName = (name: unknown) =>
    typeof name === 'string' ? allowed.find((a) => a.toLowerCase() === name.toLowerCase()) : undefined;
  const groups = new Set<string>();
  for (const org of orgs) {
    const name = allowedName(org.login);
    if (name) groups.add(name);
  }
  if (groups.size === 0) {
    throw new PgwardError(
      'TOKEN_ORGANIZATION',
      `the GitHub account ${login} is not a member of ${allowed.join(' or ')}`,
      { hint: 'ask an owner of the organisation to add you (and grant pgward access to it)' },
    );
  }
  for (const team of teams) {
    const org = allowedName(team.organization?.login);
    const slug = text(team.slug, 100);
    if (org && slug && groups.has(org)) groups.add(`${org}/${slug}`);
  }
  const primary = emails.find((e) => e.primary === true && typeof e.email === 'string');
  const email = text(primary?.email, 320) ?? text(user.email, 320);
  if (!email || !/^[^\s@]+@[^\s@]+$/.test(email)) {
    throw new PgwardError('TOKEN_CLAIMS', `GitHub shows no email for ${login}; grant the user:email scope`);
  }
  return {
    subject: String(user.id),
    email: emailKey(email),
    emailVerified: primary?.verified === true && primary.email === email,
    name: text(user.name, 256) ?? login,
    preferredUsername: login,
    groups: [...groups].slice(0, 512),
    roles: [],
  };
}

function refused(provider: ProviderConfig, answer: TokenAnswer): PgwardError {
  const reason = answer.error_description ? `${answer.error}: ${answer.error_description}` : answer.error;
  return new PgwardError(
    'LOGIN_FAILED',
    `${provider.name} refused the login (${String(reason).slice(0, 200)})`,
    {
      hint: 'run `pgward login` again',
    },
  );
}

/** POSTs a form to GitHub's OAuth endpoints. */
function oauth(provider: ProviderConfig, path: string, form: Record<string, string>): Promise<unknown> {
  return fetchJson(
    `${settings(provider).web}${path}`,
    TIMEOUT_MS,
    { 'user-agent': 'pgward' },
    new URLSearchParams(form),
  );
}

/** Starts a device login at GitHub. */
export async function githubStartDevice(provider: ProviderConfig) {
  const res = (await oauth(provider, '/login/device/code', {
    client_id: provider.clientId,
    scope: provider.scopes.join(' '),
  })) as TokenAnswer & {
    device_code?: string;
    user_code?: string;
    verification_uri?: string;
    expires_in?: number;
    interval?: number;
  };
  if (!res.device_code || !res.user_code || !res.verification_uri) throw refused(provider, res);
  return {
    device_code: res.device_code,
    user_code: res.user_code,
    verification_uri: res.verification_uri,
    expires_in: res.expires_in ?? 900,
    interval: res.interval ?? 5,
  };
}

/** Exchanges a device code or an authorization code for a GitHub token; `pending` while not confirmed. */
export async function githubToken(
  provider: ProviderConfig,
  grant: Record<string, string>,
): Promise<{ token: string } | { pending: 'authorization_pending' | 'slow_down' }> {
  const res = (await oauth(provider, '/login/oauth/access_token', {
    client_id: provider.clientId,
    ...(provider.clientSecret ? { client_secret: provider.clientSecret } : {}),
    ...grant,
  })) as TokenAnswer;
  if (res.error === 'authorization_pending' || res.error === 'slow_down') return { pending: res.error };
  if (!res.access_token || res.error) throw refused(provider, res);
  return { token: res.access_token };
}

/** Where to send a browser to sign in at GitHub (state and PKCE). */
export function githubAuthorizationUrl(
  provider: ProviderConfig,
  checks: { redirectUri: string; state: string; codeChallenge: string },
): URL {
  const url = new URL(`${settings(provider).web}/login/oauth/authorize`);
  url.search = new URLSearchParams({
    client_id: provider.clientId,
    redirect_uri: checks.redirectUri,
    scope: provider.scopes.join(' '),
    state: checks.state,
    code_challenge: checks.codeChallenge,
    code_challenge_method: 'S256',
    allow_signup: 'false',
  }).toString();
  return url;
}
