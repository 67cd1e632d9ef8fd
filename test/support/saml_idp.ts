/**
 * A SAML 2.0 IdP run in the test: it takes an AuthnRequest by HTTP-Redirect (checking its query
 * signature with the SP's certificate when `settings.requestsSignedBy` is set), shows a sign-in
 * form, and answers with a Response whose assertion it signs (xml-crypto, RSA-SHA256, exclusive
 * C14N), encrypts when `settings.encryptTo` is set (xml-encryption, RSA-OAEP) and posts to the
 * request's assertion consumer service, as IdPs do. Its single logout service takes the SP's
 * LogoutRequests and answers them; `logoutRequest` builds its own, signed, for IdP-initiated
 * logout. `response` builds responses with chosen faults for the attack tests.
 */
import { createSign, randomBytes, verify } from 'node:crypto';
import { createServer, type IncomingMessage } from 'node:http';
import { promisify } from 'node:util';
import { deflateRawSync, inflateRawSync } from 'node:zlib';
import { generate } from 'selfsigned';
import { SignedXml } from 'xml-crypto';
import { type EncryptionAlgorithm, encrypt } from 'xml-encryption';
import { freePort } from '../../src/store/free_port.js';

const RSA_SHA256 = 'http://www.w3.org/2001/04/xmldsig-more#rsa-sha256';
export const AES256_GCM = 'http://www.w3.org/2009/xmlenc11#aes256-gcm';
export const AES256_CBC = 'http://www.w3.org/2001/04/xmlenc#aes256-cbc';
export const TRIPLEDES_CBC = 'http://www.w3.org/2001/04/xmlenc#tripledes-cbc';

export interface SamlUser {
  email: string;
  uid: string;
  groups: string[];
  roles?: string[];
}

export interface ResponseOptions {
  requestId: string;
  acsUrl: string;
  audience: string;
  user: SamlUser;
  /** Seconds the assertion lives from now (negative: expired). */
  lifetimeSeconds?: number;
  issuer?: string;
  /** Leave the assertion unsigned. */
  unsigned?: boolean;
  /** Also sign the whole Response (as some IdPs do). */
  signResponse?: boolean;
  /** Encrypt the assertion to this certificate (default: `settings.encryptTo`). */
  encryptTo?: string;
  /** Don't encrypt, even when `settings.encryptTo` is set. */
  plain?: boolean;
  algorithm?: string;
  sessionIndex?: string;
  /** Change the XML after signing. */
  tamper?: (xml: string) => string;
}

export interface IdpSettings {
  /** Encrypt assertions to this certificate (the SP's). */
  encryptTo?: string | undefined;
  algorithm?: string | undefined;
  /** Require AuthnRequests and LogoutRequests signed by this certificate (the SP's). */
  requestsSignedBy?: string | undefined;
  /** The SP's single logout service, where LogoutResponses go. */
  spSloUrl?: string | undefined;
  /** The issuer of the SP whose requests it takes (the entity id). */
  spEntity?: string | undefined;
}

export interface LogoutRequestOptions {
  destination: string;
  nameId: string;
  sessionIndex?: string;
  issuer?: string;
  /** Seconds since it was issued. */
  ageSeconds?: number;
  relayState?: string;
  /** Sign with this key instead of the IdP's. */
  signingKey?: string;
  unsigned?: boolean;
  /** Change the XML after signing (POST) or the deflated message after signing (Redirect). */
  tamper?: (xml: string) => string;
}

export interface SamlIdp {
  url: string;
  ssoUrl: string;
  issuer: string;
  certificate: string;
  sloUrl: string;
  settings: IdpSettings;
  /** The LogoutRequests it received from the SP, read. */
  logoutRequests: { id: string; nameId: string; sessionIndex: string | undefined }[];
  /** A base64 SAMLResponse. */
  response(opts: ResponseOptions): Promise<string>;
  /** An IdP-initiated LogoutRequest: the query of its HTTP-Redirect binding (signed). */
  logoutRedirect(opts: LogoutRequestOptions): { query: string; id: string };
  /** An IdP-initiated LogoutRequest for the HTTP-POST binding (XML-signed), base64. */
  logoutPost(opts: LogoutRequestOptions): { SAMLRequest: string; id: string };
  close(): Promise<void>;
}

const xmlEscape = (s: string) =>
  s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');

const deflate = (xml: string) => deflateRawSync(Buffer.from(xml)).toString('base64');

/** The query of the HTTP-Redirect binding for `xml`, signed (RSA-SHA256) with `key`. */
function signedQuery(
  name: 'SAMLRequest' | 'SAMLResponse',
  xml: string,
  key: string,
  relayState?: string,
): string {
  const params = new URLSearchParams({ [name]: deflate(xml) });
  if (relayState !== undefined) params.set('RelayState', relayState);
  params.set('SigAlg', RSA_SHA256);
  const signature = createSign('sha256').update(params.toString()).sign(key, 'base64');
  params.set('Signature', signature);
  return params.toString();
}

/** The ID and ACS URL of a deflated, base64 AuthnRequest (HTTP-Redirect binding). */
export function readAuthnRequest(samlRequest: string): { id: string; acsUrl: string; issuer: string } {
  const xml = inflateRawSync(Buffer.from(samlRequest, 'base64')).toString('utf8');
  return {
    id: /\sID="([^"]+)"/.exec(xml)![1]!,
    acsUrl: /AssertionConsumerServiceURL="([^"]+)"/.exec(xml)![1]!,
    issuer: /<(?:\w+:)?Issuer[^>]*>([^<]+)</.exec(xml)![1]!,
  };
}

/** A key pair and self-signed certificate (RSA 2048), as an SP or IdP has. */
export async function keyPair(name: string): Promise<{ key: string; cert: string }> {
  const pems = await generate([{ name: 'commonName', value: name }], { keySize: 2048, algorithm: 'sha256' });
  return { key: pems.private, cert: pems.cert };
}

/** The octets a query signature covers (SAML bindings §3.4.4.1), from a raw query. */
export function signedOctets(rawQuery: string): string {
  const params = new Map(
    rawQuery.split('&').map((p) => [p.slice(0, p.indexOf('=')), p.slice(p.indexOf('=') + 1)]),
  );
  const message = params.has('SAMLRequest') ? 'SAMLRequest' : 'SAMLResponse';
  return [message, 'RelayState', 'SigAlg']
    .filter((k) => params.has(k))
    .map((k) => `${k}=${params.get(k)}`)
    .join('&');
}

/** Whether a redirect's query signature holds for `cert`. */
export function querySignatureHolds(rawQuery: string, cert: string): boolean {
  const signature = new URLSearchParams(rawQuery).get('Signature');
  if (!signature || new URLSearchParams(rawQuery).get('SigAlg') !== RSA_SHA256) return false;
  return verify('sha256', Buffer.from(signedOctets(rawQuery)), cert, Buffer.from(signature, 'base64'));
}

/** Signs `rootXpath`'s element of `xml` (enveloped, exclusive C14N, RSA-SHA256), after its Issuer. */
function signXml(xml: string, key: string, cert: string, local: string): string {
  const sig = new SignedXml({
    privateKey: key,
    publicCert: cert,
    signatureAlgorithm: RSA_SHA256,
    canonicalizationAlgorithm: 'http://www.w3.org/2001/10/xml-exc-c14n#',
  });
  sig.addReference({
    xpath: `//*[local-name(.)='${local}']`,
    transforms: [
      'http://www.w3.org/2000/09/xmldsig#enveloped-signature',
      'http://www.w3.org/2001/10/xml-exc-c14n#',
    ],
    digestAlgorithm: 'http://www.w3.org/2001/04/xmlenc#sha256',
  });
  sig.computeSignature(xml, {
    location: { reference: `//*[local-name(.)='${local}']/*[local-name(.)='Issuer']`, action: 'after' },
  });
  return sig.getSignedXml();
}

export async function startSamlIdp(users: SamlUser[]): Promise<SamlIdp> {
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const issuer = `${url}/metadata`;
  const pems = await generate([{ name: 'commonName', value: 'test SAML IdP' }], {
    keySize: 2048,
    algorithm: 'sha256',
  });
  const settings: IdpSettings = {};
  const logoutRequests: SamlIdp['logoutRequests'] = [];

  async function response(o: ResponseOptions): Promise<string> {
    const now = Date.now();
    const at = (ms: number) => new Date(ms).toISOString();
    const until = at(now + (o.lifetimeSeconds ?? 300) * 1000);
    const iss = o.issuer ?? issuer;
    const attributes = [
      ['uid', [o.user.uid]],
      ['email', [o.user.email]],
      ['groups', o.user.groups],
      ['roles', o.user.roles ?? []],
    ] as const;
    const assertion = `<saml:Assertion xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" ID="_a${randomBytes(16).toString('hex')}" Version="2.0" IssueInstant="${at(now)}"><saml:Issuer>${xmlEscape(iss)}</saml:Issuer><saml:Subject><saml:NameID Format="urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress">${xmlEscape(o.user.email)}</saml:NameID><saml:SubjectConfirmation Method="urn:oasis:names:tc:SAML:2.0:cm:bearer"><saml:SubjectConfirmationData InResponseTo="${xmlEscape(o.requestId)}" NotOnOrAfter="${until}" Recipient="${xmlEscape(o.acsUrl)}"/></saml:SubjectConfirmation></saml:Subject><saml:Conditions NotBefore="${at(now - 5000)}" NotOnOrAfter="${until}"><saml:AudienceRestriction><saml:Audience>${xmlEscape(o.audience)}</saml:Audience></saml:AudienceRestriction></saml:Conditions><saml:AuthnStatement AuthnInstant="${at(now)}" SessionIndex="${xmlEscape(o.sessionIndex ?? `_s${randomBytes(8).toString('hex')}`)}" SessionNotOnOrAfter="${at(now + 3_600_000)}"><saml:AuthnContext><saml:AuthnContextClassRef>urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport</saml:AuthnContextClassRef></saml:AuthnContext></saml:AuthnStatement><saml:AttributeStatement>${attributes
      .map(
        ([name, vals]) =>
          `<saml:Attribute Name="${name}">${vals.map((v) => `<saml:AttributeValue>${xmlEscape(v)}</saml:AttributeValue>`).join('')}</saml:Attribute>`,
      )
      .join('')}</saml:AttributeStatement></saml:Assertion>`;
    let xml = `<samlp:Response xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" ID="_r${randomBytes(16).toString('hex')}" Version="2.0" IssueInstant="${at(now)}" Destination="${xmlEscape(o.acsUrl)}" InResponseTo="${xmlEscape(o.requestId)}"><saml:Issuer>${xmlEscape(iss)}</saml:Issuer><samlp:Status><samlp:StatusCode Value="urn:oasis:names:tc:SAML:2.0:status:Success"/></samlp:Status>${assertion}</samlp:Response>`;
    if (!o.unsigned) xml = signXml(xml, pems.private, pems.cert, 'Assertion');
    const encryptTo = o.plain ? undefined : (o.encryptTo ?? settings.encryptTo);
    if (encryptTo) {
      const start = xml.indexOf('<saml:Assertion');
      const end = xml.indexOf('</saml:Assertion>') + '</saml:Assertion>'.length;
      const encrypted = await promisify(encrypt)(xml.slice(start, end), {
        rsa_pub: encryptTo,
        pem: encryptTo,
        encryptionAlgorithm: (o.algorithm ?? settings.algorithm ?? AES256_GCM) as EncryptionAlgorithm,
        keyEncryptionAlgorithm: 'http://www.w3.org/2001/04/xmlenc#rsa-oaep-mgf1p',
      });
      xml = `${xml.slice(0, start)}<saml:EncryptedAssertion>${encrypted}</saml:EncryptedAssertion>${xml.slice(end)}`;
    }
    if (o.signResponse) xml = signXml(xml, pems.private, pems.cert, 'Response');
    if (o.tamper) xml = o.tamper(xml);
    return Buffer.from(xml).toString('base64');
  }

  async function form(req: IncomingMessage): Promise<URLSearchParams> {
    let body = '';
    for await (const chunk of req) body += chunk;
    return new URLSearchParams(body);
  }

  const server = createServer((req, res) => {
    const u = new URL(req.url ?? '/', url);
    const page = (html: string) => {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
      res.end(`<!doctype html><html><body>${html}</body></html>`);
    };
    const rawQuery = (req.url ?? '').includes('?') ? req.url!.slice(req.url!.indexOf('?') + 1) : '';
    if (
      req.method === 'GET' &&
      (u.pathname === '/sso' || u.pathname === '/slo') &&
      settings.requestsSignedBy &&
      !querySignatureHolds(rawQuery, settings.requestsSignedBy)
    ) {
      res.writeHead(403).end('the request is not signed by the service provider');
      return;
    }
    if (req.method === 'GET' && u.pathname === '/slo') {
      // The SP's LogoutRequest: recorded, and answered with a LogoutResponse (Redirect binding).
      const xml = inflateRawSync(Buffer.from(u.searchParams.get('SAMLRequest') ?? '', 'base64')).toString(
        'utf8',
      );
      const id = /\sID="([^"]+)"/.exec(xml)![1]!;
      logoutRequests.push({
        id,
        nameId: /<(?:\w+:)?NameID[^>]*>([^<]+)</.exec(xml)![1]!,
        sessionIndex: /<(?:\w+:)?SessionIndex[^>]*>([^<]+)</.exec(xml)?.[1],
      });
      const answer = `<samlp:LogoutResponse xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" ID="_lr${randomBytes(16).toString('hex')}" Version="2.0" IssueInstant="${new Date().toISOString()}" Destination="${xmlEscape(settings.spSloUrl ?? '')}" InResponseTo="${xmlEscape(id)}"><saml:Issuer>${xmlEscape(issuer)}</saml:Issuer><samlp:Status><samlp:StatusCode Value="urn:oasis:names:tc:SAML:2.0:status:Success"/></samlp:Status></samlp:LogoutResponse>`;
      const query = signedQuery('SAMLResponse', answer, pems.private);
      res.writeHead(302, { location: `${settings.spSloUrl}?${query}` }).end();
      return;
    }
    if (req.method === 'GET' && u.pathname === '/sso') {
      // Sign-in page: the request and RelayState ride along in the form.
      return page(
        `<form method="post" action="/sso"><input name="email"><input name="password" type="password"><input type="hidden" name="SAMLRequest" value="${xmlEscape(u.searchParams.get('SAMLRequest') ?? '')}"><input type="hidden" name="RelayState" value="${xmlEscape(u.searchParams.get('RelayState') ?? '')}"><button>Sign in</button></form>`,
      );
    }
    if (req.method === 'POST' && u.pathname === '/sso') {
      form(req).then((f) => {
        const user = users.find((x) => x.email === f.get('email'));
        if (!user || f.get('password') !== 'password') {
          res.writeHead(401).end('wrong password');
          return;
        }
        const request = readAuthnRequest(f.get('SAMLRequest') ?? '');
        return response({
          requestId: request.id,
          acsUrl: request.acsUrl,
          audience: request.issuer,
          user,
        }).then((saml) =>
          // HTTP-POST binding back to the service provider.
          page(
            `<form method="post" action="${xmlEscape(request.acsUrl)}"><input type="hidden" name="SAMLResponse" value="${saml}"><input type="hidden" name="RelayState" value="${xmlEscape(f.get('RelayState') ?? '')}"><button>Continue</button></form>`,
          ),
        );
      });
      return;
    }
    res.writeHead(404).end();
  });
  function logoutXml(o: LogoutRequestOptions): { xml: string; id: string } {
    const id = `_lq${randomBytes(16).toString('hex')}`;
    const at = new Date(Date.now() - (o.ageSeconds ?? 0) * 1000).toISOString();
    const xml = `<samlp:LogoutRequest xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" ID="${id}" Version="2.0" IssueInstant="${at}" Destination="${xmlEscape(o.destination)}"><saml:Issuer>${xmlEscape(o.issuer ?? issuer)}</saml:Issuer><saml:NameID Format="urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress">${xmlEscape(o.nameId)}</saml:NameID>${o.sessionIndex ? `<samlp:SessionIndex>${xmlEscape(o.sessionIndex)}</samlp:SessionIndex>` : ''}</samlp:LogoutRequest>`;
    return { xml, id };
  }

  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  return {
    url,
    ssoUrl: `${url}/sso`,
    sloUrl: `${url}/slo`,
    issuer,
    certificate: pems.cert,
    settings,
    logoutRequests,
    response,
    logoutRedirect(o) {
      const { xml, id } = logoutXml(o);
      if (o.unsigned) return { query: new URLSearchParams({ SAMLRequest: deflate(xml) }).toString(), id };
      const query = signedQuery('SAMLRequest', xml, o.signingKey ?? pems.private, o.relayState);
      return { query: o.tamper ? o.tamper(query) : query, id };
    },
    logoutPost(o) {
      const { xml, id } = logoutXml(o);
      let signed = o.unsigned ? xml : signXml(xml, o.signingKey ?? pems.private, pems.cert, 'LogoutRequest');
      if (o.tamper) signed = o.tamper(signed);
      return { SAMLRequest: Buffer.from(signed).toString('base64'), id };
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
