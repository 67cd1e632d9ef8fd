/**
 * What a PostgreSQL client needs to reach one connection through the gateway as the signed-in
 * person: libpq's environment variables (PGHOST, PGPORT, PGUSER, PGDATABASE, PGSSLMODE, and
 * PGSSLROOTCERT when the gateway's CA is known), shared by `psql`, `run`, `env` and `service`.
 * The password (the person's access token) is only ever passed in PGPASSWORD, never on argv.
 */
import { PgwardError } from '../errors.js';
import { isLoopbackHost } from '../loopback.js';
import { accessToken, api, type GatewaySslMode, gatewayUrl, pgEndpoint } from './gateway_client.js';

/** A connection the caller may use, as GET /api/v1/me/connections answers. */
export interface MyConnection {
  name: string;
  description?: string;
  roles: string[];
  policies?: Array<{ name: string; mode: 'enforce' | 'observe'; readOnly: boolean }>;
}

export interface ClientTarget {
  gateway: string;
  host: string;
  port: number;
  sslmode: GatewaySslMode;
  /** The person's email: their user name at the gateway. */
  user: string;
  /** The connection name: the database name at the gateway. */
  database: string;
  /** The gateway's CA certificate file, when known (PGWARD_CA). */
  sslRootCert: string | undefined;
}

/** Variables a client must not inherit: libpq would prefer them to ours (a service file, an address). */
export const OVERRIDING = ['PGSERVICE', 'PGHOSTADDR'] as const;

/** The connections the caller may use. */
export function myConnections(gateway: string, token: string): Promise<MyConnection[]> {
  return api<MyConnection[]>(gateway, 'GET', '/api/v1/me/connections', { token });
}

/**
 * Where and how to reach `connection` as the signed-in person: checks that they may use it (else
 * an error naming theirs) and that the token will not cross the network in the clear.
 */
export async function resolveTarget(
  connection: string,
  opts: { gateway?: string | undefined; sslmode?: GatewaySslMode | undefined },
): Promise<{ target: ClientTarget; token: string }> {
  const gateway = await gatewayUrl(opts.gateway);
  const token = await accessToken(gateway);
  const [endpoint, me, mine] = await Promise.all([
    pgEndpoint(gateway, opts.sslmode),
    api<{ email: string }>(gateway, 'GET', '/api/v1/whoami', { token }),
    myConnections(gateway, token),
  ]);
  if (!mine.some((c) => c.name === connection)) {
    throw new PgwardError('UNKNOWN_CONNECTION', `no connection "${connection}" that you may use`, {
      hint: `yours: ${mine.map((c) => c.name).join(', ') || '(none: ask an administrator for access)'}; \`pgward ls\` lists them`,
    });
  }
  if (endpoint.sslmode === 'disable' && !isLoopbackHost(endpoint.host)) {
    throw new PgwardError('BAD_REQUEST', `the gateway's PostgreSQL endpoint ${endpoint.host} offers no TLS`, {
      hint: 'your token would cross the network in the clear: ask the operator to enable TLS on the endpoint',
    });
  }
  return {
    token,
    target: {
      gateway,
      host: endpoint.host,
      port: endpoint.port,
      sslmode: endpoint.sslmode,
      user: me.email,
      database: connection,
      sslRootCert: process.env['PGWARD_CA'] || undefined,
    },
  };
}

/** libpq's variables for the target; PGPASSWORD only when a password is given. */
export function libpqVariables(
  target: ClientTarget,
  opts: { password?: string; applicationName?: string } = {},
): Record<string, string> {
  return {
    PGHOST: target.host,
    PGPORT: String(target.port),
    PGUSER: target.user,
    PGDATABASE: target.database,
    PGSSLMODE: target.sslmode,
    ...(target.sslRootCert ? { PGSSLROOTCERT: target.sslRootCert } : {}),
    ...(opts.applicationName ? { PGAPPNAME: opts.applicationName } : {}),
    ...(opts.password ? { PGPASSWORD: opts.password } : {}),
  };
}

/** This process's environment with `vars` set, and nothing libpq would prefer to them. */
export function childEnvironment(vars: Record<string, string>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env };
  for (const name of OVERRIDING) delete env[name];
  return { ...env, ...vars };
}

export type Shell = 'sh' | 'fish' | 'powershell';
export const SHELLS: readonly Shell[] = ['sh', 'fish', 'powershell'];

/** Removes variables from the shell's environment (nothing when they are not set). */
export function shellUnset(shell: Shell, names: readonly string[]): string {
  switch (shell) {
    case 'sh':
      return `unset ${names.join(' ')}`;
    case 'fish':
      return names.map((n) => `set -e ${n}`).join('; ');
    case 'powershell':
      return `Remove-Item ${names.map((n) => `Env:${n}`).join(', ')} -ErrorAction SilentlyContinue`;
  }
}

/** One `NAME=value` assignment in the shell's own syntax, quoted so that nothing in it is expanded. */
export function shellAssignment(shell: Shell, name: string, value: string): string {
  switch (shell) {
    case 'sh':
      return `export ${name}='${value.replaceAll("'", `'\\''`)}'`;
    case 'fish':
      return `set -gx ${name} '${value.replaceAll('\\', '\\\\').replaceAll("'", "\\'")}'`;
    case 'powershell':
      return `$Env:${name} = '${value.replaceAll("'", "''")}'`;
  }
}
