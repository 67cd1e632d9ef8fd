/** The caller's own view: who they are, their sign-ins (and ending them all). */
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
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
