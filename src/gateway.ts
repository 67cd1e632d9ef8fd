/**
 * The gateway process: store, HTTP server and PostgreSQL endpoint, started and stopped together.
 * `pgward serve` and `pgward dev` both run one of these.
 */

import type { AddressInfo } from 'node:net';
import { createServer, type Server } from 'node:net';
import type { FastifyInstance } from 'fastify';
import { buildHttpServer, type HealthCheck } from './api/http_server.js';
import type { Config } from './config/schema.js';
import type { Logger } from './log/logger.js';
import { openStore, type Store } from './store/store.js';

export interface Gateway {
  readonly httpUrl: string;
  readonly pg: { host: string; port: number };
  readonly store: Store;
  close(): Promise<void>;
}

export interface GatewayOptions {
  config: Config;
  log: Logger;
  /** An already opened store (the dev stack opens it early); otherwise the gateway opens its own. */
  store?: Store;
  /** Health of parts started outside the gateway (the dev IdP, the demo target). */
  extraHealth?: Record<string, HealthCheck>;
}

function listen(server: Server, port: number, host: string): Promise<AddressInfo> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve(server.address() as AddressInfo);
    });
  });
}

/** Starts a gateway from a validated configuration. */
export async function startGateway(opts: GatewayOptions): Promise<Gateway> {
  const { config, log } = opts;
  const store =
    opts.store ?? (await openStore({ databaseUrl: config.databaseUrl, dataDir: config.dataDir, log }));
  let http: FastifyInstance | undefined;
  const pgServer = createServer((socket) => socket.destroy());
  try {
    const pgAddress = await listen(pgServer, config.pg.port, config.pg.host);
    http = buildHttpServer({
      log,
      health: {
        store: async () =>
          (await store.ping()) ? { ok: true } : { ok: false, detail: 'store does not answer' },
        postgres_endpoint: async () => ({
          ok: pgServer.listening,
          detail: `${config.pg.host}:${pgAddress.port}`,
        }),
        ...opts.extraHealth,
      },
      discovery: () => ({
        pg: { host: config.pg.host, port: pgAddress.port },
        providers: config.providers.map((p) => ({
          name: p.name,
          displayName: p.displayName ?? p.name,
          issuer: p.issuer,
          clientId: p.clientId,
          scopes: p.scopes,
        })),
      }),
    });
    await http.listen({ port: config.http.port, host: config.http.host });
    const httpAddress = http.server.address() as AddressInfo;
    const httpUrl = `http://${config.http.host.includes(':') ? `[${config.http.host}]` : config.http.host}:${httpAddress.port}`;
    log.info({ http: httpUrl, pg: `${config.pg.host}:${pgAddress.port}` }, 'gateway listening');
    const app = http;
    return {
      httpUrl,
      pg: { host: config.pg.host, port: pgAddress.port },
      store,
      async close() {
        pgServer.close();
        await app.close();
        await store.close();
      },
    };
  } catch (err) {
    pgServer.close();
    await http?.close();
    await store.close();
    throw err;
  }
}
