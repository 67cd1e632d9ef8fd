/**
 * The gateway's HTTP server (fastify): health, public discovery for CLIs, and the seams where
 * the login, admin API and console mount. Errors leave as JSON problems with a stable code.
 */
import Fastify, { type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import { asPgwardError } from '../errors.js';
import type { Logger } from '../log/logger.js';

/** One component's health: `ok`, and a short detail safe to show anyone. */
export interface ComponentHealth {
  ok: boolean;
  detail?: string;
}

export type HealthCheck = () => Promise<ComponentHealth>;

const HEALTH_CHECK_TIMEOUT_MS = 2_000;

async function runCheck(check: HealthCheck): Promise<ComponentHealth> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<ComponentHealth>((resolve) => {
    timer = setTimeout(() => resolve({ ok: false, detail: 'no answer within 2 s' }), HEALTH_CHECK_TIMEOUT_MS);
  });
  try {
    return await Promise.race([check().catch(() => ({ ok: false, detail: 'check failed' })), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

export interface HttpServerOptions {
  log: Logger;
  health: Record<string, HealthCheck>;
  /** Public facts a CLI needs to log in: providers (name, issuer, client id), the PostgreSQL endpoint. */
  discovery: () => unknown;
}

/** Builds the HTTP app; the caller listens. */
export function buildHttpServer(opts: HttpServerOptions): FastifyInstance {
  const app = Fastify({
    // Request lines are not logged (level warn): they would carry query strings.
    loggerInstance: opts.log.child({ component: 'http' }, { level: 'warn' }) as FastifyBaseLogger,
    bodyLimit: 1024 * 1024,
    requestTimeout: 30_000,
    return503OnClosing: true,
  });

  app.setErrorHandler((err: Error, _req, reply) => {
    const status = (err as { statusCode?: number }).statusCode;
    if (status !== undefined && status < 500) {
      return reply.status(status).send({ code: 'BAD_REQUEST', message: err.message });
    }
    const e = asPgwardError(err);
    if (e.httpStatus >= 500) opts.log.error({ err }, 'request failed');
    // 5xx details never leave the process.
    return reply
      .status(e.httpStatus)
      .send({ code: e.code, message: e.httpStatus >= 500 ? 'internal error' : e.message, hint: e.hint });
  });

  app.get('/healthz', async (_req, reply) => {
    const names = Object.keys(opts.health);
    const results = await Promise.all(names.map((name) => runCheck(opts.health[name]!)));
    const components = Object.fromEntries(names.map((name, i) => [name, results[i]]));
    const ok = results.every((r) => r.ok);
    return reply.status(ok ? 200 : 503).send({ status: ok ? 'ok' : 'degraded', components });
  });

  app.get('/.well-known/pgward-configuration', async () => opts.discovery());

  return app;
}
