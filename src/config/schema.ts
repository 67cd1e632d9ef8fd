import { z } from 'zod';
import { ASYMMETRIC_ALGORITHMS } from '../identity/algorithms.js';
import { applyPreset, presetIssues } from '../identity/provider_presets.js';
import {
  adGroupSettings,
  auth0Settings,
  azureSettings,
  cognitoSettings,
  githubSettings,
  googleSettings,
  keycloakSettings,
  ldapSettings,
  PROVIDER_TYPES,
  samlSettings,
} from '../identity/provider_settings.js';
import { policyDocumentSchema } from '../policy/policy_document.js';
import { type ClaimPath, parseClaimPath } from './claim_path.js';

/** A claim name or JSONPath, parsed into segments at load time so a typo fails at start. */
const claimPath = z.string().transform((value, ctx) => {
  try {
    return parseClaimPath(value);
  } catch (err) {
    ctx.addIssue({ code: 'custom', message: (err as Error).message });
    return z.NEVER;
  }
});

const httpUrl = z.url({ protocol: /^https?$/, error: 'expected an http(s) URL' });
const port = z.coerce
  .number({ error: 'expected a port number' })
  .int('expected a whole port number')
  .min(0, 'expected a port from 0 to 65535')
  .max(65535, 'expected a port from 0 to 65535');

/** A yes/no setting: booleans, or the strings true/false/1/0/yes/no from the environment. */
const booleanSetting = z.preprocess(
  (value) => {
    if (typeof value !== 'string') return value;
    const v = value.trim().toLowerCase();
    if (['true', '1', 'yes', 'on'].includes(v)) return true;
    if (['false', '0', 'no', 'off'].includes(v)) return false;
    return value;
  },
  z.boolean({ error: 'expected true or false' }),
);

/** A pgward group: namespaced provider groups (`okta:dba`) use ":", internal ones never do. */
export const internalGroupName = z
  .string()
  .min(1)
  .max(200)
  .regex(/^[^:\s][^:]*$/, 'a pgward group name has no ":" and does not start with a space');

/** One OpenID Connect provider, whichever configuration format it came from. */
const providerFields = z.strictObject({
  /** The vendor preset: its issuer, audiences, claim names and checks (identity/provider_presets.ts). */
  type: z.enum(PROVIDER_TYPES, { error: `expected one of ${PROVIDER_TYPES.join(', ')}` }).default('generic'),
  name: z
    .string()
    .regex(/^[a-z0-9][a-z0-9_-]{0,62}$/, 'expected a short lowercase name (letters, digits, "-" or "_")')
    // They name the gateway's own pages under /login.
    .refine((n) => !['callback', 'done', 'cli'].includes(n), 'callback, done and cli are reserved names'),
  displayName: z.string().min(1).max(100).optional(),
  /** Required, except where the preset derives it (google, azuread, cognito, jumpcloud). */
  issuer: httpUrl.optional(),
  /** `jwks`: verify signatures locally; `userinfo`: ask the IdP's userinfo endpoint (Hoop's `?_userinfo=1`). */
  validation: z.enum(['jwks', 'userinfo']).default('jwks'),
  clientId: z.string().min(1, 'is required'),
  clientSecret: z.string().min(1).optional(),
  /** Expected `aud`; defaults to the client id. */
  audience: z.string().min(1).optional(),
  scopes: z
    .array(z.string().regex(/^[\x21-\x7e]+$/, 'scopes are single words'))
    .default(['openid', 'profile', 'email']),
  jwksUri: httpUrl.optional(),
  authorizationUrl: httpUrl.optional(),
  tokenUrl: httpUrl.optional(),
  algorithms: z
    .array(z.enum(ASYMMETRIC_ALGORITHMS, { error: `expected one of ${ASYMMETRIC_ALGORITHMS.join(', ')}` }))
    .min(1)
    .default(['RS256', 'PS256', 'ES256', 'EdDSA']),
  claims: z
    .strictObject({
      // Defaults come from the preset (`applyPreset`).
      subject: claimPath.optional(),
      email: claimPath.optional(),
      name: claimPath.optional(),
      /** null: this provider sends no groups. */
      groups: claimPath.nullable().optional(),
      /** One claim path or several (Keycloak: realm and client roles). */
      roles: z
        .union([claimPath.transform((one): ClaimPath[] => [one]), z.array(claimPath).max(8)])
        .optional(),
    })
    .prefault({}),
  /**
   * IdP groups (`groups`) and roles (`roles`) → pgward groups. A provider's groups are also kept
   * under its own namespace (`<provider>:<group>`), so two providers never collide by name.
   */
  mappings: z
    .strictObject({
      groups: z.record(z.string().min(1).max(200), z.array(internalGroupName).min(1)).default({}),
      roles: z.record(z.string().min(1).max(200), z.array(internalGroupName).min(1)).default({}),
    })
    .prefault({}),
  /** IdP groups or roles that make a person a pgward administrator. */
  adminGroups: z.array(z.string().min(1)).default(['admin']),
  /**
   * Let an identity of this provider join an existing person with the same email, when both
   * this provider and one of the person's providers vouch that the email is verified.
   */
  linkByEmail: booleanSetting.default(false),
  google: googleSettings.optional(),
  azuread: azureSettings.optional(),
  auth0: auth0Settings.optional(),
  cognito: cognitoSettings.optional(),
  keycloak: keycloakSettings.optional(),
  github: githubSettings.optional(),
  saml: samlSettings.optional(),
  ldap: ldapSettings.optional(),
  adGroups: adGroupSettings.optional(),
});

/** One OpenID Connect provider after its preset: issuer, audiences and claims all decided. */
export const providerSchema = providerFields
  .superRefine((p, ctx) => {
    for (const issue of presetIssues(p)) ctx.addIssue({ code: 'custom', ...issue });
  })
  .transform((p) => ({ ...p, ...applyPreset(p) }));

export type ProviderConfig = z.output<typeof providerSchema>;
export type ProviderInput = z.input<typeof providerSchema>;

const secretKey = z.string().refine((value) => decodeSecretKey(value) !== undefined, {
  message: 'expected 32 random bytes as base64 or 64 hex digits (e.g. `openssl rand -base64 32`)',
});

/** Decodes PGWARD_SECRET_KEY: 32 bytes as hex or base64, else undefined. */
export function decodeSecretKey(value: string): Buffer | undefined {
  const trimmed = value.trim();
  const bytes = /^[0-9a-fA-F]{64}$/.test(trimmed)
    ? Buffer.from(trimmed, 'hex')
    : Buffer.from(trimmed, 'base64');
  return bytes.length === 32 ? bytes : undefined;
}

const logLevel = z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']);

export const configSchema = z
  .strictObject({
    /** Where the embedded store, keys and dev files live. */
    dataDir: z.string().min(1).default('.pgward'),
    /** External store; without it pgward runs an embedded PostgreSQL in dataDir. */
    databaseUrl: z
      .string()
      .regex(/^postgres(ql)?:\/\//, 'expected a postgres:// or postgresql:// URL')
      .optional(),
    /** Key that encrypts vaulted credentials (AES-256-GCM). */
    secretKey: secretKey.optional(),
    /** Public base URL of the gateway (Hoop's API_URL), used in redirects and printed hints. */
    publicUrl: httpUrl.optional(),
    http: z
      .strictObject({
        host: z.string().min(1).default('127.0.0.1'),
        port: port.default(8080),
        /** Serve HTTPS with the certificate of `tls` (else put a TLS proxy in front off loopback). */
        tls: booleanSetting.default(false),
      })
      .prefault({}),
    pg: z
      .strictObject({
        host: z.string().min(1).default('127.0.0.1'),
        port: port.default(55432),
        /** Largest protocol message accepted from a client, in bytes (startup and passwords have their own caps). */
        maxMessageBytes: z.coerce
          .number()
          .int()
          .min(8192, 'must be at least 8192 bytes')
          .max(1024 ** 3, 'must be at most 1 GiB (PostgreSQL itself refuses larger)')
          .default(64 * 1024 ** 2),
        /** Signed-in client sessions at once; beyond it clients get SQLSTATE 53300. */
        maxConnections: z.coerce.number().int().min(1).max(100_000).default(1000),
        /**
         * Connections still starting up or authenticating, in total and per client address:
         * they are held apart from signed-in sessions, so half-open sockets cannot lock people out.
         */
        maxUnauthenticated: z.coerce.number().int().min(1).max(100_000).default(200),
        maxUnauthenticatedPerAddress: z.coerce.number().int().min(1).max(100_000).default(20),
        /** Startup and authentication must finish within this many seconds. */
        authTimeoutSeconds: z.coerce.number().int().min(1).max(600).default(10),
        /** Sessions one person may hold at once, over all connections (53300 beyond). */
        maxSessionsPerPerson: z.coerce.number().int().min(1).max(100_000).default(20),
        /**
         * Sessions one connection may hold at once, over all people: keep it below the target's
         * max_connections, so that one connection's users cannot use up the target.
         */
        maxSessionsPerConnection: z.coerce.number().int().min(1).max(100_000).default(90),
        /** Idle pooled upstream connections close after this many seconds. */
        poolIdleSeconds: z.coerce.number().int().min(0).max(86_400).default(60),
        /** Idle upstream connections kept per (connection, login role, settings). */
        poolMaxIdlePerKey: z.coerce.number().int().min(0).max(1000).default(32),
        /**
         * Seconds during which a person's grants on a connection, once made exactly right, are
         * not re-checked at connect (0: at every connect). A changed role set applies at once.
         */
        roleSyncSeconds: z.coerce.number().int().min(0).max(3600).default(10),
        /**
         * A provisioned login role's VALID UNTIL is this many seconds after each sync (renewed at
         * connect): a password set inside the database stops working within it.
         */
        loginRoleValidSeconds: z.coerce.number().int().min(2).max(86_400).default(120),
        /**
         * A role every provisioned login role is made a member of, in every target (it must exist
         * there, with ADMIN OPTION for the credential): pg_hba.conf can then accept `+group` only
         * from the gateway's address.
         */
        loginRoleGroup: z.string().min(1).max(63).optional(),
        /** Deadline of each upstream step: TCP connect, TLS, login, control queries, provisioning. */
        upstreamTimeoutSeconds: z.coerce.number().min(0.1).max(600).default(10),
        /** Accept passwords without TLS from loopback clients. Unsafe off a developer machine. */
        allowLoopbackPlaintext: booleanSetting.default(false),
      })
      .prefault({}),
    tls: z
      .strictObject({
        certFile: z.string().min(1).optional(),
        keyFile: z.string().min(1).optional(),
      })
      .prefault({})
      .refine((tls) => (tls.certFile === undefined) === (tls.keyFile === undefined), {
        message: 'certFile and keyFile go together: set both or neither',
      }),
    log: z.strictObject({ level: logLevel.default('info') }).prefault({}),
    /** pgward's own tokens, issued after an IdP login. */
    tokens: z
      .strictObject({
        /** Lifetime of an access token; `pgward token` refreshes before it ends. */
        accessTokenSeconds: z.coerce.number().int().min(60).max(86_400).default(900),
        /** A sign-in can be refreshed for this long before the person must log in again. */
        sessionHours: z.coerce
          .number()
          .int()
          .min(1)
          .max(24 * 90)
          .default(24 * 7),
        /** A new signing key is made this often; old keys stay published while their tokens live. */
        keyRotationHours: z.coerce
          .number()
          .int()
          .min(1)
          .max(24 * 365)
          .default(24),
      })
      .prefault({}),
    /** The REST API. */
    api: z
      .strictObject({
        /** Browser origins allowed to call the API (CORS); none by default. */
        corsOrigins: z
          .preprocess(
            (value) =>
              typeof value === 'string'
                ? value
                    .split(',')
                    .map((v) => v.trim())
                    .filter((v) => v !== '')
                : value,
            z.array(z.url({ protocol: /^https?$/, error: 'expected an http(s) origin' })),
          )
          .default([]),
        /** Login requests per client address per minute. */
        loginRateLimit: z.coerce.number().int().min(1).max(100_000).default(30),
      })
      .prefault({}),
    /** `GET /metrics` (Prometheus text) on the HTTP listener. */
    metrics: z
      .strictObject({
        enabled: booleanSetting.default(true),
        /** A scrape must send `Authorization: Bearer <this>`; without it /metrics is open. */
        bearerToken: z
          .string()
          .min(16, 'use at least 16 characters (e.g. `openssl rand -hex 32`)')
          .optional(),
      })
      .prefault({}),
    /** A shutdown (SIGTERM) drains sessions and the audit, and exits within this many seconds. */
    shutdownSeconds: z.coerce.number().int().min(1).max(3600).default(30),
    /** The audit trail while the store cannot take it. */
    audit: z
      .strictObject({
        /** `spool`: keep records in the spool file and serve on; `refuse`: refuse new sessions and statements. */
        onStoreDown: z.enum(['spool', 'refuse']).default('spool'),
        /** Folder of the spool file (default: `audit-spool` in dataDir). */
        spoolDir: z.string().min(1).optional(),
        /** The spool file's cap; past it, new sessions and statements are refused. */
        spoolMaxBytes: z.coerce
          .number()
          .int()
          .min(1024 * 1024, 'must be at least 1 MiB')
          .max(1024 ** 4, 'must be at most 1 TiB')
          .default(1024 ** 3),
        /**
         * Longest statement text pgward runs and records whole; a longer Query or Parse is
         * refused (54000), never recorded cut.
         */
        maxStatementBytes: z.coerce
          .number()
          .int()
          .min(1024, 'must be at least 1024 bytes')
          .max(256 * 1024 ** 2, 'must be at most 256 MiB')
          .default(1024 ** 2),
      })
      .prefault({}),
    /** `multi`: each person's tenant comes from their email domain (seed 001); `single`: one tenant. */
    tenancy: z.enum(['single', 'multi']).default('single'),
    /** Policy documents (docs/policies.md); those added through the API take precedence by name. */
    policies: z
      .array(policyDocumentSchema)
      .default([])
      .superRefine((policies, ctx) => {
        const seen = new Set<string>();
        policies.forEach((p, i) => {
          if (seen.has(p.name))
            ctx.addIssue({
              code: 'custom',
              path: [i, 'name'],
              message: `policy "${p.name}" is defined twice`,
            });
          seen.add(p.name);
        });
      }),
    providers: z
      .array(providerSchema)
      .default([])
      .superRefine((providers, ctx) => {
        const seen = new Set<string>();
        providers.forEach((provider, i) => {
          if (seen.has(provider.name)) {
            ctx.addIssue({
              code: 'custom',
              path: [i, 'name'],
              message: `provider name "${provider.name}" is used twice`,
            });
          }
          seen.add(provider.name);
        });
        const problem = wirePasswordProblem(providers);
        if (problem)
          ctx.addIssue({
            code: 'custom',
            path: [problem.index, 'ldap', 'wirePassword'],
            message: problem.message,
          });
      }),
  })
  .refine((config) => !config.http.tls || config.tls.certFile !== undefined, {
    path: ['http', 'tls'],
    message: 'HTTPS needs a certificate: set tls.certFile and tls.keyFile (PGWARD_TLS_CERT, PGWARD_TLS_KEY)',
  })
  .prefault({});

export type Config = z.output<typeof configSchema>;
export type ConfigInput = z.input<typeof configSchema>;

/**
 * Why LDAP passwords cannot be taken on the wire with these providers, if they cannot. pgward
 * tells a password from a token by shape: tokens of pgward and of OpenID providers are JWTs. A
 * provider whose tokens are opaque (validated at userinfo, GitHub's) would make that guess
 * unsafe: a token would be sent to the directory as a password, or a password to an IdP.
 */
export function wirePasswordProblem(
  providers: readonly {
    name: string;
    type?: string | undefined;
    validation?: string;
    ldap?: { wirePassword: boolean } | undefined;
  }[],
): { index: number; message: string } | undefined {
  const wire = providers.map((p, i) => ({ p, i })).filter(({ p }) => p.ldap?.wirePassword === true);
  if (wire.length === 0) return undefined;
  if (wire.length > 1) {
    return { index: wire[1]!.i, message: 'only one LDAP provider may take passwords on the wire' };
  }
  // LDAP and SAML sign-ins end in pgward's own tokens (JWTs): only OpenID and GitHub tokens count.
  const opaque = providers.find(
    (p) => p.type === 'github' || (p.type !== 'ldap' && p.type !== 'saml' && p.validation === 'userinfo'),
  );
  if (opaque) {
    return {
      index: wire[0]!.i,
      message: `cannot take LDAP passwords on the wire while provider "${opaque.name}" uses opaque tokens: pgward could not tell a password from a token`,
    };
  }
  return undefined;
}
