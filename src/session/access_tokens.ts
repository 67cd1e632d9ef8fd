/**
 * pgward's own access tokens: short-lived JWTs (RFC 9068 "at+jwt", ES256) signed with the
 * rotating keys of the store, naming the person, their effective groups at issue time and the
 * sign-in (login session) they belong to, so revoking that session revokes them all.
 */
import { randomUUID } from 'node:crypto';
import { importJWK, type JWTHeaderParameters, jwtVerify, SignJWT } from 'jose';
import { z } from 'zod';
import type { Person } from '../directory/directory.js';
import { PgwardError } from '../errors.js';
import {
  assertIssuedInThePast,
  CLOCK_TOLERANCE_S,
  tokenError,
  translateJoseError,
} from '../identity/token_verifier.js';
import { type SigningKeys, TOKEN_ALG } from './signing_keys.js';

/** `aud` of pgward's tokens. */
export const PGWARD_AUDIENCE = 'pgward';

const claimsSchema = z.object({
  sub: z.uuid(),
  email: z.string().min(3).max(320),
  name: z.string().max(256).optional(),
  groups: z.array(z.string().max(256)).max(1024),
  adm: z.boolean(),
  idp: z.string().max(63),
  sid: z.uuid(),
  jti: z.uuid(),
  exp: z.number(),
  iat: z.number(),
});

export interface VerifiedAccess {
  /** The person as the token names them at issue time (the directory decides what they may do now). */
  person: Person;
  signInId: string;
  tokenId: string;
  issuedAt: Date;
  expiresAt: Date;
}

export class AccessTokens {
  constructor(
    private readonly keys: SigningKeys,
    /** The gateway's public URL: `iss` of every token it signs. */
    private readonly issuer: () => string,
    readonly lifetimeMs: number,
  ) {}

  /** True when `iss` names this gateway. */
  issuedHere(iss: string): boolean {
    return iss === this.issuer();
  }

  async issue(person: Person, signInId: string): Promise<{ token: string; expiresAt: Date }> {
    const key = await this.keys.current();
    const expiresAt = new Date(Date.now() + this.lifetimeMs);
    const token = await new SignJWT({
      email: person.email,
      ...(person.name ? { name: person.name } : {}),
      groups: person.groups,
      adm: person.isAdmin,
      idp: person.provider,
      sid: signInId,
    })
      .setProtectedHeader({ alg: TOKEN_ALG, kid: key.kid, typ: 'at+jwt' })
      .setIssuer(this.issuer())
      .setAudience(PGWARD_AUDIENCE)
      .setSubject(person.userId)
      .setJti(randomUUID())
      .setIssuedAt()
      .setExpirationTime(Math.floor(expiresAt.getTime() / 1000))
      .sign(key.privateKey);
    return { token, expiresAt };
  }

  /** Checks signature and claims (not revocation: the caller asks the login sessions). */
  async verify(token: string): Promise<VerifiedAccess> {
    let payload: unknown;
    try {
      ({ payload } = await jwtVerify(
        token,
        async (header: JWTHeaderParameters) => {
          const jwk = header.kid === undefined ? undefined : await this.keys.publicKey(header.kid);
          if (!jwk)
            throw tokenError('TOKEN_UNKNOWN_KEY', 'the token is signed with a key pgward does not know');
          return importJWK(jwk, TOKEN_ALG);
        },
        {
          issuer: this.issuer(),
          audience: PGWARD_AUDIENCE,
          algorithms: [TOKEN_ALG],
          typ: 'at+jwt',
          requiredClaims: ['exp', 'iat', 'sub', 'jti'],
          clockTolerance: CLOCK_TOLERANCE_S,
        },
      ));
      assertIssuedInThePast(payload as never);
    } catch (err) {
      if (err instanceof PgwardError) throw err;
      throw translateJoseError(err, PGWARD_AUDIENCE, 'pgward');
    }
    const claims = claimsSchema.safeParse(payload);
    if (!claims.success) throw tokenError('TOKEN_CLAIMS', 'the token lacks claims pgward puts in its tokens');
    const c = claims.data;
    return {
      person: {
        userId: c.sub,
        email: c.email,
        name: c.name,
        provider: c.idp,
        groups: c.groups,
        isAdmin: c.adm,
      },
      signInId: c.sid,
      tokenId: c.jti,
      issuedAt: new Date(c.iat * 1000),
      expiresAt: new Date(c.exp * 1000),
    };
  }
}
