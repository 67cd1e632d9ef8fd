/**
 * `pgward admin create|get|update|delete RESOURCE`: the REST API for administrators, from a
 * terminal. Connections take seed 000's `-e KEY=VALUE` form; `-e PASS=-` reads the password
 * from stdin so it never shows in the process list or shell history.
 */
import { readFile } from 'node:fs/promises';
import { parse as parseYaml } from 'yaml';
import { providerFromSeedRow, type SeedProviderRow, SettingError } from '../config/provider_formats.js';
import { PgwardError } from '../errors.js';
import { accessToken, api, gatewayUrl } from './gateway_client.js';
import { render } from './output.js';

export interface AdminOptions {
  gateway?: string;
  json?: boolean;
  env?: string[];
  access?: string[];
  provider?: string;
  externalGroup?: string;
  externalRole?: string;
  group?: string;
  user?: string;
  connection?: string;
  limit?: string;
  issuer?: string;
  clientId?: string;
  clientSecret?: string;
  displayName?: string;
  validation?: string;
  audience?: string;
  groupsClaim?: string;
  adminGroup?: string[];
  linkByEmail?: boolean;
  file?: string;
  /** `get statements --refused`: only statements pgward refused. */
  refused?: boolean;
  /** `get statements --decision D`: allowed, refused or observed. */
  decision?: string;
  /** The provider's preset. */
  type?: string;
  hostedDomain?: string;
  tenantId?: string;
  allowedTenant?: string[];
}

const ENV_KEYS = [
  'HOST',
  'PORT',
  'USER',
  'PASS',
  'DB',
  'SSLMODE',
  'ROLE_MODE',
  'UNSAFE_ALLOW_UNVERIFIED_PASSWORD_AUTH',
] as const;

/** `admin create provider`: a provider file (the configuration's format) and flags over it. */
async function providerFields(name: string, opts: AdminOptions): Promise<Record<string, unknown>> {
  let body: Record<string, unknown> = opts.file
    ? (parseYaml(await readFile(opts.file, 'utf8')) as Record<string, unknown>)
    : {};
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw new PgwardError('BAD_REQUEST', `${opts.file}: expected one provider (a mapping of settings)`);
  }
  // A row of seed 004's provider table: provider_type and its configuration.
  if ('provider_type' in body) {
    try {
      body = providerFromSeedRow(body as unknown as SeedProviderRow, opts.file);
    } catch (err) {
      if (err instanceof SettingError) throw new PgwardError('BAD_REQUEST', err.message);
      throw err;
    }
  }
  body['name'] = name;
  if (opts.issuer) body['issuer'] = opts.issuer;
  if (opts.clientId) body['clientId'] = opts.clientId;
  if (opts.displayName) body['displayName'] = opts.displayName;
  if (opts.validation) body['validation'] = opts.validation;
  if (opts.audience) body['audience'] = opts.audience;
  if (opts.adminGroup?.length) body['adminGroups'] = opts.adminGroup;
  if (opts.linkByEmail) body['linkByEmail'] = true;
  if (opts.type) body['type'] = opts.type;
  const block = (key: string) => ({ ...(body[key] as Record<string, unknown>) });
  if (opts.hostedDomain) body['google'] = { ...block('google'), hostedDomain: opts.hostedDomain };
  if (opts.tenantId) body['azuread'] = { ...block('azuread'), tenantId: opts.tenantId };
  if (opts.allowedTenant?.length)
    body['azuread'] = { ...block('azuread'), allowedTenants: opts.allowedTenant };
  if (opts.groupsClaim) {
    body['claims'] = { ...(body['claims'] as Record<string, unknown>), groups: opts.groupsClaim };
  }
  if (opts.clientSecret !== undefined) {
    // On the command line a secret would show in the process list and the shell history.
    if (opts.clientSecret !== '-') {
      throw new PgwardError('BAD_REQUEST', '--client-secret takes "-" and reads the secret from stdin');
    }
    body['clientSecret'] = await readSecretFromStdin();
    if (!body['clientSecret']) throw new PgwardError('BAD_REQUEST', 'no client secret on stdin');
  }
  return body;
}

async function readSecretFromStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin as AsyncIterable<Buffer>) chunks.push(chunk);
  return Buffer.concat(chunks)
    .toString('utf8')
    .replace(/\r?\n$/, '');
}

/** `-e HOST=db -e PORT=5432 ...` → the API's connection fields. */
async function connectionFields(env: string[] = [], access: string[] = []) {
  const values: Record<string, string> = {};
  for (const item of env) {
    const eq = item.indexOf('=');
    const key = item.slice(0, eq).toUpperCase();
    if (eq < 1 || !(ENV_KEYS as readonly string[]).includes(key)) {
      throw new PgwardError(
        'BAD_REQUEST',
        `-e ${item.slice(0, 40)}: expected KEY=VALUE with KEY one of ${ENV_KEYS.join(', ')}`,
      );
    }
    values[key] = item.slice(eq + 1);
  }
  if (values['PASS'] === '-') values['PASS'] = await readSecretFromStdin();
  const body: Record<string, unknown> = {};
  if (values['HOST']) body['host'] = values['HOST'];
  if (values['PORT']) body['port'] = Number(values['PORT']);
  if (values['DB']) body['database'] = values['DB'];
  if (values['SSLMODE']) body['sslmode'] = values['SSLMODE'];
  if (values['ROLE_MODE']) body['roleMode'] = values['ROLE_MODE'];
  const unsafe = values['UNSAFE_ALLOW_UNVERIFIED_PASSWORD_AUTH'];
  if (unsafe !== undefined) {
    if (unsafe !== 'true' && unsafe !== 'false') {
      throw new PgwardError('BAD_REQUEST', '-e UNSAFE_ALLOW_UNVERIFIED_PASSWORD_AUTH takes true or false');
    }
    body['allowUnverifiedPasswordAuth'] = unsafe === 'true';
  }
  if (values['USER'] !== undefined || values['PASS'] !== undefined) {
    if (!values['USER'] || !values['PASS']) throw new PgwardError('BAD_REQUEST', 'USER and PASS go together');
    body['credential'] = { user: values['USER'], password: values['PASS'] };
  }
  if (access.length > 0) {
    const map: Record<string, string[]> = {};
    for (const item of access) {
      const eq = item.indexOf('=');
      if (eq < 1) throw new PgwardError('BAD_REQUEST', `--access ${item}: expected GROUP=ROLE[,ROLE]`);
      map[item.slice(0, eq)] = item
        .slice(eq + 1)
        .split(',')
        .filter((r) => r !== '');
    }
    body['access'] = map;
  }
  return body;
}

const enc = encodeURIComponent;

/** GET routes by resource name (singular takes a NAME). */
const READS: Record<
  string,
  { route: (name?: string, o?: AdminOptions) => string; columns?: string[]; needsName?: boolean }
> = {
  conns: {
    route: () => '/api/v1/connections',
    columns: [
      'name',
      'host',
      'port',
      'database',
      'sslmode',
      'roleMode',
      'access',
      'allowUnverifiedPasswordAuth',
    ],
  },
  conn: { route: (n) => `/api/v1/connections/${enc(n!)}`, needsName: true },
  groups: { route: () => '/api/v1/groups' },
  members: {
    route: (n) => `/api/v1/groups/${enc(n!)}/members`,
    needsName: true,
    columns: ['email', 'name', 'isActive'],
  },
  mappings: { route: (_n, o) => `/api/v1/mappings${o?.provider ? `?provider=${enc(o.provider)}` : ''}` },
  providers: {
    route: () => '/api/v1/providers',
    columns: ['name', 'displayName', 'isActive', 'source', 'configuration'],
  },
  users: {
    route: () => '/api/v1/users',
    columns: ['email', 'name', 'tenant', 'isActive', 'isAdmin', 'userId'],
  },
  user: { route: (n) => `/api/v1/users/${enc(n!)}`, needsName: true },
  sessions: {
    route: (_n, o) => `/api/v1/sessions?${auditQuery(o)}`,
    columns: ['startedAt', 'email', 'connection', 'loginRole', 'applicationName', 'endedAt', 'endReason'],
  },
  statements: {
    route: (_n, o) => `/api/v1/statements?${auditQuery(o)}`,
    columns: ['startedAt', 'email', 'connection', 'text', 'durationMs', 'commandTag', 'sqlstate', 'decision'],
  },
  policies: {
    route: () => '/api/v1/policies',
    columns: ['name', 'source', 'mode', 'connections', 'groups', 'rules', 'updatedAt'],
  },
  policy: { route: (n) => `/api/v1/policies/${enc(n!)}`, needsName: true },
  'provider-usage': { route: () => '/api/v1/reports/provider-usage' },
  'stale-identities': { route: () => '/api/v1/reports/stale-identities' },
};

function auditQuery(o: AdminOptions | undefined): string {
  const q = new URLSearchParams();
  if (o?.user) q.set('user', o.user);
  if (o?.connection) q.set('connection', o.connection);
  if (o?.limit) q.set('limit', o.limit);
  if (o?.refused) q.set('decision', 'refused');
  else if (o?.decision) q.set('decision', o.decision);
  return q.toString();
}

export const ADMIN_RESOURCES = Object.keys(READS);

function print(value: unknown, opts: AdminOptions, columns?: string[]): void {
  if (opts.json || !Array.isArray(value)) {
    process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
    return;
  }
  process.stdout.write(render(value as Record<string, unknown>[], 'table', columns));
}

async function session(opts: AdminOptions) {
  const gateway = await gatewayUrl(opts.gateway);
  return { gateway, token: await accessToken(gateway) };
}

export async function runAdminGet(
  resource: string,
  name: string | undefined,
  opts: AdminOptions,
): Promise<void> {
  const read = READS[resource];
  if (!read)
    throw new PgwardError('BAD_REQUEST', `unknown resource "${resource}"`, {
      hint: `one of: ${ADMIN_RESOURCES.join(', ')}`,
    });
  if (read.needsName && !name) throw new PgwardError('BAD_REQUEST', `admin get ${resource} needs a NAME`);
  const { gateway, token } = await session(opts);
  // `get policies NAME` is `get policy NAME`: the document itself.
  const route = resource === 'policies' && name ? READS['policy']!.route(name) : read.route(name, opts);
  const value = await api(gateway, 'GET', route, { token });
  print(resource === 'policies' && !name && !opts.json ? policyRows(value) : value, opts, read.columns);
}

export async function runAdminCreate(
  resource: string,
  name: string | undefined,
  opts: AdminOptions,
): Promise<void> {
  const { gateway, token } = await session(opts);
  switch (resource) {
    case 'conn': {
      if (!name) throw new PgwardError('BAD_REQUEST', 'admin create conn needs a NAME');
      const body = { name, ...(await connectionFields(opts.env, opts.access)) };
      print(await api(gateway, 'POST', '/api/v1/connections', { token, body }), opts);
      return;
    }
    case 'group':
      if (!name) throw new PgwardError('BAD_REQUEST', 'admin create group needs a NAME');
      print(await api(gateway, 'POST', '/api/v1/groups', { token, body: { name } }), opts);
      return;
    case 'member':
      if (!name || !opts.user)
        throw new PgwardError('BAD_REQUEST', 'usage: admin create member GROUP --user EMAIL');
      await api(gateway, 'PUT', `/api/v1/groups/${enc(name)}/members/${enc(opts.user)}`, { token });
      process.stdout.write(`${opts.user} is now a member of ${name}.\n`);
      return;
    case 'mapping':
      if (!opts.provider || !opts.group) {
        throw new PgwardError(
          'BAD_REQUEST',
          'usage: admin create mapping --provider P (--external-group G | --external-role R) --group GROUP',
        );
      }
      print(
        await api(gateway, 'POST', '/api/v1/mappings', {
          token,
          body: {
            provider: opts.provider,
            externalGroup: opts.externalGroup,
            externalRole: opts.externalRole,
            group: opts.group,
          },
        }),
        opts,
      );
      return;
    case 'provider': {
      if (!name) throw new PgwardError('BAD_REQUEST', 'admin create provider needs a NAME');
      const body = await providerFields(name, opts);
      print(await api(gateway, 'POST', '/api/v1/providers', { token, body }), opts);
      return;
    }
    case 'policy': {
      if (!name || !opts.file)
        throw new PgwardError('BAD_REQUEST', 'usage: admin create policy NAME --file FILE (YAML or JSON)');
      const body = await policyFile(name, opts.file);
      print(await api(gateway, 'PUT', `/api/v1/policies/${enc(name)}`, { token, body }), opts);
      return;
    }
    default:
      throw new PgwardError('BAD_REQUEST', `cannot create "${resource}"`, {
        hint: 'one of: conn, group, member, mapping, provider, policy',
      });
  }
}

export async function runAdminUpdate(
  resource: string,
  name: string,
  opts: AdminOptions & { active?: boolean },
): Promise<void> {
  const { gateway, token } = await session(opts);
  if (resource === 'conn') {
    const body = await connectionFields(opts.env, opts.access);
    print(await api(gateway, 'PATCH', `/api/v1/connections/${enc(name)}`, { token, body }), opts);
    return;
  }
  if (resource === 'user' && opts.active !== undefined) {
    print(
      await api(gateway, 'PATCH', `/api/v1/users/${enc(name)}`, { token, body: { isActive: opts.active } }),
      opts,
    );
    return;
  }
  if (resource === 'provider' && opts.active !== undefined) {
    await api(gateway, 'PATCH', `/api/v1/providers/${enc(name)}`, { token, body: { isActive: opts.active } });
    process.stdout.write(`Provider ${name} is now ${opts.active ? 'active' : 'inactive'}.\n`);
    return;
  }
  throw new PgwardError('BAD_REQUEST', `cannot update "${resource}" that way`, {
    hint: 'admin update conn NAME -e KEY=VALUE | admin update user EMAIL --active|--inactive | admin update provider NAME --active|--inactive',
  });
}

export async function runAdminDelete(resource: string, name: string, opts: AdminOptions): Promise<void> {
  const routes: Record<string, string> = {
    conn: `/api/v1/connections/${enc(name)}`,
    group: `/api/v1/groups/${enc(name)}`,
    mapping: `/api/v1/mappings/${enc(name)}`,
    member: `/api/v1/groups/${enc(name)}/members/${enc(opts.user ?? '')}`,
    provider: `/api/v1/providers/${enc(name)}`,
    policy: `/api/v1/policies/${enc(name)}`,
  };
  const route = routes[resource];
  if (!route)
    throw new PgwardError('BAD_REQUEST', `cannot delete "${resource}"`, {
      hint: 'one of: conn, group, mapping, member, provider, policy',
    });
  const { gateway, token } = await session(opts);
  await api(gateway, 'DELETE', route, { token });
  process.stdout.write(`Deleted ${resource} ${name}.\n`);
}

/** `admin revoke user EMAIL` ends every sign-in of a person; `admin revoke token` one token (stdin). */
export async function runAdminRevoke(
  what: string,
  name: string | undefined,
  opts: AdminOptions,
): Promise<void> {
  if (what === 'user') {
    if (!name) throw new PgwardError('BAD_REQUEST', 'admin revoke user needs an EMAIL');
    const { gateway, token } = await session(opts);
    const { revoked } = await api<{ revoked: number }>(gateway, 'POST', `/api/v1/users/${enc(name)}/revoke`, {
      token,
    });
    process.stdout.write(`Revoked ${revoked} sign-in${revoked === 1 ? '' : 's'} of ${name}.\n`);
    return;
  }
  if (what === 'token') {
    if (name) {
      throw new PgwardError(
        'BAD_REQUEST',
        'admin revoke token reads the token from stdin, not the command line',
        {
          hint: 'echo "$TOKEN" | pgward admin revoke token',
        },
      );
    }
    const revoke = await readSecretFromStdin();
    if (!revoke) throw new PgwardError('BAD_REQUEST', 'no token on stdin');
    const { gateway, token } = await session(opts);
    await api(gateway, 'POST', '/api/v1/auth/revoke', { token, body: { token: revoke } });
    process.stdout.write('Revoked the token.\n');
    return;
  }
  throw new PgwardError('BAD_REQUEST', `cannot revoke "${what}"`, { hint: 'one of: user, token' });
}

interface CheckAnswer {
  connection: string;
  ok: boolean;
  checks: { check: string; status: 'ok' | 'warn' | 'fail'; detail: string; action?: string }[];
}

/** `admin check conn NAME`: one line per check (ok, warn, fail) and what to do; exits non-zero on a fail. */
export async function runAdminCheck(resource: string, name: string, opts: AdminOptions): Promise<void> {
  if (resource !== 'conn') {
    throw new PgwardError('BAD_REQUEST', `cannot check "${resource}"`, { hint: 'admin check conn NAME' });
  }
  const { gateway, token } = await session(opts);
  const answer = await api<CheckAnswer>(gateway, 'POST', `/api/v1/connections/${enc(name)}/check`, { token });
  if (opts.json) {
    process.stdout.write(`${JSON.stringify(answer, null, 2)}\n`);
  } else {
    for (const line of answer.checks) {
      process.stdout.write(`${line.status.padEnd(4)}  ${line.check}: ${line.detail}\n`);
      if (line.action && line.status !== 'ok') process.stdout.write(`      do: ${line.action}\n`);
    }
  }
  if (!answer.ok) {
    const failed = answer.checks.filter((c) => c.status === 'fail').length;
    throw new PgwardError(
      'UPSTREAM_FAILED',
      `connection "${name}" failed ${failed} check${failed === 1 ? '' : 's'}`,
    );
  }
}

/** A policy file for `admin create policy NAME`: its name is NAME (a different one is an error). */
async function policyFile(name: string, file: string): Promise<Record<string, unknown>> {
  const body = parseYaml(await readFile(file, 'utf8')) as unknown;
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw new PgwardError('BAD_REQUEST', `${file}: expected one policy document (a mapping)`);
  }
  const doc = body as Record<string, unknown>;
  if (doc['name'] !== undefined && doc['name'] !== name) {
    throw new PgwardError('BAD_REQUEST', `${file} names the policy "${String(doc['name'])}", not "${name}"`);
  }
  return { ...doc, name };
}

/** One table row per policy: its document's parts, rules as their short names. */
function policyRows(value: unknown): Record<string, unknown>[] {
  return (
    value as { name: string; source: string; updatedAt: string | null; document: Record<string, unknown> }[]
  ).map((p) => ({
    name: p.name,
    source: p.source,
    mode: p.document['mode'],
    connections: p.document['connections'],
    groups: p.document['groups'] ?? '(everyone)',
    rules: (p.document['rules'] as unknown[]).length,
    updatedAt: p.updatedAt,
  }));
}
