/**
 * Provider presets (`type:`): what each vendor's OpenID Connect really issues, so a provider set
 * up for Google, Entra ID, Okta, Auth0, Cognito, Keycloak or JumpCloud is right (and safe) the
 * first time. A preset fills in the vendor's issuer, audiences and claim names, refuses settings
 * that would accept tokens it should not (each refusal names the exact setting), and says what it
 * did in `explain`, which `pgward config print` shows. The checks each token then gets are in
 * preset_checks.ts.
 */
import type { z } from 'zod';
import { type ClaimPath, parseClaimPath } from '../config/claim_path.js';
import {
  type adGroupSettings,
  type auth0Settings,
  type azureSettings,
  type cognitoSettings,
  GUID,
  type githubSettings,
  type googleSettings,
  type keycloakSettings,
  type ldapSettings,
  type ProviderType,
  type samlSettings,
} from './provider_settings.js';

export { PROVIDER_TYPES, type ProviderType } from './provider_settings.js';

/** The settings a preset reads, as the base provider schema parsed them. */
export interface PresetInput {
  type: ProviderType;
  issuer?: string | undefined;
  clientId: string;
  audience?: string | undefined;
  validation: 'jwks' | 'userinfo';
  scopes: string[];
  claims: {
    subject?: ClaimPath | undefined;
    email?: ClaimPath | undefined;
    name?: ClaimPath | undefined;
    groups?: ClaimPath | null | undefined;
    roles?: ClaimPath[] | undefined;
  };
  google?: z.output<typeof googleSettings> | undefined;
  azuread?: z.output<typeof azureSettings> | undefined;
  auth0?: z.output<typeof auth0Settings> | undefined;
  cognito?: z.output<typeof cognitoSettings> | undefined;
  keycloak?: z.output<typeof keycloakSettings> | undefined;
  github?: z.output<typeof githubSettings> | undefined;
  saml?: z.output<typeof samlSettings> | undefined;
  ldap?: z.output<typeof ldapSettings> | undefined;
  clientSecret?: string | undefined;
  adGroups?: z.output<typeof adGroupSettings> | undefined;
}

/** What a preset decides: the fields every provider has after it. */
export interface PresetOutput {
  issuer: string;
  validation: 'jwks' | 'userinfo';
  /** Every `iss` accepted (Entra ID: one per tenant and token version). */
  issuers: string[];
  /** Every `aud` accepted. */
  audiences: string[];
  scopes: string[];
  claims: {
    subject: ClaimPath;
    email: ClaimPath;
    name: ClaimPath;
    /** null: the provider sends no groups (Google). */
    groups: ClaimPath | null;
    roles: ClaimPath[];
  };
  /** What the preset did and what it checks, for `pgward config print`. */
  explain: string[];
}

type Issue = { path: (string | number)[]; message: string };

const VENDOR_BLOCKS = [
  'google',
  'azuread',
  'auth0',
  'cognito',
  'keycloak',
  'github',
  'saml',
  'ldap',
] as const;
const GOOGLE_ISSUER = 'https://accounts.google.com';
const JUMPCLOUD_ISSUER = 'https://oauth.id.jumpcloud.com/';
const OKTA_CUSTOM_SERVER = /\/oauth2\/([^/]+)$/;

/** Settings that are wrong or unsafe for the provider's type; each names its setting. */
export function presetIssues(p: PresetInput): Issue[] {
  const issues: Issue[] = [];
  const refuse = (path: (string | number)[], message: string) => issues.push({ path, message });
  for (const block of VENDOR_BLOCKS) {
    if (p[block] !== undefined && p.type !== block)
      refuse([block], `is a setting of type ${block}; this provider is type ${p.type}`);
  }
  const needIssuer = (example: string) => {
    if (p.issuer === undefined) refuse(['issuer'], `is required for type ${p.type} (e.g. ${example})`);
  };
  switch (p.type) {
    case 'generic':
      needIssuer('https://idp.example.com');
      break;
    case 'google': {
      const g = p.google;
      if (!g?.hostedDomain && !g?.unsafeAllowAnyAccount) {
        refuse(
          ['google', 'hostedDomain'],
          'is required: without it any Google account (gmail.com included) signs in; give your Workspace domain, or set google.unsafeAllowAnyAccount: true',
        );
      }
      if (g?.hostedDomain && g.unsafeAllowAnyAccount)
        refuse(['google', 'unsafeAllowAnyAccount'], 'contradicts google.hostedDomain: set one of them');
      if (p.claims.groups)
        refuse(
          ['claims', 'groups'],
          "Google's tokens carry no groups; give people groups in pgward (members) or map their identities",
        );
      if (p.claims.roles?.length) refuse(['claims', 'roles'], "Google's tokens carry no roles");
      break;
    }
    case 'azuread': {
      const a = p.azuread;
      if (!a) {
        refuse(
          ['azuread', 'tenantId'],
          'is required for type azuread (the directory id of the app registration)',
        );
        break;
      }
      if (p.issuer !== undefined)
        refuse(
          ['issuer'],
          'is derived from azuread.tenantId for type azuread (set azuread.authority for a national cloud)',
        );
      const multi = !GUID.test(a.tenantId);
      if (multi && !a.allowedTenants)
        refuse(
          ['azuread', 'allowedTenants'],
          `is required with tenantId ${a.tenantId}: a multi-tenant app would accept every Entra ID tenant in the world; list the tenant ids allowed`,
        );
      if (!multi && a.allowedTenants)
        refuse(
          ['azuread', 'allowedTenants'],
          'only applies to a multi-tenant app (tenantId: organizations); a single-tenant app accepts its own tenant',
        );
      if (p.validation === 'userinfo')
        refuse(
          ['validation'],
          "Entra ID's userinfo is Microsoft Graph's, whose tokens cannot be verified by pgward; use jwks",
        );
      if (a.graph && !p.clientSecret)
        refuse(
          ['azuread', 'graph'],
          "needs the provider's clientSecret: pgward reads the groups from Microsoft Graph as the app registration (client credentials)",
        );
      break;
    }
    case 'okta': {
      needIssuer('https://company.okta.com/oauth2/default');
      if (p.issuer?.endsWith('/'))
        refuse(['issuer'], "Okta's issuer has no trailing slash; tokens would never match it");
      const server = OKTA_CUSTOM_SERVER.exec(p.issuer ?? '')?.[1];
      if (server !== undefined && server !== 'default' && !p.audience)
        refuse(
          ['audience'],
          `is required with the custom authorization server ${server}: its audience (e.g. api://pgward)`,
        );
      if (p.issuer && server === undefined && p.audience && p.audience !== p.clientId)
        refuse(
          ['audience'],
          "the org authorization server's access tokens are for Okta's own APIs and cannot be verified; use a custom authorization server (issuer https://ORG.okta.com/oauth2/default) for API audiences",
        );
      break;
    }
    case 'auth0':
      needIssuer('https://company.eu.auth0.com/');
      if (p.issuer && !p.issuer.endsWith('/'))
        refuse(['issuer'], `Auth0's issuer ends with "/" (${p.issuer}/); tokens would never match it`);
      if (!p.audience)
        refuse(['audience'], 'is required for Auth0: the API identifier its access tokens are issued for');
      break;
    case 'cognito': {
      const c = p.cognito;
      const pool = c?.userPoolId !== undefined || c?.region !== undefined;
      if (pool && p.issuer !== undefined)
        refuse(['issuer'], 'is derived from cognito.region and cognito.userPoolId; set one or the other');
      if (!pool) needIssuer('https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_AbCdEf123');
      if (pool && (!c?.region || !c.userPoolId))
        refuse(['cognito', c?.region ? 'userPoolId' : 'region'], 'is required with the other');
      if (c?.region && c.userPoolId && !c.userPoolId.startsWith(`${c.region}_`))
        refuse(['cognito', 'userPoolId'], `is not a pool of region ${c.region}`);
      break;
    }
    case 'keycloak':
      needIssuer('https://sso.example.com/realms/company');
      if (p.issuer && !/\/realms\/[^/]+$/.test(p.issuer))
        refuse(['issuer'], "Keycloak's issuer is the realm's URL: https://HOST/realms/REALM");
      break;
    case 'jumpcloud':
      break;
    case 'ldap': {
      const l = p.ldap;
      if (!l) {
        refuse(['ldap', 'url'], 'is required for type ldap (with ldap.userBase)');
        break;
      }
      const host = new URL(l.url.replace(/^ldaps?:/, 'http:')).hostname;
      const loopback = host === 'localhost' || host === '[::1]' || /^127\./.test(host);
      if (l.url.startsWith('ldap:') && !l.startTls && !loopback)
        refuse(
          ['ldap', 'url'],
          'sends passwords in the clear: use ldaps:// or set ldap.startTls: true (plain ldap:// is accepted on loopback only)',
        );
      if (!p.clientSecret)
        refuse(
          ['clientSecret'],
          "is required for type ldap: the service account's password (clientId is its DN)",
        );
      if (p.issuer !== undefined) refuse(['issuer'], 'does not apply to type ldap (ldap.url)');
      break;
    }
    case 'saml':
      if (!p.saml)
        refuse(['saml', 'ssoUrl'], 'is required for type saml (with saml.idpIssuer and saml.certificate)');
      if (p.issuer !== undefined) refuse(['issuer'], "for type saml, the IdP's entity id is saml.idpIssuer");
      if (Object.values(p.claims).some((v) => v !== undefined))
        refuse(['claims'], 'do not apply to SAML: name the attributes in saml (groupAttribute, ...)');
      break;
    case 'github':
      if (!p.github)
        refuse(
          ['github', 'allowedOrganizations'],
          'is required for type github: the organisations whose members may sign in',
        );
      if (p.issuer !== undefined) refuse(['issuer'], 'is derived from github.url for type github');
      if (p.audience !== undefined)
        refuse(['audience'], 'does not apply to GitHub, whose tokens are checked at its API');
      if (Object.values(p.claims).some((v) => v !== undefined))
        refuse(['claims'], 'do not apply to GitHub: people are read from its user, orgs and teams endpoints');
      break;
  }
  return issues;
}

const path = (text: string) => parseClaimPath(text);
const trimSlash = (url: string) => url.replace(/\/+$/, '');

/** Fills in what the preset decides. Only called once `presetIssues` found nothing. */
export function applyPreset(p: PresetInput): PresetOutput {
  const explain: string[] = [];
  let issuer = p.issuer ?? '';
  let issuers: string[] | undefined;
  let audiences = [p.audience ?? p.clientId];
  let groups: ClaimPath | null = path('groups');
  let roles: ClaimPath[] = [];
  let email = path('email');
  let validation = p.validation;
  let scopes = [...p.scopes];

  switch (p.type) {
    case 'generic':
      explain.push('generic OpenID Connect: issuer, audience and claims exactly as configured');
      break;
    case 'google': {
      issuer ||= GOOGLE_ISSUER;
      groups = null;
      const domains = p.google?.hostedDomain;
      explain.push(
        domains
          ? `google: only accounts of ${domains.join(', ')} (the hd claim is checked on every token)`
          : 'google: ANY Google account may sign in (google.unsafeAllowAnyAccount)',
        "google: Google's tokens carry no groups; give people groups in pgward (members) or by mappings of this provider",
        "google: Google's access tokens are opaque; present the ID token (audience: the client id)",
      );
      break;
    }
    case 'azuread': {
      const a = p.azuread!;
      const tenants = GUID.test(a.tenantId)
        ? [a.tenantId.toLowerCase()]
        : a.allowedTenants!.map((t) => t.toLowerCase());
      issuer = `${trimSlash(a.authority)}/${a.tenantId}/v2.0`;
      issuers = tenants.flatMap((t) => [
        `${trimSlash(a.authority)}/${t}/v2.0`,
        ...(a.acceptV1Tokens ? [`${trimSlash(a.v1Authority)}/${t}/`] : []),
      ]);
      if (!p.audience) audiences = [p.clientId, `api://${p.clientId}`];
      roles = [path('roles')];
      explain.push(
        GUID.test(a.tenantId)
          ? `azuread: single tenant ${tenants[0]}`
          : `azuread: multi-tenant app; only the tenants ${tenants.join(', ')} (the tid claim is checked)`,
        `azuread: v2.0${a.acceptV1Tokens ? ' and v1.0' : ''} tokens; audiences ${audiences.join(', ')}`,
        a.graph
          ? `azuread: groups from the groups claim, app roles from roles; a person in too many groups (overage: _claim_names / hasgroups) has their group ids read from ${trimSlash(a.graph.graphUrl)} (transitiveMemberOf) as the app registration, and is refused if that fails`
          : 'azuread: groups from the groups claim, app roles from roles; a person in too many groups (overage: _claim_names / hasgroups) is refused with a message, never signed in without groups (azuread.graph reads them from Microsoft Graph)',
        'azuread: add the optional claim "email" to the app registration; Entra ID sends no email_verified, so linkByEmail never links its identities',
      );
      break;
    }
    case 'okta': {
      const server = OKTA_CUSTOM_SERVER.exec(issuer)?.[1];
      if (server === 'default' && !p.audience) audiences = ['api://default'];
      if (server === undefined && !scopes.includes('groups')) scopes.push('groups');
      explain.push(
        server === undefined
          ? 'okta: org authorization server: only its ID tokens can be verified (audience: the client id); groups with the groups scope'
          : `okta: custom authorization server ${server}; audience ${audiences.join(', ')}; add a groups claim to it`,
      );
      break;
    }
    case 'auth0': {
      const ns = p.auth0?.claimNamespace;
      if (ns) {
        const prefix = ns.endsWith('/') ? ns : `${ns}/`;
        groups = [`${prefix}groups`];
        roles = [[`${prefix}roles`]];
      }
      explain.push(
        `auth0: access tokens for the API ${p.audience}; the issuer ends with "/"`,
        ns
          ? `auth0: groups and roles from the namespaced claims ${String(groups)} and ${String(roles[0])} (set them in an Action)`
          : "auth0: no claimNamespace: groups from the plain groups claim (set auth0.claimNamespace for an Action's namespaced claims)",
        "auth0: an access token without email is completed from Auth0's userinfo",
      );
      break;
    }
    case 'cognito': {
      const c = p.cognito;
      if (c?.region && c.userPoolId) issuer = `https://cognito-idp.${c.region}.amazonaws.com/${c.userPoolId}`;
      groups = ['cognito:groups'];
      explain.push(
        'cognito: groups from cognito:groups; token_use must be id or access',
        'cognito: access tokens have no aud: their client_id must be the client id; their email comes from the userinfo endpoint',
      );
      break;
    }
    case 'keycloak': {
      const client = p.keycloak?.clientRolesOf ?? p.clientId;
      roles = [
        ['realm_access', 'roles'],
        ['resource_access', client, 'roles'],
      ];
      explain.push(
        `keycloak: roles from realm_access.roles and the client roles resource_access.${client}.roles`,
        'keycloak: add an audience mapper so access tokens carry the client id as aud; groups from a group membership mapper (claim groups)',
      );
      break;
    }
    case 'ldap': {
      const l = p.ldap!;
      issuer = l.url;
      issuers = [];
      audiences = [];
      validation = 'userinfo';
      groups = null;
      explain.push(
        `ldap: user name and password checked by a bind at ${l.url}${l.startTls ? ' (StartTLS)' : ''}; people searched in ${l.userBase} as ${p.clientId}`,
        `ldap: groups (${l.groupNameAttribute}) ${l.nestedGroups === 'ad' ? "with Active Directory's nested groups (LDAP_MATCHING_RULE_IN_CHAIN)" : l.nestedGroups === 'recursive' ? 'with groups of groups' : 'direct only'}`,
        `ldap: a user name is locked for ${l.lockout.minutes} minutes after ${l.lockout.maxFailures} wrong passwords`,
      );
      break;
    }
    case 'saml': {
      const s = p.saml!;
      issuer = s.idpIssuer;
      issuers = [];
      audiences = [p.clientId];
      validation = 'userinfo';
      groups = null;
      explain.push(
        `saml: SAML 2.0 at ${s.ssoUrl}; this gateway's entity id (the audience) is the clientId ${p.clientId}`,
        'saml: the assertion signature, issuer, audience, time conditions and InResponseTo are always checked; a response is accepted once',
        `saml: groups from ${s.groupAttribute ?? '(no groupAttribute)'}, roles from ${s.roleAttribute ?? '(no roleAttribute)'}, the person from ${s.userIdAttribute ?? 'the NameID'}`,
      );
      break;
    }
    case 'github': {
      const g = p.github!;
      issuer = trimSlash(g.url);
      issuers = [];
      audiences = [];
      validation = 'userinfo';
      // OpenID scopes mean nothing to GitHub: these read the profile, the emails and memberships.
      if (scopes.includes('openid')) scopes = ['read:user', 'user:email', 'read:org'];
      groups = null;
      explain.push(
        `github: OAuth 2.0 at ${issuer}, API ${githubApiUrl(g)}; tokens are checked at its user endpoint`,
        `github: only members of ${g.allowedOrganizations.join(', ')}; groups are their organisations and teams there (org, org/team)`,
      );
      break;
    }
    case 'jumpcloud':
      issuer ||= JUMPCLOUD_ISSUER;
      explain.push(
        'jumpcloud: groups from the group attribute of the SSO application (claims.groups names it; groups by default)',
      );
      break;
  }
  if (p.claims.groups !== undefined) groups = p.claims.groups;
  if (p.claims.roles !== undefined) roles = p.claims.roles;
  if (p.claims.email !== undefined) email = p.claims.email;
  if (p.adGroups) {
    const a = p.adGroups;
    explain.push(
      `adGroups: ${a.groupPrefix ?? `${netbios(a.domain)}\\`}Group → Group; ${
        a.trustedDomains.length ? `groups of ${a.trustedDomains.join(', ')} kept qualified; ` : ''
      }groups of any other domain are dropped`,
    );
  }
  return {
    issuer,
    validation,
    issuers: issuers ?? [issuer],
    audiences,
    scopes,
    claims: {
      subject: p.claims.subject ?? ['sub'],
      email,
      name: p.claims.name ?? ['name'],
      groups,
      roles,
    },
    explain,
  };
}

/** GitHub's REST API base: api.github.com for github.com, URL/api/v3 for GitHub Enterprise Server. */
export function githubApiUrl(g: { url: string; apiUrl?: string | undefined }): string {
  if (g.apiUrl) return trimSlash(g.apiUrl);
  const web = trimSlash(g.url);
  return web === 'https://github.com' ? 'https://api.github.com' : `${web}/api/v3`;
}

/** The first label of a DNS domain, upper case: `company.local` → `COMPANY`. */
export function netbios(domain: string): string {
  return domain.split('.')[0]!.replace(/[a-z]+/g, (x) => x.toUpperCase());
}
