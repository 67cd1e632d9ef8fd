/**
 * What a provider's preset checks on each token, after its signature, issuer and audience
 * verified: the organisation it comes from (Google's `hd`, Entra ID's `tid`), the shape of the
 * token (Cognito's `token_use`), the groups overage of Entra ID, and Windows group names.
 * Plain functions over claims; they throw TOKEN_* errors naming what is wrong.
 */
import type { ProviderConfig } from '../config/schema.js';
import { PgwardError } from '../errors.js';
import { netbios } from './provider_presets.js';

const fail = (code: 'TOKEN_ORGANIZATION' | 'TOKEN_CLAIMS' | 'TOKEN_AUDIENCE', message: string) =>
  new PgwardError(code, message, { hint: 'sign in with an account of your organisation' });

/**
 * Checks that hold for claims from any source (a verified token, an ID token at login, or the
 * userinfo endpoint): the organisation and the groups overage.
 */
export function checkOrganization(provider: ProviderConfig, claims: Record<string, unknown>): void {
  if (provider.type === 'google' && provider.google?.hostedDomain) {
    const hd = claims['hd'];
    if (typeof hd !== 'string' || !provider.google.hostedDomain.includes(hd.toLowerCase())) {
      throw fail(
        'TOKEN_ORGANIZATION',
        typeof hd === 'string'
          ? `the Google account belongs to ${hd.slice(0, 100)}, which ${provider.name} does not accept`
          : `the Google account is not part of a Workspace domain ${provider.name} accepts (no hd claim)`,
      );
    }
  }
  if (provider.type === 'azuread' && provider.azuread) {
    const tid = claims['tid'];
    if (typeof tid !== 'string' || !tenantAllowed(provider, tid)) {
      throw fail(
        'TOKEN_ORGANIZATION',
        typeof tid === 'string'
          ? `the Entra ID tenant ${tid.slice(0, 64)} is not allowed by ${provider.name}`
          : 'the token names no Entra ID tenant (tid)',
      );
    }
    if (groupsOverage(claims)) {
      // Entra ID leaves the groups out when a person is in more than 200 (JWT) groups, and
      // points at Microsoft Graph instead; signing them in without groups would be wrong.
      // With azuread.graph, entra_graph.ts has filled them in before this runs.
      throw fail(
        'TOKEN_CLAIMS',
        'Entra ID left the groups out of the token: the person is in too many groups (overage). Set azuread.graph to read them from Microsoft Graph, or in the app registration emit only "Groups assigned to the application", or use app roles',
      );
    }
  }
}

/** Whether an Entra ID tenant id is one the provider accepts (its issuers name the tenant). */
export function tenantAllowed(provider: ProviderConfig, tid: string): boolean {
  return provider.issuers.some((iss) => iss.includes(`/${tid.toLowerCase()}/`));
}

/** Entra ID's groups overage: the token points at Graph (`_claim_names`, `hasgroups`) and has no groups. */
export function groupsOverage(claims: Record<string, unknown>): boolean {
  const names = claims['_claim_names'];
  const pointer =
    (typeof names === 'object' && names !== null && 'groups' in names) || claims['hasgroups'] === true;
  return pointer && claims['groups'] === undefined;
}

/** Checks of a JWT's shape, once it verified (not of userinfo answers). */
export function checkTokenShape(provider: ProviderConfig, payload: Record<string, unknown>): void {
  if (provider.type === 'cognito') {
    const use = payload['token_use'];
    if (use === 'access') {
      // Cognito's access tokens carry no aud: the client they were issued to is client_id.
      if (payload['client_id'] !== provider.clientId)
        throw fail('TOKEN_AUDIENCE', `the Cognito access token was issued to another app client`);
    } else if (use !== 'id') {
      throw fail('TOKEN_CLAIMS', 'the Cognito token has no token_use of id or access');
    }
  }
  if (provider.type === 'azuread') {
    // The issuer names the tenant: a token of tenant A must not carry tenant B's tid.
    const iss = String(payload['iss']);
    const tid = String(payload['tid']).toLowerCase();
    if (!iss.includes(`/${tid}/`))
      throw fail('TOKEN_ORGANIZATION', "the token's tenant (tid) is not the tenant of its issuer");
  }
}

/** The audiences jose checks; undefined for a Cognito access token, whose client_id is checked instead. */
export function expectedAudiences(
  provider: ProviderConfig,
  unverified: Record<string, unknown>,
): string[] | undefined {
  if (provider.type === 'cognito' && unverified['token_use'] === 'access') return undefined;
  return provider.audiences;
}

/** Whether a verified token lacks the email and the provider's userinfo supplies it (Auth0, Cognito access tokens). */
export function emailFromUserinfo(provider: ProviderConfig, hasEmail: boolean): boolean {
  return !hasEmail && (provider.type === 'cognito' || provider.type === 'auth0');
}

/**
 * Upper case of ASCII letters only: JavaScript's toUpperCase maps ı to I, ſ to S and ﬁ to FI, so
 * another domain would pass for the company's own, and lengths would change under a prefix.
 */
const asciiUpper = (s: string) => s.replace(/[a-z]+/g, (x) => x.toUpperCase());

/**
 * Windows group names: the company's own `DOMAIN\Group` becomes `Group`, a trusted domain's is
 * kept qualified, and any other domain's is dropped (it must not pass for the company's own).
 */
export function windowsGroupNames(provider: ProviderConfig, groups: string[]): string[] {
  const ad = provider.adGroups;
  if (!ad) return groups;
  const own = new Set([asciiUpper(ad.domain), netbios(ad.domain)]);
  const trusted = new Set(ad.trustedDomains.flatMap((d) => [asciiUpper(d), netbios(d)]));
  const prefix = ad.groupPrefix === undefined ? undefined : asciiUpper(ad.groupPrefix);
  const out: string[] = [];
  for (const group of groups) {
    const slash = group.indexOf('\\');
    if (slash < 0) {
      out.push(group);
      continue;
    }
    const domain = asciiUpper(group.slice(0, slash));
    const name = group.slice(slash + 1);
    if (name === '') continue;
    if (own.has(domain)) out.push(name);
    else if (prefix !== undefined && asciiUpper(group).startsWith(prefix))
      out.push(group.slice(prefix.length));
    else if (trusted.has(domain)) out.push(group);
  }
  return [...new Set(out)];
}

/**
 * A token of an Entra ID tenant that an azuread provider does not allow names that tenant in its
 * issuer: it is refused as such (rather than as an unknown issuer), so the person learns why.
 */
export function refuseForeignTenant(providers: ProviderConfig[], issuer: string): void {
  for (const p of providers) {
    if (p.type !== 'azuread' || !p.azuread) continue;
    const authorities = [p.azuread.authority, p.azuread.v1Authority].map((a) => a.replace(/\/+$/, ''));
    for (const authority of authorities) {
      const tenant = /^\/([0-9a-f-]{36})\/(v2\.0)?$/i.exec(issuer.slice(authority.length))?.[1];
      if (issuer.startsWith(`${authority}/`) && tenant) {
        throw fail('TOKEN_ORGANIZATION', `the Entra ID tenant ${tenant} is not allowed by ${p.name}`);
      }
    }
  }
}
