/**
 * SAML 2.0 sign-in (with @node-saml/node-saml): an AuthnRequest by HTTP-Redirect, the IdP's
 * Response by HTTP-POST to the provider's assertion consumer service. The assertion's signature
 * (by the configured certificate), its issuer, audience (the gateway's entity id, `clientId`),
 * time conditions and InResponseTo (the request this browser started, sealed in its login cookie)
 * are always checked, and an assertion is accepted once. With `saml.sp` the IdP may encrypt the
 * assertion to the gateway's certificate (and must, with `requireEncryptedAssertions`); the
 * assertion inside is still checked as above. The person then holds pgward's own tokens, as with
 * any provider.
 */
import { randomBytes } from 'node:crypto';
import { createRequire } from 'node:module';
import { type CacheProvider, type Profile, SAML, ValidateInResponseTo } from '@node-saml/node-saml';
import type pg from 'pg';
import type { ProviderConfig } from '../config/schema.js';
import { PgwardError } from '../errors.js';
import { type MappedClaims, mapClaims } from './claims.js';
import { type SamlSpSettings, samlSpKeyPem } from './provider_settings.js';
import { CLOCK_TOLERANCE_S } from './token_verifier.js';

/** The IdP's session a sign-in came from: what a LogoutRequest names, in either direction. */
export interface SamlSession {
  nameId: string;
  nameIdFormat: string | undefined;
  nameQualifier: string | undefined;
  spNameQualifier: string | undefined;
  sessionIndex: string | undefined;
}

/** What a sign-in yields, with how long pgward may refresh it without the IdP. */
export interface SamlLogin {
  identity: MappedClaims;
  /** SessionNotOnOrAfter of the assertion, when the IdP set one. */
  sessionUntil: Date | undefined;
  session: SamlSession;
}

/** The gateway's assertion consumer service of a provider. */
export const samlAcsPath = (name: string) => `/login/saml/${name}/acs`;
/** The gateway's SAML metadata of a provider (what the IdP is configured with). */
export const samlMetadataPath = (name: string) => `/login/saml/${name}/metadata`;
/** The gateway's single logout service of a provider (LogoutRequests and LogoutResponses). */
export const samlSloPath = (name: string) => `/login/saml/${name}/slo`;

/** The SLO URL beside an ACS URL (both hang off the gateway's public URL). */
export function samlSloUrl(provider: ProviderConfig, acsUrl: string): string {
  const acs = samlAcsPath(provider.name);
  if (!acsUrl.endsWith(acs))
    throw new PgwardError('INTERNAL', `${acsUrl} is not the ACS of ${provider.name}`);
  return `${acsUrl.slice(0, -acs.length)}${samlSloPath(provider.name)}`;
}

/** Keys read once per settings object (a provider reloaded from the store reads its key again). */
const spKeys = new WeakMap<SamlSpSettings, string>();
function spKey(sp: SamlSpSettings): string {
  let pem = spKeys.get(sp);
  if (pem === undefined) {
    try {
      pem = samlSpKeyPem(sp);
    } catch (err) {
      // The file or variable changed since the configuration was validated.
      throw new PgwardError('INTERNAL', (err as Error).message);
    }
    spKeys.set(sp, pem);
  }
  return pem;
}

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

/** node-saml for one provider; `requestId`: the request a response must answer. */
export function saml(
  provider: ProviderConfig,
  acsUrl: string,
  requestId?: string,
  inResponseTo: ValidateInResponseTo = ValidateInResponseTo.always,
): SAML {
  const s = provider.saml;
  if (!s) throw new PgwardError('INTERNAL', `${provider.name} is not a SAML provider`);
  const key = s.sp ? spKey(s.sp) : undefined;
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
    validateInResponseTo: inResponseTo,
    cacheProvider: oneRequest(requestId),
    generateUniqueId: () => requestId ?? `_${randomBytes(20).toString('hex')}`,
    identifierFormat: null,
    disableRequestedAuthnContext: true,
    signatureAlgorithm: 'sha256',
    ...(key ? { decryptionPvk: key } : {}),
    // With a privateKey, node-saml signs every redirect it builds (SigAlg, Signature).
    ...(key && s.signRequests ? { privateKey: key } : {}),
    ...(s.sloUrl ? { logoutUrl: s.sloUrl, logoutCallbackUrl: samlSloUrl(provider, acsUrl) } : {}),
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

/**
 * The gateway's SP metadata for the IdP's administrator: with `saml.sp`, its certificate for
 * encryption (and for signing, with `signRequests`); with `sloUrl`, the single logout service.
 */
export function samlMetadata(provider: ProviderConfig, acsUrl: string): string {
  const s = provider.saml!;
  const cert = s.sp?.certificate ?? null;
  return saml(provider, acsUrl).generateServiceProviderMetadata(cert, s.signRequests ? cert : null);
}

/** What xml-encryption decrypts that is still sound: AES-GCM, AES-CBC, and RSA-OAEP for the key. */
const ENCRYPTION_ALGORITHMS: ReadonlySet<string> = new Set([
  'http://www.w3.org/2009/xmlenc11#aes256-gcm',
  'http://www.w3.org/2009/xmlenc11#aes128-gcm',
  'http://www.w3.org/2001/04/xmlenc#aes256-cbc',
  'http://www.w3.org/2001/04/xmlenc#aes128-cbc',
  'http://www.w3.org/2001/04/xmlenc#rsa-oaep-mgf1p',
]);

/** The part of @xmldom/xmldom's DOM read here. */
export interface XmlElement {
  readonly nodeType: number;
  readonly localName: string;
  readonly namespaceURI: string | null;
  readonly textContent: string | null;
  getAttribute(name: string): string | null;
  getElementsByTagNameNS(ns: string, localName: string): ArrayLike<XmlElement>;
  readonly childNodes: ArrayLike<XmlElement>;
}
type Element = XmlElement;
// Loaded untyped: its type declarations pull the browser DOM library into the whole program.
const { DOMParser } = createRequire(import.meta.url)('@xmldom/xmldom') as {
  DOMParser: new (options: {
    errorHandler: { error: (msg: string) => void; fatalError: (msg: string) => void };
  }) => { parseFromString(xml: string, type: string): { documentElement: Element | null } };
};
const ELEMENT_NODE = 1;

/** Parses XML as node-saml does (@xmldom/xmldom), so both judge the same tree; throws on errors. */
export function parseXml(xml: string): Element {
  const fail = (msg: string) => {
    throw new Error(`not well-formed XML: ${msg.split('\n')[0]!.slice(0, 100)}`);
  };
  const doc = new DOMParser({ errorHandler: { error: fail, fatalError: fail } }).parseFromString(
    xml,
    'text/xml',
  );
  if (!doc.documentElement) throw new Error('not an XML document');
  return doc.documentElement;
}

/** The child elements of `el` named `localName` (any namespace prefix). */
export function children(el: Element, localName: string): Element[] {
  // childNodes also holds text and comments: only elements count.
  return Array.from(el.childNodes).filter((n) => n.nodeType === ELEMENT_NODE && n.localName === localName);
}

/**
 * What pgward requires of a response's assertion before node-saml reads it: encrypted when
 * `requireEncryptedAssertions` is set, decryptable only with a configured key, and encrypted with
 * sound algorithms only (node-saml would also take 3DES). Returns whether it is encrypted.
 */
function checkEncryption(provider: ProviderConfig, xml: string): boolean {
  const s = provider.saml!;
  const refuse = (why: string, hint?: string) =>
    new PgwardError('LOGIN_FAILED', `the SAML response of ${provider.name} is not valid: ${why}`, {
      ...(hint ? { hint } : {}),
    });
  let root: Element;
  try {
    root = parseXml(xml);
  } catch (err) {
    throw refuse((err as Error).message);
  }
  const plain = children(root, 'Assertion').length;
  const encrypted = children(root, 'EncryptedAssertion').length;
  if (plain > 0 && s.requireEncryptedAssertions) {
    throw refuse(
      'the assertion is not encrypted, and saml.requireEncryptedAssertions is set',
      "have the IdP encrypt assertions to this gateway's certificate (its metadata)",
    );
  }
  if (encrypted > 0 && !s.sp) {
    throw refuse(
      'the assertion is encrypted, but this gateway has no key for it',
      "configure saml.sp (this gateway's key pair), or turn encryption off at the IdP",
    );
  }
  for (const method of Array.from(root.getElementsByTagNameNS('*', 'EncryptionMethod'))) {
    const algorithm = method.getAttribute('Algorithm') ?? '';
    if (!ENCRYPTION_ALGORITHMS.has(algorithm)) {
      throw refuse(
        `the encryption algorithm ${algorithm.slice(0, 100) || '(none)'} is not accepted`,
        'use AES-GCM or AES-CBC, with RSA-OAEP',
      );
    }
  }
  return encrypted > 0;
}

/**
 * node-saml's own messages for failures before decryption or after the assertion's signature
 * held: they say nothing about the plaintext of an encrypted assertion. Anything else (a cipher,
 * padding or parser error) is answered alike.
 */
const SAFE_AFTER_DECRYPTION =
  /^(InResponseTo |SubjectInResponseTo |SAML assertion (expired|not yet valid|audience mismatch|has no Audience)|No valid subject confirmation|Unknown SAML issuer|Missing SAML issuer|Invalid signature: multiple assertions|SAML provider returned )/;

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
  const encrypted = checkEncryption(provider, Buffer.from(samlResponse, 'base64').toString('utf8'));
  let profile: Profile | null;
  try {
    ({ profile } = await saml(provider, acsUrl, requestId).validatePostResponseAsync({
      SAMLResponse: samlResponse,
    }));
  } catch (err) {
    // node-saml's messages name the failed check (signature, audience, NotOnOrAfter, InResponseTo).
    // Between decryption and the signature check one answer serves every failure: telling a
    // padding error from a parse error would be a decryption oracle (CBC, XML Encryption 1.1 §6.1).
    let reason = (err as Error).message.split('\n')[0]!.slice(0, 200);
    if (encrypted && !SAFE_AFTER_DECRYPTION.test(reason)) {
      reason =
        "the encrypted assertion could not be decrypted with this gateway's key, or is not signed by the IdP";
    }
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
  if (!nameId) throw new PgwardError('LOGIN_FAILED', `the SAML assertion of ${provider.name} has no NameID`);
  return {
    session: {
      nameId,
      nameIdFormat: profile.nameIDFormat || undefined,
      nameQualifier: profile.nameQualifier || undefined,
      spNameQualifier: profile.spNameQualifier || undefined,
      sessionIndex: profile.sessionIndex || undefined,
    },
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
