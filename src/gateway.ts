/**
 * The gateway process: store, directory, vault, audit, the PostgreSQL endpoint and the HTTP
 * server, started and stopped together. `pgward serve` and `pgward dev` both run one of these.
 */
import { readFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { createSecureContext, type SecureContext } from 'node:tls';
import type { FastifyInstance } from 'fastify';
import { buildHttpServer, type HealthCheck } from './api/http_server.js';
import { AuditQueries } from './audit/audit_queries.js';
import { AuditWriter } from './audit/audit_writer.js';
import { AuditSpool } from './audit/spool.js';
import { type Config, decodeSecretKey } from './config/schema.js';
import { AccessEvents } from './directory/access_events.js';
import { Directory } from './directory/directory.js';
import { DirectoryAdmin } from './directory/directory_admin.js';
import { PgwardError } from './errors.js';
import { ProviderRegistry } from './identity/provider_registry.js';
import { TokenVerifier } from './identity/token_verifier.js';
import type { Logger } from './log/logger.js';
import { isLoopbackHost } from './loopback.js';
import { Metrics } from './metrics/metrics.js';
import { knownNames } from './policy/known_names.js';
import { PolicyCatalog } from './policy/policy_catalog.js';
import { loadSqlParser } from './policy/sql_parser.js';
import { accessLost } from './proxy/access_recheck.js';
import { CancelMap } from './proxy/cancel_map.js';
import { ConnectPath } from './proxy/connect_path.js';
import { PgListener } from './proxy/pg_listener.js';
import type { ProxyContext } from './proxy/proxy_context.js';
import { judgeStatement } from './proxy/statement_guard.js';
import { AccessTokens } from './session/access_tokens.js';
import { Authenticator, type SignedIn } from './session/authenticator.js';
import { IdpClient } from './session/idp_client.js';
import { LoginCodes } from './session/login_codes.js';
import { LoginSessions } from './session/login_sessions.js';
import { SigningKeys } from './session/signing_keys.js';
import { openStore, type Store } from './store/store.js';
import { RoleProvisioner } from './upstream/role_provisioner.js';
import { UpstreamPool } from './upstream/upstream_pool.js';
import { ConnectionRepository } from './vault/connections.js';
import { SecretBox } from './vault/secret_box.js';

export interface Gateway {
  readonly httpUrl: string;
  readonly pg: { host: string; port: number };
  readonly store: Store;
  readonly connections: ConnectionRepository;
  readonly audit: AuditWriter;
  /** The policies every session is judged by. */
  readonly policies: PolicyCatalog;
  /** The gateway's metrics (its own registry); the proxy reports sessions and statements here. */
  readonly metrics: Metrics;
  /** Login roles in the targets (deactivation calls `disablePerson`). */
  readonly provisioner: RoleProvisioner;
  /** Access events on the store: what live sessions subscribe to. */
  readonly events: AccessEvents;
  /** Token verification, sign-in and `recheck` of live sessions. */
  readonly auth: Authenticator;
  close(): Promise<void>;
}

/** How often providers added through the API (by any gateway) are re-read. */
const PROVIDER_RELOAD_MS = 60_000;

export interface GatewayOptions {
  config: Config;
  log: Logger;
  /** An already opened store (the dev stack opens it early); the gateway closes it. */
  store?: Store;
  /** Health of parts started outside the gateway (the dev IdP, the demo target). */
  extraHealth?: Record<string, HealthCheck>;
  /** How a person moves each listener to another port (`pgward dev` has flags for them). */
  portSettings?: { pg: string; http: string };
}

/** Listens with `listen`; a port in use names the setting that moves it (not EADDRINUSE). */
async function listenOn<T>(
  what: string,
  address: string,
  setting: string,
  listen: () => Promise<T>,
): Promise<T> {
  try {
    return await listen();
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'EADDRINUSE' && code !== 'EACCES') throw err;
    throw new PgwardError(
      'ADDRESS_IN_USE',
      code === 'EADDRINUSE'
        ? `cannot listen for ${what} on ${address}: the address is in use by another process`
        : `cannot listen for ${what} on ${address}: permission denied`,
      { cause: err, hint: `choose another port with ${setting}, or stop the process that holds it` },
    );
  }
}

/** The certificate of both endpoints (`tls`): the PostgreSQL endpoint's context, HTTPS's options. */
function certificate(
  config: Config,
): { context: SecureContext; options: { cert: Buffer; key: Buffer; minVersion: 'TLSv1.2' } } | undefined {
  const { certFile, keyFile } = config.tls;
  if (!certFile || !keyFile) return undefined;
  try {
    const options = {
      cert: readFileSync(certFile),
      key: readFileSync(keyFile),
      minVersion: 'TLSv1.2' as const,
    };
    return { context: createSecureContext(options), options };
  } catch (err) {
    throw new PgwardError(
      'CONFIG_INVALID',
      `tls: cannot load ${certFile} / ${keyFile}: ${(err as Error).message}`,
    );
  }
}

/** Starts a gateway from a validated configuration. */
export async function startGateway(opts: GatewayOptions): Promise<Gateway> {
  const { config, log } = opts;
  const key = config.secretKey === undefined ? undefined : decodeSecretKey(config.secretKey);
  if (!key) {
    throw new PgwardError(
      'CONFIG_INVALID',
      'secretKey (PGWARD_SECRET_KEY) is required: it encrypts the vaulted credentials',
      {
        hint: 'generate one with `openssl rand -base64 32` and keep it safe',
      },
    );
  }
  const cert = certificate(config);
  const tls = cert?.context;
  // The statement inspectors parse with PostgreSQL's grammar (WebAssembly, loaded once).
  await loadSqlParser();
  const store =
    opts.store ?? (await openStore({ databaseUrl: config.databaseUrl, dataDir: config.dataDir, log }));
  const cleanup: (() => Promise<void> | void)[] = [() => store.close()];
  try {
    const events = new AccessEvents({
      url: store.url,
      pool: store.pool,
      log: log.child({ component: 'access-events' }),
    });
    await events.start();
    cleanup.unshift(() => events.close());
    const directory = new Directory(store.pool, config.tenancy, events);
    await directory.syncProviders(config.providers);
    const metrics = new Metrics({ defaultMetrics: config.metrics.enabled });
    const verifier = new TokenVerifier(config.providers, log, undefined, metrics);
    metrics.observeProviders(() => verifier.health());
    const box = new SecretBox(key);
    const providers = new ProviderRegistry(config.providers, store.pool, box, (all) => {
      verifier.setProviders(all);
      void verifier.prewarm();
    });
    for (const problem of await providers.reload())
      log.error({ problem }, 'a provider added through the API is invalid');
    // Other gateways sharing the store add or deactivate providers too.
    const providerReload = setInterval(() => {
      providers.reload().catch((err: unknown) => log.warn({ err }, 'cannot reload providers'));
    }, PROVIDER_RELOAD_MS);
    providerReload.unref();
    cleanup.unshift(() => clearInterval(providerReload));
    const connections = new ConnectionRepository(store.pool, box);
    const provisioner = new RoleProvisioner(connections, config.pg.roleSyncSeconds * 1000, {
      validForMs: config.pg.loginRoleValidSeconds * 1000,
      group: config.pg.loginRoleGroup,
      timeoutMs: config.pg.upstreamTimeoutSeconds * 1000,
      log: log.child({ component: 'provisioning' }),
    });
    const pool = new UpstreamPool(
      {
        idleTimeoutMs: config.pg.poolIdleSeconds * 1000,
        maxIdlePerKey: config.pg.poolMaxIdlePerKey,
        timeoutMs: config.pg.upstreamTimeoutSeconds * 1000,
      },
      log,
      metrics,
    );
    metrics.observePool(() => ({ idle: pool.size }));
    const auditLog = log.child({ component: 'audit' });
    const spool = new AuditSpool(
      config.audit.spoolDir ?? path.join(config.dataDir, 'audit-spool'),
      config.audit.spoolMaxBytes,
      auditLog,
    );
    spool.open();
    const audit = new AuditWriter(store.pool, auditLog, { spool, onStoreDown: config.audit.onStoreDown });
    metrics.observeAudit(() => {
      const status = audit.status();
      return {
        queued: audit.backlog,
        spoolBytes: status.spool?.bytes ?? 0,
        ...audit.totals,
        statementsDropped: status.dropped,
      };
    });
    cleanup.unshift(
      () => audit.close(),
      () => pool.close(),
      () => provisioner.close(),
    );

    let issuer = config.publicUrl?.replace(/\/$/, '') ?? '';
    const signingKeys = new SigningKeys(store.pool, box, {
      rotationMs: config.tokens.keyRotationHours * 3_600_000,
      tokenLifetimeMs: config.tokens.accessTokenSeconds * 1000,
    });
    const accessTokens = new AccessTokens(signingKeys, () => issuer, config.tokens.accessTokenSeconds * 1000);
    const sessions = new LoginSessions(store.pool, box, config.tokens.sessionHours * 3_600_000, events);
    const idp = new IdpClient(store.pool);
    const auth = new Authenticator({
      providers: () => providers.all(),
      verifier,
      directory,
      tokens: accessTokens,
      sessions,
      idp,
      events,
    });
    const directoryAdmin = new DirectoryAdmin(store.pool, events);
    const policies = new PolicyCatalog(
      store.pool,
      config.policies,
      events,
      log.child({ component: 'policies' }),
      async () => knownNames(await connections.list(), await directoryAdmin.listGroups(), providers.all()),
    );
    await policies.start();
    cleanup.unshift(() => policies.close());
    const proxyConfig: ProxyContext['config'] = {
      maxMessageBytes: config.pg.maxMessageBytes,
      allowLoopbackPlaintext: config.pg.allowLoopbackPlaintext,
      authTimeoutMs: config.pg.authTimeoutSeconds * 1000,
      maxStatementBytes: config.audit.maxStatementBytes,
      maxSessionsPerPerson: config.pg.maxSessionsPerPerson,
      maxSessionsPerConnection: config.pg.maxSessionsPerConnection,
      upstreamTimeoutMs: config.pg.upstreamTimeoutSeconds * 1000,
    };
    const proxy: ProxyContext = {
      config: proxyConfig,
      log: log.child({ component: 'proxy' }),
      tls,
      authenticate: (token, username) => auth.authenticateLogin(token, username),
      connections,
      provisioner,
      pool,
      audit,
      cancels: new CancelMap(),
      inspectors: [judgeStatement],
      policies,
      metrics: config.metrics.enabled ? metrics : undefined,
      connectPath: new ConnectPath({ config: proxyConfig, connections, provisioner, pool, audit }),
    };
    const listener = new PgListener(proxy, {
      maxConnections: config.pg.maxConnections,
      maxUnauthenticated: config.pg.maxUnauthenticated,
      maxUnauthenticatedPerAddress: config.pg.maxUnauthenticatedPerAddress,
    });
    const ports = opts.portSettings ?? {
      pg: 'pg.port (PGWARD_PG_PORT)',
      http: 'http.port (PGWARD_HTTP_PORT)',
    };
    const pgAddress = await listenOn(
      'PostgreSQL clients',
      `${config.pg.host}:${config.pg.port}`,
      ports.pg,
      () => listener.listen(config.pg.port, config.pg.host),
    );
    cleanup.unshift(() => listener.close());
    // Revocation that bites: each access event makes the live sessions it concerns check again.
    const recheckParts = { recheck: (signedIn: SignedIn) => auth.recheck(signedIn), connections };
    const unsubscribe = events.subscribe((event) => {
      void listener
        .endSessions((session) => accessLost(event, session, recheckParts))
        .then((ended) => {
          if (ended > 0) log.info({ ended, reason: event.reason }, 'sessions ended after an access change');
        });
    });
    cleanup.unshift(unsubscribe);

    const http: FastifyInstance = await buildHttpServer({
      log,
      https: config.http.tls ? cert?.options : undefined,
      metrics: config.metrics.enabled ? metrics : undefined,
      api: {
        config,
        log,
        publicUrl: () => issuer,
        auth,
        providers,
        idp,
        sessions,
        loginCodes: new LoginCodes(store.pool, box, sessions),
        signingKeys,
        connections,
        directory: directoryAdmin,
        policies,
        audit: new AuditQueries(store.pool),
        box,
        events,
        loginRoles: provisioner,
      },
      health: {
        store: async () =>
          (await store.ping()) ? { ok: true } : { ok: false, detail: 'store does not answer' },
        postgres_endpoint: async () => ({
          ok: listener.listening,
          detail: `${config.pg.host}:${pgAddress.port}, ${listener.sessionCount} sessions, ${pool.size} idle upstream`,
        }),
        audit: async () => audit.health(),
        identity_providers: async () => {
          const down = Object.entries(verifier.health()).filter(([, h]) => !h.ok);
          return down.length === 0
            ? { ok: true, detail: `${providers.all().length} provider(s), keys loaded` }
            : {
                ok: false,
                detail: down.map(([name, h]) => `${name}: ${h.detail ?? 'keys not loaded'}`).join('; '),
              };
        },
        ...opts.extraHealth,
      },
      // New sessions read the directory and sign-ins in the store, sign tokens and are recorded.
      readiness: {
        store: async () => ({ ok: await store.ping() }),
        audit: async () => ({ ok: audit.accepting() }),
        signing_keys: async () => ({ ok: (await signingKeys.current()) !== undefined }),
        listener: async () => ({ ok: listener.listening }),
      },
      console: {
        connect: (clientAddress) => listener.connectInProcess(clientAddress),
        store: store.pool,
        liveSessions: () => listener.liveSessions(),
        endSession: (sessionId, reason) => listener.endSession(sessionId, reason),
      },
      discovery: () => ({
        pg: { host: config.pg.host, port: pgAddress.port, tls: tls !== undefined },
        providers: providers.all().map((p) => ({
          name: p.name,
          displayName: p.displayName ?? p.name,
          type: p.type,
          // An LDAP provider's server and service account are nobody's business outside.
          ...(p.type === 'ldap' ? {} : { issuer: p.issuer, clientId: p.clientId }),
          scopes: p.scopes,
        })),
      }),
    });
    await listenOn('HTTP', `${config.http.host}:${config.http.port}`, ports.http, () =>
      http.listen({ port: config.http.port, host: config.http.host }),
    );
    cleanup.unshift(() => http.close());
    const httpAddress = http.server.address() as AddressInfo;
    const httpUrl = `${config.http.tls ? 'https' : 'http'}://${config.http.host.includes(':') ? `[${config.http.host}]` : config.http.host}:${httpAddress.port}`;
    // pgward's tokens name the gateway's public URL as their issuer (its own address by default).
    if (issuer === '') issuer = httpUrl;
    if (config.metrics.enabled && !config.metrics.bearerToken && !isLoopbackHost(config.http.host))
      log.warn('GET /metrics is open to anyone who reaches the HTTP listener: set metrics.bearerToken');
    log.info(
      { http: httpUrl, pg: `${config.pg.host}:${pgAddress.port}`, tls: tls !== undefined },
      'gateway listening',
    );

    const closeAll = async () => {
      // HTTP and the listener first, then the audit flush, then the store.
      for (const step of cleanup.splice(0)) await step();
    };
    return {
      httpUrl,
      pg: { host: config.pg.host, port: pgAddress.port },
      store,
      connections,
      audit,
      policies,
      metrics,
      provisioner,
      events,
      auth,
      close: closeAll,
    };
  } catch (err) {
    for (const step of cleanup.splice(0)) await Promise.resolve(step()).catch(() => undefined);
    throw err;
  }
}
