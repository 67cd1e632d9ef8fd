/**
 * `pgward dev`: the embedded store, the dev IdP, the demo target and the gateway in one process,
 * with dev defaults (loopback only, plaintext passwords allowed on loopback, a generated key).
 * Writes DIR/dev.json when everything is up; the same data dir comes back after a restart.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, rename, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { loadConfig } from '../config/load.js';
import { type Config, providerSchema } from '../config/schema.js';
import { PgwardError } from '../errors.js';
import { type Gateway, startGateway } from '../gateway.js';
import type { Logger } from '../log/logger.js';
import { openStore } from '../store/store.js';
import { readOrCreateSecret } from '../vault/secret_file.js';
import { DEMO_DATABASE, type DemoTarget, startDemoTarget } from './demo_target.js';
import type { DevIdp } from './dev_idp.js';
import { startDevIdpThread } from './dev_idp_thread.js';
import { devCertificate } from './dev_tls.js';
import { DEV_AUDIENCE, DEV_CLIENT_ID, DEV_PROVIDER_NAME } from './dev_users.js';

export interface DevStackOptions {
  dataDir: string;
  httpPort: number;
  pgPort: number;
  idpPort: number;
  log: Logger;
  /** Extra environment (tests); defaults to process.env. */
  env?: Record<string, string | undefined>;
}

/** The contents of DIR/dev.json, the contract scripts and tests read. */
export interface DevInfo {
  http: string;
  pg: { host: string; port: number };
  idp: string;
  target: string;
}

export interface DevStack {
  readonly info: DevInfo;
  readonly config: Config;
  readonly gateway: Gateway;
  readonly target: DemoTarget;
  /** The dev IdP (tests stop it to see the gateway without its IdP). */
  readonly idp: DevIdp;
  close(): Promise<void>;
}

const HOST = '127.0.0.1';
export const DEMO_CONNECTION = 'demo';
/** DESIGN.md: viewer→app_readonly, editor→app_readwrite, admin→app_admin. */
const DEMO_ACCESS = { viewer: ['app_readonly'], editor: ['app_readwrite'], admin: ['app_admin'] };

/** Writes a file atomically, so readers never see half of it. */
async function writeAtomic(file: string, text: string, mode: number): Promise<void> {
  const tmp = `${file}.${process.pid}.tmp`;
  await writeFile(tmp, text, { mode });
  await rename(tmp, file);
}

export async function startDevStack(opts: DevStackOptions): Promise<DevStack> {
  const { log } = opts;
  const dataDir = path.resolve(opts.dataDir);
  await mkdir(dataDir, { recursive: true, mode: 0o755 });
  log.warn('dev mode: dev IdP with static users, plaintext passwords accepted on loopback; never expose it');
  // The dev stack's vault key, generated once per data dir.
  const secretKey = await readOrCreateSecret(path.join(dataDir, 'secret.key'), () =>
    randomBytes(32).toString('base64'),
  );
  const httpUrl = `http://${HOST}:${opts.httpPort}`;

  const started: { close(): Promise<void> }[] = [];
  const closeAll = async () => {
    for (const part of started.reverse())
      await part.close().catch((err) => log.error({ err }, 'shutdown failed'));
  };
  try {
    // The store and the demo target are two PostgreSQL clusters: start them side by side.
    const [storeResult, targetResult] = await Promise.allSettled([
      openStore({ dataDir, databaseUrl: undefined, log }),
      startDemoTarget({ dataDir, log }),
    ]);
    if (storeResult.status === 'fulfilled') started.push(storeResult.value);
    if (targetResult.status === 'fulfilled') started.push(targetResult.value.cluster);
    if (storeResult.status === 'rejected') throw storeResult.reason;
    if (targetResult.status === 'rejected') throw targetResult.reason;
    const store = storeResult.value;
    const target: DemoTarget = targetResult.value;
    const idp = await startDevIdpThread({
      dir: path.join(dataDir, 'idp'),
      host: HOST,
      port: opts.idpPort,
      redirectUris: [`${httpUrl}/login/callback`],
      storeUrl: store.url,
      logLevel: log.level,
    }).catch((err: unknown) => {
      if (!/EADDRINUSE/.test(String((err as Error)?.message ?? err))) throw err;
      throw new PgwardError(
        'ADDRESS_IN_USE',
        `cannot listen for the dev IdP on ${HOST}:${opts.idpPort}: the address is in use by another process`,
        { cause: err, hint: 'choose another port with --idp-port, or stop the process that holds it' },
      );
    });
    started.push(idp);

    const tls = await devCertificate(dataDir);
    const config = loadConfig({
      env: opts.env ?? process.env,
      flags: {
        dataDir,
        secretKey,
        'http.host': HOST,
        'http.port': opts.httpPort,
        'pg.host': HOST,
        'pg.port': opts.pgPort,
        // Plaintext from loopback is the dev default, unless the environment says otherwise.
        'pg.allowLoopbackPlaintext':
          (opts.env ?? process.env)['PGWARD_ALLOW_LOOPBACK_PLAINTEXT'] === undefined ? true : undefined,
        'tls.certFile': tls.certFile,
        'tls.keyFile': tls.keyFile,
      },
    });
    config.providers.unshift(
      providerSchema.parse({
        name: DEV_PROVIDER_NAME,
        displayName: 'pgward dev IdP',
        issuer: idp.issuer,
        clientId: DEV_CLIENT_ID,
        audience: DEV_AUDIENCE,
        scopes: ['openid', 'email', 'profile', 'groups', 'offline_access'],
        algorithms: ['RS256'],
        // The dev users' IdP groups are the pgward groups the demo connection grants to.
        mappings: { groups: { admin: ['admin'], editor: ['editor'], viewer: ['viewer'] } },
      }),
    );

    // The gateway takes over the store (and closes it).
    started.splice(started.indexOf(store), 1);
    const gateway = await startGateway({
      config,
      log,
      store,
      portSettings: { pg: '--pg-port', http: '--http-port' },
      extraHealth: {
        dev_idp: async () => {
          const res = await fetch(`${idp.issuer}/.well-known/openid-configuration`, {
            signal: AbortSignal.timeout(1500),
          });
          return { ok: res.ok, detail: idp.issuer };
        },
        demo_target: async () => ({ ok: true, detail: `127.0.0.1:${target.cluster.port}` }),
      },
    });
    started.push(gateway);
    await putDemoConnection(gateway, target);

    const info: DevInfo = {
      http: gateway.httpUrl,
      pg: gateway.pg,
      idp: idp.issuer,
      target: target.superuserUrl,
    };
    // dev.json holds the demo target's superuser URL: readable by its owner only.
    await writeAtomic(path.join(dataDir, 'dev.json'), `${JSON.stringify(info, null, 2)}\n`, 0o600);
    return { info, config, gateway, target, idp, close: closeAll };
  } catch (err) {
    await closeAll();
    throw err;
  }
}

/**
 * The `demo` connection to the demo target: pgward logs in as pgward_admin to provision each
 * person's role. Host and port follow the target (its port changes between starts); the access
 * map is set on first start only, so changes made through the admin API survive restarts.
 */
async function putDemoConnection(gateway: Gateway, target: DemoTarget): Promise<void> {
  const existing = await gateway.connections.find(DEMO_CONNECTION);
  await gateway.connections.put({
    name: DEMO_CONNECTION,
    host: '127.0.0.1',
    port: target.cluster.port,
    database: DEMO_DATABASE,
    sslmode: 'disable',
    roleMode: 'provision',
    credential: target.admin,
    ...(existing ? {} : { access: DEMO_ACCESS }),
  });
}

/** The short "what to do next" printed once the dev stack is up. */
export function nextSteps(info: DevInfo): string {
  return [
    '',
    'pgward dev stack is up.',
    `  gateway   ${info.http}   (health: ${info.http}/healthz)`,
    `  postgres  ${info.pg.host}:${info.pg.port}   dev IdP  ${info.idp}`,
    '',
    'Connect as the viewer (token as password):',
    `  PGPASSWORD=$(npx pgward dev token viewer@example.com) psql "postgresql://viewer%40example.com@${info.pg.host}:${info.pg.port}/demo?sslmode=require"`,
    'Dev users: admin@example.com, editor@example.com, viewer@example.com (password "password").',
    'Press Ctrl-C to stop.',
    '',
  ].join('\n');
}
