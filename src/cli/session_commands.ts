/** `pgward login | logout | whoami | token`: signing in to a gateway from a terminal. */
import { PgwardError } from '../errors.js';
import type { DeviceStart as IdpDeviceStart } from '../session/idp_client.js';
import { accessToken, api, forgetCredentials, gatewayUrl, saveCredentials } from './gateway_client.js';

const DEVICE_GRANT = 'urn:ietf:params:oauth:grant-type:device_code';

/** The gateway's answer: the IdP's device authorization, and which provider it is. */
type DeviceStart = IdpDeviceStart & { provider: string };

interface Grant {
  access_token: string;
  refresh_token: string;
  expires_in: number;
  person: { email: string; provider: string; groups: string[]; isAdmin: boolean };
}

/** Device login: print where to confirm, then poll until the person has (or the code expires). */
export async function runLogin(opts: { gateway?: string; provider?: string }): Promise<void> {
  const gateway = await gatewayUrl(opts.gateway);
  const start = await api<DeviceStart>(gateway, 'POST', '/api/v1/auth/device', {
    body: opts.provider ? { provider: opts.provider } : {},
  });
  process.stderr.write(
    `To sign in, open ${start.verification_uri_complete ?? start.verification_uri}\n` +
      `and confirm the code ${start.user_code}. Waiting...\n`,
  );
  let interval = Math.max(1, start.interval) * 1000;
  const deadline = Date.now() + start.expires_in * 1000;
  while (Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, interval));
    try {
      const grant = await api<Grant>(gateway, 'POST', '/api/v1/auth/token', {
        body: { grant_type: DEVICE_GRANT, provider: start.provider, device_code: start.device_code },
      });
      await saveCredentials(gateway, {
        access_token: grant.access_token,
        refresh_token: grant.refresh_token,
        expires_at: Date.now() + grant.expires_in * 1000,
        email: grant.person.email,
        provider: grant.person.provider,
      });
      process.stdout.write(`Signed in to ${gateway} as ${grant.person.email} (${start.provider}).\n`);
      return;
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
