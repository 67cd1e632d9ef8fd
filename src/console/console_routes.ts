/**
 * The web console's HTTP side: the page and its assets at `/`, and the console API under
 * /api/v1/console (console sessions through the gateway's own PostgreSQL endpoint, export,
 * saved queries, live sessions). Everything state-changing is a POST/PUT/DELETE, so the
 * server's same-origin guard applies to the cookie; the token itself never reaches JavaScript.
 */
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import type pg from 'pg';
import { z } from 'zod';
import type { ApiContext } from '../api/http_server.js';
import { caller, presentedToken, requestGuards } from '../api/request_auth.js';
import { PgwardError } from '../errors.js';
import { ConsoleAssets, contentSecurityPolicy } from './console_assets.js';
import { type EndpointConnector, MAX_TIMEOUT_SECONDS, QueryBridge, sqlError } from './query_bridge.js';
import { exportResult } from './result_export.js';

/** What the console needs from the gateway beyond the API's context. */
export interface ConsoleHooks {
  /** An in-process connection to the gateway's PostgreSQL endpoint, for a browser's address. */
  connect: EndpointConnector;
  /** The store (saved queries). */
  store: pg.Pool;
  /** Sessions live on this gateway now. */
  liveSessions: () => { sessionId: string; userId: string | undefined }[];
  /** Ends a live session with 57P01 and `reason`; false when it is not here. */
  endSession: (sessionId: string, reason: string) => Promise<boolean>;
}

const MAX_SQL = 1024 * 1024;
const connectionName = z.string().regex(/^[a-z0-9][a-z0-9_-]{0,62}$/, 'expected a connection name');
const sessionParams = z.object({ id: z.uuid() });
const timeoutSeconds = z.coerce.number().int().min(0).max(MAX_TIMEOUT_SECONDS).default(300);
const pageRows = z.coerce.number().int().min(1).max(5_000).default(1_000);

function securityHeaders(reply: FastifyReply, nonce: string): void {
  reply.header('content-security-policy', contentSecurityPolicy(nonce));
  reply.header('x-content-type-options', 'nosniff');
  reply.header('referrer-policy', 'same-origin');
  reply.header('x-frame-options', 'DENY');
}

/** The console page and assets (outside /api). */
export function consolePages(assets = new ConsoleAssets()): FastifyPluginAsyncZod {
  return async (app) => {
    app.get('/', { schema: { hide: true } }, async (_req, reply) => {
      const { html, nonce } = assets.page();
      securityHeaders(reply, nonce);
      reply.header('cache-control', 'no-store');
      reply.type('text/html; charset=utf-8');
      return html;
    });
    app.get(
      '/assets/:file',
      { schema: { hide: true, params: z.object({ file: z.string().regex(/^[\w.-]{1,100}$/) }) } },
      async (req, reply) => {
        const asset = assets.assets.get(req.params.file);
        if (!asset) throw new PgwardError('NOT_FOUND', 'no such asset');
        const encoding = ConsoleAssets.encoding(req.headers['accept-encoding']);
        reply.header('cache-control', 'public, max-age=31536000, immutable');
        reply.header('x-content-type-options', 'nosniff');
        reply.header('vary', 'accept-encoding');
        reply.type(asset.type);
        if (encoding) reply.header('content-encoding', encoding);
        return reply.send(encoding ? asset[encoding] : asset.raw);
      },
    );
  };
}

/** The console API, under /api/v1. */
export function consoleRoutes(ctx: ApiContext, hooks: ConsoleHooks): FastifyPluginAsyncZod {
  return async (app) => {
    const { signedIn, adminOnly } = requestGuards(ctx.auth);
    const bridge = new QueryBridge(hooks.connect);
    app.addHook('onClose', async () => bridge.shutdown());
    // The export is a form POST (the browser streams the download to disk).
    app.addContentTypeParser(
      'application/x-www-form-urlencoded',
      { parseAs: 'string', bodyLimit: MAX_SQL + 4096 },
      (_req, body, done) => done(null, Object.fromEntries(new URLSearchParams(body as string))),
    );
    const token = (req: FastifyRequest) => presentedToken(req)!;

    app.post(
      '/console/sessions',
      {
        preHandler: signedIn,
        schema: {
          summary: 'Open a console session on a connection (a PostgreSQL session through the gateway)',
          tags: ['console'],
          body: z.object({ connection: connectionName }),
        },
      },
      async (req) => {
        const { person } = caller(req);
        const opened = await bridge.open(person, token(req), req.body.connection, req.ip);
        if ('error' in opened) return opened;
        const catalog = await opened.catalog().catch(() => []);
        return { id: opened.id, connection: opened.connection, catalog };
      },
    );

    app.delete(
      '/console/sessions/:id',
      { preHandler: signedIn, schema: { tags: ['console'], params: sessionParams } },
      async (req, reply) => {
        await bridge.close(req.params.id, caller(req).person.userId);
        return reply.status(204).send();
      },
    );

    app.post(
      '/console/sessions/:id/run',
      {
        preHandler: signedIn,
        schema: {
          summary: 'Run one statement; answers its first page of rows, or its error as PostgreSQL gave it',
          tags: ['console'],
          params: sessionParams,
          body: z.object({ sql: z.string().min(1).max(MAX_SQL), timeoutSeconds, pageRows }),
        },
      },
      async (req) => {
        const session = bridge.get(req.params.id, caller(req).person.userId);
        return session.start(req.body.sql, req.body.timeoutSeconds, req.body.pageRows);
      },
    );

    app.post(
      '/console/sessions/:id/more',
      {
        preHandler: signedIn,
        schema: { tags: ['console'], params: sessionParams, body: z.object({ pageRows }) },
      },
      async (req) => bridge.get(req.params.id, caller(req).person.userId).more(req.body.pageRows),
    );

    app.post(
      '/console/sessions/:id/cancel',
      {
        preHandler: signedIn,
        schema: {
          summary: 'Send a CancelRequest for the running statement',
          tags: ['console'],
          params: sessionParams,
        },
      },
      async (req) => {
        await bridge.get(req.params.id, caller(req).person.userId).cancel();
        return { sent: true };
      },
    );

    app.post(
      '/console/export',
      {
        preHandler: signedIn,
        schema: {
          summary: 'Run a statement read-only on its own session and stream its whole result as CSV or JSON',
          tags: ['console'],
          body: z.object({
            connection: connectionName,
            sql: z.string().min(1).max(MAX_SQL),
            format: z.enum(['csv', 'json']),
            timeoutSeconds,
          }),
        },
      },
      async (req, reply) => {
        const { person } = caller(req);
        const { connection, sql, format } = req.body;
        let client: pg.Client;
        try {
          client = await bridge.connectAs(person.email, token(req), connection, req.ip);
        } catch (err) {
          // PostgreSQL's words (28000 not allowed, 3D000 unknown connection), never a socket's.
          const e = sqlError(err);
          reply.type('text/plain; charset=utf-8').status(400);
          return `export failed: ${e.message} (SQLSTATE ${e.sqlstate})\n`;
        }
        const out = await exportResult(client, sql, format, req.body.timeoutSeconds);
        if ('error' in out) {
          reply.type('text/plain; charset=utf-8').status(400);
          return `export failed: ${out.error.message} (SQLSTATE ${out.error.sqlstate})\n`;
        }
        const stamp = new Date().toISOString().replace(/[:.]/g, '-');
        reply.header('content-disposition', `attachment; filename="${connection}-${stamp}.${format}"`);
        reply.header('cache-control', 'no-store');
        reply.type(format === 'csv' ? 'text/csv; charset=utf-8' : 'application/json; charset=utf-8');
        return reply.send(out);
      },
    );

    // ---- saved queries ----------------------------------------------------------------------

    const savedQuery = z.object({
      name: z.string().min(1).max(200),
      connection: connectionName,
      sql: z.string().min(1).max(MAX_SQL),
    });
    app.get(
      '/console/saved',
      { preHandler: signedIn, schema: { summary: 'Your saved queries', tags: ['console'] } },
      async (req) => {
        const { rows } = await hooks.store.query(
          `SELECT id, name, connection_name AS connection, sql, updated_at AS "updatedAt"
             FROM pgward.console_saved_queries WHERE user_id = $1 ORDER BY name LIMIT 1000`,
          [caller(req).person.userId],
        );
        return rows;
      },
    );
    app.put(
      '/console/saved',
      {
        preHandler: signedIn,
        schema: {
          summary: 'Save a query under a name (replacing one of that name)',
          tags: ['console'],
          body: savedQuery,
        },
      },
      async (req) => {
        const { rows } = await hooks.store.query(
          `INSERT INTO pgward.console_saved_queries (user_id, name, connection_name, sql)
           VALUES ($1, $2, $3, $4)
           ON CONFLICT (user_id, name) DO UPDATE SET connection_name = $3, sql = $4, updated_at = now()
           RETURNING id, name, connection_name AS connection, sql, updated_at AS "updatedAt"`,
          [caller(req).person.userId, req.body.name, req.body.connection, req.body.sql],
        );
        return rows[0];
      },
    );
    app.delete(
      '/console/saved/:id',
      { preHandler: signedIn, schema: { tags: ['console'], params: sessionParams } },
      async (req, reply) => {
        await hooks.store.query('DELETE FROM pgward.console_saved_queries WHERE id = $1 AND user_id = $2', [
          req.params.id,
          caller(req).person.userId,
        ]);
        return reply.status(204).send();
      },
    );

    // ---- live sessions ------------------------------------------------------------------------

    app.get(
      '/console/live',
      {
        preHandler: signedIn,
        schema: {
          summary: 'Sessions live on this gateway (yours, or everyone for administrators)',
          tags: ['console'],
        },
      },
      async (req) => {
        const { person } = caller(req);
        return hooks
          .liveSessions()
          .filter((s) => person.isAdmin || s.userId === person.userId)
          .map((s) => s.sessionId);
      },
    );
    app.delete(
      '/console/live/:id',
      {
        preHandler: adminOnly,
        schema: {
          summary: 'End a live session (57P01 to its client)',
          tags: ['console'],
          params: sessionParams,
        },
      },
      async (req, reply) => {
        const ended = await hooks.endSession(req.params.id, `ended by ${caller(req).person.email}`);
        if (!ended) throw new PgwardError('NOT_FOUND', 'no such live session on this gateway');
        return reply.status(204).send();
      },
    );
  };
}
