/** `pgward login | logout | whoami | token`: signing in to a gateway from a terminal. */
import { createHash, randomBytes } from 'node:crypto';
import { PgwardError } from '../errors.js';
import type { DeviceStart as IdpDeviceStart } from '../session/idp_client.js';
import { accessToken, api, forgetCredentials, gatewayUrl, saveCredentials } from './gateway_client.js';
import { awaitLoopbackCallback } from './loopback_callback.js';
import { openBrowser } from './open_browser.js';

const DEVICE_GRANT = 'urn:ietf:params:oauth:grant-type:device_code';
/** How long `login --browser` waits for the browser to come back. */
const BROWSER_LOGIN_MS = 5 * 60_000;

/** The gateway's answer: the IdP's device authorization, and which provider it is. */
type DeviceStart = IdpDeviceStart & { provider: string };

interface Grant {
  access_token: string;
  refresh_token: string;
  expires_in: number;
  person: { email: string; provider: string; groups: string[]; isAdmin: boolean };
}

export interface LoginOptions {
  gateway?: string;
  provider?: string;
  browser?: boolean;
  /** false with --no-open: print the URL, never start a browser. */
  open?: boolean;
}

/** `pgward login`: the device grant by default, a loopback redirect with --browser. */
export async function runLogin(opts: LoginOptions): Promise<void> {
  const gateway = await gatewayUrl(opts.gateway);
  const grant = opts.browser ? await browserLogin(gateway, opts) : await deviceLogin(gateway, opts);
  await saveCredentials(gateway, {
    access_token: grant.access_token,
    refresh_token: grant.refresh_token,
    expires_at: Date.now() + grant.expires_in * 1000,
    email: grant.person.email,
    provider: grant.person.provider,
  });
  process.stdout.write(`Signed in to ${gateway} as ${grant.person.email} (${grant.person.provider}).\n`);
}

/** Shows where to sign in, and opens it in a browser unless told not to. */
function showSignInPage(url: string, opts: LoginOptions, what: string): void {
  const opened = opts.open !== false && openBrowser(url);
  process.stderr.write(
    `${opened ? 'Opened your browser at' : 'To sign in, open'} ${url}\n${what}Waiting...\n`,
  );
}

/** Device grant (RFC 8628): confirm a code in any browser, on any machine; poll until done. */
async function deviceLogin(gateway: string, opts: LoginOptions): Promise<Grant> {
  const start = await api<DeviceStart>(gateway, 'POST', '/api/v1/auth/device', {
    body: opts.provider ? { provider: opts.provider } : {},
  });
  showSignInPage(
    start.verification_uri_complete ?? start.verification_uri,
    opts,
    `and confirm the code ${start.user_code}. `,
  );
  let interval = Math.max(1, start.interval) * 1000;
  const deadline = Date.now() + start.expires_in * 1000;
  while (Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, interval));
    try {
      return await api<Grant>(gateway, 'POST', '/api/v1/auth/token', {
        body: { grant_type: DEVICE_GRANT, provider: start.provider, device_code: start.device_code },
      });
    } catch (err) {
      if (err instanceof PgwardError && err.code === 'LOGIN_PENDING') continue;
      if (err instanceof PgwardError && err.code === 'LOGIN_SLOW_DOWN') {
        interval += 5000;
        continue;
      }
      throw err;
    }
  }
  throw new PgwardError('LOGIN_FAILED', 'the login code expired before it was confirmed', {
    hint: 'run `pgward login` again',
  });
}

/**
 * Loopback redirect (RFC 8252) with PKCE: the browser signs in at the gateway, which sends it
 * back to a one-shot listener on 127.0.0.1 with a one-time code; the code and this process's
 * verifier buy the tokens.
 */
async function browserLogin(gateway: string, opts: LoginOptions): Promise<Grant> {
  const verifier = randomBytes(32).toString('base64url');
  const state = randomBytes(24).toString('base64url');
  const callback = await awaitLoopbackCallback(state, BROWSER_LOGIN_MS);
  try {
    const url = new URL('/login/cli', gateway);
    url.search = new URLSearchParams({
      ...(opts.provider ? { provider: opts.provider } : {}),
      redirect_uri: callback.redirectUri,
      code_challenge: createHash('sha256').update(verifier).digest('base64url'),
      code_challenge_method: 'S256',
      state,
    }).toString();
    showSignInPage(url.toString(), opts, '');
    const code = await callback.code;
    return await api<Grant>(gateway, 'POST', '/api/v1/auth/token', {
      body: {
        grant_type: 'authorization_code',
        code,
        code_verifier: verifier,
        redirect_uri: callback.redirectUri,
      },
    });
  } finally {
    callback.close();
  }
}

export async function runLogout(opts: { gateway?: string }): Promise<void> {
  const gateway = await gatewayUrl(opts.gateway);
  const cached = await forgetCredentials(gateway);
  if (cached) {
    // The cached token may be stale: refresh would need the credentials just forgotten.
    await api(gateway, 'POST', '/api/v1/auth/logout', { token: cached.access_token }).catch(() => undefined);
  }
  process.stdout.write(cached ? `Signed out of ${gateway}.\n` : `Not signed in to ${gateway}.\n`);
}

export async function runWhoami(opts: { gateway?: string; json?: boolean }): Promise<void> {
  const gateway = await gatewayUrl(opts.gateway);
  const me = await api<{
    email: string;
    name?: string;
    provider: string;
    groups: string[];
    isAdmin: boolean;
    tokenExpiresAt: string;
  }>(gateway, 'GET', '/api/v1/whoami', { token: await accessToken(gateway) });
  if (opts.json) {
    process.stdout.write(`${JSON.stringify(me, null, 2)}\n`);
    return;
  }
  process.stdout.write(
    `${me.email}${me.name ? ` (${me.name})` : ''} via ${me.provider}\n` +
      `groups: ${me.groups.join(', ') || '(none)'}\n` +
      `administrator: ${me.isAdmin ? 'yes' : 'no'}\n` +
      `token valid until ${me.tokenExpiresAt}\n`,
  );
}

export async function runToken(opts: { gateway?: string }): Promise<void> {
  const gateway = await gatewayUrl(opts.gateway);
  process.stdout.write(`${await accessToken(gateway)}\n`);
}
