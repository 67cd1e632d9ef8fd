/**
 * The gateway's HTTP server (fastify): health, discovery for CLIs, pgward's public keys, the
 * login endpoints and the REST API. Requests and responses are checked with zod schemas, which
 * also make the OpenAPI document at /openapi.json. Every error leaves as a JSON problem
 * (RFC 9457) with a stable `code`.
 */

import { STATUS_CODES } from 'node:http';
import fastifyCookie from '@fastify/cookie';
import fastifyCors from '@fastify/cors';
import fastifyRateLimit from '@fastify/rate-limit';
import fastifySwagger from '@fastify/swagger';
import Fastify, { type FastifyBaseLogger, type FastifyInstance, type FastifyRequest } from 'fastify';
import {
  hasZodFastifySchemaValidationErrors,
  jsonSchemaTransform,
  serializerCompiler,
  validatorCompiler,
} from 'fastify-type-provider-zod';
import type { AuditQueries } from '../audit/audit_queries.js';
import type { Config } from '../config/schema.js';
import { type ConsoleHooks, consolePages, consoleRoutes } from '../console/console_routes.js';
import type { AccessEvents } from '../directory/access_events.js';
import type { DirectoryAdmin } from '../directory/directory_admin.js';
import { asPgwardError, PgwardError } from '../errors.js';
import type { ProviderRegistry } from '../identity/provider_registry.js';
import type { Logger } from '../log/logger.js';
import type { Metrics } from '../metrics/metrics.js';
import type { PolicyCatalog } from '../policy/policy_catalog.js';
import type { Authenticator } from '../session/authenticator.js';
import type { IdpClient } from '../session/idp_client.js';
import type { LoginCodes } from '../session/login_codes.js';
import type { LoginSessions } from '../session/login_sessions.js';
import type { SigningKeys } from '../session/signing_keys.js';
import type { ConnectionRepository } from '../vault/connections.js';
import type { SecretBox } from '../vault/secret_box.js';
import { adminRoutes } from './admin_routes.js';
import { authRoutes } from './auth_routes.js';
import { meRoutes } from './me_routes.js';
import { metricsRoutes } from './metrics_routes.js';
import { policyRoutes } from './policy_routes.js';
import { presentedToken, sameOriginGuard } from './request_auth.js';

/** One component's health: `ok`, and a short detail safe to show anyone. */
export interface ComponentHealth {
  ok: boolean;
  detail?: string;
  /** Numbers and states behind `detail` (the audit's backlog, the spool's size), for administrators. */
  data?: Record<string, number | string | boolean>;
}

export type HealthCheck = () => Promise<ComponentHealth>;

const HEALTH_CHECK_TIMEOUT_MS = 2_000;
/** What a 503 tells a client (and a load balancer) to wait before asking again, in seconds. */
export const RETRY_AFTER_SECONDS = 5;

/** Runs every check at once; `ok` when all are. */
async function runChecks(checks: Record<string, HealthCheck>) {
  const names = Object.keys(checks);
  const results = await Promise.all(names.map((name) => runCheck(checks[name]!)));
  return {
    ok: results.every((r) => r.ok),
    components: Object.fromEntries(names.map((name, i) => [name, results[i]!])),
  };
}

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

/** What the API routes work with. */
export interface ApiContext {
  config: Config;
  log: Logger;
  /** The gateway's public base URL (issuer of its tokens, base of redirect URIs). */
  publicUrl: () => string;
  auth: Authenticator;
  providers: ProviderRegistry;
  idp: IdpClient;
  sessions: LoginSessions;
  loginCodes: LoginCodes;
  signingKeys: SigningKeys;
  connections: ConnectionRepository;
  directory: DirectoryAdmin;
  audit: AuditQueries;
  box: SecretBox;
  /** Access events: publish a change that may take access away. */
  events: AccessEvents;
  /** Login roles in the targets: LOGIN is taken away when a person is deactivated or revoked. */
  loginRoles: { disablePerson(userId: string): Promise<void> };
  policies: PolicyCatalog;
}

export interface HttpServerOptions {
  log: Logger;
  /** Serve HTTPS with this certificate. */
  https?: { cert: Buffer; key: Buffer; minVersion: 'TLSv1.2' } | undefined;
  /** Every component's state, for /healthz (details for administrators only). */
  health: Record<string, HealthCheck>;
  /** What new sessions need, for /readyz: all must be ok. */
  readiness: Record<string, HealthCheck>;
  /** Public facts a CLI needs to log in: providers (name, issuer, client id), the PostgreSQL endpoint. */
  discovery: () => unknown;
  api: ApiContext;
  /** Serves GET /metrics (absent when `metrics.enabled` is false). */
  metrics?: Metrics | undefined;
  /** Serves the web console at `/` and its API (absent: no console). */
  console?: ConsoleHooks | undefined;
}

/** An RFC 9457 problem with pgward's stable error code. */
function problem(status: number, code: string, detail: string, hint?: string) {
  return {
    type: 'about:blank',
    title: STATUS_CODES[status] ?? 'Error',
    status,
    code,
    detail,
    ...(hint ? { hint } : {}),
  };
}

/** Builds the HTTP app; the caller listens. */
export async function buildHttpServer(opts: HttpServerOptions): Promise<FastifyInstance> {
  const app = Fastify({
    ...(opts.https ? { https: opts.https } : {}),
    // Request lines are not logged (level warn): they would carry query strings.
    loggerInstance: opts.log.child({ component: 'http' }, { level: 'warn' }) as FastifyBaseLogger,
    bodyLimit: 1024 * 1024,
    requestTimeout: 30_000,
    return503OnClosing: true,
  });
  app.setValidatorCompiler(validatorCompiler);
  app.setSerializerCompiler(serializerCompiler);
  app.decorateRequest('signedIn', undefined);

  app.setErrorHandler((err: Error, _req, reply) => {
    reply.type('application/problem+json');
    if (hasZodFastifySchemaValidationErrors(err)) {
      const issues = err.validation.map((v) => {
        const where = `${err.validationContext ?? 'request'}${v.instancePath.replaceAll('/', '.')}`;
        return `${where}: ${v.message}`;
      });
      return reply.status(400).send(problem(400, 'BAD_REQUEST', issues.join('; ')));
    }
    const status = (err as { statusCode?: number }).statusCode;
    if (status === 429) {
      return reply
        .status(429)
        .send(problem(429, 'RATE_LIMITED', 'too many requests; wait a minute and retry'));
    }
    if (!(err instanceof PgwardError) && status !== undefined && status < 500) {
      return reply.status(status).send(problem(status, 'BAD_REQUEST', err.message));
    }
    const e = asPgwardError(err);
    if (e.code === 'STORE_UNAVAILABLE' || e.code === 'AUDIT_UNAVAILABLE') {
      // An outage, not a bug: say when to come back; the cause (which may name hosts) stays in the log.
      opts.log.warn(
        { err: (e.cause as Error | undefined)?.message ?? e.message },
        'request failed: store unavailable',
      );
      reply.header('retry-after', String(RETRY_AFTER_SECONDS));
    } else if (e.httpStatus >= 500) opts.log.error({ err }, 'request failed');
    // 5xx details never leave the process.
    const detail = e.httpStatus >= 500 && e.code === 'INTERNAL' ? 'internal error' : e.message;
    const body = problem(e.httpStatus, e.code, detail, e.hint);
    // A policy's problems, each at its field's path, for editors that mark them in place.
    const problems = (e as { problems?: unknown }).problems;
    return reply.status(e.httpStatus).send(Array.isArray(problems) ? { ...body, errors: problems } : body);
  });
  app.setNotFoundHandler((req, reply) => {
    reply
      .type('application/problem+json')
      .status(404)
      .send(problem(404, 'NOT_FOUND', `no route ${req.method} ${req.url.split('?')[0]}`));
  });

  await app.register(fastifyCookie);
  await app.register(fastifyCors, {
    origin: opts.api.config.api.corsOrigins.length > 0 ? opts.api.config.api.corsOrigins : false,
    credentials: true,
  });
  await app.register(fastifyRateLimit, { global: false });
  app.addHook(
    'onRequest',
    sameOriginGuard(() => [new URL(opts.api.publicUrl()).origin, ...opts.api.config.api.corsOrigins]),
  );
  await app.register(fastifySwagger, {
    openapi: {
      info: { title: 'pgward API', version: '1' },
      components: {
        securitySchemes: {
          bearer: { type: 'http', scheme: 'bearer', bearerFormat: 'JWT' },
          cookie: { type: 'apiKey', in: 'cookie', name: 'pgward_access' },
        },
      },
      security: [{ bearer: [] }, { cookie: [] }],
    },
    transform: jsonSchemaTransform,
  });

  /** Whether the request carries an administrator's token (any failure: no). */
  const fromAdmin = async (req: FastifyRequest): Promise<boolean> => {
    try {
      const token = presentedToken(req);
      return token !== undefined && (await opts.api.auth.authenticate(token)).person.isAdmin;
    } catch {
      return false;
    }
  };
  // Liveness: the process serves HTTP. Nothing else, so that an outage elsewhere never gets it restarted.
  app.get('/livez', { schema: { hide: true } }, async () => ({ status: 'ok' }));
  // Readiness: new sessions can be served now. No details: anyone may ask.
  app.get('/readyz', { schema: { hide: true } }, async (_req, reply) => {
    const { ok } = await runChecks(opts.readiness);
    if (!ok) reply.header('retry-after', String(RETRY_AFTER_SECONDS));
    return reply.status(ok ? 200 : 503).send({ status: ok ? 'ready' : 'not ready' });
  });
  // Health: each component's state for administrators; a bare status for everyone else, which
  // names no host, port or count.
  app.get('/healthz', { schema: { hide: true } }, async (req, reply) => {
    const [admin, { ok, components }] = await Promise.all([fromAdmin(req), runChecks(opts.health)]);
    reply.header('cache-control', 'no-store');
    if (!ok) reply.header('retry-after', String(RETRY_AFTER_SECONDS));
    const status = ok ? 'ok' : 'degraded';
    return reply.status(ok ? 200 : 503).send(admin ? { status, components } : { status });
  });
  app.get('/.well-known/pgward-configuration', { schema: { hide: true } }, async () => opts.discovery());
  app.get('/.well-known/jwks.json', { schema: { hide: true } }, async (_req, reply) => {
    reply.header('cache-control', 'public, max-age=300');
    return opts.api.signingKeys.jwks();
  });
  app.get('/openapi.json', { schema: { hide: true } }, async () => app.swagger());
  if (opts.metrics) await app.register(metricsRoutes(opts.metrics, opts.api.config.metrics.bearerToken));

  await app.register(authRoutes(opts.api));
  await app.register(meRoutes(opts.api), { prefix: '/api/v1' });
  await app.register(adminRoutes(opts.api), { prefix: '/api/v1' });
  await app.register(policyRoutes(opts.api), { prefix: '/api/v1' });
  if (opts.console) {
    await app.register(consolePages());
    await app.register(consoleRoutes(opts.api, opts.console), { prefix: '/api/v1' });
  }
  return app;
}
