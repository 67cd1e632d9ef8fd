/**
 * Administration of the directory (seed 004): people and their identities, groups, direct
 * memberships, mappings from IdP groups/roles to groups, providers, and the two reports. Every
 * query names its columns: nothing secret lives in these tables, and nothing more leaves.
 */
import type pg from 'pg';
import { PgwardError } from '../errors.js';
import type { AccessEvent, AccessEvents } from './access_events.js';

export interface UserSummary {
  userId: string;
  email: string;
  name: string | null;
  tenant: string;
  isActive: boolean;
  isAdmin: boolean;
  createdAt: Date;
}

export interface IdentitySummary {
  identityId: string;
  provider: string;
  subject: string;
  groups: string[];
  roles: string[];
  isActive: boolean;
  isLastUsed: boolean;
  lastLoginAt: Date | null;
}

export interface GroupSummary {
  name: string;
  description: string | null;
  members: number;
}

export interface MappingSummary {
  mappingId: string;
  provider: string;
  externalGroup: string | null;
  externalRole: string | null;
  group: string;
  source: 'config' | 'api';
}

function notFound(what: string): PgwardError {
  return new PgwardError('NOT_FOUND', `${what} does not exist`);
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export class DirectoryAdmin {
  constructor(
    private readonly pool: pg.Pool,
    /** Told of every change that may take access away, so live sessions recheck at once. */
    private readonly events?: AccessEvents,
  ) {}

  private async publish(event: AccessEvent): Promise<void> {
    await this.events?.publish(event);
  }

  /**
   * Revokes a person: every token issued before now, the IdP's included, is refused from now on
   * (rounded up to the next second, since tokens say when they were issued in whole seconds).
   */
  async revokePerson(userId: string, reason: string): Promise<Date> {
    const { rows } = await this.pool.query<{ revoked_before: Date }>(
      `UPDATE pgward.user_info SET revoked_before = date_trunc('second', now()) + interval '1 second',
              updated_at = now()
        WHERE user_id = $1 RETURNING revoked_before`,
      [userId],
    );
    if (!rows[0]) throw notFound(`user ${userId}`);
    await this.publish({ kind: 'person', userId, reason });
    return rows[0].revoked_before;
  }

  async listUsers(filter: { email?: string | undefined } = {}): Promise<UserSummary[]> {
    const { rows } = await this.pool.query<UserSummary>(
      `SELECT u.user_id AS "userId", u.email, u.name, t.code AS tenant, u.is_active AS "isActive",
              u.is_admin AS "isAdmin", u.created_at AS "createdAt"
         FROM pgward.user_info u JOIN pgward.tenant t USING (tenant_id)
        WHERE $1::text IS NULL OR lower(u.email COLLATE "C") = lower($1 COLLATE "C")
        ORDER BY u.email LIMIT 1000`,
      [filter.email ?? null],
    );
    return rows;
  }

  /** A person by id or email. */
  async user(idOrEmail: string): Promise<UserSummary> {
    const { rows } = await this.pool.query<UserSummary>(
      `SELECT u.user_id AS "userId", u.email, u.name, t.code AS tenant, u.is_active AS "isActive",
              u.is_admin AS "isAdmin", u.created_at AS "createdAt"
         FROM pgward.user_info u JOIN pgward.tenant t USING (tenant_id)
        WHERE ${UUID.test(idOrEmail) ? 'u.user_id = $1::uuid' : 'lower(u.email COLLATE "C") = lower($1 COLLATE "C")'}
        ORDER BY u.created_at LIMIT 2`,
      [idOrEmail],
    );
    if (rows.length === 0) throw notFound(`user ${idOrEmail}`);
    if (rows.length > 1) {
      throw new PgwardError('CONFLICT', `several people have the email ${idOrEmail}`, {
        hint: 'use the user id',
      });
    }
    return rows[0]!;
  }

  async identities(userId: string): Promise<IdentitySummary[]> {
    const { rows } = await this.pool.query<IdentitySummary>(
      `SELECT i.user_identity_id AS "identityId", p.code AS provider, i.provider_user_id AS subject,
              i.provider_groups AS groups, i.provider_roles AS roles, i.is_active AS "isActive",
              i.is_last_used AS "isLastUsed", i.last_login_at AS "lastLoginAt"
         FROM pgward.user_identity i JOIN pgward.provider p USING (provider_id)
        WHERE i.user_id = $1 ORDER BY i.last_login_at DESC NULLS LAST`,
      [userId],
    );
    return rows;
  }

  async setUserActive(userId: string, active: boolean): Promise<void> {
    const { rowCount } = await this.pool.query(
      'UPDATE pgward.user_info SET is_active = $2, updated_at = now() WHERE user_id = $1',
      [userId, active],
    );
    if (rowCount !== 1) throw notFound(`user ${userId}`);
    await this.publish({ kind: 'person', userId, reason: active ? 'reactivated' : 'deactivated in pgward' });
  }

  async setIdentityActive(userId: string, identityId: string, active: boolean): Promise<void> {
    const { rowCount } = await this.pool.query(
      'UPDATE pgward.user_identity SET is_active = $3 WHERE user_id = $1 AND user_identity_id = $2',
      [userId, identityId, active],
    );
    if (rowCount !== 1) throw notFound(`identity ${identityId} of user ${userId}`);
    await this.publish({
      kind: 'person',
      userId,
      reason: active ? 'identity reactivated' : 'identity deactivated in pgward',
    });
  }

  async listGroups(): Promise<GroupSummary[]> {
    const { rows } = await this.pool.query<GroupSummary>(
      `SELECT g.name, g.description, (SELECT count(*)::int FROM pgward.user_group_member m WHERE m.group_id = g.group_id) AS members
         FROM pgward.user_group g ORDER BY g.name`,
    );
    return rows;
  }

  async createGroup(name: string, description: string | undefined): Promise<GroupSummary> {
    const { rows } = await this.pool.query<GroupSummary>(
      `INSERT INTO pgward.user_group (tenant_id, name, description)
       SELECT tenant_id, $1, $2 FROM pgward.tenant WHERE code = 'default'
       ON CONFLICT (tenant_id, name) DO NOTHING
       RETURNING name, description, 0 AS members`,
      [name, description ?? null],
    );
    if (!rows[0]) throw new PgwardError('CONFLICT', `group "${name}" already exists`);
    return rows[0];
  }

  async deleteGroup(name: string): Promise<void> {
    const { rowCount } = await this.pool.query('DELETE FROM pgward.user_group WHERE name = $1', [name]);
    if (rowCount === 0) throw notFound(`group "${name}"`);
    await this.publish({ kind: 'everyone', reason: `group "${name}" deleted` });
  }

  async members(group: string): Promise<UserSummary[]> {
    await this.groupId(group);
    const { rows } = await this.pool.query<UserSummary>(
      `SELECT u.user_id AS "userId", u.email, u.name, t.code AS tenant, u.is_active AS "isActive",
              u.is_admin AS "isAdmin", u.created_at AS "createdAt"
         FROM pgward.user_group_member m JOIN pgward.user_group g USING (group_id)
         JOIN pgward.user_info u ON u.user_id = m.user_id JOIN pgward.tenant t ON t.tenant_id = u.tenant_id
        WHERE g.name = $1 ORDER BY u.email`,
      [group],
    );
    return rows;
  }

  async addMember(group: string, userId: string): Promise<void> {
    const groupId = await this.groupId(group);
    await this.pool.query(
      'INSERT INTO pgward.user_group_member (group_id, user_id) VALUES ($1, $2) ON CONFLICT DO NOTHING',
      [groupId, userId],
    );
    await this.publish({ kind: 'person', userId, reason: `added to group "${group}"` });
  }

  async removeMember(group: string, userId: string): Promise<void> {
    const groupId = await this.groupId(group);
    const { rowCount } = await this.pool.query(
      'DELETE FROM pgward.user_group_member WHERE group_id = $1 AND user_id = $2',
      [groupId, userId],
    );
    if (rowCount === 0) throw notFound(`membership of ${userId} in "${group}"`);
    await this.publish({ kind: 'person', userId, reason: `removed from group "${group}"` });
  }

  private async groupId(name: string): Promise<string> {
    const { rows } = await this.pool.query<{ group_id: string }>(
      'SELECT group_id FROM pgward.user_group WHERE name = $1',
      [name],
    );
    if (!rows[0]) throw notFound(`group "${name}"`);
    return rows[0].group_id;
  }

  async listMappings(provider?: string): Promise<MappingSummary[]> {
    const { rows } = await this.pool.query<MappingSummary>(
      `SELECT m.mapping_id AS "mappingId", p.code AS provider, m.external_group AS "externalGroup",
              m.external_role AS "externalRole", g.name AS group, m.source
         FROM pgward.user_group_mapping m JOIN pgward.provider p USING (provider_id)
         JOIN pgward.user_group g USING (group_id)
        WHERE $1::text IS NULL OR p.code = $1
        ORDER BY p.code, g.name, m.external_group, m.external_role`,
      [provider ?? null],
    );
    return rows;
  }

  async createMapping(input: {
    provider: string;
    externalGroup?: string | undefined;
    externalRole?: string | undefined;
    group: string;
  }): Promise<MappingSummary> {
    if ((input.externalGroup === undefined) === (input.externalRole === undefined)) {
      throw new PgwardError('BAD_REQUEST', 'a mapping names either an external group or an external role');
    }
    const groupId = await this.groupId(input.group);
    const { rows } = await this.pool.query<{ mapping_id: string }>(
      `INSERT INTO pgward.user_group_mapping (provider_id, external_group, external_role, group_id, source)
       SELECT provider_id, $2, $3, $4, 'api' FROM pgward.provider WHERE code = $1
       ON CONFLICT DO NOTHING RETURNING mapping_id`,
      [input.provider, input.externalGroup ?? null, input.externalRole ?? null, groupId],
    );
    if (!rows[0]) {
      const known = await this.pool.query('SELECT 1 FROM pgward.provider WHERE code = $1', [input.provider]);
      if (known.rowCount === 0) throw notFound(`provider "${input.provider}"`);
      throw new PgwardError('CONFLICT', 'this mapping already exists');
    }
    await this.publish({ kind: 'everyone', reason: 'a group mapping was added' });
    return (await this.listMappings(input.provider)).find((m) => m.mappingId === rows[0]!.mapping_id)!;
  }

  async deleteMapping(mappingId: string): Promise<void> {
    const { rows } = await this.pool.query<{ source: string }>(
      'SELECT source FROM pgward.user_group_mapping WHERE mapping_id = $1',
      [mappingId],
    );
    if (!rows[0]) throw notFound(`mapping ${mappingId}`);
    if (rows[0].source === 'config') {
      throw new PgwardError('BAD_REQUEST', 'this mapping comes from the configuration file', {
        hint: 'remove it from the provider\'s "mappings" in the configuration',
      });
    }
    await this.pool.query('DELETE FROM pgward.user_group_mapping WHERE mapping_id = $1', [mappingId]);
    await this.publish({ kind: 'everyone', reason: 'a group mapping was removed' });
  }

  async providers(): Promise<
    { name: string; displayName: string; isActive: boolean; source: string; configuration: unknown }[]
  > {
    const { rows } = await this.pool.query(
      `SELECT code AS name, name AS "displayName", is_active AS "isActive", source, configuration
         FROM pgward.provider ORDER BY code`,
    );
    return rows;
  }

  /** Seed 004: per provider, total users, active users and logins in the last 30 days. */
  async providerUsage(): Promise<
    {
      provider: string;
      name: string;
      isActive: boolean;
      totalUsers: number;
      activeUsers: number;
      usersLoggedIn30d: number;
    }[]
  > {
    const { rows } = await this.pool.query(
      `SELECT provider, name, is_active AS "isActive", total_users::int AS "totalUsers",
              active_users::int AS "activeUsers", users_logged_in_30d::int AS "usersLoggedIn30d"
         FROM pgward.provider_usage ORDER BY provider`,
    );
    return rows;
  }

  /** Seed 004: identities with no login for 90 days. */
  async staleIdentities(): Promise<
    { userId: string; email: string; provider: string; subject: string; lastLoginAt: Date | null }[]
  > {
    const { rows } = await this.pool.query(
      `SELECT user_id AS "userId", email, provider, provider_user_id AS subject, last_login_at AS "lastLoginAt"
         FROM pgward.stale_identity ORDER BY last_login_at NULLS FIRST LIMIT 1000`,
    );
    return rows;
  }
}
