/**
 * A SAML 2.0 IdP run in the test: it takes an AuthnRequest by HTTP-Redirect, shows a sign-in
 * form, and answers with a Response whose assertion it signs (xml-crypto, RSA-SHA256, exclusive
 * C14N) and posts to the request's assertion consumer service, as IdPs do. `response` builds
 * responses with chosen faults for the attack tests.
 */
import { randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage } from 'node:http';
import { inflateRawSync } from 'node:zlib';
import { generate } from 'selfsigned';
import { SignedXml } from 'xml-crypto';
import { freePort } from '../../src/store/free_port.js';

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
  /** Change the XML after signing. */
  tamper?: (xml: string) => string;
}

export interface SamlIdp {
  url: string;
  ssoUrl: string;
  issuer: string;
  certificate: string;
  /** A base64 SAMLResponse. */
  response(opts: ResponseOptions): string;
  close(): Promise<void>;
}

const xmlEscape = (s: string) =>
  s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');

/** The ID and ACS URL of a deflated, base64 AuthnRequest (HTTP-Redirect binding). */
export function readAuthnRequest(samlRequest: string): { id: string; acsUrl: string; issuer: string } {
  const xml = inflateRawSync(Buffer.from(samlRequest, 'base64')).toString('utf8');
  return {
    id: /\sID="([^"]+)"/.exec(xml)![1]!,
    acsUrl: /AssertionConsumerServiceURL="([^"]+)"/.exec(xml)![1]!,
    issuer: /<(?:\w+:)?Issuer[^>]*>([^<]+)</.exec(xml)![1]!,
  };
}

export async function startSamlIdp(users: SamlUser[]): Promise<SamlIdp> {
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const issuer = `${url}/metadata`;
  const pems = await generate([{ name: 'commonName', value: 'test SAML IdP' }], {
    keySize: 2048,
    algorithm: 'sha256',
  });

  function response(o: ResponseOptions): string {
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
    const assertion = `<saml:Assertion xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" ID="_a${randomBytes(16).toString('hex')}" Version="2.0" IssueInstant="${at(now)}"><saml:Issuer>${xmlEscape(iss)}</saml:Issuer><saml:Subject><saml:NameID Format="urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress">${xmlEscape(o.user.email)}</saml:NameID><saml:SubjectConfirmation Method="urn:oasis:names:tc:SAML:2.0:cm:bearer"><saml:SubjectConfirmationData InResponseTo="${xmlEscape(o.requestId)}" NotOnOrAfter="${until}" Recipient="${xmlEscape(o.acsUrl)}"/></saml:SubjectConfirmation></saml:Subject><saml:Conditions NotBefore="${at(now - 5000)}" NotOnOrAfter="${until}"><saml:AudienceRestriction><saml:Audience>${xmlEscape(o.audience)}</saml:Audience></saml:AudienceRestriction></saml:Conditions><saml:AuthnStatement AuthnInstant="${at(now)}" SessionIndex="_s1" SessionNotOnOrAfter="${at(now + 3_600_000)}"><saml:AuthnContext><saml:AuthnContextClassRef>urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport</saml:AuthnContextClassRef></saml:AuthnContext></saml:AuthnStatement><saml:AttributeStatement>${attributes
      .map(
        ([name, vals]) =>
          `<saml:Attribute Name="${name}">${vals.map((v) => `<saml:AttributeValue>${xmlEscape(v)}</saml:AttributeValue>`).join('')}</saml:Attribute>`,
      )
      .join('')}</saml:AttributeStatement></saml:Assertion>`;
    let xml = `<samlp:Response xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" ID="_r${randomBytes(16).toString('hex')}" Version="2.0" IssueInstant="${at(now)}" Destination="${xmlEscape(o.acsUrl)}" InResponseTo="${xmlEscape(o.requestId)}"><saml:Issuer>${xmlEscape(iss)}</saml:Issuer><samlp:Status><samlp:StatusCode Value="urn:oasis:names:tc:SAML:2.0:status:Success"/></samlp:Status>${assertion}</samlp:Response>`;
    if (!o.unsigned) {
      const sig = new SignedXml({
        privateKey: pems.private,
        publicCert: pems.cert,
        signatureAlgorithm: 'http://www.w3.org/2001/04/xmldsig-more#rsa-sha256',
        canonicalizationAlgorithm: 'http://www.w3.org/2001/10/xml-exc-c14n#',
      });
      sig.addReference({
        xpath: "//*[local-name(.)='Assertion']",
        transforms: [
          'http://www.w3.org/2000/09/xmldsig#enveloped-signature',
          'http://www.w3.org/2001/10/xml-exc-c14n#',
        ],
        digestAlgorithm: 'http://www.w3.org/2001/04/xmlenc#sha256',
      });
      sig.computeSignature(xml, {
        location: { reference: "//*[local-name(.)='Assertion']/*[local-name(.)='Issuer']", action: 'after' },
      });
      xml = sig.getSignedXml();
    }
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
        const saml = response({
          requestId: request.id,
          acsUrl: request.acsUrl,
          audience: request.issuer,
          user,
        });
        // HTTP-POST binding back to the service provider.
        page(
          `<form method="post" action="${xmlEscape(request.acsUrl)}"><input type="hidden" name="SAMLResponse" value="${saml}"><input type="hidden" name="RelayState" value="${xmlEscape(f.get('RelayState') ?? '')}"><button>Continue</button></form>`,
        );
      });
      return;
    }
    res.writeHead(404).end();
  });
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  return {
    url,
    ssoUrl: `${url}/sso`,
    issuer,
    certificate: pems.cert,
    response,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
