/**
 * The REST resources: connections and their access, groups, memberships and mappings,
 * providers, people and their identities, the audit trail and the seed 004 reports.
 * Administrators manage everything; anyone else sees only the connections their groups may use
 * and their own sessions. A connection's credential is write-only: no response carries it.
 */
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import type { AuditFilter } from '../audit/audit_queries.js';
import { internalGroupName } from '../config/schema.js';
import { PgwardError } from '../errors.js';
import { checkConnection } from '../upstream/connection_check.js';
import { type Connection, SSL_MODES } from '../vault/connections.js';
import type { ApiContext } from './http_server.js';
import { loginSessionSchema } from './me_routes.js';
import { caller, requestGuards } from './request_auth.js';

const connectionName = z
  .string()
  .regex(/^[a-z0-9][a-z0-9_.-]{0,62}$/, 'expected a lowercase name (a-z, 0-9, _ . -)');
const dbRole = z.string().min(1).max(63);
/** A group in an access map: a pgward group, or a provider's own group (`okta:dba`). */
const accessGroup = z.string().min(1).max(264);
const accessMap = z.record(accessGroup, z.array(dbRole).min(1).max(64));

/** A connection's fields; without defaults, so that a PATCH leaves out what it does not change. */
const connectionFields = z.object({
  host: z.string().min(1).max(255),
  port: z.coerce.number().int().min(1).max(65535),
  database: z.string().min(1).max(63),
  sslmode: z.enum(SSL_MODES),
  sslCa: z.string().min(1).max(100_000).optional(),
  roleMode: z.enum(['provision', 'shared']),
  /**
   * UNSAFE: send the vaulted password in cleartext or md5 over TLS pgward did not verify (or
   * none), where whoever answers at the address gets it. Off by default; SCRAM is always allowed.
   */
  allowUnverifiedPasswordAuth: z
    .boolean()
    .optional()
    .describe(
      'UNSAFE: send the password in cleartext or md5 over TLS pgward did not verify; whoever answers at the address gets it',
    ),
  /** Write-only. Required again when host, port or database change, or TLS gets weaker. */
  credential: z.object({ user: z.string().min(1).max(63), password: z.string().min(1).max(1024) }).optional(),
  access: accessMap.optional(),
});

const newConnection = connectionFields.extend({
  name: connectionName,
  port: connectionFields.shape.port.default(5432),
  sslmode: connectionFields.shape.sslmode.default('prefer'),
  roleMode: connectionFields.shape.roleMode.default('provision'),
});

const connectionOutput = z.object({
  name: z.string(),
  host: z.string(),
  port: z.number(),
  database: z.string(),
  sslmode: z.string(),
  roleMode: z.string(),
  /** UNSAFE when true (see the connection fields). */
  allowUnverifiedPasswordAuth: z.boolean().describe('UNSAFE when true'),
  hasCredential: z.literal(true),
  access: z.record(z.string(), z.array(z.string())),
});

const connectionCheck = z.object({
  connection: z.string(),
  /** No check failed. */
  ok: z.boolean(),
  checks: z.array(
    z.object({
      check: z.string(),
      status: z.enum(['ok', 'warn', 'fail']),
      detail: z.string(),
      action: z.string().optional(),
    }),
  ),
});

/** What someone who may use a connection (but not administer it) sees. */
const usableConnection = z.object({
  name: z.string(),
  database: z.string(),
  roles: z.array(z.string()),
});

function showConnection(c: Connection): z.infer<typeof connectionOutput> {
  return {
    name: c.name,
    host: c.host,
    port: c.port,
    database: c.database,
    sslmode: c.sslmode,
    roleMode: c.roleMode,
    allowUnverifiedPasswordAuth: c.allowUnverifiedPasswordAuth,
    hasCredential: true,
    access: Object.fromEntries(c.access),
  };
}

const userSchema = z.object({
  userId: z.string(),
  email: z.string(),
  name: z.string().nullable(),
  tenant: z.string(),
  isActive: z.boolean(),
  isAdmin: z.boolean(),
  createdAt: z.date(),
});

const auditQuery = z.object({
  user: z.string().max(320).optional(),
  connection: connectionName.optional(),
  session: z.uuid().optional(),
  since: z.coerce.date().optional(),
  until: z.coerce.date().optional(),
  text: z.string().min(1).max(1000).optional(),
  /** What policies made of the statement (statements only). */
  decision: z.enum(['allowed', 'refused', 'observed']).optional(),
  limit: z.coerce.number().int().min(1).max(1000).default(100),
});

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export function adminRoutes(ctx: ApiContext): FastifyPluginAsyncZod {
  return async (app) => {
    const { signedIn, adminOnly } = requestGuards(ctx.auth);
    // Changes to who belongs where publish access events (directory admin, sign-ins, and the
    // connection routes below): every gateway's caches and live sessions hear of them at once.
    const everyone = (reason: string) => ctx.events.publish({ kind: 'everyone', reason });
    /**
     * The database side of a deactivation or revocation: the person's login roles lose LOGIN in
     * every target (their next sign-in gives it back). A target that cannot be reached does not
     * fail the request: the role's short VALID UNTIL runs out there anyway.
     */
    const disableLogins = (userId: string) => {
      ctx.loginRoles
        .disablePerson(userId)
        .catch((err: unknown) =>
          ctx.log.warn({ err: (err as Error).message, userId }, 'could not take LOGIN away in every target'),
        );
    };

    // ---- connections ---------------------------------------------------------------------------

    app.get(
      '/connections',
      {
        preHandler: signedIn,
        schema: {
          summary: 'Connections: all of them for administrators, else the ones your groups may use',
          tags: ['connections'],
          response: { 200: z.array(z.union([connectionOutput, usableConnection])) },
        },
      },
      async (req) => {
        const { person } = caller(req);
        const all = await ctx.connections.list();
        if (person.isAdmin) return all.map(showConnection);
        return all.flatMap((c) => {
          const roles = [...new Set(person.groups.flatMap((g) => c.access.get(g) ?? []))].sort();
          return roles.length > 0 ? [{ name: c.name, database: c.database, roles }] : [];
        });
      },
    );

    app.get(
      '/connections/:name',
      {
        preHandler: adminOnly,
        schema: {
          tags: ['connections'],
          params: z.object({ name: connectionName }),
          response: { 200: connectionOutput },
        },
      },
      async (req) => showConnection(await findConnection(req.params.name)),
    );

    async function findConnection(name: string): Promise<Connection> {
      const connection = await ctx.connections.find(name);
      if (!connection) throw new PgwardError('NOT_FOUND', `connection "${name}" does not exist`);
      return connection;
    }

    /** Applies a partial change: what it leaves out keeps its value, the credential included. */
    async function updateConnection(name: string, patch: Partial<z.infer<typeof connectionFields>>) {
      const current = await findConnection(name);
      const sslCa = patch.sslCa ?? current.sslCa;
      return ctx.connections.put({
        name: current.name,
        host: patch.host ?? current.host,
        port: patch.port ?? current.port,
        database: patch.database ?? current.database,
        sslmode: patch.sslmode ?? current.sslmode,
        ...(sslCa ? { sslCa } : {}),
        roleMode: patch.roleMode ?? current.roleMode,
        allowUnverifiedPasswordAuth: patch.allowUnverifiedPasswordAuth ?? current.allowUnverifiedPasswordAuth,
        ...(patch.credential ? { credential: patch.credential } : {}),
        access: patch.access ?? Object.fromEntries(current.access),
      });
    }

    app.post(
      '/connections',
      {
        preHandler: adminOnly,
        schema: {
          summary: 'Create a connection (the credential is required, and never returned)',
          tags: ['connections'],
          body: newConnection,
          response: { 201: connectionOutput },
        },
      },
      async (req, reply) => {
        if (await ctx.connections.find(req.body.name)) {
          throw new PgwardError('CONFLICT', `connection "${req.body.name}" already exists`, {
            hint: 'update it with PUT /api/v1/connections/NAME',
          });
        }
        if (!req.body.credential) throw new PgwardError('BAD_REQUEST', 'a new connection needs a credential');
        reply.status(201);
        return showConnection(await ctx.connections.put(req.body));
      },
    );

    app.patch(
      '/connections/:name',
      {
        preHandler: adminOnly,
        schema: {
          summary: 'Change a connection; fields left out keep their value (the credential too)',
          tags: ['connections'],
          params: z.object({ name: connectionName }),
          body: connectionFields.partial(),
          response: { 200: connectionOutput },
        },
      },
      async (req) => {
        const updated = showConnection(await updateConnection(req.params.name, req.body));
        await everyone(`connection "${req.params.name}" changed`);
        return updated;
      },
    );

    app.post(
      '/connections/:name/check',
      {
        preHandler: adminOnly,
        schema: {
          summary: 'Check what pgward can verify about a connection with its credential (ok, warn, fail)',
          tags: ['connections'],
          params: z.object({ name: connectionName }),
          response: { 200: connectionCheck },
        },
      },
      async (req) => {
        const connection = await findConnection(req.params.name);
        const checks = await checkConnection(
          ctx.connections,
          connection,
          ctx.config.pg.upstreamTimeoutSeconds * 1000,
        );
        return { connection: connection.name, ok: !checks.some((c) => c.status === 'fail'), checks };
      },
    );

    app.put(
      '/connections/:name/access',
      {
        preHandler: adminOnly,
        schema: {
          summary: 'Replace who may use a connection: group → database roles',
          tags: ['connections'],
          params: z.object({ name: connectionName }),
          body: accessMap,
          response: { 200: connectionOutput },
        },
      },
      async (req) => {
        const updated = showConnection(await updateConnection(req.params.name, { access: req.body }));
        await everyone(`the access map of connection "${req.params.name}" changed`);
        return updated;
      },
    );

    app.delete(
      '/connections/:name',
      {
        preHandler: adminOnly,
        schema: {
          tags: ['connections'],
          params: z.object({ name: connectionName }),
          response: { 204: z.null() },
        },
      },
      async (req, reply) => {
        if (!(await ctx.connections.remove(req.params.name))) {
          throw new PgwardError('NOT_FOUND', `connection "${req.params.name}" does not exist`);
        }
        await everyone(`connection "${req.params.name}" deleted`);
        return reply.status(204).send(null);
      },
    );

    // ---- groups, memberships, mappings ---------------------------------------------------------

    const groupSchema = z.object({
      name: z.string(),
      description: z.string().nullable(),
      members: z.number(),
    });

    app.get(
      '/groups',
      { preHandler: adminOnly, schema: { tags: ['groups'], response: { 200: z.array(groupSchema) } } },
      async () => ctx.directory.listGroups(),
    );
    app.post(
      '/groups',
      {
        preHandler: adminOnly,
        schema: {
          tags: ['groups'],
          body: z.object({ name: internalGroupName, description: z.string().max(1000).optional() }),
          response: { 201: groupSchema },
        },
      },
      async (req, reply) => {
        reply.status(201);
        return ctx.directory.createGroup(req.body.name, req.body.description);
      },
    );
    app.delete(
      '/groups/:name',
      {
        preHandler: adminOnly,
        schema: {
          tags: ['groups'],
          params: z.object({ name: internalGroupName }),
          response: { 204: z.null() },
        },
      },
      async (req, reply) => {
        await ctx.directory.deleteGroup(req.params.name);
        return reply.status(204).send(null);
      },
    );
    app.get(
      '/groups/:name/members',
      {
        preHandler: adminOnly,
        schema: {
          tags: ['groups'],
          params: z.object({ name: internalGroupName }),
          response: { 200: z.array(userSchema) },
        },
      },
      async (req) => ctx.directory.members(req.params.name),
    );
    const memberParams = z.object({ name: internalGroupName, user: z.string().min(1).max(320) });
    app.put(
      '/groups/:name/members/:user',
      {
        preHandler: adminOnly,
        schema: {
          summary: 'Add a direct member (user id or email)',
          tags: ['groups'],
          params: memberParams,
          response: { 204: z.null() },
        },
      },
      async (req, reply) => {
        const user = await ctx.directory.user(req.params.user);
        await ctx.directory.addMember(req.params.name, user.userId);
        return reply.status(204).send(null);
      },
    );
    app.delete(
      '/groups/:name/members/:user',
      {
        preHandler: adminOnly,
        schema: { tags: ['groups'], params: memberParams, response: { 204: z.null() } },
      },
      async (req, reply) => {
        const user = await ctx.directory.user(req.params.user);
        await ctx.directory.removeMember(req.params.name, user.userId);
        return reply.status(204).send(null);
      },
    );

    const mappingSchema = z.object({
      mappingId: z.string(),
      provider: z.string(),
      externalGroup: z.string().nullable(),
      externalRole: z.string().nullable(),
      group: z.string(),
      source: z.string(),
    });
    app.get(
      '/mappings',
      {
        preHandler: adminOnly,
        schema: {
          summary: 'Mappings from IdP groups and roles to pgward groups',
          tags: ['groups'],
          querystring: z.object({ provider: z.string().max(63).optional() }),
          response: { 200: z.array(mappingSchema) },
        },
      },
      async (req) => ctx.directory.listMappings(req.query.provider),
    );
    app.post(
      '/mappings',
      {
        preHandler: adminOnly,
        schema: {
          tags: ['groups'],
          body: z.object({
            provider: z.string().min(1).max(63),
            externalGroup: z.string().min(1).max(200).optional(),
            externalRole: z.string().min(1).max(200).optional(),
            group: internalGroupName,
          }),
          response: { 201: mappingSchema },
        },
      },
      async (req, reply) => {
        reply.status(201);
        return ctx.directory.createMapping(req.body);
      },
    );
    app.delete(
      '/mappings/:id',
      {
        preHandler: adminOnly,
        schema: { tags: ['groups'], params: z.object({ id: z.uuid() }), response: { 204: z.null() } },
      },
      async (req, reply) => {
        await ctx.directory.deleteMapping(req.params.id);
        return reply.status(204).send(null);
      },
    );

    app.get(
      '/providers',
      {
        preHandler: adminOnly,
        schema: {
          tags: ['providers'],
          response: {
            200: z.array(
              z.object({
                name: z.string(),
                displayName: z.string(),
                isActive: z.boolean(),
                source: z.string(),
                configuration: z.object({
                  issuer: z.string().optional(),
                  clientId: z.string().optional(),
                  validation: z.string().optional(),
                }),
              }),
            ),
          },
        },
      },
      async () => ctx.directory.providers() as never,
    );
    app.post(
      '/providers',
      {
        preHandler: adminOnly,
        schema: {
          summary: 'Add an OpenID Connect provider at run time (same settings as a configured one)',
          description:
            'Validated like the configuration file; clientSecret is sealed in the store and never returned.',
          tags: ['providers'],
          body: z.looseObject({
            name: z.string(),
            // A preset (google, azuread, cognito, jumpcloud) derives it.
            issuer: z.string().optional(),
            clientId: z.string(),
            clientSecret: z.string().optional(),
          }),
          response: { 201: z.object({ name: z.string(), issuer: z.string() }) },
        },
      },
      async (req, reply) => {
        const provider = await ctx.providers.create(req.body as never);
        reply.status(201);
        return { name: provider.name, issuer: provider.issuer };
      },
    );
    app.patch(
      '/providers/:name',
      {
        preHandler: adminOnly,
        schema: {
          summary:
            'Activate or deactivate a provider added through the API (its tokens are refused while inactive)',
          tags: ['providers'],
          params: z.object({ name: z.string().max(63) }),
          body: z.object({ isActive: z.boolean() }),
          response: { 204: z.null() },
        },
      },
      async (req, reply) => {
        await ctx.providers.setActive(req.params.name, req.body.isActive);
        if (!req.body.isActive) await everyone(`provider "${req.params.name}" deactivated`);
        return reply.status(204).send(null);
      },
    );

    app.delete(
      '/providers/:name',
      {
        preHandler: adminOnly,
        schema: {
          summary:
            'Delete a provider added through the API that nobody has signed in with (409 otherwise: deactivate it)',
          tags: ['providers'],
          params: z.object({ name: z.string().max(63) }),
          response: { 204: z.null() },
        },
      },
      async (req, reply) => {
        await ctx.providers.remove(req.params.name);
        await everyone(`provider "${req.params.name}" deleted`);
        return reply.status(204).send(null);
      },
    );

    // ---- people ------------------------------------------------------------------------------

    app.get(
      '/users',
      {
        preHandler: adminOnly,
        schema: {
          tags: ['users'],
          querystring: z.object({ email: z.string().max(320).optional() }),
          response: { 200: z.array(userSchema) },
        },
      },
      async (req) => ctx.directory.listUsers({ email: req.query.email }),
    );

    const identitySchema = z.object({
      identityId: z.string(),
      provider: z.string(),
      subject: z.string(),
      groups: z.array(z.string()),
      roles: z.array(z.string()),
      isActive: z.boolean(),
      isLastUsed: z.boolean(),
      lastLoginAt: z.date().nullable(),
    });
    const userParams = z.object({ user: z.string().min(1).max(320) });
    app.get(
      '/users/:user',
      {
        preHandler: adminOnly,
        schema: {
          summary: 'A person (by id or email) with their identities and sign-ins',
          tags: ['users'],
          params: userParams,
          response: {
            200: userSchema.extend({
              identities: z.array(identitySchema),
              logins: z.array(loginSessionSchema),
            }),
          },
        },
      },
      async (req) => {
        const user = await ctx.directory.user(req.params.user);
        return {
          ...user,
          identities: await ctx.directory.identities(user.userId),
          logins: await ctx.sessions.listFor(user.userId),
        };
      },
    );
    app.patch(
      '/users/:user',
      {
        preHandler: adminOnly,
        schema: {
          summary: 'Activate or deactivate a person (deactivation also ends their sign-ins)',
          tags: ['users'],
          params: userParams,
          body: z.object({ isActive: z.boolean() }),
          response: { 200: userSchema },
        },
      },
      async (req) => {
        const user = await ctx.directory.user(req.params.user);
        if (!req.body.isActive && user.userId === caller(req).person.userId) {
          throw new PgwardError('BAD_REQUEST', 'you cannot deactivate yourself');
        }
        await ctx.directory.setUserActive(user.userId, req.body.isActive);
        if (!req.body.isActive) {
          await ctx.sessions.revokeAllOf(user.userId, 'deactivated');
          disableLogins(user.userId);
        }
        return ctx.directory.user(user.userId);
      },
    );
    app.patch(
      '/users/:user/identities/:identity',
      {
        preHandler: adminOnly,
        schema: {
          tags: ['users'],
          params: userParams.extend({ identity: z.uuid() }),
          body: z.object({ isActive: z.boolean() }),
          response: { 200: z.array(identitySchema) },
        },
      },
      async (req) => {
        const user = await ctx.directory.user(req.params.user);
        await ctx.directory.setIdentityActive(user.userId, req.params.identity, req.body.isActive);
        return ctx.directory.identities(user.userId);
      },
    );
    app.post(
      '/users/:user/revoke',
      {
        preHandler: adminOnly,
        schema: {
          summary:
            "Revoke a person: every token issued before now (pgward's and the IdP's) stops working, and their sessions end",
          tags: ['users'],
          params: userParams,
          response: { 200: z.object({ revoked: z.number() }) },
        },
      },
      async (req) => {
        const user = await ctx.directory.user(req.params.user);
        const reason = `revoked by ${caller(req).person.email}`;
        // Every token issued until now is refused, the IdP's too; then the sign-ins end.
        await ctx.directory.revokePerson(user.userId, reason);
        const revoked = await ctx.sessions.revokeAllOf(user.userId, reason);
        disableLogins(user.userId);
        return { revoked };
      },
    );

    // ---- audit -------------------------------------------------------------------------------

    /** Non-administrators are held to their own records, whatever filter they ask for. */
    async function auditFilter(req: { query: z.infer<typeof auditQuery> } & Parameters<typeof caller>[0]) {
      const { person } = caller(req);
      const q = req.query;
      const filter: AuditFilter = {
        connection: q.connection,
        sessionId: q.session,
        since: q.since,
        until: q.until,
        text: q.text,
        decision: q.decision,
        limit: q.limit,
      };
      if (!person.isAdmin) {
        if (q.user !== undefined && q.user !== person.userId && q.user.toLowerCase() !== person.email) {
          throw new PgwardError('NOT_ALLOWED', 'you may read only your own sessions');
        }
        return { ...filter, userId: person.userId };
      }
      if (q.user === undefined) return filter;
      return UUID.test(q.user) ? { ...filter, userId: q.user } : { ...filter, email: q.user };
    }

    app.get(
      '/sessions',
      {
        preHandler: signedIn,
        schema: {
          summary: 'Audited sessions, newest first (yours only unless you are an administrator)',
          tags: ['audit'],
          querystring: auditQuery.omit({ text: true, decision: true }),
        },
      },
      async (req) => ctx.audit.sessions(await auditFilter(req as never)),
    );
    app.get(
      '/statements',
      {
        preHandler: signedIn,
        schema: {
          summary:
            'Audited statements, newest first; `text` matches a substring, `decision` what policies made of them',
          tags: ['audit'],
          querystring: auditQuery,
        },
      },
      async (req) => ctx.audit.statements(await auditFilter(req)),
    );

    // ---- reports (seed 004) ----------------------------------------------------------------

    app.get(
      '/reports/provider-usage',
      {
        preHandler: adminOnly,
        schema: { summary: 'Users, active users and logins (30 days) per provider', tags: ['reports'] },
      },
      async () => ctx.directory.providerUsage(),
    );
    app.get(
      '/reports/stale-identities',
      {
        preHandler: adminOnly,
        schema: { summary: 'Identities with no login for 90 days', tags: ['reports'] },
      },
      async () => ctx.directory.staleIdentities(),
    );
  };
}
