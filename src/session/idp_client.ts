/**
 * pgward as an OpenID Connect client of each provider (openid-client): the device authorization
 * grant for the CLI, authorization code + PKCE for browsers, and refresh. What a login yields is
 * an identity read from the provider's validated ID token (or its userinfo endpoint), mapped
 * with the provider's claim rules exactly like a token presented at the PostgreSQL endpoint.
 */
import * as oidc from 'openid-client';
import type pg from 'pg';
import type { ProviderConfig } from '../config/schema.js';
import { PgwardError } from '../errors.js';
import { type MappedClaims, mapClaims } from '../identity/claims.js';
import { type EntraGraph, entraGraph } from '../identity/entra_graph.js';
import {
  githubAuthorizationUrl,
  githubIdentity,
  githubStartDevice,
  githubToken,
} from '../identity/github_provider.js';
import { LdapLockout, ldapReread, ldapSignIn } from '../identity/ldap_provider.js';
import { SamlSignIns } from '../identity/saml_logout.js';
import {
  SamlReplayCache,
  type SamlSession,
  samlFinish,
  samlMetadata,
  samlStart,
} from '../identity/saml_provider.js';

const TIMEOUT_MS = 10_000;

export interface IdpTokens {
  identity: MappedClaims;
  /** The IdP's refresh token, when it gave one (needed to refresh pgward's session). */
  refreshToken: string | undefined;
  /** SAML: the IdP session, recorded with the sign-in for single logout. */
  saml?: SamlSession;
}

export interface DeviceStart {
  device_code: string;
  user_code: string;
  verification_uri: string;
  verification_uri_complete?: string;
  expires_in: number;
  interval: number;
}

/** How long a SAML sign-in is refreshed without the IdP, unless its SessionNotOnOrAfter is sooner. */
const SAML_SIGN_IN_MS = 12 * 3_600_000;
const SAML_REFRESH = 'saml:';
const LDAP_REFRESH = 'ldap:';

/** Device-grant polling answers that mean "not yet" rather than failure (RFC 8628 §3.5). */
export class LoginPending extends Error {
  constructor(readonly reason: 'authorization_pending' | 'slow_down') {
    super(reason);
  }
}

export class IdpClient {
  private readonly configs = new Map<string, Promise<oidc.Configuration>>();
  /** SAML messages already accepted (assertions, LogoutRequests). */
  readonly samlReplays: SamlReplayCache;
  /** The IdP session of each SAML sign-in (single logout). */
  readonly samlSignIns: SamlSignIns;
  private readonly ldapLockout: LdapLockout;

  /**
   * `pool`: the store, where SAML replays and sessions and LDAP lockouts are kept for every
   * gateway; `graph`: the reader of Entra ID's groups overage (shared with the token verifier).
   */
  constructor(
    pool: pg.Pool,
    private readonly graph: EntraGraph = entraGraph,
  ) {
    this.samlReplays = new SamlReplayCache(pool);
    this.samlSignIns = new SamlSignIns(pool);
    this.ldapLockout = new LdapLockout(pool);
  }

  /** LDAP: proves a user name and password by a bind; the DN is kept to read the person again at refresh. */
  async passwordSignIn(provider: ProviderConfig, username: string, password: string): Promise<IdpTokens> {
    if (provider.type !== 'ldap') {
      throw new PgwardError('BAD_REQUEST', `${provider.name} does not sign in with a password`, {
        hint: 'use `pgward login`',
      });
    }
    const { identity, dn } = await ldapSignIn(provider, username, password, this.ldapLockout);
    return { identity, refreshToken: `${LDAP_REFRESH}${dn}` };
  }

  /** SAML: where to send the browser, and the request id its response must answer. */
  samlStart(provider: ProviderConfig, acsUrl: string, relayState: string) {
    return samlStart(provider, acsUrl, relayState);
  }

  /** SAML: the gateway's SP metadata. */
  samlMetadata(provider: ProviderConfig, acsUrl: string): string {
    return samlMetadata(provider, acsUrl);
  }

  /**
   * SAML: validates the posted response. A SAML IdP cannot be asked again at refresh, so the
   * sign-in keeps this identity (sealed in the store as its refresh credential) for at most 12 h.
   */
  async finishSaml(
    provider: ProviderConfig,
    acsUrl: string,
    samlResponse: string,
    requestId: string,
  ): Promise<IdpTokens> {
    const login = await samlFinish(provider, acsUrl, samlResponse, requestId, this.samlReplays);
    const until = Math.min(
      Date.now() + SAML_SIGN_IN_MS,
      login.sessionUntil?.getTime() ?? Number.POSITIVE_INFINITY,
    );
    return {
      identity: login.identity,
      refreshToken: `${SAML_REFRESH}${JSON.stringify({ identity: login.identity, until })}`,
      saml: login.session,
    };
  }

  private config(provider: ProviderConfig): Promise<oidc.Configuration> {
    let config = this.configs.get(provider.name);
    if (!config) {
      const issuer = new URL(provider.issuer);
      config = oidc
        .discovery(
          issuer,
          provider.clientId,
          undefined,
          provider.clientSecret ? oidc.ClientSecretPost(provider.clientSecret) : oidc.None(),
          {
            timeout: TIMEOUT_MS / 1000,
            // The operator configured an http:// issuer (a loopback dev IdP, or a sidecar).
            ...(issuer.protocol === 'http:' ? { execute: [oidc.allowInsecureRequests] } : {}),
          },
        )
        .catch((err: unknown) => {
          this.configs.delete(provider.name);
          throw unreachable(provider, err);
        });
      this.configs.set(provider.name, config);
    }
    return config;
  }

  /** Starts a device login (RFC 8628): the code the person confirms, and where. */
  async startDevice(provider: ProviderConfig): Promise<DeviceStart> {
    if (provider.type === 'ldap') {
      throw new PgwardError('BAD_REQUEST', `${provider.name} signs in with your directory password`, {
        hint: `use \`pgward login --browser --provider ${provider.name}\`, or POST /api/v1/auth/password`,
      });
    }
    if (provider.type === 'saml') {
      throw new PgwardError('BAD_REQUEST', `${provider.name} is a SAML provider: it signs in in a browser`, {
        hint: `use \`pgward login --browser --provider ${provider.name}\``,
      });
    }
    if (provider.type === 'github') return githubStartDevice(provider);
    const config = await this.config(provider);
    if (!config.serverMetadata().device_authorization_endpoint) {
      throw new PgwardError('BAD_REQUEST', `${provider.name} does not support device login`, {
        hint: 'use `pgward login --browser`',
      });
    }
    const res = await this.call(provider, () =>
      oidc.initiateDeviceAuthorization(config, { scope: provider.scopes.join(' ') }),
    );
    return {
      device_code: res.device_code,
      user_code: res.user_code,
      verification_uri: res.verification_uri,
      ...(res.verification_uri_complete ? { verification_uri_complete: res.verification_uri_complete } : {}),
      expires_in: res.expires_in,
      interval: res.interval ?? 5,
    };
  }

  /** One poll of a device login: the tokens, or LoginPending while the person has not confirmed. */
  async pollDevice(provider: ProviderConfig, deviceCode: string): Promise<IdpTokens> {
    if (provider.type === 'github') {
      return this.github(provider, {
        grant_type: 'urn:ietf:params:oauth:grant-type:device_code',
        device_code: deviceCode,
      });
    }
    const config = await this.config(provider);
    const tokens = await this.call(provider, () =>
      oidc.genericGrantRequest(config, 'urn:ietf:params:oauth:grant-type:device_code', {
        device_code: deviceCode,
      }),
    );
    return this.identity(provider, config, tokens);
  }

  /** Where to send a browser to log in, with PKCE, state and nonce. */
  async authorizationUrl(
    provider: ProviderConfig,
    checks: { redirectUri: string; state: string; nonce: string; codeVerifier: string },
  ): Promise<URL> {
    if (provider.type === 'github') {
      const codeChallenge = await oidc.calculatePKCECodeChallenge(checks.codeVerifier);
      return githubAuthorizationUrl(provider, {
        redirectUri: checks.redirectUri,
        state: checks.state,
        codeChallenge,
      });
    }
    const config = await this.config(provider);
    return oidc.buildAuthorizationUrl(config, {
      redirect_uri: checks.redirectUri,
      scope: provider.scopes.join(' '),
      state: checks.state,
      nonce: checks.nonce,
      code_challenge: await oidc.calculatePKCECodeChallenge(checks.codeVerifier),
      code_challenge_method: 'S256',
    });
  }

  /** Completes a browser login from the callback URL, checking state, nonce and PKCE. */
  async finishCode(
    provider: ProviderConfig,
    callbackUrl: URL,
    checks: { state: string; nonce: string; codeVerifier: string; redirectUri: string },
  ): Promise<IdpTokens> {
    if (provider.type === 'github') {
      const params = callbackUrl.searchParams;
      const error = params.get('error');
      if (error) {
        throw new PgwardError('LOGIN_FAILED', `${provider.name} refused the login (${error.slice(0, 100)})`);
      }
      const code = params.get('code');
      if (params.get('state') !== checks.state || !code) {
        throw new PgwardError('LOGIN_FAILED', `the login response from ${provider.name} is invalid (state)`, {
          hint: 'start the login again',
        });
      }
      return this.github(provider, {
        code,
        redirect_uri: checks.redirectUri,
        code_verifier: checks.codeVerifier,
      });
    }
    const config = await this.config(provider);
    const tokens = await this.call(provider, () =>
      oidc.authorizationCodeGrant(
        config,
        callbackUrl,
        { expectedState: checks.state, expectedNonce: checks.nonce, pkceCodeVerifier: checks.codeVerifier },
        { redirect_uri: checks.redirectUri },
      ),
    );
    return this.identity(provider, config, tokens);
  }

  /** Refreshes at the IdP, re-reading who the person is now (their groups may have changed). */
  async refresh(provider: ProviderConfig, refreshToken: string): Promise<IdpTokens> {
    if (provider.type === 'ldap') {
      // Read again with the service account: a person removed, disabled or out of a group loses it.
      if (!refreshToken.startsWith(LDAP_REFRESH))
        throw new PgwardError('LOGIN_FAILED', 'not an LDAP sign-in');
      return { identity: await ldapReread(provider, refreshToken.slice(LDAP_REFRESH.length)), refreshToken };
    }
    if (provider.type === 'saml') {
      const kept = refreshToken.startsWith(SAML_REFRESH)
        ? (JSON.parse(refreshToken.slice(SAML_REFRESH.length)) as { identity: MappedClaims; until: number })
        : undefined;
      if (!kept || kept.until < Date.now()) {
        throw new PgwardError('LOGIN_FAILED', `the SAML sign-in at ${provider.name} has ended`, {
          hint: 'sign in again',
        });
      }
      return { identity: kept.identity, refreshToken };
    }
    if (provider.type === 'github') {
      // GitHub's OAuth tokens do not expire: a refresh asks GitHub again who holds the token, so
      // a person who left the organisation, or revoked pgward, loses the sign-in.
      try {
        return { identity: await githubIdentity(provider, refreshToken, 'login'), refreshToken };
      } catch (err) {
        if (err instanceof PgwardError && (err.code === 'TOKEN_INVALID' || err.code === 'TOKEN_ORGANIZATION'))
          throw new PgwardError('LOGIN_FAILED', err.message, { cause: err });
        throw err;
      }
    }
    const config = await this.config(provider);
    const tokens = await this.call(provider, () => oidc.refreshTokenGrant(config, refreshToken));
    return this.identity(provider, config, tokens, refreshToken);
  }

  /** The IdP's logout URL for a browser (RP-initiated logout), when it has one. */
  async endSessionUrl(provider: ProviderConfig, postLogoutRedirectUri: string): Promise<URL | undefined> {
    if (provider.type === 'github' || provider.type === 'saml' || provider.type === 'ldap') return undefined;
    const config = await this.config(provider);
    if (!config.serverMetadata().end_session_endpoint) return undefined;
    return oidc.buildEndSessionUrl(config, {
      client_id: provider.clientId,
      post_logout_redirect_uri: postLogoutRedirectUri,
    });
  }

  /** Finishes a GitHub login: its token, then the person as GitHub's API describes them. */
  private async github(provider: ProviderConfig, grant: Record<string, string>): Promise<IdpTokens> {
    const answer = await githubToken(provider, grant);
    if ('pending' in answer) throw new LoginPending(answer.pending);
    // The GitHub token is kept (sealed) as the sign-in's refresh credential.
    return { identity: await githubIdentity(provider, answer.token, 'login'), refreshToken: answer.token };
  }

  private async identity(
    provider: ProviderConfig,
    config: oidc.Configuration,
    tokens: oidc.TokenEndpointResponse & oidc.TokenEndpointResponseHelpers,
    previousRefreshToken?: string,
  ): Promise<IdpTokens> {
    // The ID token was validated by openid-client (signature, issuer, audience, expiry, nonce).
    const idClaims = tokens.claims() as Record<string, unknown> | undefined;
    let claims: Record<string, unknown>;
    if (provider.validation === 'userinfo' || !idClaims) {
      const subject = typeof idClaims?.['sub'] === 'string' ? idClaims['sub'] : oidc.skipSubjectCheck;
      claims = await this.call(provider, () => oidc.fetchUserInfo(config, tokens.access_token, subject));
    } else {
      claims = idClaims;
    }
    return {
      identity: mapClaims(provider, await this.graph.complete(provider, claims)),
      refreshToken: tokens.refresh_token ?? previousRefreshToken,
    };
  }

  /** Runs one request to the IdP, translating its refusals and outages. */
  private async call<T>(provider: ProviderConfig, request: () => Promise<T>): Promise<T> {
    try {
      return await request();
    } catch (err) {
      if (err instanceof PgwardError) throw err;
      if (err instanceof oidc.ResponseBodyError) {
        if (err.error === 'authorization_pending' || err.error === 'slow_down')
          throw new LoginPending(err.error);
        const reason = err.error_description ? `${err.error}: ${err.error_description}` : err.error;
        throw new PgwardError('LOGIN_FAILED', `${provider.name} refused the login (${reason})`, {
          cause: err,
          hint: 'run `pgward login` again',
        });
      }
      if (err instanceof oidc.AuthorizationResponseError) {
        throw new PgwardError('LOGIN_FAILED', `${provider.name} refused the login (${err.error})`, {
          cause: err,
        });
      }
      if (err instanceof oidc.ClientError) {
        // State, nonce, PKCE, ID token signature or claims did not check out.
        // openid-client wraps oauth4webapi's error, whose cause names the claim that failed.
        const cause = err.cause as { claim?: unknown; cause?: { claim?: unknown } } | undefined;
        const claim = cause?.claim ?? cause?.cause?.claim;
        const which = typeof claim === 'string' && /^[a-z_]{1,32}$/.test(claim) ? ` (${claim})` : '';
        throw new PgwardError(
          'LOGIN_FAILED',
          `the login response from ${provider.name} is invalid: ${err.message}${which}`,
          {
            cause: err,
            hint: 'start the login again',
          },
        );
      }
      throw unreachable(provider, err);
    }
  }
}

function unreachable(provider: ProviderConfig, cause: unknown): PgwardError {
  return new PgwardError('IDP_UNREACHABLE', `cannot reach the identity provider ${provider.name}`, {
    cause,
    hint: 'try again shortly; if it persists, the IdP or the network to it is down',
  });
}
