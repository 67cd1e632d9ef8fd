/**
 * The everyday commands: `pgward ls`, `version`, `psql`, `run` and `env`. Each finds the
 * connection as the signed-in person and hands a PostgreSQL client what it needs in libpq's
 * environment variables; the token travels in PGPASSWORD only (never argv, never a file).
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { constants } from 'node:os';
import path from 'node:path';
import { PgwardError } from '../errors.js';
import { PACKAGE_VERSION } from '../package_version.js';
import {
  childEnvironment,
  libpqVariables,
  type MyConnection,
  myConnections,
  OVERRIDING,
  resolveTarget,
  type Shell,
  shellAssignment,
  shellUnset,
} from './client_env.js';
import { LocalConnectListener } from './connect_command.js';
import { accessToken, api, type GatewaySslMode, gatewayUrl } from './gateway_client.js';
import { render } from './output.js';

interface GatewayFlags {
  gateway?: string;
  sslmode?: GatewaySslMode;
}

/** The rows `pgward ls` prints: NAME, ROLES, POLICIES (and DESCRIPTION when one has any). */
export function connectionRows(mine: MyConnection[]): Record<string, string>[] {
  const described = mine.some((c) => c.description);
  return mine.map((c) => ({
    NAME: c.name,
    ROLES: c.roles.join(', '),
    POLICIES: (c.policies ?? [])
      .map((p) => `${p.name}${p.readOnly ? ' (read-only)' : ''}${p.mode === 'observe' ? ' [observe]' : ''}`)
      .join(', '),
    ...(described ? { DESCRIPTION: c.description ?? '' } : {}),
  }));
}

/** `pgward ls`: the connections you may use, your roles there and the policies that apply. */
export async function runLs(opts: { gateway?: string; json?: boolean }): Promise<void> {
  const gateway = await gatewayUrl(opts.gateway);
  const mine = await myConnections(gateway, await accessToken(gateway));
  if (opts.json) {
    process.stdout.write(`${JSON.stringify(mine, null, 2)}\n`);
    return;
  }
  if (mine.length === 0) {
    process.stdout.write(`You may use no connection at ${gateway}.\n`);
    process.stderr.write(
      'hint: access comes from your groups (`pgward whoami` shows them): ask an administrator\n',
    );
    return;
  }
  process.stdout.write(render(connectionRows(mine), 'table'));
}

/** `pgward version`: this CLI's version, and the gateway's when signed in to one. */
export async function runVersion(opts: { gateway?: string; json?: boolean }): Promise<void> {
  let gateway: { url: string; version: string } | undefined;
  let why: string | undefined;
  try {
    const url = await gatewayUrl(opts.gateway);
    const { version } = await api<{ version: string }>(url, 'GET', '/api/v1/version', {
      token: await accessToken(url),
    });
    gateway = { url, version };
  } catch (err) {
    // The CLI's own version is always worth printing; the gateway's is a bonus.
    why = err instanceof PgwardError ? err.message : String(err);
  }
  if (opts.json) {
    process.stdout.write(
      `${JSON.stringify({ cli: PACKAGE_VERSION, ...(gateway ? { gateway } : {}) }, null, 2)}\n`,
    );
    return;
  }
  process.stdout.write(
    `pgward ${PACKAGE_VERSION}\n${gateway ? `gateway ${gateway.version} at ${gateway.url}` : `gateway: unknown (${why})`}\n`,
  );
}

/**
 * Runs a client to its end with the terminal, and answers its exit code (128 + the signal's
 * number when a signal ended it, as shells do). Ctrl-C reaches the client (it shares the
 * terminal's process group) and not this process, which waits for the client; SIGTERM is passed on.
 */
function runClient(command: string, args: string[], env: NodeJS.ProcessEnv): Promise<number> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { env, stdio: 'inherit' });
    const ignore = () => undefined;
    const forward = (signal: NodeJS.Signals) => child.kill(signal);
    const done = () => {
      process.off('SIGINT', ignore);
      process.off('SIGTERM', forward);
      process.off('SIGHUP', forward);
    };
    process.on('SIGINT', ignore);
    process.on('SIGTERM', forward);
    process.on('SIGHUP', forward);
    child.once('error', (err: NodeJS.ErrnoException) => {
      done();
      reject(
        err.code === 'ENOENT'
          ? new PgwardError('NOT_FOUND', `${command}: command not found`, {
              hint:
                command === 'psql'
                  ? 'install the PostgreSQL client (e.g. the postgresql-client package) or put psql on PATH'
                  : `check the name, or put ${command} on PATH`,
            })
          : new PgwardError('BAD_REQUEST', `cannot start ${command}: ${err.message}`, { cause: err }),
      );
    });
    child.once('exit', (code, signal) => {
      done();
      resolve(code ?? 128 + (signal ? constants.signals[signal] : 0));
    });
  });
}

/** `pgward psql CONN [-- ARGS]`: psql straight to the gateway, the fresh token in PGPASSWORD. */
export async function runPsql(connection: string, args: string[], opts: GatewayFlags): Promise<void> {
  const { target, token } = await resolveTarget(connection, opts);
  const env = childEnvironment(libpqVariables(target, { password: token, applicationName: 'pgward psql' }));
  process.exitCode = await runClient('psql', args, env);
}

/**
 * `pgward run CONN -- CMD ARGS`: any client, pointed at a `pgward connect` listener on 127.0.0.1
 * that this process serves for the client's whole run. Each connection the client opens (a
 * reconnect an hour later too) is logged in at the gateway with a fresh token; the client itself
 * holds only a password made up for this run, in PGPASSWORD.
 */
export async function runRun(connection: string, command: string[], opts: GatewayFlags): Promise<void> {
  const [program, ...args] = command;
  if (!program) {
    throw new PgwardError('BAD_REQUEST', 'no command to run', {
      hint: `put it after --, e.g. pgward run ${connection} -- pgbench -n -S -t 5`,
    });
  }
  const { target } = await resolveTarget(connection, opts);
  const password = randomBytes(18).toString('base64url');
  const listener = new LocalConnectListener({
    gateway: target.gateway,
    host: target.host,
    port: target.port,
    sslmode: target.sslmode,
    connection,
    email: target.user,
    password,
  });
  const port = await listener.listen(0);
  try {
    const env = childEnvironment(
      libpqVariables(
        { ...target, host: '127.0.0.1', port, sslmode: 'disable', sslRootCert: undefined },
        { password, applicationName: `pgward run ${path.basename(program)}` },
      ),
    );
    // A PGSSLROOTCERT of the caller's has no business with the plaintext loopback hop.
    delete env['PGSSLROOTCERT'];
    process.exitCode = await runClient(program, args, env);
  } finally {
    await listener.close();
  }
}

/** `pgward env CONN`: the variables in the shell's syntax; the token only with --with-password. */
export async function runEnv(
  connection: string,
  opts: GatewayFlags & { shell: Shell; withPassword?: boolean },
): Promise<void> {
  const { target, token } = await resolveTarget(connection, opts);
  const vars = libpqVariables(target, opts.withPassword ? { password: token } : {});
  const lines = [
    // libpq would prefer a service (and an address) already set to these.
    shellUnset(opts.shell, OVERRIDING),
    ...Object.entries(vars).map(([name, value]) => shellAssignment(opts.shell, name, value)),
  ];
  if (!opts.withPassword) {
    lines.push(
      `# PGPASSWORD is your pgward token: add --with-password, or set it from \`pgward token\` (it expires)`,
    );
  }
  process.stdout.write(`${lines.join('\n')}\n`);
}
