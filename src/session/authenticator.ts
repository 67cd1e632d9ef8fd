/**
 * The one answer to "who presents this token, and what may they do": an IdP token (verified
 * against its provider, then signed in to the directory) or a token pgward issued (verified with
 * pgward's keys, then checked against its sign-in for revocation). It also turns an IdP login into
 * pgward tokens, refreshes them through the IdP, and revokes them. The PostgreSQL endpoint and the
 * API both ask here.
 */
import { createHash } from 'node:crypto';
import type { ProviderConfig } from '../config/schema.js';
import { wirePasswordProblem } from '../config/schema.js';
import type { AccessEvent, AccessEvents } from '../directory/access_events.js';
import { assertNotRevoked, type Directory, type Person } from '../directory/directory.js';
import { PgwardError } from '../errors.js';
import {
  inspectToken,
  looksLikeJwt,
  type TokenVerifier,
  tokenError,
  type VerifiedIdentity,
} from '../identity/token_verifier.js';
import { TtlCache } from '../ttl_cache.js';
import type { AccessTokens } from './access_tokens.js';
import type { IdpClient, IdpTokens } from './idp_client.js';
import type { LoginClient, LoginSessions } from './login_sessions.js';

/** A person proven by a token, with what `recheck` needs to ask the directory again later. */
export interface SignedIn {
  /** The person as the directory decided at sign-in: email, groups and admin status. */
  person: Person;
  /** When the token stops being valid. */
  expiresAt: Date;
  /** When the token was issued (`iat`); a revocation refuses tokens issued before it. */
  issuedAt: Date | undefined;
  /** The IdP's preferred_username, when the token came from an IdP. */
  preferredUsername?: string | undefined;
  /** Set for pgward's own tokens: the sign-in and token ids (to revoke them). */
  signInId?: string;
  tokenId?: string;
}

/** The answer of `recheck`: the person as the directory sees them now, or why they lost access. */
export type Recheck = { ok: true; person: Person } | { ok: false; reason: string };

/** Whether an access event concerns a session opened by `signedIn` (so it must `recheck`). */
export function concerns(event: AccessEvent, signedIn: SignedIn): boolean {
  switch (event.kind) {
    case 'person':
      return event.userId === signedIn.person.userId;
    case 'sign-in':
      return event.signInId === signedIn.signInId;
    case 'everyone':
      return true;
    case 'policies':
      // Policies apply to live sessions as they change; access itself did not.
      return false;
  }
}

/** What a login or refresh hands the client (OAuth token response shape). */
export interface TokenGrant {
  access_token: string;
  token_type: 'Bearer';
  expires_in: number;
  refresh_token: string;
  person: Person;
}

/** A grant with the sign-in it belongs to (response schemas leave `signInId` out). */
export interface IssuedGrant extends TokenGrant {
  signInId: string;
}

/** A verified IdP token is trusted again without re-verification for at most this long. */
const IDP_TOKEN_CACHE_MS = 60_000;
/**
 * A sign-in (directory lookup) of one token is reused for this long, and only while this gateway
 * hears access events, which empty the cache at once.
 */
const SIGN_IN_CACHE_MS = 5_000;

const hash = (text: string) => createHash('sha256').update(text).digest('base64url');

export class Authenticator {
  private readonly idpTokens = new TtlCache<VerifiedIdentity>();
  private readonly people = new TtlCache<Person>();

  constructor(
    private readonly parts: {
      /** The live provider list (configured, plus those added through the API). */
      providers: () => ProviderConfig[];
      verifier: TokenVerifier;
      directory: Directory;
      tokens: AccessTokens;
      sessions: LoginSessions;
      idp: IdpClient;
      /** Without events, nothing is cached: every use asks the directory. */
      events?: AccessEvents;
    },
  ) {
    // Any change to who may do what empties the cache of sign-ins at once.
    parts.events?.subscribe(() => this.forgetSignIns());
  }

  provider(name: string | undefined): ProviderConfig {
    const providers = this.parts.providers();
    const provider = name === undefined ? providers[0] : providers.find((p) => p.name === name);
    if (!provider) {
      throw new PgwardError(
        'NOT_FOUND',
        name === undefined
          ? 'this gateway has no identity provider configured'
          : `no provider named "${name}"`,
        { hint: `providers: ${providers.map((p) => p.name).join(', ') || 'none'}` },
      );
    }
    return provider;
  }

  /**
   * The password of a PostgreSQL login: a token, or (where an LDAP provider takes passwords on
   * the wire) the directory password of the startup user name. A JWT is always a token.
   */
  async authenticateLogin(password: string, username: string): Promise<SignedIn> {
    if (looksLikeJwt(password)) return this.authenticate(password);
    const providers = this.parts.providers();
    const ldap = providers.find((p) => p.type === 'ldap' && p.ldap?.wirePassword === true);
    // A provider added at run time may make the shapes ambiguous: then passwords are not taken.
    if (!ldap || wirePasswordProblem(providers)) return this.authenticate(password);
    const { identity } = await this.parts.idp.passwordSignIn(ldap, username, password);
    const now = new Date();
    const verified = {
      ...identity,
      provider: ldap,
      expiresAt: new Date(now.getTime() + this.parts.tokens.lifetimeMs),
      issuedAt: now,
    };
    const person = await this.parts.directory.signIn(verified);
    return { person, expiresAt: verified.expiresAt, issuedAt: now, preferredUsername: username };
  }

  /** Verifies a token of an IdP or of pgward; throws a TOKEN_* error, NOT_ALLOWED or IDP_UNREACHABLE. */
  async authenticate(token: string): Promise<SignedIn> {
    // Only IdP tokens are cached, so a hit skips decoding the token again on every connect.
    const key = hash(token);
    let identity = this.idpTokens.get(key);
    // A provider deactivated (or changed) since then no longer vouches for the cached identity.
    const stillTrusted =
      identity &&
      this.parts
        .providers()
        .some((p) => p.name === identity!.provider.name && p.issuer === identity!.provider.issuer);
    if (!identity || !stillTrusted || identity.expiresAt.getTime() <= Date.now()) {
      if (looksLikeJwt(token) && this.parts.tokens.issuedHere(inspectToken(token).payload.iss!)) {
        return this.ownToken(token);
      }
      identity = await this.parts.verifier.verify(token);
      this.idpTokens.set(
        key,
        identity,
        Math.min(IDP_TOKEN_CACHE_MS, identity.expiresAt.getTime() - Date.now()),
      );
    }
    const person = await this.signIn(key, identity);
    return {
      person,
      expiresAt: identity.expiresAt,
      issuedAt: identity.issuedAt,
      preferredUsername: identity.preferredUsername,
    };
  }

  /**
   * Asks the directory again about someone signed in earlier (a live session does, at each access
   * event): still active, not revoked since their token was issued, their sign-in not ended, and
   * their groups and admin status now. Throws STORE_UNAVAILABLE when the store does not answer.
   */
  async recheck(signedIn: SignedIn): Promise<Recheck> {
    try {
      const person = await this.current(signedIn);
      return { ok: true, person };
    } catch (err) {
      if (err instanceof PgwardError && (err.code === 'TOKEN_REVOKED' || err.code === 'NOT_ALLOWED')) {
        return { ok: false, reason: err.message };
      }
      throw err;
    }
  }

  /** The person behind a token as the directory decides now; throws TOKEN_REVOKED or NOT_ALLOWED. */
  private async current(signedIn: SignedIn): Promise<Person> {
    const { directory, sessions } = this.parts;
    const { userId, email, provider } = signedIn.person;
    if (signedIn.signInId !== undefined && signedIn.tokenId !== undefined) {
      if (!(await sessions.isLive(signedIn.signInId, signedIn.tokenId))) {
        throw tokenError('TOKEN_REVOKED', 'this token was revoked, or its sign-in ended (logout)');
      }
    }
    const standing = await directory.standing(userId, (name) => this.adminGroupsOf(name));
    if (!standing) throw new PgwardError('NOT_ALLOWED', `${email} is no longer in the pgward directory`);
    if (!standing.isActive) {
      throw new PgwardError('NOT_ALLOWED', `${standing.person.email} is deactivated in pgward`, {
        hint: 'ask a pgward administrator to reactivate you',
      });
    }
    assertNotRevoked(standing.revokedBefore, signedIn.issuedAt);
    if (standing.inactiveProviders.includes(provider)) {
      throw new PgwardError('NOT_ALLOWED', `your ${provider} identity is deactivated in pgward`);
    }
    if (!this.parts.providers().some((p) => p.name === provider)) {
      throw new PgwardError('NOT_ALLOWED', `the identity provider ${provider} is no longer accepted here`, {
        hint: 'log in with another provider, or ask a pgward administrator',
      });
    }
    // The provider stays the one this token proves; groups and admin status are the directory's.
    return { ...standing.person, provider };
  }

  private adminGroupsOf(provider: string): string[] {
    return this.parts.providers().find((p) => p.name === provider)?.adminGroups ?? [];
  }

  /** Forgets cached sign-ins, so a change to groups, mappings or people applies at the next connect. */
  forgetSignIns(): void {
    this.people.clear();
  }

  /**
   * pgward's own token: its claims say who it was issued to; the directory says, at each use and
   * uncached, whether that still holds and what the person may do now (groups, admin).
   */
  private async ownToken(token: string): Promise<SignedIn> {
    const access = await this.parts.tokens.verify(token);
    const signedIn: SignedIn = {
      person: access.person,
      expiresAt: access.expiresAt,
      issuedAt: access.issuedAt,
      signInId: access.signInId,
      tokenId: access.tokenId,
    };
    signedIn.person = await this.current(signedIn);
    return signedIn;
  }

  /** Signs a verified IdP token in; the directory's answer is reused briefly for the same token. */
  private async signIn(tokenKey: string, identity: Parameters<Directory['signIn']>[0]): Promise<Person> {
    const cacheable = this.parts.events?.listening === true;
    const cached = cacheable ? this.people.get(tokenKey) : undefined;
    if (cached) return cached;
    const person = await this.parts.directory.signIn(identity);
    if (cacheable) this.people.set(tokenKey, person, SIGN_IN_CACHE_MS);
    return person;
  }

  /** Turns a completed IdP login into a pgward sign-in and its first tokens. */
  async login(provider: ProviderConfig, login: IdpTokens, client: LoginClient): Promise<IssuedGrant> {
    const person = await this.parts.directory.signIn({
      ...login.identity,
      provider,
      expiresAt: new Date(Date.now() + this.parts.tokens.lifetimeMs),
      // The IdP vouched for the person just now, whatever its ID token's iat says.
      issuedAt: new Date(),
    });
    const session = await this.parts.sessions.create({
      userId: person.userId,
      provider: provider.name,
      client,
      idpRefreshToken: login.refreshToken,
    });
    return this.grant(person, session.id, session.refreshToken);
  }

  /**
   * Refreshes a sign-in: the IdP is asked again who the person is (so a group removed at the IdP
   * is gone now), the directory re-reads their groups, and new tokens are issued.
   */
  async refresh(refreshToken: string): Promise<IssuedGrant> {
    const { sessions, directory, idp } = this.parts;
    const session = await sessions.findByRefreshToken(refreshToken);
    const provider = this.parts.providers().find((p) => p.name === session.provider);
    if (!provider || !session.idpRefreshToken) {
      await sessions.revoke(session.id, 'cannot be refreshed');
      throw tokenError('TOKEN_REVOKED', 'this sign-in cannot be refreshed (the IdP gave no refresh token)');
    }
    let login: IdpTokens;
    try {
      login = await idp.refresh(provider, session.idpRefreshToken);
    } catch (err) {
      if (err instanceof PgwardError && err.code === 'LOGIN_FAILED') {
        await sessions.revoke(session.id, 'the IdP refused the refresh');
        throw tokenError('TOKEN_REVOKED', `${provider.name} ended this sign-in (${err.message})`);
      }
      throw err;
    }
    let person: Person;
    try {
      person = await directory.signIn({
        ...login.identity,
        provider,
        expiresAt: new Date(Date.now() + this.parts.tokens.lifetimeMs),
        issuedAt: new Date(),
      });
    } catch (err) {
      if (err instanceof PgwardError && err.code === 'NOT_ALLOWED') {
        await sessions.revoke(session.id, err.message);
      }
      throw err;
    }
    if (person.userId !== session.userId) {
      await sessions.revoke(session.id, 'the IdP answered for someone else');
      throw tokenError('TOKEN_REVOKED', 'the IdP answered for a different person; log in again');
    }
    const next = await sessions.rotate(session, refreshToken, login.refreshToken);
    return this.grant(person, session.id, next);
  }

  private async grant(person: Person, signInId: string, refreshToken: string): Promise<IssuedGrant> {
    const { token, expiresAt } = await this.parts.tokens.issue(person, signInId);
    return {
      signInId,
      access_token: token,
      token_type: 'Bearer',
      expires_in: Math.floor((expiresAt.getTime() - Date.now()) / 1000),
      refresh_token: refreshToken,
      person,
    };
  }
}
