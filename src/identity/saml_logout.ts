/**
 * SAML single logout (SAML 2.0 profiles §4.4, with `saml.sloUrl`). The gateway's sign-out sends
 * the browser to the IdP with a LogoutRequest for the sign-in's NameID and SessionIndex; an IdP's
 * LogoutRequest at the gateway's single logout service ends the sign-ins of that IdP session and
 * is answered with a LogoutResponse. A LogoutRequest must be signed by the IdP (the query
 * signature of HTTP-Redirect, or the XML signature of HTTP-POST), addressed to this gateway,
 * fresh, and is accepted once.
 */
import { verify } from 'node:crypto';
import { inflateRawSync } from 'node:zlib';
import { type Profile, ValidateInResponseTo } from '@node-saml/node-saml';
import type pg from 'pg';
import type { ProviderConfig } from '../config/schema.js';
import { PgwardError } from '../errors.js';
import { parseXml, type SamlReplayCache, type SamlSession, saml, samlSloUrl } from './saml_provider.js';
import { CLOCK_TOLERANCE_S } from './token_verifier.js';

/** A LogoutRequest older than this (by its IssueInstant) is refused, and remembered as long. */
const LOGOUT_REQUEST_MAX_AGE_MS = 5 * 60_000;
/** Largest inflated message of the HTTP-Redirect binding: a deflate bomb stops here. */
const MAX_INFLATED_BYTES = 256 * 1024;
const MAX_QUERY_BYTES = 64 * 1024;
const UNSPECIFIED = 'urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified';

/** The query-signature algorithms accepted (SAML bindings §3.4.4.1); RSA-SHA1 is not. */
const REDIRECT_SIGNATURES: Readonly<Record<string, string>> = {
  'http://www.w3.org/2001/04/xmldsig-more#rsa-sha256': 'sha256',
  'http://www.w3.org/2001/04/xmldsig-more#rsa-sha512': 'sha512',
};

/** The IdP session of each SAML sign-in, in the store, so that either side can name it. */
export class SamlSignIns {
  constructor(private readonly pool: pg.Pool) {}

  async record(provider: string, signInId: string, session: SamlSession): Promise<void> {
    await this.pool.query(
      `INSERT INTO pgward.saml_sign_in
         (login_session_id, provider, name_id, name_id_format, name_qualifier, sp_name_qualifier, session_index)
       VALUES ($1, $2, $3, $4, $5, $6, $7)`,
      [
        signInId,
        provider,
        session.nameId,
        session.nameIdFormat ?? null,
        session.nameQualifier ?? null,
        session.spNameQualifier ?? null,
        session.sessionIndex ?? null,
      ],
    );
  }

  /** The IdP session of a sign-in, if it was a SAML one. */
  async of(signInId: string): Promise<SamlSession | undefined> {
    const { rows } = await this.pool.query<Record<string, string | null>>(
      'SELECT * FROM pgward.saml_sign_in WHERE login_session_id = $1',
      [signInId],
    );
    const r = rows[0];
    if (!r) return undefined;
    return {
      nameId: r['name_id']!,
      nameIdFormat: r['name_id_format'] ?? undefined,
      nameQualifier: r['name_qualifier'] ?? undefined,
      spNameQualifier: r['sp_name_qualifier'] ?? undefined,
      sessionIndex: r['session_index'] ?? undefined,
    };
  }

  /** The live sign-ins of a NameID at a provider; of one IdP session when `sessionIndex` is given. */
  async named(provider: string, nameId: string, sessionIndex: string | undefined): Promise<string[]> {
    const { rows } = await this.pool.query<{ login_session_id: string }>(
      `SELECT s.login_session_id FROM pgward.saml_sign_in s JOIN pgward.login_session l USING (login_session_id)
        WHERE s.provider = $1 AND s.name_id = $2 AND ($3::text IS NULL OR s.session_index = $3)
          AND l.revoked_at IS NULL`,
      [provider, nameId, sessionIndex ?? null],
    );
    return rows.map((r) => r.login_session_id);
  }
}

/** SP-initiated logout: the IdP's URL with a LogoutRequest for `session` (signed with signRequests). */
export async function samlLogoutUrl(
  provider: ProviderConfig,
  acsUrl: string,
  session: SamlSession,
): Promise<URL> {
  const user = {
    issuer: provider.saml!.idpIssuer,
    nameID: session.nameId,
    nameIDFormat: session.nameIdFormat ?? UNSPECIFIED,
    ...(session.nameQualifier ? { nameQualifier: session.nameQualifier } : {}),
    ...(session.spNameQualifier ? { spNameQualifier: session.spNameQualifier } : {}),
    ...(session.sessionIndex ? { sessionIndex: session.sessionIndex } : {}),
  } as Profile;
  const url = await saml(provider, acsUrl, undefined, ValidateInResponseTo.never).getLogoutUrlAsync(
    user,
    '',
    {},
  );
  return new URL(url);
}

/** A message at the single logout service, as it came: the raw query (Redirect) or the form (POST). */
export type SamlLogoutMessage =
  | { binding: 'redirect'; rawQuery: string }
  | {
      binding: 'post';
      form: {
        SAMLRequest?: string | undefined;
        SAMLResponse?: string | undefined;
        RelayState?: string | undefined;
      };
    };

/** What the IdP sent: a LogoutRequest to honour, or the LogoutResponse to the gateway's own. */
export type SamlLogout =
  | {
      kind: 'request';
      id: string;
      nameId: string;
      sessionIndex: string | undefined;
      relayState: string | undefined;
    }
  | { kind: 'response' };

const refuse = (provider: ProviderConfig, why: string) =>
  new PgwardError('LOGIN_FAILED', `the SAML logout message of ${provider.name} is not valid: ${why}`);

/**
 * The parameters of a raw query, each at most once (a repeated one could be signed in one copy
 * and read in another); values still URL-encoded as received, as the signature covers them.
 */
function rawParams(rawQuery: string): Map<string, string> {
  const params = new Map<string, string>();
  for (const pair of rawQuery.split('&')) {
    if (pair === '') continue;
    const eq = pair.indexOf('=');
    const name = decodeURIComponent(eq < 0 ? pair : pair.slice(0, eq));
    if (params.has(name)) throw new Error(`${name.slice(0, 40)} is given twice`);
    params.set(name, eq < 0 ? '' : pair.slice(eq + 1));
  }
  return params;
}

const formValue = (raw: string) => decodeURIComponent(raw.replace(/\+/g, ' '));

/**
 * The query signature of the HTTP-Redirect binding (SAML bindings §3.4.4.1): over
 * `SAMLRequest=…&RelayState=…&SigAlg=…` exactly as sent, by one of the IdP's certificates.
 */
function verifyQuerySignature(provider: ProviderConfig, params: Map<string, string>, message: string): void {
  const sigAlg = params.get('SigAlg');
  const signature = params.get('Signature');
  if (sigAlg === undefined || signature === undefined) throw refuse(provider, 'it is not signed');
  const hash = REDIRECT_SIGNATURES[formValue(sigAlg)];
  if (!hash)
    throw refuse(provider, `the signature algorithm ${formValue(sigAlg).slice(0, 100)} is not accepted`);
  const relayState = params.get('RelayState');
  const signed = Buffer.from(
    `${message}=${params.get(message)}${relayState === undefined ? '' : `&RelayState=${relayState}`}&SigAlg=${sigAlg}`,
  );
  const bytes = Buffer.from(formValue(signature), 'base64');
  const good = provider.saml!.certificate.some((cert) => {
    const pem = cert.includes('BEGIN CERTIFICATE')
      ? cert
      : `-----BEGIN CERTIFICATE-----\n${cert.replace(/\s+/g, '')}\n-----END CERTIFICATE-----`;
    try {
      return verify(hash, signed, pem, bytes);
    } catch {
      return false;
    }
  });
  if (!good) throw refuse(provider, 'its signature is not valid');
}

/**
 * Reads and checks a message at the single logout service. A LogoutRequest must be signed,
 * addressed to this gateway (Destination), fresh (IssueInstant) and new (its ID); node-saml then
 * checks its issuer and time conditions and reads its NameID and SessionIndex.
 */
export async function readSamlLogout(
  provider: ProviderConfig,
  acsUrl: string,
  message: SamlLogoutMessage,
  replays: SamlReplayCache,
): Promise<SamlLogout> {
  const sp = saml(provider, acsUrl, undefined, ValidateInResponseTo.never);
  let xml: string;
  let profile: Profile | null;
  let relayState: string | undefined;
  let kind: 'request' | 'response';
  try {
    if (message.binding === 'redirect') {
      if (message.rawQuery.length > MAX_QUERY_BYTES) throw refuse(provider, 'it is too large');
      const params = rawParams(message.rawQuery);
      kind = params.has('SAMLRequest') ? 'request' : 'response';
      const name = kind === 'request' ? 'SAMLRequest' : 'SAMLResponse';
      const value = params.get(name);
      if (value === undefined || params.has('SAMLRequest') === params.has('SAMLResponse')) {
        throw refuse(provider, 'expected one SAMLRequest or SAMLResponse');
      }
      // A LogoutResponse only confirms a sign-out that already happened here: it may come unsigned.
      if (kind === 'request' || params.has('Signature')) verifyQuerySignature(provider, params, name);
      xml = inflateRawSync(Buffer.from(formValue(value), 'base64'), {
        maxOutputLength: MAX_INFLATED_BYTES,
      }).toString('utf8');
      relayState = params.has('RelayState') ? formValue(params.get('RelayState')!) : undefined;
      const container: Record<string, string> = { [name]: formValue(value) };
      // The query signature was verified above, strictly; node-saml's own check is looser.
      ({ profile } = await sp.validateRedirectAsync(container, ''));
    } else {
      const { SAMLRequest, SAMLResponse } = message.form;
      if ((SAMLRequest === undefined) === (SAMLResponse === undefined)) {
        throw refuse(provider, 'expected one SAMLRequest or SAMLResponse');
      }
      kind = SAMLRequest !== undefined ? 'request' : 'response';
      xml = Buffer.from((SAMLRequest ?? SAMLResponse)!, 'base64').toString('utf8');
      relayState = message.form.RelayState;
      // Both require the XML signature of the IdP.
      ({ profile } =
        kind === 'request'
          ? await sp.validatePostRequestAsync({ SAMLRequest: SAMLRequest! })
          : await sp.validatePostResponseAsync({ SAMLResponse: SAMLResponse! }));
    }
  } catch (err) {
    if (err instanceof PgwardError) throw err;
    throw refuse(provider, (err as Error).message.split('\n')[0]!.slice(0, 200));
  }
  if (kind === 'response') return { kind };
  const root = parseXml(xml);
  if (root.localName !== 'LogoutRequest') throw refuse(provider, 'it is not a LogoutRequest');
  const destination = root.getAttribute('Destination');
  const slo = samlSloUrl(provider, acsUrl);
  if (destination !== slo)
    throw refuse(provider, `it is addressed to ${destination?.slice(0, 200) ?? 'nobody'}, not ${slo}`);
  const issued = Date.parse(root.getAttribute('IssueInstant') ?? '');
  const skew = CLOCK_TOLERANCE_S * 1000;
  if (
    !Number.isFinite(issued) ||
    issued > Date.now() + skew ||
    issued < Date.now() - LOGOUT_REQUEST_MAX_AGE_MS - skew
  ) {
    throw refuse(provider, 'its IssueInstant is missing, in the future or older than 5 minutes');
  }
  const id = profile?.ID;
  if (typeof id !== 'string' || id.length > 256 || !profile?.nameID)
    throw refuse(provider, 'it has no ID or NameID');
  if (
    !(await replays.first(
      provider.name,
      `logout:${id}`,
      new Date(issued + LOGOUT_REQUEST_MAX_AGE_MS + 2 * skew),
    ))
  ) {
    throw refuse(provider, 'it was used already');
  }
  return {
    kind,
    id,
    nameId: profile.nameID,
    sessionIndex: typeof profile.sessionIndex === 'string' ? profile.sessionIndex : undefined,
    relayState,
  };
}

/** The IdP's URL with the gateway's LogoutResponse (Success) to LogoutRequest `requestId`. */
export async function samlLogoutResponseUrl(
  provider: ProviderConfig,
  acsUrl: string,
  requestId: string,
  relayState: string | undefined,
): Promise<URL> {
  const url = await saml(provider, acsUrl, undefined, ValidateInResponseTo.never).getLogoutResponseUrlAsync(
    { ID: requestId, issuer: provider.saml!.idpIssuer } as Profile,
    relayState ?? '',
    {},
    true,
  );
  return new URL(url);
}
