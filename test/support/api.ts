/** Calling the gateway's HTTP API from tests, and finishing device logins through the dev IdP's pages. */
import { IdpPageWalker } from '../../src/dev/dev_login.js';

export interface ApiAnswer<T = Record<string, unknown>> {
  status: number;
  body: T;
  headers: Headers;
}

export const DEVICE_GRANT = 'urn:ietf:params:oauth:grant-type:device_code';

export async function call<T = Record<string, unknown>>(
  base: string,
  method: string,
  path: string,
  opts: { token?: string; body?: unknown; cookie?: string; headers?: Record<string, string> } = {},
): Promise<ApiAnswer<T>> {
  const res = await fetch(new URL(path, base), {
    method,
    redirect: 'manual',
    headers: {
      ...(opts.body === undefined ? {} : { 'content-type': 'application/json' }),
      ...(opts.token ? { authorization: `Bearer ${opts.token}` } : {}),
      ...(opts.cookie ? { cookie: opts.cookie } : {}),
      ...opts.headers,
    },
    body: opts.body === undefined ? undefined : JSON.stringify(opts.body),
  });
  const text = await res.text();
  let body: unknown = text;
  try {
    body = text === '' ? null : JSON.parse(text);
  } catch {
    // HTML or plain text stays a string.
  }
  return { status: res.status, body: body as T, headers: res.headers };
}

export interface Grant {
  access_token: string;
  refresh_token: string;
  expires_in: number;
  person: { email: string; groups: string[]; isAdmin: boolean; userId: string };
}

/** A whole device login through the gateway: start, confirm on the IdP's pages as `email`, finish. */
export async function deviceLogin(
  base: string,
  idpIssuer: string,
  email: string,
  provider?: string,
): Promise<Grant> {
  const started = await call<{ device_code: string; verification_uri_complete: string; provider: string }>(
    base,
    'POST',
    '/api/v1/auth/device',
    { body: provider ? { provider } : {} },
  );
  if (started.status !== 200) throw new Error(`device start: ${JSON.stringify(started.body)}`);
  await new IdpPageWalker(idpIssuer).walk(
    started.body.verification_uri_complete,
    { email, password: 'password' },
    () => false,
  );
  const finished = await call<Grant>(base, 'POST', '/api/v1/auth/token', {
    body: {
      grant_type: DEVICE_GRANT,
      provider: started.body.provider,
      device_code: started.body.device_code,
    },
  });
  if (finished.status !== 200) throw new Error(`device finish: ${JSON.stringify(finished.body)}`);
  return finished.body;
}
