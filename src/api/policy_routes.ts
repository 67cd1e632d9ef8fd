/**
 * Policies through the API (administrators): list, read, create or replace, delete, and try a
 * document on statements. A document is validated with the same schema as the configuration's;
 * problems come back each at its field's path (`errors`), for editors that mark them in place.
 */
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { PgwardError } from '../errors.js';
import { checkStatements } from '../policy/policy_check.js';
import { MAX_POLICY_BYTES } from '../policy/policy_document.js';
import type { ApiContext } from './http_server.js';
import { caller, requestGuards } from './request_auth.js';

const policyName = z
  .string()
  .regex(/^[a-z0-9][a-z0-9_.-]{0,62}$/, 'expected a lowercase name: a-z, 0-9, _ . - (at most 63)');
const policyItem = z.object({
  name: z.string(),
  source: z.enum(['config', 'api']),
  document: z.record(z.string(), z.unknown()),
  updatedAt: z.date().nullable(),
  updatedBy: z.string().nullable(),
});
/** The document as sent; its fields are checked by the policy schema, with paths. */
const documentBody = z.record(z.string(), z.unknown());
const MAX_TEST_SQL = 256 * 1024;

export function policyRoutes(ctx: ApiContext): FastifyPluginAsyncZod {
  return async (app) => {
    const { adminOnly } = requestGuards(ctx.auth);

    app.get(
      '/policies',
      {
        preHandler: adminOnly,
        schema: {
          summary: 'Every policy: those of the configuration file and those added through the API',
          tags: ['policies'],
          response: { 200: z.array(policyItem) },
        },
      },
      async () => ctx.policies.list(),
    );

    app.get(
      '/policies/:name',
      {
        preHandler: adminOnly,
        schema: { tags: ['policies'], params: z.object({ name: policyName }), response: { 200: policyItem } },
      },
      async (req) => ctx.policies.get(req.params.name),
    );

    app.put(
      '/policies/:name',
      {
        preHandler: adminOnly,
        bodyLimit: MAX_POLICY_BYTES,
        schema: {
          summary:
            'Create or replace a policy (it takes precedence over a configured one of the same name); every gateway applies it within seconds',
          tags: ['policies'],
          params: z.object({ name: policyName }),
          body: documentBody,
          response: { 200: policyItem },
        },
      },
      async (req) => {
        const body = req.body;
        if (body['name'] !== undefined && body['name'] !== req.params.name) {
          throw new PgwardError(
            'BAD_REQUEST',
            `the document names the policy "${String(body['name'])}", the URL "${req.params.name}"`,
          );
        }
        return ctx.policies.put({ ...body, name: req.params.name }, caller(req).person.email);
      },
    );

    app.delete(
      '/policies/:name',
      {
        preHandler: adminOnly,
        schema: { tags: ['policies'], params: z.object({ name: policyName }), response: { 204: z.null() } },
      },
      async (req, reply) => {
        await ctx.policies.remove(req.params.name, caller(req).person.email);
        return reply.status(204).send(null);
      },
    );

    app.post(
      '/policies/test',
      {
        preHandler: adminOnly,
        bodyLimit: MAX_POLICY_BYTES + MAX_TEST_SQL + 4096,
        schema: {
          summary:
            'Judge statements under a document (not saved) or the stored policies, as `pgward policy test` does',
          tags: ['policies'],
          body: z.object({
            document: documentBody.optional(),
            statements: z.string().max(MAX_TEST_SQL),
            groups: z.array(z.string().min(1).max(200)).max(200).optional(),
          }),
        },
      },
      async (req) => {
        const { document, statements, groups } = req.body;
        const documents = document
          ? [await ctx.policies.check(document)]
          : ctx.policies.list().map((i) => i.document);
        return checkStatements(documents, statements, groups);
      },
    );
  };
}
