/**
 * Who is calling the API: a pgward (or IdP) token as `Authorization: Bearer`, or the console's
 * HttpOnly cookie holding a pgward access token. Routes declare what they need with
 * `signedIn` or `adminOnly`; everything else is refused with a problem response.
 */
import type { FastifyReply, FastifyRequest } from 'fastify';
import { PgwardError } from '../errors.js';
import type { Authenticator, SignedIn } from '../session/authenticator.js';

export const ACCESS_COOKIE = 'pgward_access';
export const REFRESH_COOKIE = 'pgward_refresh';

declare module 'fastify' {
  interface FastifyRequest {
    signedIn: SignedIn | undefined;
  }
}

/** Methods that change state: a cookie alone never authorizes them from another origin. */
const STATE_CHANGING = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);
const SESSION_COOKIE = new RegExp(`(?:^|;)\\s*(?:${ACCESS_COOKIE}|${REFRESH_COOKIE})=`);

/**
 * Cross-site request forgery protection of cookie-authenticated requests (the console's). SameSite
 * cookies do not stop a page of the same site (another port, a sibling subdomain), so a
 * state-changing request that carries pgward's cookies and no bearer token must come from one of
 * `origins` (the gateway's own, plus configured CORS origins): its Origin header says so, or,
 * without one, `Sec-Fetch-Site` says same-origin or none (typed by the person).
 */
export function sameOriginGuard(origins: () => string[]) {
  return async function sameOrigin(req: FastifyRequest): Promise<void> {
    if (!STATE_CHANGING.has(req.method)) return;
    if (req.headers.authorization !== undefined) return;
    if (!SESSION_COOKIE.test(req.headers.cookie ?? '')) return;
    const origin = req.headers.origin;
    if (origin !== undefined) {
      let allowed: string[] = [];
      try {
        allowed = origins();
      } catch {
        // No public URL yet: nothing is allowed.
      }
      if (allowed.includes(origin)) return;
      throw new PgwardError(
        'NOT_ALLOWED',
        `a request from ${origin.slice(0, 200)} may not use pgward's cookies`,
        {
          hint: 'use the console at the gateway\'s own address, or send "Authorization: Bearer <token>"',
        },
      );
    }
    const site = req.headers['sec-fetch-site'];
    if (site === 'same-origin' || site === 'none') return;
    throw new PgwardError(
      'NOT_ALLOWED',
      "a state-changing request with pgward's cookies must say where it comes from (Origin header)",
      { hint: 'send "Authorization: Bearer <token>" instead of the cookie from scripts and tools' },
    );
  };
}

/** The bearer token or the access cookie of a request, if any. */
export function presentedToken(req: FastifyRequest): string | undefined {
  const header = req.headers.authorization;
  if (header !== undefined) {
    const match = /^Bearer\s+([\x21-\x7e]{1,65535})$/i.exec(header);
    if (!match) {
      throw new PgwardError('UNAUTHENTICATED', 'the Authorization header must be "Bearer <token>"');
    }
    return match[1];
  }
  return req.cookies?.[ACCESS_COOKIE];
}

/** Builds the two guards routes use. */
export function requestGuards(auth: Authenticator) {
  async function signedIn(req: FastifyRequest, _reply: FastifyReply): Promise<void> {
    const token = presentedToken(req);
    if (!token) {
      throw new PgwardError('UNAUTHENTICATED', 'sign in first', {
        hint: 'run `pgward login`, then pass the token from `pgward token` as "Authorization: Bearer"',
      });
    }
    req.signedIn = await auth.authenticate(token);
  }
  async function adminOnly(req: FastifyRequest, reply: FastifyReply): Promise<void> {
    await signedIn(req, reply);
    if (!req.signedIn!.person.isAdmin) {
      throw new PgwardError('NOT_ALLOWED', 'only pgward administrators may do this');
    }
  }
  return { signedIn, adminOnly };
}

/** The signed-in person of a guarded request. */
export function caller(req: FastifyRequest): SignedIn {
  if (!req.signedIn) throw new PgwardError('UNAUTHENTICATED', 'sign in first');
  return req.signedIn;
}
