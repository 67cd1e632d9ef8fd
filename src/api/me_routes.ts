/**
 * The caller's own view: who they are, the connections they may use, their sign-ins (and ending
 * them all), and the gateway's version.
 */
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { PACKAGE_VERSION } from '../package_version.js';
import { personSchema } from './auth_routes.js';
import type { ApiContext } from './http_server.js';
import { caller, requestGuards } from './request_auth.js';

export const loginSessionSchema = z.object({
  id: z.string(),
  userId: z.string(),
  provider: z.string(),
  client: z.string(),
  createdAt: z.date(),
  refreshedAt: z.date(),
  expiresAt: z.date(),
  revokedAt: z.date().optional(),
});

/** A connection the caller may use, with the database roles their groups give them there. */
export const myConnectionSchema = z.object({
  name: z.string(),
  description: z.string().optional(),
  roles: z.array(z.string()),
  /** Policies that apply to the caller there (filled in by the policy layer; absent until then). */
  policies: z
    .array(z.object({ name: z.string(), mode: z.enum(['enforce', 'observe']), readOnly: z.boolean() }))
    .optional(),
});

export function meRoutes(ctx: ApiContext): FastifyPluginAsyncZod {
  return async (app) => {
    const { signedIn } = requestGuards(ctx.auth);

    app.get(
      '/whoami',
      {
        preHandler: signedIn,
        schema: {
          summary: 'Who the token belongs to, and what they may do now',
          tags: ['me'],
          response: {
            200: personSchema.extend({
              tokenExpiresAt: z.date(),
              signIn: z.string().optional(),
            }),
          },
        },
      },
      async (req) => {
        const me = caller(req);
        return {
          ...me.person,
          tokenExpiresAt: me.expiresAt,
          ...(me.signInId ? { signIn: me.signInId } : {}),
        };
      },
    );

    app.get(
      '/me/connections',
      {
        preHandler: signedIn,
        schema: {
          summary: 'The connections you may use, with the database roles your groups give you there',
          tags: ['me'],
          response: { 200: z.array(myConnectionSchema) },
        },
      },
      async (req) => {
        const { person } = caller(req);
        // Administrators too see only what their groups give them: administering is not using.
        return (await ctx.connections.list()).flatMap((c) => {
          const roles = [...new Set(person.groups.flatMap((g) => c.access.get(g) ?? []))].sort();
          if (roles.length === 0) return [];
          // The policies that apply to the caller there, as the relay would choose them.
          const policies = ctx.policies.setFor(c.name, person.groups).policies.map((p) => ({
            name: p.name,
            mode: p.mode,
            readOnly: p.readOnly !== undefined,
          }));
          return [{ name: c.name, roles, policies }];
        });
      },
    );

    app.get(
      '/version',
      {
        preHandler: signedIn,
        schema: {
          summary: "The gateway's version (signed-in callers only: anonymous callers learn nothing)",
          tags: ['me'],
          response: { 200: z.object({ version: z.string() }) },
        },
      },
      async () => ({ version: PACKAGE_VERSION }),
    );

    app.get(
      '/me/logins',
      {
        preHandler: signedIn,
        schema: {
          summary: 'Your sign-ins to pgward',
          tags: ['me'],
          response: { 200: z.array(loginSessionSchema) },
        },
      },
      async (req) => ctx.sessions.listFor(caller(req).person.userId),
    );

    app.delete(
      '/me/logins',
      {
        preHandler: signedIn,
        schema: {
          summary: 'End all your sign-ins: every pgward token you hold stops working',
          tags: ['me'],
          response: { 200: z.object({ revoked: z.number() }) },
        },
      },
      async (req) => ({
        revoked: await ctx.sessions.revokeAllOf(caller(req).person.userId, 'signed out everywhere'),
      }),
    );
  };
}
