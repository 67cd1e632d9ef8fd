/**
 * The directory (seed 004): people, their identities at each provider, and the groups that
 * decide access. Signing in creates the person just in time (seed 001: `sub` identifies the
 * identity, `email` and `name` the profile) and makes that identity the last-used one, whose
 * groups and roles decide current permissions.
 */
import type pg from 'pg';
import type { ProviderConfig } from '../config/schema.js';
import { PgwardError } from '../errors.js';
import type { VerifiedIdentity } from '../identity/token_verifier.js';
import { withTransaction } from '../store/transaction.js';
import type { AccessEvents } from './access_events.js';

/** A signed-in person and what they may do now. */
export interface Person {
  userId: string;
  email: string;
  name: string | undefined;
  provider: string;
  /** Effective pgward groups: mapped from the last-used identity, plus direct memberships. */
  groups: string[];
  isAdmin: boolean;
}

/** What the directory says about a person now: the source of truth at each use of a token. */
export interface Standing {
  /** The person with their groups and admin status as the directory decides them now. */
  person: Person;
  isActive: boolean;
  /** Tokens issued before this instant are refused (`pgward admin revoke user`). */
  revokedBefore: Date | undefined;
  /** Providers through which this person's identity is deactivated. */
  inactiveProviders: string[];
}

/** Refuses a token issued before the person's revocation, or one that does not say when. */
export function assertNotRevoked(revokedBefore: Date | undefined, issuedAt: Date | undefined): void {
  if (revokedBefore === undefined) return;
  if (issuedAt === undefined || issuedAt.getTime() < revokedBefore.getTime()) {
    throw new PgwardError('TOKEN_REVOKED', 'your sign-in was revoked; run `pgward login` again', {
      hint: 'a pgward administrator revoked the tokens issued to you until now; log in for a new one',
    });
  }
}

const DEFAULT_TENANT = 'default';

/** A provider's own group, kept under the provider's name: `okta:dba`. */
export function namespacedGroup(provider: string, group: string): string {
  return `${provider}:${group}`;
}

/**
 * The tenant of an email in multi-tenant mode (seed 001: johndoe@google.com → google): the
 * domain without its last label, so example.co.uk → example.co and mail.acme.io → mail.acme.
 */
export function tenantFromEmail(email: string): string {
  const domain = email.slice(email.lastIndexOf('@') + 1).toLowerCase();
  const labels = domain.split('.').filter((l) => l !== '');
  const name = (labels.length > 1 ? labels.slice(0, -1) : labels).join('.');
  const code = name
    .replace(/[^a-z0-9._-]/g, '-')
    .replace(/^[^a-z0-9]+/, '')
    .slice(0, 63);
  return code === '' ? DEFAULT_TENANT : code;
}

/** pgward groups mapped from an identity's IdP groups ($3) and roles ($4), plus direct memberships. */
const GROUPS_SQL = `SELECT g.name
     FROM pgward.user_group_mapping m JOIN pgward.user_group g USING (group_id)
    WHERE m.provider_id = $2 AND (m.external_group = ANY($3) OR m.external_role = ANY($4))
   UNION
   SELECT g.name
     FROM pgward.user_group_member gm JOIN pgward.user_group g USING (group_id) WHERE gm.user_id = $1`;

/** An administrator: one of the provider's admin groups or roles at the IdP, or in pgward's `admin` group. */
function isAdministrator(
  adminGroups: readonly string[],
  claimed: { groups: readonly string[]; roles: readonly string[] },
  groups: readonly string[],
): boolean {
  return (
    adminGroups.some((g) => claimed.groups.includes(g) || claimed.roles.includes(g)) ||
    groups.includes('admin')
  );
}

export class Directory {
  private providerIds = new Map<string, string>();

  constructor(
    private readonly pool: pg.Pool,
    private readonly tenancy: 'single' | 'multi' = 'single',
    /** Told when a sign-in switches a person's last-used identity, which changes their groups. */
    private readonly events?: AccessEvents,
  ) {}

  /**
   * Mirrors the configured providers into the provider table (source 'config') with their
   * group and role mappings; mappings made through the API are left alone.
   */
  async syncProviders(providers: ProviderConfig[]): Promise<void> {
    await withTransaction(this.pool, async (client) => {
      for (const p of providers) {
        const { rows } = await client.query<{ provider_id: string }>(
          `INSERT INTO pgward.provider (code, name, provider_type, configuration, source)
           VALUES ($1, $2, $4, $3, 'config')
           ON CONFLICT (code) DO UPDATE SET name = $2, provider_type = $4, configuration = $3, updated_at = now()
           RETURNING provider_id`,
          [
            p.name,
            p.displayName ?? p.name,
            { issuer: p.issuer, clientId: p.clientId, validation: p.validation },
            p.type,
          ],
        );
        const providerId = rows[0]!.provider_id;
        this.providerIds.set(p.name, providerId);
        await client.query(
          "DELETE FROM pgward.user_group_mapping WHERE provider_id = $1 AND source = 'config'",
          [providerId],
        );
        const mappings = [
          ...Object.entries(p.mappings.groups).map(([external, groups]) => ({
            external,
            groups,
            kind: 'group',
          })),
          ...Object.entries(p.mappings.roles).map(([external, groups]) => ({
            external,
            groups,
            kind: 'role',
          })),
        ];
        for (const { external, groups, kind } of mappings) {
          for (const group of groups) {
            const groupId = await this.ensureGroup(client, group);
            await client.query(
              `INSERT INTO pgward.user_group_mapping (provider_id, external_group, external_role, group_id, source)
               VALUES ($1, $2, $3, $4, 'config') ON CONFLICT DO NOTHING`,
              [providerId, kind === 'group' ? external : null, kind === 'role' ? external : null, groupId],
            );
          }
        }
      }
    });
  }

  /** The id of the default tenant's group `name`, creating it when missing. */
  private async ensureGroup(client: pg.PoolClient, name: string): Promise<string> {
    const { rows } = await client.query<{ group_id: string }>(
      `WITH created AS (
         INSERT INTO pgward.user_group (tenant_id, name)
         SELECT tenant_id, $1 FROM pgward.tenant WHERE code = 'default'
         ON CONFLICT (tenant_id, name) DO NOTHING RETURNING group_id)
       SELECT group_id FROM created
       UNION ALL
       SELECT g.group_id FROM pgward.user_group g JOIN pgward.tenant t USING (tenant_id)
        WHERE t.code = 'default' AND g.name = $1`,
      [name],
    );
    return rows[0]!.group_id;
  }

  /** The id of an active provider (configured, or added through the API). */
  private async providerId(name: string): Promise<string | undefined> {
    const known = this.providerIds.get(name);
    if (known) return known;
    const { rows } = await this.pool.query<{ provider_id: string }>(
      'SELECT provider_id FROM pgward.provider WHERE code = $1 AND is_active',
      [name],
    );
    if (rows[0]) this.providerIds.set(name, rows[0].provider_id);
    return rows[0]?.provider_id;
  }

  /** Signs a verified identity in: JIT sign-up or update, then the person's effective groups. */
  async signIn(identity: VerifiedIdentity): Promise<Person> {
    const providerId = await this.providerId(identity.provider.name);
    if (!providerId)
      throw new PgwardError('INTERNAL', `provider ${identity.provider.name} is not in the directory`);
    let switched: string | undefined;
    const person = await withTransaction(this.pool, async (client) => {
      const found = await client.query<{
        user_id: string;
        email: string;
        user_active: boolean;
        identity_active: boolean;
        revoked_before: Date | null;
      }>(
        `SELECT u.user_id, u.email, u.is_active AS user_active, i.is_active AS identity_active,
                u.revoked_before
         FROM pgward.user_identity i JOIN pgward.user_info u USING (user_id)
         WHERE i.provider_id = $1 AND i.provider_user_id = $2 FOR UPDATE`,
        [providerId, identity.subject],
      );
      let userId: string;
      let email = identity.email;
      const existing = found.rows[0];
      if (existing) {
        if (!existing.user_active) {
          throw new PgwardError('NOT_ALLOWED', `${identity.email} is deactivated in pgward`, {
            hint: 'ask a pgward administrator to reactivate you',
          });
        }
        if (!existing.identity_active) {
          throw new PgwardError(
            'NOT_ALLOWED',
            `your ${identity.provider.name} identity is deactivated in pgward`,
            {
              hint: 'sign in with another provider, or ask a pgward administrator',
            },
          );
        }
        assertNotRevoked(existing.revoked_before ?? undefined, identity.issuedAt);
        userId = existing.user_id;
        // Only an email the IdP verified renames a person: an unverified one is whatever the
        // person typed at the IdP, and would make them someone else in pgward.
        if (!identity.emailVerified) email = existing.email;
        await client.query(
          'UPDATE pgward.user_info SET email = $2, name = COALESCE($3, name), updated_at = now() WHERE user_id = $1',
          [userId, email, identity.name ?? null],
        );
      } else {
        userId = (await this.linkedPerson(client, identity)) ?? (await this.signUp(client, identity));
      }
      // This identity becomes the last-used one: its groups and roles now decide permissions.
      const previous = await client.query(
        `UPDATE pgward.user_identity SET is_last_used = false
          WHERE user_id = $1 AND is_last_used AND NOT (provider_id = $2 AND provider_user_id = $3)`,
        [userId, providerId, identity.subject],
      );
      if ((previous.rowCount ?? 0) > 0) switched = userId;
      await client.query(
        `INSERT INTO pgward.user_identity
           (user_id, provider_id, provider_user_id, provider_groups, provider_roles, provider_data, is_last_used, last_login_at)
         VALUES ($1, $2, $3, $4, $5, $6, true, now())
         ON CONFLICT (provider_id, provider_user_id) DO UPDATE SET provider_groups = $4, provider_roles = $5,
           provider_data = $6, is_last_used = true, last_login_at = now()`,
        [
          userId,
          providerId,
          identity.subject,
          identity.groups,
          identity.roles,
          { email: identity.email, name: identity.name, email_verified: identity.emailVerified },
        ],
      );
      const groups = await this.effectiveGroups(client, userId, providerId, identity);
      const isAdmin = isAdministrator(identity.provider.adminGroups, identity, groups);
      await client.query('UPDATE pgward.user_info SET is_admin = $2 WHERE user_id = $1 AND is_admin <> $2', [
        userId,
        isAdmin,
      ]);
      return {
        userId,
        email,
        name: identity.name,
        provider: identity.provider.name,
        groups,
        isAdmin,
      };
    });
    if (switched) {
      await this.events?.publish({
        kind: 'person',
        userId: switched,
        reason: `signed in with ${identity.provider.name}, whose groups now decide`,
      });
    }
    return person;
  }

  /**
   * What the directory says about a person now, read at each use of a token: active or not,
   * revoked since when, and groups and admin status from their last-used identity's IdP groups
   * and roles (as stored at their last sign-in) with the mappings and memberships of now.
   */
  async standing(
    userId: string,
    adminGroupsOf: (provider: string) => string[],
  ): Promise<Standing | undefined> {
    const { rows } = await this.pool.query<{
      email: string;
      name: string | null;
      is_active: boolean;
      revoked_before: Date | null;
      provider: string | null;
      provider_id: string | null;
      provider_groups: string[] | null;
      provider_roles: string[] | null;
      inactive: string[];
    }>(
      `SELECT u.email, u.name, u.is_active, u.revoked_before, p.code AS provider, i.provider_id,
              i.provider_groups, i.provider_roles,
              ARRAY(SELECT p2.code FROM pgward.user_identity i2 JOIN pgward.provider p2 USING (provider_id)
                     WHERE i2.user_id = u.user_id AND NOT i2.is_active) AS inactive
         FROM pgward.user_info u
         LEFT JOIN pgward.user_identity i ON i.user_id = u.user_id AND i.is_last_used
         LEFT JOIN pgward.provider p ON p.provider_id = i.provider_id
        WHERE u.user_id = $1`,
      [userId],
    );
    const row = rows[0];
    if (!row) return undefined;
    const claimed = { groups: row.provider_groups ?? [], roles: row.provider_roles ?? [] };
    const provider = row.provider ?? '';
    const { rows: named } = await this.pool.query<{ name: string }>(GROUPS_SQL, [
      userId,
      row.provider_id,
      claimed.groups,
      claimed.roles,
    ]);
    const groups = new Set(named.map((r) => r.name));
    if (row.provider) for (const g of claimed.groups) groups.add(namespacedGroup(provider, g));
    const sorted = [...groups].sort();
    return {
      person: {
        userId,
        email: row.email,
        name: row.name ?? undefined,
        provider,
        groups: sorted,
        isAdmin: isAdministrator(row.provider ? adminGroupsOf(provider) : [], claimed, sorted),
      },
      isActive: row.is_active,
      revokedBefore: row.revoked_before ?? undefined,
      inactiveProviders: row.inactive,
    };
  }

  /**
   * The existing person a new identity joins, if linking applies: this provider allows it, it
   * vouches for the email, and the person has an active identity at another provider that
   * vouched for the same email. Otherwise undefined: a different person.
   */
  private async linkedPerson(client: pg.PoolClient, identity: VerifiedIdentity): Promise<string | undefined> {
    if (!identity.provider.linkByEmail || !identity.emailVerified) return undefined;
    const { rows } = await client.query<{ user_id: string }>(
      `SELECT DISTINCT u.user_id FROM pgward.user_info u JOIN pgward.user_identity i USING (user_id)
       WHERE lower(u.email COLLATE "C") = lower($1 COLLATE "C") AND u.is_active AND i.is_active
         AND i.provider_id <> $2 AND (i.provider_data->>'email_verified')::boolean`,
      [identity.email, await this.providerId(identity.provider.name)],
    );
    // Two people with one verified email is ambiguous: link to neither.
    return rows.length === 1 ? rows[0]!.user_id : undefined;
  }

  /** Just-in-time sign-up: a new person in the default tenant, or the email's (multi-tenant). */
  private async signUp(client: pg.PoolClient, identity: VerifiedIdentity): Promise<string> {
    if (!identity.emailVerified) {
      // An unverified email may be anyone's: it never takes the address of someone already here.
      const taken = await client.query(
        'SELECT 1 FROM pgward.user_info WHERE lower(email COLLATE "C") = lower($1 COLLATE "C")',
        [identity.email],
      );
      if ((taken.rowCount ?? 0) > 0) {
        throw new PgwardError(
          'NOT_ALLOWED',
          `${identity.provider.name} has not verified the email ${identity.email}, which another person in pgward has`,
          { hint: 'verify your email at the identity provider, then sign in again' },
        );
      }
    }
    const tenant = this.tenancy === 'multi' ? tenantFromEmail(identity.email) : DEFAULT_TENANT;
    if (tenant !== DEFAULT_TENANT) {
      await client.query(
        'INSERT INTO pgward.tenant (code, name) VALUES ($1, $1) ON CONFLICT (code) DO NOTHING',
        [tenant],
      );
    }
    const created = await client.query<{ user_id: string }>(
      `INSERT INTO pgward.user_info (tenant_id, email, name)
       SELECT tenant_id, $2, $3 FROM pgward.tenant WHERE code = $1 RETURNING user_id`,
      [tenant, identity.email, identity.name ?? null],
    );
    return created.rows[0]!.user_id;
  }

  /**
   * Effective groups: pgward groups mapped from the identity's IdP groups and roles, the IdP
   * groups themselves under the provider's namespace (`okta:dba`: two providers never collide
   * by name), and direct memberships.
   */
  private async effectiveGroups(
    client: pg.PoolClient,
    userId: string,
    providerId: string,
    identity: VerifiedIdentity,
  ): Promise<string[]> {
    const { rows } = await client.query<{ name: string }>(GROUPS_SQL, [
      userId,
      providerId,
      identity.groups,
      identity.roles,
    ]);
    const groups = new Set(rows.map((r) => r.name));
    for (const g of identity.groups) groups.add(namespacedGroup(identity.provider.name, g));
    return [...groups].sort();
  }
}
