/**
 * The settings of each provider type (`type:`) beyond the common ones: one block per vendor
 * (`google:`, `azuread:`, ...) and Windows group names (`adGroups:`, any type). Validated here;
 * what each type then decides and refuses is in provider_presets.ts.
 */
import { createPrivateKey, type KeyObject, X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { z } from 'zod';

export const PROVIDER_TYPES = [
  'generic',
  'google',
  'azuread',
  'okta',
  'auth0',
  'cognito',
  'keycloak',
  'jumpcloud',
  'github',
  'saml',
  'ldap',
] as const;
export type ProviderType = (typeof PROVIDER_TYPES)[number];

export const GUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const httpUrl = z.url({ protocol: /^https?$/, error: 'expected an http(s) URL' });
const domainName = z
  .string()
  .regex(/^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)+$/i, 'expected a domain name')
  .transform((d) => d.toLowerCase());

/** `type: google`. */
export const googleSettings = z.strictObject({
  /** Google Workspace domains (`hd` claim) whose accounts may sign in. */
  hostedDomain: z
    .union([domainName, z.array(domainName).min(1)])
    .transform((d) => (Array.isArray(d) ? d : [d]))
    .optional(),
  /** Accept any Google account (gmail.com included): must be said explicitly. */
  unsafeAllowAnyAccount: z.boolean().default(false),
});

/** `type: azuread` (Microsoft Entra ID). */
export const azureSettings = z.strictObject({
  /** The directory (tenant) id, or `organizations` / `common` for a multi-tenant app. */
  tenantId: z.string().refine((t) => GUID.test(t) || t === 'organizations' || t === 'common', {
    message: 'expected the directory (tenant) id (a GUID), or organizations/common for a multi-tenant app',
  }),
  /** Multi-tenant apps: the tenants (`tid`) whose people may sign in. */
  allowedTenants: z.array(z.string().regex(GUID, 'expected a tenant id (a GUID)')).min(1).optional(),
  /** The v2.0 authority (a national cloud has its own). */
  authority: httpUrl.default('https://login.microsoftonline.com'),
  /** Where v1.0 tokens say they come from (`https://sts.windows.net/TENANT/`). */
  v1Authority: httpUrl.default('https://sts.windows.net'),
  /** Accept v1.0 tokens too (an app registration's accessTokenAcceptedVersion decides what it gets). */
  acceptV1Tokens: z.boolean().default(true),
  /**
   * Resolve the groups overage at Microsoft Graph, as the app registration itself (clientId and
   * clientSecret, client credentials grant); without it an overage token is refused.
   */
  graph: z
    .strictObject({
      /** Microsoft Graph (a national cloud has its own). */
      graphUrl: httpUrl.default('https://graph.microsoft.com'),
      /** Where the app gets its token: `AUTHORITY/TENANT/oauth2/v2.0/token`; azuread.authority by default. */
      authority: httpUrl.optional(),
    })
    .optional(),
});

/** `type: auth0`. */
export const auth0Settings = z.strictObject({
  /** Namespace of custom claims set by an Auth0 Action (`https://example.com/` → `https://example.com/groups`). */
  claimNamespace: httpUrl.optional(),
});

/** `type: cognito`. */
export const cognitoSettings = z.strictObject({
  region: z
    .string()
    .regex(/^[a-z]{2}(-[a-z]+)+-\d$/, 'expected an AWS region, e.g. eu-west-1')
    .optional(),
  userPoolId: z
    .string()
    .regex(/^[a-z]{2}(-[a-z]+)+-\d_[A-Za-z0-9]+$/, 'expected a user pool id, e.g. eu-west-1_AbCdEf123')
    .optional(),
});

/** `type: keycloak`. */
export const keycloakSettings = z.strictObject({
  /** Whose client roles (`resource_access.CLIENT.roles`) count as roles; the client id by default. */
  clientRolesOf: z.string().min(1).max(255).optional(),
});

/** `type: github` (OAuth 2.0, not OpenID Connect). */
export const githubSettings = z.strictObject({
  /** GitHub's web address: https://github.com, or a GitHub Enterprise Server's. */
  url: httpUrl.default('https://github.com'),
  /** The REST API: https://api.github.com for github.com, else URL/api/v3. */
  apiUrl: httpUrl.optional(),
  /** Organisations whose members may sign in; their teams become groups (`org/team`). */
  allowedOrganizations: z
    .array(z.string().regex(/^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})$/, 'expected a GitHub organisation name'))
    .min(1, 'name at least one organisation'),
});

const MAX_SP_KEY_BYTES = 64 * 1024;

/**
 * This gateway's own SAML key pair (RSA, 2048 bits or more): the IdP encrypts assertions to its
 * certificate, and requests are signed with its key. The private key is read from a file or an
 * environment variable, so it never sits in the configuration, the store or the API.
 */
export const samlSpSettings = z
  .strictObject({
    /** This gateway's certificate (PEM), published in its metadata. */
    certificate: z.string().refine(isCertificate, "expected this gateway's X.509 certificate (PEM)"),
    /** A file holding the private key (PEM, unencrypted PKCS#8 or PKCS#1). */
    privateKeyFile: z.string().min(1).max(4096).optional(),
    /** The name of an environment variable holding the private key (PEM). */
    privateKeyEnv: z
      .string()
      .regex(/^[A-Za-z_][A-Za-z0-9_]{0,127}$/, 'expected the name of an environment variable')
      .optional(),
  })
  .superRefine((sp, ctx) => {
    const key = readSpKey(sp);
    if ('message' in key) ctx.addIssue({ code: 'custom', path: key.path, message: key.message });
  });

export type SamlSpSettings = z.output<typeof samlSpSettings>;

/** `type: saml` (SAML 2.0; seed 004's sso_url, issuer, certificate and attributes). */
export const samlSettings = z
  .strictObject({
    /** The IdP's single sign-on URL (HTTP-Redirect binding). */
    ssoUrl: httpUrl,
    /** The IdP's entity id: the Issuer of its responses. */
    idpIssuer: z.string().min(1).max(1024),
    /** The IdP's signing certificate(s) (PEM or base64); several while it rolls its key. */
    certificate: z
      .union([z.string(), z.array(z.string()).min(1).max(4)])
      .transform((c) => (Array.isArray(c) ? c : [c]))
      .refine((certs) => certs.every(isCertificate), 'expected the X.509 certificate of the IdP (PEM)'),
    /** Attribute holding the groups; none by default. */
    groupAttribute: z.string().min(1).max(1024).optional(),
    roleAttribute: z.string().min(1).max(1024).optional(),
    /** Attribute identifying the person; the NameID by default. */
    userIdAttribute: z.string().min(1).max(1024).optional(),
    /** Attribute holding the email; the NameID (when it is one), then `email` or `mail`, by default. */
    emailAttribute: z.string().min(1).max(1024).optional(),
    nameAttribute: z.string().min(1).max(1024).optional(),
    /** This gateway's key pair (encrypted assertions, signed requests). */
    sp: samlSpSettings.optional(),
    /** Refuse assertions that are not encrypted to `sp`. */
    requireEncryptedAssertions: z.boolean().default(false),
    /** Sign AuthnRequests, LogoutRequests and LogoutResponses with `sp` (RSA-SHA256). */
    signRequests: z.boolean().default(false),
    /** The IdP's single logout URL (HTTP-Redirect binding): enables single logout. */
    sloUrl: httpUrl.optional(),
  })
  .superRefine((s, ctx) => {
    for (const key of ['requireEncryptedAssertions', 'signRequests'] as const) {
      if (s[key] && !s.sp) {
        ctx.addIssue({ code: 'custom', path: [key], message: "needs saml.sp (this gateway's key pair)" });
      }
    }
  });

/** The private key of `sp` as PEM, read from its file or variable; throws naming the setting. */
export function samlSpKeyPem(sp: SamlSpSettings): string {
  const key = readSpKey(sp);
  if ('message' in key) throw new Error(`saml.sp.${key.path.join('.')}: ${key.message}`);
  return key.export({ type: 'pkcs8', format: 'pem' }).toString();
}

/** Reads and checks the key; the answer never holds any of the key's text. */
function readSpKey(sp: {
  certificate: string;
  privateKeyFile?: string | undefined;
  privateKeyEnv?: string | undefined;
}): KeyObject | { path: string[]; message: string } {
  if ((sp.privateKeyFile === undefined) === (sp.privateKeyEnv === undefined)) {
    return { path: ['privateKeyFile'], message: 'set exactly one of privateKeyFile and privateKeyEnv' };
  }
  const where = sp.privateKeyFile !== undefined ? 'privateKeyFile' : 'privateKeyEnv';
  let text: string | undefined;
  if (sp.privateKeyFile !== undefined) {
    try {
      const bytes = readFileSync(sp.privateKeyFile);
      if (bytes.length > MAX_SP_KEY_BYTES)
        return { path: [where], message: 'the key file is larger than 64 KiB' };
      text = bytes.toString('utf8');
    } catch (err) {
      return {
        path: [where],
        message: `cannot read ${sp.privateKeyFile}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`,
      };
    }
  } else {
    text = process.env[sp.privateKeyEnv!];
    if (!text) return { path: [where], message: `the environment variable ${sp.privateKeyEnv} is not set` };
    // A PEM in one line of an env file, with its line breaks written as \n.
    text = text.replace(/\\n/g, '\n');
    if (text.length > MAX_SP_KEY_BYTES) return { path: [where], message: 'the key is larger than 64 KiB' };
  }
  let key: KeyObject;
  try {
    key = createPrivateKey({ key: text, format: 'pem' });
  } catch {
    return { path: [where], message: 'expected an unencrypted PEM private key' };
  }
  if (key.asymmetricKeyType !== 'rsa' || (key.asymmetricKeyDetails?.modulusLength ?? 0) < 2048) {
    return { path: [where], message: 'expected an RSA key of 2048 bits or more (IdPs encrypt to RSA-OAEP)' };
  }
  const cert = toPem(sp.certificate);
  if (!isCertificate(cert) || !new X509Certificate(cert).checkPrivateKey(key)) {
    return { path: ['certificate'], message: 'is not the certificate of this private key' };
  }
  return key;
}

const toPem = (text: string) =>
  text.includes('BEGIN CERTIFICATE')
    ? text
    : `-----BEGIN CERTIFICATE-----\n${text.replace(/\s+/g, '')}\n-----END CERTIFICATE-----`;

function isCertificate(text: string): boolean {
  try {
    new X509Certificate(toPem(text));
    return true;
  } catch {
    return false;
  }
}

/** `type: ldap` (LDAP or Active Directory: password by bind). `clientId`/`clientSecret` are the service account. */
export const ldapSettings = z.strictObject({
  /** `ldaps://host:636`, or `ldap://host:389` with startTls (plain ldap:// only on loopback). */
  url: z.string().regex(/^ldaps?:\/\/[^/?#\s]+\/?$/, 'expected ldaps://host[:port] or ldap://host[:port]'),
  startTls: z.boolean().default(false),
  /** CA certificate(s) (PEM) that sign the server's certificate; the system's by default. */
  ca: z.string().includes('BEGIN CERTIFICATE', { message: 'expected a PEM certificate' }).optional(),
  /** Where people are searched, e.g. OU=People,DC=company,DC=local. */
  userBase: z.string().min(1).max(1024),
  /** `{username}` is replaced by the escaped user name. */
  userFilter: z
    .string()
    .includes('{username}', { message: 'must contain {username}' })
    .default('(|(sAMAccountName={username})(userPrincipalName={username})(uid={username})(mail={username}))'),
  /** Where groups are searched; the userBase by default. */
  groupBase: z.string().min(1).max(1024).optional(),
  /**
   * Nested groups: `ad` (Active Directory's LDAP_MATCHING_RULE_IN_CHAIN), `recursive` (any
   * server: groups of groups followed by `member`), `none`.
   */
  nestedGroups: z.enum(['ad', 'recursive', 'none']).default('recursive'),
  groupNameAttribute: z.string().min(1).default('cn'),
  idAttribute: z.string().min(1).default('entryUUID'),
  emailAttribute: z.string().min(1).default('mail'),
  nameAttribute: z.string().min(1).default('displayName'),
  timeoutSeconds: z.number().min(1).max(60).default(5),
  /**
   * Also accept the directory password on the PostgreSQL endpoint, as PostgreSQL's own `ldap`
   * method does: the startup user name and password are proved by a bind (with the lockout).
   * At most one provider; not with providers whose tokens are opaque (see wirePasswordProblem).
   */
  wirePassword: z.boolean().default(false),
  /** Failed passwords per user name before it is locked, and for how long. */
  lockout: z
    .strictObject({
      maxFailures: z.number().int().min(1).max(100).default(5),
      minutes: z
        .number()
        .int()
        .min(1)
        .max(24 * 60)
        .default(15),
    })
    .prefault({}),
});

/** Windows / Active Directory group names (`DOMAIN\Group`), on any provider (seed 004). */
export const adGroupSettings = z.strictObject({
  /** The company's own domain (DNS or NetBIOS name): its groups lose the prefix. */
  domain: z.string().min(1).max(255),
  /** Other domains whose groups are kept, still qualified (`PARTNER\Group`). */
  trustedDomains: z.array(z.string().min(1).max(255)).default([]),
  /** The exact prefix to strip (seed 004's `group_prefix`); `DOMAIN\` of `domain` by default. */
  groupPrefix: z.string().min(2).max(256).endsWith('\\', 'a group prefix ends with "\\"').optional(),
});
