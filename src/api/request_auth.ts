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
