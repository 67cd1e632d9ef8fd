/**
 * SAML 2.0 sign-in (with @node-saml/node-saml): an AuthnRequest by HTTP-Redirect, the IdP's
 * Response by HTTP-POST to the provider's assertion consumer service. The assertion's signature
 * (by the configured certificate), its issuer, audience (the gateway's entity id, `clientId`),
 * time conditions and InResponseTo (the request this browser started, sealed in its login cookie)
 * are always checked, and an assertion is accepted once. The person then holds pgward's own
 * tokens, as with any provider.
 */
import { randomBytes } from 'node:crypto';
import { type CacheProvider, type Profile, SAML, ValidateInResponseTo } from '@node-saml/node-saml';
import type pg from 'pg';
import type { ProviderConfig } from '../config/schema.js';
import { PgwardError } from '../errors.js';
import { type MappedClaims, mapClaims } from './claims.js';
import { CLOCK_TOLERANCE_S } from './token_verifier.js';

/** What a sign-in yields, with how long pgward may refresh it without the IdP. */
export interface SamlLogin {
  identity: MappedClaims;
  /** SessionNotOnOrAfter of the assertion, when the IdP set one. */
  sessionUntil: Date | undefined;
}

/** The gateway's assertion consumer service of a provider. */
export const samlAcsPath = (name: string) => `/login/saml/${name}/acs`;
/** The gateway's SAML metadata of a provider (what the IdP is configured with). */
export const samlMetadataPath = (name: string) => `/login/saml/${name}/metadata`;

/**
 * A cache that knows exactly one request: the one this browser's login started (sealed in its
 * login cookie, whose own expiry bounds how old the request may be).
 */
function oneRequest(requestId: string | undefined): CacheProvider {
  return {
    saveAsync: async (_key, value) => ({ value, createdAt: Date.now() }),
    getAsync: async (key) => (requestId !== undefined && key === requestId ? new Date().toISOString() : null),
    removeAsync: async (key) => key,
  };
}

function saml(provider: ProviderConfig, acsUrl: string, requestId?: string): SAML {
  const s = provider.saml;
  if (!s) throw new PgwardError('INTERNAL', `${provider.name} is not a SAML provider`);
  return new SAML({
    callbackUrl: acsUrl,
    entryPoint: s.ssoUrl,
    issuer: provider.clientId,
    audience: provider.clientId,
    idpIssuer: s.idpIssuer,
    idpCert: s.certificate,
    wantAssertionsSigned: true,
    wantAuthnResponseSigned: false,
    acceptedClockSkewMs: CLOCK_TOLERANCE_S * 1000,
    validateInResponseTo: ValidateInResponseTo.always,
    cacheProvider: oneRequest(requestId),
    generateUniqueId: () => requestId ?? `_${randomBytes(20).toString('hex')}`,
    identifierFormat: null,
    disableRequestedAuthnContext: true,
    signatureAlgorithm: 'sha256',
  });
}

/** Where to send the browser, and the request id its response must answer. */
export async function samlStart(
  provider: ProviderConfig,
  acsUrl: string,
  relayState: string,
): Promise<{ url: URL; requestId: string }> {
  const requestId = `_${randomBytes(20).toString('hex')}`;
  const url = await saml(provider, acsUrl, requestId).getAuthorizeUrlAsync(relayState, undefined, {});
  return { url: new URL(url), requestId };
}

/** The gateway's SP metadata for the IdP's administrator. */
export function samlMetadata(provider: ProviderConfig, acsUrl: string): string {
  return saml(provider, acsUrl).generateServiceProviderMetadata(null, null);
}

const values = (profile: Profile, name: string | undefined): string[] => {
  if (!name) return [];
  const value = (profile.attributes as Record<string, unknown> | undefined)?.[name] ?? profile[name];
  const list = Array.isArray(value) ? value : value === undefined || value === null ? [] : [value];
  return list.filter((v): v is string => typeof v === 'string');
};

/** Assertion ids already accepted, in the store until they expire: a second use, anywhere, is a replay. */
export class SamlReplayCache {
  constructor(private readonly pool: pg.Pool) {}

  /** Records `id`; false if it was accepted before. */
  async first(provider: string, id: string, until: Date): Promise<boolean> {
    await this.pool.query('DELETE FROM pgward.saml_assertion_seen WHERE until < now()');
    const { rowCount } = await this.pool.query(
      `INSERT INTO pgward.saml_assertion_seen (provider, assertion_id, until) VALUES ($1, $2, $3)
       ON CONFLICT DO NOTHING`,
      [provider, id, until],
    );
    return rowCount === 1;
  }
}

/** Validates a posted SAMLResponse for the request `requestId`; throws LOGIN_FAILED saying why. */
export async function samlFinish(
  provider: ProviderConfig,
  acsUrl: string,
  samlResponse: string,
  requestId: string,
  replays: SamlReplayCache,
): Promise<SamlLogin> {
  let profile: Profile | null;
  try {
    ({ profile } = await saml(provider, acsUrl, requestId).validatePostResponseAsync({
      SAMLResponse: samlResponse,
    }));
  } catch (err) {
    // node-saml's messages name the failed check (signature, audience, NotOnOrAfter, InResponseTo).
    const reason = (err as Error).message.split('\n')[0]!.slice(0, 200);
    throw new PgwardError('LOGIN_FAILED', `the SAML response of ${provider.name} is not valid: ${reason}`, {
      cause: err,
      hint: 'start the login again',
    });
  }
  if (!profile) throw new PgwardError('LOGIN_FAILED', `${provider.name} sent no assertion`);
  // node-saml checks idpIssuer on logout messages only: the assertion's Issuer is checked here.
  if (profile.issuer !== provider.saml!.idpIssuer) {
    throw new PgwardError(
      'LOGIN_FAILED',
      `the SAML response of ${provider.name} is not valid: the assertion's issuer is not ${provider.saml!.idpIssuer}`,
      { hint: 'check saml.idpIssuer against the IdP metadata' },
    );
  }
  const assertion = profile.getAssertionXml?.() ?? '';
  const id = /<(?:\w+:)?Assertion\b[^>]*\sID="([^"]{1,256})"/.exec(assertion)?.[1];
  const notOnOrAfter = /\sNotOnOrAfter="([^"]+)"/.exec(assertion)?.[1];
  const until = notOnOrAfter ? Date.parse(notOnOrAfter) : Number.NaN;
  const remembered = new Date(
    Number.isFinite(until) ? until + CLOCK_TOLERANCE_S * 1000 : Date.now() + 3_600_000,
  );
  if (!id || !(await replays.first(provider.name, id, remembered))) {
    throw new PgwardError('LOGIN_FAILED', `this SAML assertion of ${provider.name} was used already`, {
      hint: 'start the login again',
    });
  }
  const s = provider.saml!;
  const nameId = typeof profile.nameID === 'string' ? profile.nameID : undefined;
  const email =
    values(profile, s.emailAttribute)[0] ??
    (nameId && /^[^\s@]+@[^\s@]+$/.test(nameId) ? nameId : undefined) ??
    values(profile, 'email')[0] ??
    values(profile, 'mail')[0] ??
    values(profile, 'http://schemas.xmlsoap.org/ws/2005/05/identity/claims/emailaddress')[0];
  const claims = {
    sub: s.userIdAttribute ? values(profile, s.userIdAttribute)[0] : nameId,
    email,
    // A SAML IdP does not say whether the address was verified.
    email_verified: false,
    name: values(profile, s.nameAttribute ?? 'displayName')[0],
    groups: values(profile, s.groupAttribute),
    roles: values(profile, s.roleAttribute),
  };
  const sessionUntil = /\sSessionNotOnOrAfter="([^"]+)"/.exec(assertion)?.[1];
  return {
    identity: mapClaims(
      {
        ...provider,
        claims: {
          subject: ['sub'],
          email: ['email'],
          name: ['name'],
          groups: ['groups'],
          roles: [['roles']],
        },
      },
      claims,
    ),
    sessionUntil:
      sessionUntil && Number.isFinite(Date.parse(sessionUntil)) ? new Date(sessionUntil) : undefined,
  };
}
