/**
 * The two provider formats of the seeds, turned into pgward's one provider shape:
 * Hoop's IDP_* environment variables and Hasura's SSO provider JSON list.
 */
import { z } from 'zod';
import type { ProviderInput } from './schema.js';

/** A configuration problem tied to the setting a person must change. */
export class SettingError extends Error {
  constructor(
    readonly setting: string,
    message: string,
  ) {
    super(`${setting}: ${message}`);
  }
}

/** Name of the provider defined by Hoop-style IDP_* variables. */
export const HOOP_PROVIDER_NAME = 'default';

/** Hoop's IDP_* variables → one provider, or undefined when IDP_ISSUER is unset. */
export function providerFromHoopEnv(env: Record<string, string | undefined>): ProviderInput | undefined {
  const rawIssuer = env['IDP_ISSUER'];
  if (rawIssuer === undefined || rawIssuer === '') {
    for (const name of [
      'IDP_CLIENT_ID',
      'IDP_CLIENT_SECRET',
      'IDP_AUDIENCE',
      'IDP_CUSTOM_SCOPES',
      'IDP_GROUPS_CLAIM',
    ]) {
      if (env[name])
        throw new SettingError(name, 'is set but IDP_ISSUER is not; set IDP_ISSUER to the OIDC issuer URL');
    }
    return undefined;
  }
  // Seed 001: `?_userinfo=1` on the issuer means "validate access tokens with the userinfo endpoint".
  const [issuer = '', query] = rawIssuer.split('?', 2);
  if (query !== undefined && query !== '_userinfo=1') {
    throw new SettingError('IDP_ISSUER', 'the only query parameter understood is _userinfo=1');
  }
  if (!URL.canParse(issuer)) {
    throw new SettingError(
      'IDP_ISSUER',
      `"${issuer}" is not a URL; expected the OIDC issuer, e.g. https://idp.example.com`,
    );
  }
  const clientId = env['IDP_CLIENT_ID'];
  if (!clientId) throw new SettingError('IDP_CLIENT_ID', 'is required when IDP_ISSUER is set');

  const custom = (env['IDP_CUSTOM_SCOPES'] ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
  const provider: ProviderInput = {
    name: HOOP_PROVIDER_NAME,
    issuer,
    validation: query === undefined ? 'jwks' : 'userinfo',
    clientId,
    scopes: [...new Set(['openid', 'profile', 'email', ...custom])],
    claims: { groups: env['IDP_GROUPS_CLAIM'] || 'groups' },
    adminGroups: ['admin'],
  };
  if (env['IDP_CLIENT_SECRET']) provider.clientSecret = env['IDP_CLIENT_SECRET'];
  if (env['IDP_AUDIENCE']) provider.audience = env['IDP_AUDIENCE'];
  return provider;
}

const claimsMapEntry = z.union([
  z.string(),
  z.strictObject({ path: z.string(), default: z.unknown().optional() }),
]);

/** Hasura's claims_map keys and the pgward claim each one feeds. */
const HASURA_CLAIMS: Record<string, 'groups' | 'roles' | 'email' | 'name' | 'subject' | null> = {
  'x-hasura-allowed-roles': 'groups',
  // pgward uses all of a person's groups; the default role has no counterpart and is accepted as is.
  'x-hasura-default-role': null,
  'x-hasura-user-id': 'subject',
  groups: 'groups',
  roles: 'roles',
  email: 'email',
  name: 'name',
  sub: 'subject',
  subject: 'subject',
};

const hasuraProvider = z.strictObject({
  client_id: z.string().min(1, 'is required'),
  client_secret: z.string().min(1).optional(),
  name: z.string().min(1, 'is required').max(100),
  scope: z.string().default('openid'),
  authorization_url: z.string().optional(),
  request_token_url: z.string().optional(),
  admin_roles: z.array(z.string()).default(['admin']),
  jwt_secret: z.strictObject({
    type: z.string(),
    jwk_url: z.string().optional(),
    key: z.never({ error: 'symmetric keys are refused; publish the IdP keys at jwk_url' }).optional(),
    issuer: z.string({ error: 'is required: pgward always checks the token issuer' }),
    audience: z.union([z.string(), z.array(z.string()).length(1, 'give exactly one audience')]).optional(),
    claims_namespace: z.string().optional(),
    claims_map: z.record(z.string(), claimsMapEntry).optional(),
  }),
});

/** Derives a provider name ("SAML Login" → "saml-login"). */
function slug(name: string): string {
  const s = name
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, '-')
    .replace(/^-+|-+$/g, '')
    .slice(0, 63);
  return s === '' ? 'sso' : s;
}

/** PGWARD_SSO_PROVIDERS (Hasura's SSO provider list as JSON) → providers. */
export function providersFromHasuraJson(json: string, setting = 'PGWARD_SSO_PROVIDERS'): ProviderInput[] {
  let parsed: unknown;
  try {
    parsed = JSON.parse(json);
  } catch (err) {
    throw new SettingError(setting, `is not valid JSON (${(err as Error).message})`);
  }
  if (!Array.isArray(parsed)) throw new SettingError(setting, 'expected a JSON array of provider objects');
  return parsed.map((entry, i) => {
    const result = hasuraProvider.safeParse(entry);
    if (!result.success) {
      const issue = result.error.issues[0]!;
      const where = issue.path.map((p) => (typeof p === 'number' ? `[${p}]` : `.${String(p)}`)).join('');
      throw new SettingError(`${setting}[${i}]${where}`, issue.message);
    }
    const h = result.data;
    const claims: Record<string, string> = {};
    if (h.jwt_secret.claims_namespace) {
      // Hasura nests its claims under a namespace claim; the allowed roles become groups.
      claims['groups'] = `$[${JSON.stringify(h.jwt_secret.claims_namespace)}]['x-hasura-allowed-roles']`;
    }
    for (const [key, entry] of Object.entries(h.jwt_secret.claims_map ?? {})) {
      if (!(key in HASURA_CLAIMS)) {
        throw new SettingError(
          `${setting}[${i}].jwt_secret.claims_map.${key}`,
          `unknown claim; expected one of ${Object.keys(HASURA_CLAIMS).join(', ')}`,
        );
      }
      const target = HASURA_CLAIMS[key];
      if (target) claims[target] = typeof entry === 'string' ? entry : entry.path;
    }
    const provider: ProviderInput = {
      name: slug(h.name),
      displayName: h.name,
      issuer: h.jwt_secret.issuer,
      validation: 'jwks',
      clientId: h.client_id,
      scopes: h.scope.split(/\s+/).filter((s) => s !== ''),
      algorithms: [h.jwt_secret.type as 'RS256'],
      claims,
      adminGroups: h.admin_roles,
    };
    if (h.client_secret) provider.clientSecret = h.client_secret;
    if (h.jwt_secret.audience) {
      provider.audience = Array.isArray(h.jwt_secret.audience)
        ? h.jwt_secret.audience[0]
        : h.jwt_secret.audience;
    }
    if (h.jwt_secret.jwk_url) provider.jwksUri = h.jwt_secret.jwk_url;
    if (h.authorization_url) provider.authorizationUrl = h.authorization_url;
    if (h.request_token_url) provider.tokenUrl = h.request_token_url;
    return provider;
  });
}

/** A row of seed 004's `auth.provider` (provider_type and its configuration JSON). */
export interface SeedProviderRow {
  provider_type: string;
  configuration: Record<string, unknown>;
}

const text = (v: unknown) => (typeof v === 'string' && v !== '' ? v : undefined);

/**
 * Seed 004's provider rows → pgward's provider settings (the name, and for SAML the gateway's
 * entity id as `clientId`, come from the caller). `windows` has no sign-in of its own: its
 * domain, trusted domains and group prefix are the `adGroups` of the provider in front of AD.
 */
export function providerFromSeedRow(row: SeedProviderRow, setting = 'provider'): Record<string, unknown> {
  const c = row.configuration ?? {};
  const where = (key: string) => `${setting}.configuration.${key}`;
  const clientId = text(c['client_id']);
  switch (row.provider_type) {
    case 'google':
      return {
        type: 'google',
        ...(clientId ? { clientId } : {}),
        google: text(c['hosted_domain']) ? { hostedDomain: c['hosted_domain'] } : {},
      };
    case 'azuread': {
      const tenantId = text(c['tenant_id']);
      if (!tenantId) throw new SettingError(where('tenant_id'), 'is required for azuread');
      // Seed 004's authority includes the tenant (https://login.microsoftonline.com/TENANT).
      const authority = text(c['authority']);
      const claims = Array.isArray(c['group_claims'])
        ? (c['group_claims'] as unknown[])
        : ['groups', 'roles'];
      return {
        type: 'azuread',
        ...(clientId ? { clientId } : {}),
        azuread: {
          tenantId,
          ...(authority && URL.canParse(authority) ? { authority: new URL(authority).origin } : {}),
        },
        claims: {
          ...(claims.includes('groups') ? {} : { groups: null }),
          ...(claims.includes('roles') ? { roles: 'roles' } : { roles: [] }),
        },
      };
    }
    case 'saml': {
      for (const key of ['sso_url', 'issuer', 'certificate'])
        if (!text(c[key])) throw new SettingError(where(key), 'is required for saml');
      return {
        type: 'saml',
        saml: {
          ssoUrl: c['sso_url'],
          idpIssuer: c['issuer'],
          certificate: c['certificate'],
          ...(text(c['group_attribute']) ? { groupAttribute: c['group_attribute'] } : {}),
          ...(text(c['role_attribute']) ? { roleAttribute: c['role_attribute'] } : {}),
          ...(text(c['user_id_attribute']) ? { userIdAttribute: c['user_id_attribute'] } : {}),
        },
      };
    }
    case 'windows': {
      const domain = text(c['domain']);
      if (!domain) throw new SettingError(where('domain'), 'is required for windows');
      return {
        adGroups: {
          domain,
          trustedDomains: Array.isArray(c['trusted_domains']) ? c['trusted_domains'] : [],
          ...(text(c['group_prefix']) ? { groupPrefix: c['group_prefix'] } : {}),
        },
      };
    }
    default:
      throw new SettingError(
        `${setting}.provider_type`,
        `"${String(row.provider_type)}" is not one of seed 004's types pgward reads (azuread, google, saml, windows)`,
      );
  }
}
