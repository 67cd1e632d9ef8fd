/**
 * `GET /metrics`: the Prometheus text exposition of the gateway's metrics. Not behind the sign-in
 * (Prometheus has no cookie); with `metrics.bearerToken` set, a scrape must present it as
 * `Authorization: Bearer`, compared in constant time.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { FastifyPluginAsync, FastifyRequest } from 'fastify';
import { PgwardError } from '../errors.js';
import type { Metrics } from '../metrics/metrics.js';

const digest = (text: string) => createHash('sha256').update(text).digest();

/** Whether the request carries the bearer token; digests make the compare independent of length. */
export function presentsBearer(req: FastifyRequest, expected: Buffer): boolean {
  const match = /^Bearer\s+([\x21-\x7e]{1,4096})$/i.exec(req.headers.authorization ?? '');
  return match !== null && timingSafeEqual(digest(match[1]!), expected);
}

export function metricsRoutes(metrics: Metrics, bearerToken: string | undefined): FastifyPluginAsync {
  const expected = bearerToken === undefined ? undefined : digest(bearerToken);
  return async (app) => {
    app.get('/metrics', { schema: { hide: true } }, async (req, reply) => {
      if (expected && !presentsBearer(req, expected)) {
        reply.header('www-authenticate', 'Bearer realm="pgward metrics"');
        throw new PgwardError('UNAUTHENTICATED', 'this endpoint needs the metrics bearer token', {
          hint: 'set the scraper\'s "Authorization: Bearer" to metrics.bearerToken (PGWARD_METRICS_BEARER_TOKEN)',
        });
      }
      const text = await metrics.text();
      return reply.header('cache-control', 'no-store').type(metrics.contentType).send(text);
    });
  };
}
