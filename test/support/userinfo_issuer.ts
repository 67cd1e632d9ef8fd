/**
 * A small OpenID issuer over HTTP that mints JWT access tokens in Auth0's and Cognito's shapes
 * (no email in them) and answers at a userinfo endpoint that verifies the bearer token, as those
 * vendors do: Auth0's only for tokens whose audiences include `ISSUER/userinfo`, Cognito's (on the
 * pool's own domain, `/oauth2/userInfo`) only with the openid scope, and with email_verified as
 * the string "true". oidc-provider refuses resource-bound JWT access tokens at its userinfo, so
 * it cannot play this part.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { exportJWK, generateKeyPair, type JWTPayload, jwtVerify, SignJWT } from 'jose';
import { freePort } from '../../src/store/free_port.js';

/** How the userinfo endpoint answers the next calls. */
export type UserinfoMode =
  | 'normal'
  /** Closes the connection without an answer. */
  | 'down'
  /** Answers after 8 seconds (pgward waits 5). */
  | 'slow'
  | 'unauthorized'
  /** A 2 MiB answer. */
  | 'huge'
  /** Names another subject than the token's. */
  | 'another-subject';

export interface UserinfoIssuer {
  /** `http://127.0.0.1:PORT/auth0/`, with the trailing "/" Auth0's issuers have. */
  auth0: string;
  /** `http://127.0.0.1:PORT/eu-west-1_Pool1`, a Cognito user pool's issuer. */
  cognito: string;
  /** People by `sub`: what userinfo answers for them (sub added). */
  people: Map<string, Record<string, unknown>>;
  mode: UserinfoMode;
  /** Requests to the userinfo endpoints. */
  userinfoCalls: number;
  /** A signed access token of `issuer` with these claims (iat and exp of a 10 minute token added). */
  mint(issuer: string, claims: Record<string, unknown>): Promise<string>;
  close(): Promise<void>;
}

export async function startUserinfoIssuer(): Promise<UserinfoIssuer> {
  const port = await freePort();
  const origin = `http://127.0.0.1:${port}`;
  const auth0 = `${origin}/auth0/`;
  const cognito = `${origin}/eu-west-1_Pool1`;
  const { publicKey, privateKey } = await generateKeyPair('RS256');
  const jwk = { ...(await exportJWK(publicKey)), kid: 'k1', alg: 'RS256', use: 'sig' };
  const timers = new Set<NodeJS.Timeout>();

  const json = (res: ServerResponse, status: number, body: unknown) => {
    res.writeHead(status, { 'content-type': 'application/json' });
    res.end(JSON.stringify(body));
  };
  const discovery = (issuer: string, userinfo: string) => ({
    issuer,
    jwks_uri: `${origin}/jwks`,
    userinfo_endpoint: userinfo,
    id_token_signing_alg_values_supported: ['RS256'],
  });

  async function userinfo(req: IncomingMessage, res: ServerResponse, issuer: string) {
    state.userinfoCalls++;
    const bearer = /^Bearer (.+)$/.exec(req.headers.authorization ?? '')?.[1];
    let payload: JWTPayload;
    try {
      if (!bearer) throw new Error('no bearer token');
      ({ payload } = await jwtVerify(bearer, publicKey, { issuer }));
    } catch {
      return json(res, 401, { error: 'invalid_token' });
    }
    // Auth0: the token must also be for /userinfo; Cognito: it must have the openid scope.
    const audiences = Array.isArray(payload.aud) ? payload.aud : [payload.aud];
    if (issuer === auth0 && !audiences.includes(`${auth0}userinfo`))
      return json(res, 401, { error: 'invalid_token' });
    if (issuer === cognito && !String(payload['scope']).split(' ').includes('openid'))
      return json(res, 401, { error: 'invalid_token' });
    const person = state.people.get(String(payload.sub));
    if (!person) return json(res, 401, { error: 'invalid_token' });
    switch (state.mode) {
      case 'down':
        req.socket.destroy();
        return;
      case 'slow': {
        const timer = setTimeout(() => {
          timers.delete(timer);
          json(res, 200, { sub: payload.sub, ...person });
        }, 8_000);
        timers.add(timer);
        return;
      }
      case 'unauthorized':
        return json(res, 401, { error: 'invalid_token' });
      case 'huge':
        return json(res, 200, { sub: payload.sub, ...person, padding: 'x'.repeat(2 * 1024 * 1024) });
      case 'another-subject':
        return json(res, 200, { ...person, sub: `${payload.sub}-other` });
      case 'normal':
        return json(res, 200, { sub: payload.sub, ...person });
    }
  }

  const server = createServer((req, res) => {
    const path = new URL(req.url ?? '/', origin).pathname;
    if (path === '/jwks') return json(res, 200, { keys: [jwk] });
    if (path === '/auth0/.well-known/openid-configuration')
      return json(res, 200, discovery(auth0, `${auth0}userinfo`));
    if (path === '/eu-west-1_Pool1/.well-known/openid-configuration')
      return json(res, 200, discovery(cognito, `${origin}/oauth2/userInfo`));
    if (path === '/auth0/userinfo') return void userinfo(req, res, auth0);
    if (path === '/oauth2/userInfo') return void userinfo(req, res, cognito);
    json(res, 404, { error: 'not_found' });
  });
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));

  const state: UserinfoIssuer = {
    auth0,
    cognito,
    people: new Map(),
    mode: 'normal',
    userinfoCalls: 0,
    async mint(issuer, claims) {
      return (
        new SignJWT(claims)
          // Auth0's access tokens say typ JWT; Cognito's have no typ.
          .setProtectedHeader({ alg: 'RS256', kid: 'k1', ...(issuer === auth0 ? { typ: 'JWT' } : {}) })
          .setIssuer(issuer)
          .setIssuedAt()
          .setExpirationTime('10m')
          .sign(privateKey)
      );
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const timer of timers) clearTimeout(timer);
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
  return state;
}

/** Claims of an Auth0 access token for the API `audience` (and Auth0's userinfo), without email. */
export function auth0AccessClaims(issuer: string, sub: string, audience: string): Record<string, unknown> {
  return {
    sub,
    aud: [audience, `${issuer}userinfo`],
    azp: 'auth0-client-id',
    scope: 'openid profile email',
  };
}

/** Claims of a Cognito access token of app client `clientId`: no aud, no email. */
export function cognitoAccessClaims(
  sub: string,
  clientId: string,
  groups: string[],
): Record<string, unknown> {
  return {
    sub,
    token_use: 'access',
    client_id: clientId,
    scope: 'openid email',
    username: sub,
    'cognito:groups': groups,
    auth_time: Math.floor(Date.now() / 1000),
  };
}
