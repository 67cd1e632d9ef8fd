/**
 * What the login-role tests share: the dev stack with a role sync at every connect, a superuser
 * client on the target cluster, the demo connection, more connections to the same target, and
 * queries on what pgward made there (memberships, attributes, comments, person ids).
 */
import pg from 'pg';
import type { Connection, ConnectionInput } from '../../src/vault/connections.js';
import { startTestStack, type TestStack } from './dev_stack.js';

/** A login role as the target's catalog shows it. */
export interface RoleRow {
  rolcanlogin: boolean;
  rolvaliduntil: Date;
  rolconnlimit: number;
  /** Its comment (pgward's mark). */
  note: string;
  /** How many stored settings it has, over all databases. */
  settings: number;
}

export interface LoginRoleStack {
  t: TestStack;
  /** A superuser client on the target cluster (not through pgward). */
  superuser: pg.Client;
  /** The dev stack's demo connection. */
  demo: Connection;
  /**
   * Adds (or replaces) a connection to the demo target: demo's address and sslmode and the
   * target's admin credential, unless `fields` says otherwise.
   */
  addConnection(fields: Partial<ConnectionInput> & Pick<ConnectionInput, 'name'>): Promise<Connection>;
  /** The roles `role` is a member of, sorted. */
  memberships(role: string): Promise<string[]>;
  role(name: string): Promise<RoleRow>;
  /** The comment on a role, if it exists. */
  comment(role: string): Promise<string | undefined>;
  /** A person's id in the directory. */
  userId(email: string): Promise<string>;
  close(): Promise<void>;
}

export async function startLoginRoleStack(env: Record<string, string> = {}): Promise<LoginRoleStack> {
  const t = await startTestStack({ PGWARD_PG_ROLE_SYNC_SECONDS: '0', ...env });
  const superuser = new pg.Client({ connectionString: t.stack.info.target });
  try {
    await superuser.connect();
  } catch (err) {
    await t.close();
    throw err;
  }
  const demo = (await t.stack.gateway.connections.find('demo'))!;
  return {
    t,
    superuser,
    demo,
    addConnection: (fields) =>
      t.stack.gateway.connections.put({
        host: demo.host,
        port: demo.port,
        database: demo.database,
        sslmode: demo.sslmode,
        credential: t.stack.target.admin,
        ...fields,
      }),
    memberships: async (role) =>
      (
        await superuser.query(
          `select g.rolname from pg_auth_members m join pg_roles g on g.oid = m.roleid
             join pg_roles u on u.oid = m.member where u.rolname = $1 order by 1`,
          [role],
        )
      ).rows.map((row) => row.rolname as string),
    role: async (name) =>
      (
        await superuser.query(
          `select rolcanlogin, rolvaliduntil, rolconnlimit, shobj_description(oid, 'pg_authid') as note,
                  (select count(*)::int from pg_db_role_setting where setrole = r.oid) as settings
             from pg_roles r where rolname = $1`,
          [name],
        )
      ).rows[0] as RoleRow,
    comment: async (role) =>
      (
        await superuser.query(
          `select shobj_description(oid, 'pg_authid') as note from pg_roles where rolname = $1`,
          [role],
        )
      ).rows[0]?.note as string | undefined,
    userId: async (email) =>
      (
        await t
          .store()
          .query<{ user_id: string }>('select user_id from pgward.user_info where lower(email) = $1', [
            email.toLowerCase(),
          ])
      ).rows[0]!.user_id,
    close: async () => {
      await superuser.end().catch(() => undefined);
      await t.close();
    },
  };
}
