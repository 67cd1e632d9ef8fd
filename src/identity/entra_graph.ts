/**
 * Entra ID's groups overage resolved at Microsoft Graph (`azuread.graph`, opt-in). When a person
 * is in more groups than fit in a token, Entra ID leaves `groups` out and points at Graph
 * (`_claim_names` / `hasgroups`). pgward then reads the person's group object ids at Graph as the
 * app registration itself (client credentials grant, for the token's tenant), so the groups are
 * the same ids the `groups` claim would have carried. Any failure refuses the sign-in: a person
 * is never signed in with fewer groups than they have.
 */
import { createHash } from 'node:crypto';
import type { ProviderConfig } from '../config/schema.js';
import { PgwardError } from '../errors.js';
import { MAX_LIST } from './claims.js';
import { fetchJson } from './http_json.js';
import { groupsOverage, tenantAllowed } from './preset_checks.js';
import { GUID } from './provider_settings.js';

/** Each request to Entra ID or Graph. */
const REQUEST_TIMEOUT_MS = 5_000;
/** All the requests of one resolution together (token and every page). */
const DEADLINE_MS = 10_000;
/** Graph's largest page of transitiveMemberOf. */
const PAGE_SIZE = 999;
const MAX_PAGES = 10;
/** How long one person's groups read at Graph are reused. */
export const GRAPH_GROUPS_TTL_MS = 60_000;
/** An app token is renewed this long before it expires (Entra ID's last 60 to 90 minutes). */
const TOKEN_RENEW_MS = 5 * 60_000;
const MAX_CACHED = 10_000;

interface AppToken {
  token: string;
  until: number;
}

const graphError = (provider: ProviderConfig, message: string, hint?: string, cause?: unknown) =>
  new PgwardError(
    'IDP_UNREACHABLE',
    `${provider.name}: the person is in too many groups for Entra ID's token (overage) and ${message}`,
    { cause, hint: hint ?? 'try again shortly; if it persists, check the provider and Microsoft Graph' },
  );

/** Reads people's groups at Microsoft Graph on an overage; app tokens and answers are cached. */
export class EntraGraph {
  private readonly appTokens = new Map<string, Promise<AppToken>>();
  private readonly groups = new Map<string, { groups: string[]; until: number }>();

  constructor(private readonly now: () => number = Date.now) {}

  /**
   * The claims of a verified Entra ID token, with `groups` read from Graph when the token has an
   * overage and the provider sets `azuread.graph`; otherwise the claims as they are (the preset
   * checks then refuse an overage, or a tenant not allowed).
   */
  async complete(
    provider: ProviderConfig,
    claims: Record<string, unknown>,
  ): Promise<Record<string, unknown>> {
    const graph = provider.type === 'azuread' ? provider.azuread?.graph : undefined;
    if (!graph || !groupsOverage(claims)) return claims;
    const tid = claims['tid'];
    // Only a tenant the provider accepts is asked about (and an app token got for).
    if (typeof tid !== 'string' || !GUID.test(tid) || !tenantAllowed(provider, tid)) return claims;
    const oid = claims['oid'];
    if (typeof oid !== 'string' || !GUID.test(oid)) {
      throw new PgwardError(
        'TOKEN_CLAIMS',
        "the token has a groups overage but no object id (oid) to read the person's groups with",
      );
    }
    const key = `${provider.name}\0${tid.toLowerCase()}\0${oid.toLowerCase()}`;
    const cached = this.groups.get(key);
    if (cached && cached.until > this.now()) return { ...claims, groups: cached.groups };
    const deadline = this.now() + DEADLINE_MS;
    const groups = await this.read(provider, tid.toLowerCase(), oid.toLowerCase(), deadline);
    if (this.groups.size >= MAX_CACHED) this.groups.clear();
    this.groups.set(key, { groups, until: this.now() + GRAPH_GROUPS_TTL_MS });
    return { ...claims, groups };
  }

  private timeout(deadline: number): number {
    return Math.max(1, Math.min(REQUEST_TIMEOUT_MS, deadline - this.now()));
  }

  /**
   * `transitiveMemberOf/microsoft.graph.group`: the groups a person is in, directly or through
   * nested groups (as the groups claim counts them), cast to groups only (no directory roles or
   * administrative units), in pages of at most 999 ids. getMemberGroups would answer in one
   * unpaged POST, refused outright past 11,000 groups; pages let pgward stop at its own cap.
   */
  private async read(
    provider: ProviderConfig,
    tid: string,
    oid: string,
    deadline: number,
  ): Promise<string[]> {
    const graphUrl = provider.azuread!.graph!.graphUrl.replace(/\/+$/, '');
    const origin = new URL(graphUrl).origin;
    const token = await this.appToken(provider, tid, deadline);
    let next: string | undefined =
      `${graphUrl}/v1.0/users/${oid}/transitiveMemberOf/microsoft.graph.group?$select=id&$top=${PAGE_SIZE}`;
    const ids = new Set<string>();
    for (let page = 0; next !== undefined; page++) {
      if (page === MAX_PAGES) throw graphError(provider, `Microsoft Graph sent more than ${MAX_PAGES} pages`);
      // The app token goes to Graph only, whatever a next link says.
      if (new URL(next).origin !== origin)
        throw graphError(provider, `Microsoft Graph's next page is not at ${origin}`);
      const answer = await fetchJson(next, this.timeout(deadline), {
        authorization: `Bearer ${token.token}`,
      }).catch((err: unknown) => {
        const status = err instanceof PgwardError ? err.detail : undefined;
        // A token Graph no longer takes is not reused.
        if (status === '401') this.appTokens.delete(this.tokenKey(provider, tid));
        throw graphError(
          provider,
          status
            ? `Microsoft Graph answered ${status} to reading their groups`
            : 'Microsoft Graph did not answer',
          status === '403'
            ? 'grant the app registration the Microsoft Graph application permissions User.Read.All and GroupMember.Read.All, with admin consent'
            : undefined,
          err,
        );
      });
      next = this.addPage(provider, answer, ids);
      if (ids.size > MAX_LIST)
        throw graphError(
          provider,
          `is in more than ${MAX_LIST} groups, the most pgward takes`,
          'use app roles, or emit only "Groups assigned to the application"',
        );
    }
    return [...ids];
  }

  /** Adds one page's group ids; returns the next page's URL, if any. */
  private addPage(provider: ProviderConfig, answer: unknown, ids: Set<string>): string | undefined {
    const page = answer as { value?: unknown; '@odata.nextLink'?: unknown } | null;
    if (typeof page !== 'object' || page === null || !Array.isArray(page.value))
      throw graphError(provider, 'Microsoft Graph sent no list of groups');
    for (const item of page.value as unknown[]) {
      const { id, '@odata.type': type } = (item ?? {}) as { id?: unknown; '@odata.type'?: unknown };
      if (typeof id !== 'string' || !GUID.test(id))
        throw graphError(provider, 'Microsoft Graph sent a group without an object id');
      if (type === undefined || type === '#microsoft.graph.group') ids.add(id.toLowerCase());
    }
    const next = page['@odata.nextLink'];
    if (next !== undefined && typeof next !== 'string')
      throw graphError(provider, "Microsoft Graph's next page link is not a URL");
    return next;
  }

  private tokenKey(provider: ProviderConfig, tid: string): string {
    // A changed secret or client gets its own token.
    const secret = createHash('sha256')
      .update(provider.clientSecret ?? '')
      .digest('base64url');
    return `${provider.name}\0${tid}\0${provider.clientId}\0${secret}`;
  }

  /** The app's token for Graph in the person's tenant, reused until shortly before it expires. */
  private async appToken(provider: ProviderConfig, tid: string, deadline: number): Promise<AppToken> {
    const key = this.tokenKey(provider, tid);
    const held = this.appTokens.get(key);
    if (held) {
      const token = await held.catch(() => undefined);
      if (token && token.until > this.now()) return token;
      // Expired: the first caller to notice asks again, the others share its request.
      const newer = this.appTokens.get(key);
      if (newer && newer !== held) return newer;
    }
    const request = this.requestToken(provider, tid, deadline);
    if (this.appTokens.size >= MAX_CACHED) this.appTokens.clear();
    this.appTokens.set(key, request);
    // A failed request is not kept: the next resolution asks again.
    request.catch(() => {
      if (this.appTokens.get(key) === request) this.appTokens.delete(key);
    });
    return request;
  }

  private async requestToken(provider: ProviderConfig, tid: string, deadline: number): Promise<AppToken> {
    const graph = provider.azuread!.graph!;
    const authority = (graph.authority ?? provider.azuread!.authority).replace(/\/+$/, '');
    const form = new URLSearchParams({
      grant_type: 'client_credentials',
      client_id: provider.clientId,
      client_secret: provider.clientSecret ?? '',
      scope: `${graph.graphUrl.replace(/\/+$/, '')}/.default`,
    });
    const started = this.now();
    const answer = (await fetchJson(
      `${authority}/${tid}/oauth2/v2.0/token`,
      this.timeout(deadline),
      {},
      form,
    ).catch((err: unknown) => {
      const status = err instanceof PgwardError ? err.detail : undefined;
      throw graphError(
        provider,
        status
          ? `Entra ID answered ${status} to pgward's client credentials for tenant ${tid}`
          : `Entra ID's token endpoint did not answer for tenant ${tid}`,
        status
          ? "check the provider's clientId and clientSecret, and that the app registration is consented in that tenant"
          : undefined,
        err,
      );
    })) as { access_token?: unknown; token_type?: unknown; expires_in?: unknown } | null;
    const expiresIn = Number(answer?.expires_in);
    if (
      typeof answer?.access_token !== 'string' ||
      String(answer.token_type).toLowerCase() !== 'bearer' ||
      !Number.isFinite(expiresIn) ||
      expiresIn <= 0
    ) {
      throw graphError(provider, "Entra ID's token answer has no bearer access token");
    }
    const lifetime = expiresIn * 1000;
    return { token: answer.access_token, until: started + lifetime - Math.min(TOKEN_RENEW_MS, lifetime / 2) };
  }
}

/** The process's one reader: wire tokens and sign-ins share its app tokens and answers. */
export const entraGraph = new EntraGraph();
