/**
 * A local HTTP server that answers like GitHub (or GitHub Enterprise Server, API under
 * /api/v3): the OAuth device and web flows (client secret, redirect URI and PKCE checked), and
 * the REST endpoints pgward reads (/user, /user/emails, /user/orgs, /user/teams), which answer
 * 401 to an unknown or revoked token and 403 to a request without a User-Agent, as GitHub does.
 */
import { createHash, randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { freePort } from '../../src/store/free_port.js';

export interface GithubUser {
  id: number;
  login: string;
  name: string;
  email: string;
  orgs: string[];
  /** Teams as `org/slug`. */
  teams: string[];
}

export interface FakeGithub {
  url: string;
  apiUrl: string;
  /** The person who confirms device codes and consents in the web flow. */
  signIn(user: GithubUser): void;
  /** Confirms every pending device code as the signed-in person. */
  confirmDevices(): void;
  /** A token for `user`, as if issued by an earlier login (of another OAuth app with `app`). */
  issue(user: GithubUser, app?: string): string;
  revoke(token: string): void;
  /** Requests to each API path, to see that tokens are checked at GitHub. */
  hits: Map<string, number>;
  close(): Promise<void>;
}

export async function startFakeGithub(client: { id: string; secret: string }): Promise<FakeGithub> {
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  let current: GithubUser | undefined;
  const tokens = new Map<string, GithubUser>();
  /** The OAuth app each token was issued to. */
  const apps = new Map<string, string>();
  const devices = new Map<string, GithubUser | undefined>();
  const codes = new Map<string, { user: GithubUser; challenge: string; redirectUri: string }>();
  const hits = new Map<string, number>();
  const issue = (user: GithubUser, app = client.id) => {
    const token = `gho_${randomBytes(18)
      .toString('base64url')
      .replace(/[^A-Za-z0-9]/g, 'x')}`;
    tokens.set(token, user);
    apps.set(token, app);
    return token;
  };
  const json = (res: ServerResponse, status: number, body: unknown) => {
    res.writeHead(status, { 'content-type': 'application/json' });
    res.end(JSON.stringify(body));
  };
  async function form(req: IncomingMessage): Promise<URLSearchParams> {
    let body = '';
    for await (const chunk of req) body += chunk;
    return new URLSearchParams(body);
  }

  async function handle(req: IncomingMessage, res: ServerResponse) {
    const u = new URL(req.url ?? '/', url);
    if (req.method === 'POST' && u.pathname === '/login/device/code') {
      const f = await form(req);
      if (f.get('client_id') !== client.id) return json(res, 200, { error: 'incorrect_client_credentials' });
      const deviceCode = randomBytes(16).toString('hex');
      devices.set(deviceCode, undefined);
      return json(res, 200, {
        device_code: deviceCode,
        user_code: 'ABCD-1234',
        verification_uri: `${url}/login/device`,
        expires_in: 900,
        interval: 1,
      });
    }
    if (req.method === 'GET' && u.pathname === '/login/oauth/authorize') {
      const redirectUri = u.searchParams.get('redirect_uri') ?? '';
      if (
        !current ||
        u.searchParams.get('client_id') !== client.id ||
        u.searchParams.get('code_challenge_method') !== 'S256'
      )
        return json(res, 400, { error: 'bad request' });
      const code = randomBytes(10).toString('hex');
      codes.set(code, { user: current, challenge: u.searchParams.get('code_challenge') ?? '', redirectUri });
      const back = new URL(redirectUri);
      back.searchParams.set('code', code);
      back.searchParams.set('state', u.searchParams.get('state') ?? '');
      res.writeHead(302, { location: back.toString() }).end();
      return;
    }
    if (req.method === 'POST' && u.pathname === '/login/oauth/access_token') {
      const f = await form(req);
      if (f.get('client_id') !== client.id) return json(res, 200, { error: 'incorrect_client_credentials' });
      const deviceCode = f.get('device_code');
      if (f.get('grant_type') === 'urn:ietf:params:oauth:grant-type:device_code' && deviceCode) {
        if (!devices.has(deviceCode)) return json(res, 200, { error: 'expired_token' });
        const user = devices.get(deviceCode);
        if (!user) return json(res, 200, { error: 'authorization_pending' });
        devices.delete(deviceCode);
        return json(res, 200, {
          access_token: issue(user),
          token_type: 'bearer',
          scope: 'read:org,read:user,user:email',
        });
      }
      const grant = codes.get(f.get('code') ?? '');
      codes.delete(f.get('code') ?? '');
      const verifier = f.get('code_verifier') ?? '';
      const challenge = createHash('sha256').update(verifier).digest('base64url');
      if (
        !grant ||
        f.get('client_secret') !== client.secret ||
        grant.redirectUri !== f.get('redirect_uri') ||
        grant.challenge !== challenge
      ) {
        return json(res, 200, {
          error: 'bad_verification_code',
          error_description: 'The code passed is incorrect or expired.',
        });
      }
      return json(res, 200, { access_token: issue(grant.user), token_type: 'bearer', scope: 'read:org' });
    }
    // "Check a token": only the app's own client id and secret may ask, and only of its tokens.
    const check = /^\/api\/v3\/applications\/([^/]+)\/token$/.exec(u.pathname);
    if (req.method === 'POST' && check) {
      const basic = `Basic ${Buffer.from(`${client.id}:${client.secret}`).toString('base64')}`;
      if (decodeURIComponent(check[1]!) !== client.id || req.headers.authorization !== basic)
        return json(res, 401, { message: 'Bad credentials' });
      let body = '';
      for await (const chunk of req) body += chunk;
      const token = (JSON.parse(body || '{}') as { access_token?: string }).access_token ?? '';
      const user = tokens.get(token);
      if (!user || apps.get(token) !== client.id) return json(res, 404, { message: 'Not Found' });
      return json(res, 200, { app: { client_id: client.id }, user: { id: user.id, login: user.login } });
    }
    if (u.pathname.startsWith('/api/v3/')) {
      const path = u.pathname.slice('/api/v3'.length);
      hits.set(path, (hits.get(path) ?? 0) + 1);
      if (!req.headers['user-agent'])
        return json(res, 403, { message: 'Request forbidden by administrative rules.' });
      const token = /^(?:Bearer|token) (\S+)$/.exec(req.headers.authorization ?? '')?.[1];
      const user = token ? tokens.get(token) : undefined;
      if (!user) return json(res, 401, { message: 'Bad credentials' });
      const page = Number(u.searchParams.get('page') ?? '1');
      const perPage = Number(u.searchParams.get('per_page') ?? '30');
      const paged = <T>(items: T[]) => items.slice((page - 1) * perPage, page * perPage);
      switch (path) {
        case '/user':
          return json(res, 200, { id: user.id, login: user.login, name: user.name, email: null });
        case '/user/emails':
          return json(
            res,
            200,
            paged([
              { email: `${user.login}@users.noreply.github.com`, primary: false, verified: true },
              { email: user.email, primary: true, verified: true },
            ]),
          );
        case '/user/orgs':
          return json(res, 200, paged(user.orgs.map((login, i) => ({ login, id: 1000 + i }))));
        case '/user/teams':
          return json(
            res,
            200,
            paged(
              user.teams.map((t) => ({ slug: t.split('/')[1], organization: { login: t.split('/')[0] } })),
            ),
          );
      }
    }
    json(res, 404, { message: 'Not Found' });
  }

  const server = createServer((req, res) => {
    handle(req, res).catch(() => json(res, 500, { message: 'error' }));
  });
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  return {
    url,
    apiUrl: `${url}/api/v3`,
    hits,
    signIn(user) {
      current = user;
    },
    confirmDevices() {
      for (const code of devices.keys()) devices.set(code, current);
    },
    issue,
    revoke(token) {
      tokens.delete(token);
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
