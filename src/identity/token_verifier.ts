/**
 * Verification of identity tokens presented as passwords: a JWT of a configured provider checked
 * with jose (JWKS fetched and cached, exact issuer, audience, asymmetric algorithm allowlist,
 * `exp` required), or, for providers configured with `validation: userinfo`, an opaque token
 * checked by the IdP's userinfo endpoint. Each failure has its own stable error code.
 */
import { createHash } from 'node:crypto';
import {
  createLocalJWKSet,
  createRemoteJWKSet,
  customFetch,
  decodeJwt,
  decodeProtectedHeader,
  errors,
  type JWSHeaderParameters,
  type JWTPayload,
  type JWTVerifyOptions,
  jwtVerify,
} from 'jose';
import { readClaim } from '../config/claim_path.js';
import type { ProviderConfig } from '../config/schema.js';
import { asPgwardError, PgwardError, type TokenErrorCode } from '../errors.js';
import type { Logger } from '../log/logger.js';
import { type Metrics, UNKNOWN_PROVIDER } from '../metrics/metrics.js';
import { type MappedClaims, mapClaims } from './claims.js';
import { type EntraGraph, entraGraph } from './entra_graph.js';
import { githubIdentity, looksLikeGithubToken } from './github_provider.js';
import { fetchJson } from './http_json.js';
import {
  checkTokenShape,
  emailFromUserinfo,
  expectedAudiences,
  refuseForeignTenant,
} from './preset_checks.js';

export interface VerifiedIdentity extends MappedClaims {
  provider: ProviderConfig;
  /** When the token stops being valid. */
  expiresAt: Date;
}

const OUTBOUND_TIMEOUT_MS = 5_000;
/** Same cap as a password message: nothing longer can be a token pgward accepts. */
const MAX_TOKEN_CHARS = 65_535;
/** Seconds of clock skew tolerated between pgward and the IdP. */
export const CLOCK_TOLERANCE_S = 30;
/**
 * How long a userinfo answer vouches for an opaque token, and how long the email it gives for a
 * verified access token (Auth0, Cognito) is reused for that token.
 */
export const USERINFO_TTL_MS = 60_000;
const MAX_CACHED = 10_000;

/** What the userinfo endpoint adds to an access token without email. */
interface UserinfoEmail {
  email: unknown;
  email_verified: boolean;
}

interface ProviderState {
  provider: ProviderConfig;
  discovery?: Promise<{ jwks_uri?: string; userinfo_endpoint?: string }>;
  jwks?: ReturnType<typeof createRemoteJWKSet>;
  lastError?: string;
}

export function tokenError(code: TokenErrorCode, message: string, cause?: unknown): PgwardError {
  return new PgwardError(code, message, { cause, hint: 'run `pgward login` for a fresh token' });
}

/** Three base64url parts: a JWT (compact JWS), as opposed to an opaque token. */
export function looksLikeJwt(token: string): boolean {
  return token.length <= MAX_TOKEN_CHARS && /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/.test(token);
}

/** Header parameters that point at keys of the token's own choosing; only the IdP's keys count. */
const KEY_REFERENCES = ['jku', 'x5u', 'jwk', 'x5c'] as const;

/**
 * Reads a JWT's header and payload without trusting them, only to choose who verifies it, and
 * refuses outright what no verification could accept.
 */
export function inspectToken(token: string): { header: JWSHeaderParameters; payload: JWTPayload } {
  if (!looksLikeJwt(token)) {
    throw tokenError('TOKEN_MALFORMED', 'the password is not a token (expected a JWT)');
  }
  let header: JWSHeaderParameters;
  let payload: JWTPayload;
  try {
    header = decodeProtectedHeader(token) as JWSHeaderParameters;
    payload = decodeJwt(token);
  } catch (err) {
    throw tokenError('TOKEN_MALFORMED', 'the token is malformed', err);
  }
  if (!header.alg || header.alg === 'none')
    throw tokenError('TOKEN_UNSIGNED', 'unsigned tokens (alg "none") are refused');
  const reference = KEY_REFERENCES.find((name) => name in header);
  if (reference) {
    throw tokenError(
      'TOKEN_KEY_REFERENCE',
      `the token names its own key ("${reference}"); pgward only trusts the keys its providers publish`,
    );
  }
  // Access tokens (RFC 9068 "at+jwt") and ID-token-shaped ones ("JWT" or none, as Dex issues);
  // never another kind of JWT from the same IdP, such as a logout token.
  const typ = header.typ?.toLowerCase().replace(/^application\//, '');
  if (typ !== undefined && typ !== 'jwt' && typ !== 'at+jwt') {
    throw tokenError('TOKEN_TYPE', `a "${header.typ}" token is not an access or ID token`);
  }
  if (typeof payload.iss !== 'string') throw tokenError('TOKEN_CLAIMS', 'the token has no issuer (iss)');
  return { header, payload };
}

/**
 * Refuses a token issued in the future beyond the clock skew (jose checks `iat` only together
 * with a maximum age): such a token would outlive a revocation recorded before its `iat`.
 */
export function assertIssuedInThePast(payload: JWTPayload, now = Date.now()): void {
  if (payload.iat === undefined) return;
  if (typeof payload.iat !== 'number' || !Number.isFinite(payload.iat)) {
    throw tokenError('TOKEN_CLAIMS', "the token's iat claim must be a number");
  }
  if (payload.iat * 1000 > now + CLOCK_TOLERANCE_S * 1000) {
    throw tokenError('TOKEN_NOT_YET_VALID', 'the token was issued in the future (iat); check the clocks');
  }
}

/** Translates jose's verification failures into pgward's token codes. */
export function translateJoseError(err: unknown, audience: string, issuerName: string): PgwardError {
  if (err instanceof PgwardError) return err;
  if (err instanceof errors.JWTExpired) {
    const exp =
      typeof err.payload.exp === 'number' ? new Date(err.payload.exp * 1000).toISOString() : 'unknown';
    return tokenError('TOKEN_EXPIRED', `token expired at ${exp}`, err);
  }
  if (err instanceof errors.JWTClaimValidationFailed) {
    const known: Record<string, [TokenErrorCode, string]> = {
      iss: ['TOKEN_ISSUER', 'the token issuer does not match'],
      aud: ['TOKEN_AUDIENCE', `the token is not meant for this gateway (audience must be ${audience})`],
      nbf: ['TOKEN_NOT_YET_VALID', 'the token is not valid yet (nbf is in the future)'],
      iat: ['TOKEN_NOT_YET_VALID', 'the token was issued in the future'],
      exp: ['TOKEN_CLAIMS', 'the token has no expiry (exp)'],
      sub: ['TOKEN_CLAIMS', 'the token has no subject (sub)'],
      typ: ['TOKEN_TYPE', 'the token is not a pgward access token (typ must be "at+jwt")'],
    };
    // A required claim that is absent is a claims problem, whatever checking it would have been.
    if (err.reason === 'missing' && known[err.claim]?.[0] !== 'TOKEN_CLAIMS') {
      return tokenError('TOKEN_CLAIMS', `the token has no ${err.claim} claim`, err);
    }
    const [code, message] = known[err.claim] ?? ['TOKEN_CLAIMS', `the token's ${err.claim} claim is invalid`];
    return tokenError(code, message, err);
  }
  if (err instanceof errors.JOSEAlgNotAllowed) {
    return tokenError(
      'TOKEN_ALGORITHM',
      `the token's signing algorithm is not allowed for ${issuerName}`,
      err,
    );
  }
  if (err instanceof errors.JWSSignatureVerificationFailed) {
    return tokenError('TOKEN_SIGNATURE', 'the token signature does not verify', err);
  }
  if (err instanceof errors.JWKSNoMatchingKey || err instanceof errors.JWKSMultipleMatchingKeys) {
    return tokenError(
      'TOKEN_UNKNOWN_KEY',
      `the token is signed with a key ${issuerName} does not publish`,
      err,
    );
  }
  if (err instanceof errors.JOSEError)
    return tokenError('TOKEN_INVALID', `the token is invalid (${err.code})`, err);
  return new PgwardError('INTERNAL', 'token verification failed', { cause: err });
}

export class TokenVerifier {
  private states: ProviderState[];
  private readonly userinfoCache = new Map<string, { identity: VerifiedIdentity; until: number }>();
  private readonly emailCache = new Map<string, { claims: UserinfoEmail; until: number }>();
  private readonly graph: EntraGraph;
  private readonly now: () => number;

  constructor(
    providers: ProviderConfig[],
    private readonly log: Logger,
    /** How long fetched keys count as fresh, and the least time between two fetches. */
    private readonly jwksTiming = { cacheMaxAgeMs: 10 * 60_000, cooldownMs: 30_000 },
    private readonly metrics?: Metrics,
    /** The Graph reader of Entra ID's groups overage, and the clock of the answer caches. */
    options: { graph?: EntraGraph; now?: () => number } = {},
  ) {
    this.states = providers.map((provider) => ({ provider }));
    this.graph = options.graph ?? entraGraph;
    this.now = options.now ?? Date.now;
  }

  /** Replaces the provider list; a provider whose settings did not change keeps its cached keys. */
  setProviders(providers: ProviderConfig[]): void {
    const same = (a: ProviderConfig, b: ProviderConfig) => JSON.stringify(a) === JSON.stringify(b);
    this.states = providers.map(
      (provider) => this.states.find((s) => same(s.provider, provider)) ?? { provider },
    );
  }

  private discovery(state: ProviderState) {
    if (!state.discovery) {
      const url = `${state.provider.issuer.replace(/\/$/, '')}/.well-known/openid-configuration`;
      state.discovery = fetchJson(url, OUTBOUND_TIMEOUT_MS) as Promise<{
        jwks_uri?: string;
        userinfo_endpoint?: string;
      }>;
      // A failed discovery is retried at the next use rather than cached.
      state.discovery.catch(() => {
        state.discovery = undefined;
      });
    }
    return state.discovery;
  }

  private async keySet(state: ProviderState) {
    if (!state.jwks) {
      const uri =
        state.provider.jwksUri ??
        (
          await this.discovery(state).catch((err: unknown) => {
            this.metrics?.jwksFetched(state.provider.name, false);
            throw err;
          })
        ).jwks_uri;
      if (!uri)
        throw new PgwardError('IDP_UNREACHABLE', `${state.provider.name}: the IdP publishes no jwks_uri`);
      state.jwks = createRemoteJWKSet(new URL(uri), {
        timeoutDuration: OUTBOUND_TIMEOUT_MS,
        cooldownDuration: this.jwksTiming.cooldownMs,
        cacheMaxAge: this.jwksTiming.cacheMaxAgeMs,
        [customFetch]: async (url, init) => {
          const name = state.provider.name;
          try {
            const res = await fetch(url, init);
            this.metrics?.jwksFetched(name, res.status === 200);
            return res;
          } catch (err) {
            this.metrics?.jwksFetched(name, false);
            throw err;
          }
        },
      });
    }
    return state.jwks;
  }

  /**
   * Fetches the keys of every provider that has none yet (or failed last time), so the first
   * login does not wait; errors are logged. Providers whose keys are loaded are left to jose's
   * cache, so calling this after each provider reload costs nothing for them.
   */
  async prewarm(): Promise<void> {
    await Promise.all(
      this.states
        .filter(
          (s) => s.provider.validation === 'jwks' && (s.jwks === undefined || s.lastError !== undefined),
        )
        .map(async (state) => {
          try {
            await (await this.keySet(state)).reload();
            state.lastError = undefined;
          } catch (err) {
            state.lastError = (err as Error).message;
            this.log.warn(
              { provider: state.provider.name, err: state.lastError },
              'cannot fetch the IdP keys yet',
            );
          }
        }),
    );
  }

  /** Per provider: whether its keys are loaded. */
  health(): Record<string, { ok: boolean; detail?: string }> {
    return Object.fromEntries(
      this.states.map((s) => [
        s.provider.name,
        s.provider.validation === 'userinfo'
          ? {
              ok: true,
              detail: ['github', 'saml', 'ldap'].includes(s.provider.type)
                ? s.provider.type
                : 'userinfo validation',
            }
          : {
              ok: s.jwks?.fresh !== undefined && s.lastError === undefined,
              detail: s.lastError ?? s.provider.issuer,
            },
      ]),
    );
  }

  /** Verifies a token; throws one of the TOKEN_* codes, or IDP_UNREACHABLE. */
  async verify(token: string): Promise<VerifiedIdentity> {
    try {
      const identity = await this.check(token);
      this.metrics?.tokenVerified(identity.provider.name, 'ok');
      return identity;
    } catch (err) {
      this.metrics?.tokenVerified(this.providerOf(token), asPgwardError(err).code);
      throw err;
    }
  }

  /** The provider a token claims to come from, for metrics only (nothing is trusted from it). */
  private providerOf(token: string): string {
    try {
      if (!looksLikeJwt(token)) {
        const userinfo = this.states.filter((s) => s.provider.validation === 'userinfo');
        return userinfo.length === 1 ? userinfo[0]!.provider.name : UNKNOWN_PROVIDER;
      }
      const issuer = decodeJwt(token).iss;
      return (
        this.states.find((s) => s.provider.issuers.includes(String(issuer)))?.provider.name ??
        UNKNOWN_PROVIDER
      );
    } catch {
      return UNKNOWN_PROVIDER;
    }
  }

  private async check(token: string): Promise<VerifiedIdentity> {
    if (!looksLikeJwt(token)) return this.verifyOpaque(token);
    const unverified = inspectToken(token).payload;
    const issuer = unverified.iss!;
    const state = this.states.find((s) => s.provider.issuers.includes(issuer));
    if (!state) {
      refuseForeignTenant(
        this.states.map((s) => s.provider),
        issuer,
      );
      throw tokenError('TOKEN_UNKNOWN_ISSUER', `tokens of issuer ${issuer} are not accepted by this gateway`);
    }
    if (state.provider.validation === 'userinfo') return this.verifyWithUserinfo(state, token);
    const provider = state.provider;
    const audience = expectedAudiences(provider, unverified);
    const options: JWTVerifyOptions = {
      issuer: provider.issuers,
      ...(audience ? { audience } : {}),
      algorithms: [...provider.algorithms],
      requiredClaims: ['exp', 'sub'],
      clockTolerance: CLOCK_TOLERANCE_S,
    };
    let payload: JWTPayload;
    try {
      ({ payload } = await jwtVerify(token, await this.keySet(state), options));
      state.lastError = undefined;
    } catch (err) {
      const error = this.translate(err, state);
      const lastKeys = state.jwks?.jwks();
      if (error.code !== 'IDP_UNREACHABLE' || !lastKeys) throw error;
      // The IdP is down and its keys went stale: the keys last fetched still verify the tokens
      // it signed with them, so issued tokens keep working until they expire.
      try {
        ({ payload } = await jwtVerify(token, createLocalJWKSet(lastKeys), options));
      } catch (fallback) {
        throw fallback instanceof errors.JWKSNoMatchingKey ? error : this.translate(fallback, state);
      }
    }
    assertIssuedInThePast(payload);
    checkTokenShape(provider, payload);
    let claims: Record<string, unknown> = await this.graph.complete(provider, payload);
    let mapped: MappedClaims;
    if (emailFromUserinfo(provider, readClaim(payload, provider.claims.email) !== undefined)) {
      claims = { ...claims, ...(await this.userinfoEmail(state, token, payload)) };
      mapped = mapClaims({ ...provider, claims: { ...provider.claims, email: ['email'] } }, claims);
    } else {
      mapped = mapClaims(provider, claims);
    }
    return { ...mapped, provider, expiresAt: new Date(payload.exp! * 1000) };
  }

  private translate(err: unknown, state: ProviderState): PgwardError {
    if (err instanceof errors.JWKSTimeout || err instanceof errors.JWKSInvalid || err instanceof TypeError) {
      state.lastError = 'keys unreachable';
      return new PgwardError(
        'IDP_UNREACHABLE',
        `cannot reach the identity provider ${state.provider.name} to check the token`,
        { cause: err, hint: 'try again shortly; if it persists, the IdP or the network to it is down' },
      );
    }
    return translateJoseError(err, state.provider.audiences.join(' or '), state.provider.name);
  }

  /**
   * The email (and its verification) of a verified access token that carries none, from the
   * provider's userinfo endpoint, which must name the same subject; reused for the same token
   * for USERINFO_TTL_MS, never past its expiry.
   */
  private async userinfoEmail(
    state: ProviderState,
    token: string,
    payload: JWTPayload,
  ): Promise<UserinfoEmail> {
    const name = state.provider.name;
    const key = createHash('sha256').update(token).digest('base64url');
    const cached = this.emailCache.get(key);
    if (cached && cached.until > this.now()) return cached.claims;
    const endpoint = (await this.discovery(state)).userinfo_endpoint;
    if (!endpoint)
      throw tokenError('TOKEN_CLAIMS', `the token has no email and ${name} has no userinfo endpoint`);
    let info: unknown;
    try {
      info = await fetchJson(endpoint, OUTBOUND_TIMEOUT_MS, { authorization: `Bearer ${token}` });
    } catch (err) {
      if (err instanceof PgwardError && err.detail === '401')
        throw tokenError(
          'TOKEN_INVALID',
          `${name}'s userinfo endpoint does not accept this token (it carries no email); ask for the openid and email scopes`,
          err,
        );
      throw new PgwardError(
        'IDP_UNREACHABLE',
        `the token has no email and ${name}'s userinfo endpoint, which gives it, failed: ${(err as Error).message}`,
        { cause: err, hint: 'try again shortly; if it persists, the IdP or the network to it is down' },
      );
    }
    const answer = (typeof info === 'object' && info !== null ? info : {}) as Record<string, unknown>;
    if (answer['sub'] !== payload.sub)
      throw tokenError('TOKEN_CLAIMS', `${name}'s userinfo names another subject than the token`);
    if (answer['email'] === undefined || answer['email'] === null)
      throw tokenError(
        'TOKEN_CLAIMS',
        `neither the token nor ${name}'s userinfo gives an email; ask for the email scope (and give the person an email at the IdP)`,
      );
    // Cognito's userinfo sends email_verified as the string "true".
    const verified =
      answer['email_verified'] === true ||
      (state.provider.type === 'cognito' && answer['email_verified'] === 'true');
    const claims = { email: answer['email'], email_verified: verified };
    if (this.emailCache.size >= MAX_CACHED) this.emailCache.clear();
    const until = Math.min(this.now() + USERINFO_TTL_MS, payload.exp! * 1000);
    this.emailCache.set(key, { claims, until });
    return claims;
  }

  /**
   * An opaque token names no issuer, so only the one provider validated by userinfo may vouch
   * for it: sending a token to several IdPs would hand one IdP's token to another.
   */
  private verifyOpaque(token: string): Promise<VerifiedIdentity> {
    if (looksLikeGithubToken(token)) return this.verifyGithub(token);
    const candidates = this.states.filter(
      (s) =>
        s.provider.validation === 'userinfo' && s.provider.type !== 'github' && s.provider.type !== 'saml',
    );
    if (candidates.length !== 1 || token.length > MAX_TOKEN_CHARS || !/^[\x21-\x7e]+$/.test(token)) {
      throw tokenError(
        'TOKEN_MALFORMED',
        candidates.length > 1
          ? 'an opaque token is accepted only when one provider validates by userinfo; use a JWT'
          : 'the password is not a token (expected a JWT)',
      );
    }
    return this.verifyWithUserinfo(candidates[0]!, token);
  }

  /** A GitHub token names no issuer either: only the one GitHub provider may vouch for it, at GitHub's API. */
  private async verifyGithub(token: string): Promise<VerifiedIdentity> {
    const candidates = this.states.filter((s) => s.provider.type === 'github');
    if (candidates.length !== 1) {
      throw tokenError(
        'TOKEN_MALFORMED',
        candidates.length === 0
          ? 'GitHub tokens are not accepted by this gateway'
          : 'a GitHub token is accepted only when one GitHub provider is configured; use pgward login',
      );
    }
    const key = createHash('sha256').update(token).digest('base64url');
    const cached = this.userinfoCache.get(key);
    if (cached && cached.until > this.now()) return cached.identity;
    const provider = candidates[0]!.provider;
    const until = this.now() + USERINFO_TTL_MS;
    const identity = { ...(await githubIdentity(provider, token)), provider, expiresAt: new Date(until) };
    if (this.userinfoCache.size >= MAX_CACHED) this.userinfoCache.clear();
    this.userinfoCache.set(key, { identity, until });
    return identity;
  }

  private async verifyWithUserinfo(state: ProviderState, token: string): Promise<VerifiedIdentity> {
    const key = createHash('sha256').update(token).digest('base64url');
    const cached = this.userinfoCache.get(key);
    if (cached && cached.until > this.now()) return cached.identity;
    const endpoint = (await this.discovery(state)).userinfo_endpoint;
    if (!endpoint)
      throw new PgwardError('IDP_UNREACHABLE', `${state.provider.name}: the IdP has no userinfo endpoint`);
    let claims: Record<string, unknown>;
    try {
      claims = (await fetchJson(endpoint, OUTBOUND_TIMEOUT_MS, {
        authorization: `Bearer ${token}`,
      })) as Record<string, unknown>;
    } catch (err) {
      if (err instanceof PgwardError && err.detail === '401') {
        throw tokenError('TOKEN_INVALID', 'the identity provider does not accept this token', err);
      }
      throw err;
    }
    const until = this.now() + USERINFO_TTL_MS;
    const identity = {
      ...mapClaims(state.provider, claims),
      provider: state.provider,
      expiresAt: new Date(until),
    };
    if (this.userinfoCache.size >= MAX_CACHED) this.userinfoCache.clear();
    this.userinfoCache.set(key, { identity, until });
    return identity;
  }
}
