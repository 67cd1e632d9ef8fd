/**
 * The one configuration loader: defaults < config file (YAML or JSON) < environment < flags,
 * validated once with zod. A failure names the exact setting (file path, or variable) to fix.
 */
import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import type { z } from 'zod';
import { PgwardError } from '../errors.js';
import { providerFromHoopEnv, providersFromHasuraJson, SettingError } from './provider_formats.js';
import { type Config, type ConfigInput, configSchema } from './schema.js';

const MAX_CONFIG_FILE_BYTES = 1024 * 1024;

/** Environment variables that set one config path each. */
const ENV_SETTINGS: Record<string, string> = {
  PGWARD_DATA_DIR: 'dataDir',
  PGWARD_DATABASE_URL: 'databaseUrl',
  PGWARD_SECRET_KEY: 'secretKey',
  API_URL: 'publicUrl',
  PGWARD_PUBLIC_URL: 'publicUrl',
  PGWARD_HTTP_HOST: 'http.host',
  PGWARD_HTTP_PORT: 'http.port',
  PGWARD_PG_HOST: 'pg.host',
  PGWARD_PG_PORT: 'pg.port',
  PGWARD_PG_MAX_MESSAGE_BYTES: 'pg.maxMessageBytes',
  PGWARD_PG_MAX_CONNECTIONS: 'pg.maxConnections',
  PGWARD_PG_AUTH_TIMEOUT_SECONDS: 'pg.authTimeoutSeconds',
  PGWARD_PG_MAX_UNAUTHENTICATED: 'pg.maxUnauthenticated',
  PGWARD_PG_MAX_UNAUTHENTICATED_PER_ADDRESS: 'pg.maxUnauthenticatedPerAddress',
  PGWARD_PG_MAX_SESSIONS_PER_PERSON: 'pg.maxSessionsPerPerson',
  PGWARD_PG_MAX_SESSIONS_PER_CONNECTION: 'pg.maxSessionsPerConnection',
  PGWARD_PG_POOL_IDLE_SECONDS: 'pg.poolIdleSeconds',
  PGWARD_PG_POOL_MAX_IDLE: 'pg.poolMaxIdlePerKey',
  PGWARD_PG_ROLE_SYNC_SECONDS: 'pg.roleSyncSeconds',
  PGWARD_PG_LOGIN_ROLE_VALID_SECONDS: 'pg.loginRoleValidSeconds',
  PGWARD_PG_LOGIN_ROLE_GROUP: 'pg.loginRoleGroup',
  PGWARD_PG_UPSTREAM_TIMEOUT_SECONDS: 'pg.upstreamTimeoutSeconds',
  PGWARD_SHUTDOWN_SECONDS: 'shutdownSeconds',
  PGWARD_AUDIT_ON_STORE_DOWN: 'audit.onStoreDown',
  PGWARD_AUDIT_SPOOL_DIR: 'audit.spoolDir',
  PGWARD_AUDIT_SPOOL_MAX_BYTES: 'audit.spoolMaxBytes',
  PGWARD_AUDIT_MAX_STATEMENT_BYTES: 'audit.maxStatementBytes',
  PGWARD_ALLOW_LOOPBACK_PLAINTEXT: 'pg.allowLoopbackPlaintext',
  PGWARD_HTTP_TLS: 'http.tls',
  PGWARD_TLS_CERT: 'tls.certFile',
  PGWARD_TLS_KEY: 'tls.keyFile',
  PGWARD_LOG_LEVEL: 'log.level',
  PGWARD_TENANCY: 'tenancy',
  PGWARD_TOKEN_SECONDS: 'tokens.accessTokenSeconds',
  PGWARD_SESSION_HOURS: 'tokens.sessionHours',
  PGWARD_KEY_ROTATION_HOURS: 'tokens.keyRotationHours',
  PGWARD_CORS_ORIGINS: 'api.corsOrigins',
  PGWARD_LOGIN_RATE_LIMIT: 'api.loginRateLimit',
  PGWARD_METRICS_ENABLED: 'metrics.enabled',
  PGWARD_METRICS_BEARER_TOKEN: 'metrics.bearerToken',
};

export interface LoadOptions {
  /** Path of a YAML or JSON config file (`--config`). */
  file?: string | undefined;
  env?: Record<string, string | undefined>;
  /** Values from command-line flags, as config paths (`http.port`) → value. */
  flags?: Record<string, unknown>;
}

type Tree = Record<string, unknown>;

function setPath(tree: Tree, path: string, value: unknown): void {
  const parts = path.split('.');
  let node = tree;
  for (const part of parts.slice(0, -1)) {
    const next = node[part];
    node[part] = typeof next === 'object' && next !== null ? next : {};
    node = node[part] as Tree;
  }
  node[parts.at(-1)!] = value;
}

function readConfigFile(file: string): Tree {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new SettingError(
      '--config',
      `cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`,
    );
  }
  if (text.length > MAX_CONFIG_FILE_BYTES) throw new SettingError('--config', `${file} is larger than 1 MiB`);
  let value: unknown;
  try {
    value = file.endsWith('.json') ? JSON.parse(text) : parseYaml(text);
  } catch (err) {
    throw new SettingError(file, `cannot be parsed: ${(err as Error).message.split('\n')[0]}`);
  }
  if (value === null || value === undefined) return {};
  if (typeof value !== 'object' || Array.isArray(value))
    throw new SettingError(file, 'expected a mapping at the top');
  return value as Tree;
}

/** Reads and validates the configuration; throws PgwardError CONFIG_INVALID naming every bad setting. */
export function loadConfig(opts: LoadOptions = {}): Config {
  const env = opts.env ?? process.env;
  // Which source set each config path, so a validation error can name what to change.
  const sources = new Map<string, string>();
  let tree: Tree = {};
  try {
    const file = opts.file ?? env['PGWARD_CONFIG'];
    if (file) {
      tree = readConfigFile(file);
      for (const key of Object.keys(tree)) sources.set(key, `${file}: ${key}`);
    }
    for (const [name, path] of Object.entries(ENV_SETTINGS)) {
      const value = env[name];
      if (value === undefined || value === '') continue;
      setPath(tree, path, value);
      sources.set(path, name);
    }
    const providers = Array.isArray(tree['providers']) ? [...tree['providers']] : [];
    const hoop = providerFromHoopEnv(env);
    if (hoop) {
      sources.set(`providers.${providers.length}`, 'IDP_* variables');
      providers.push(hoop);
    }
    const hasura = env['PGWARD_SSO_PROVIDERS'];
    if (hasura) {
      for (const provider of providersFromHasuraJson(hasura)) {
        sources.set(`providers.${providers.length}`, `PGWARD_SSO_PROVIDERS[${providers.length}]`);
        providers.push(provider);
      }
    }
    if (providers.length > 0) tree['providers'] = providers;
    for (const [path, value] of Object.entries(opts.flags ?? {})) {
      if (value === undefined) continue;
      setPath(tree, path, value);
      sources.set(path, `--${path.split('.').at(-1)}`);
    }
  } catch (err) {
    if (err instanceof SettingError) throw invalid([err.message]);
    throw err;
  }

  const result = configSchema.safeParse(tree as ConfigInput);
  if (!result.success) throw invalid(result.error.issues.map((issue) => describeIssue(issue, sources)));
  return result.data;
}

function invalid(lines: string[]): PgwardError {
  return new PgwardError('CONFIG_INVALID', `invalid configuration:\n  - ${lines.join('\n  - ')}`);
}

/** "http.port (PGWARD_HTTP_PORT): expected a port from 0 to 65535" — the longest known source wins. */
function describeIssue(issue: z.core.$ZodIssue, sources: Map<string, string>): string {
  const path = issue.path.map(String).join('.');
  let source: string | undefined;
  const parts = path.split('.');
  for (let n = parts.length; n > 0 && source === undefined; n--)
    source = sources.get(parts.slice(0, n).join('.'));
  const where = path === '' ? 'configuration' : path;
  let message = issue.message;
  if (issue.code === 'unrecognized_keys') message = `unknown setting(s): ${issue.keys.join(', ')}`;
  return source && source !== path ? `${where} (from ${source}): ${message}` : `${where}: ${message}`;
}
