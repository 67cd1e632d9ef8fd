/** Runs the real `pgward` command (bin/pgward.js) as a child process. */
import assert from 'node:assert/strict';
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { IdpPageWalker } from '../../src/dev/dev_login.js';
import { PACKAGE_ROOT } from '../../src/package_root.js';
import { eventually } from './eventually.js';

export const PGWARD_BIN = path.join(PACKAGE_ROOT, 'bin', 'pgward.js');

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs `pgward ...args` to completion (bounded by `timeoutMs`). */
export function runCli(
  args: string[],
  opts: { env?: Record<string, string>; timeoutMs?: number; input?: string } = {},
): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [PGWARD_BIN, ...args], {
      env: { ...process.env, ...opts.env },
      stdio: [opts.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
      timeout: opts.timeoutMs ?? 30_000,
    });
    if (opts.input !== undefined) child.stdin!.end(opts.input);
    let stdout = '';
    let stderr = '';
    child.stdout!.on('data', (d) => {
      stdout += d;
    });
    child.stderr!.on('data', (d) => {
      stderr += d;
    });
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

/** Starts a long-running `pgward ...args`; the caller stops it. */
export function startCli(
  args: string[],
  env: Record<string, string> = {},
): ChildProcess & { output: () => string } {
  const child = spawn(process.execPath, [PGWARD_BIN, ...args], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout!.on('data', (d) => {
    output += d;
  });
  child.stderr!.on('data', (d) => {
    output += d;
  });
  return Object.assign(child, { output: () => output });
}

/** A `pgward` child process started by startCli. */
export type CliChild = ReturnType<typeof startCli>;

/**
 * Starts `pgward dev` as a child process on `dataDir` and the given ports, and waits until it is
 * ready: dev.json written and /readyz answering 200. Fails at once if it exits, and after
 * `limitMs` (killing it) if it is not ready by then.
 */
export async function startDev(opts: {
  dataDir: string;
  ports: { http: number; pg: number; idp: number };
  env?: Record<string, string>;
  limitMs?: number;
}): Promise<CliChild> {
  const { dataDir, ports } = opts;
  const child = startCli(
    [
      'dev',
      '--data-dir',
      dataDir,
      '--http-port',
      String(ports.http),
      '--pg-port',
      String(ports.pg),
      '--idp-port',
      String(ports.idp),
    ],
    opts.env,
  );
  try {
    await eventually(
      async () => {
        if (child.exitCode !== null) assert.fail(`pgward dev exited early:\n${child.output()}`);
        if (!existsSync(path.join(dataDir, 'dev.json'))) return undefined;
        const res = await fetch(`http://127.0.0.1:${ports.http}/readyz`).catch(() => undefined);
        return res?.status === 200 ? true : undefined;
      },
      'pgward dev ready',
      opts.limitMs ?? 90_000,
      { everyMs: 200 },
    );
  } catch (err) {
    await stopProcess(child, 'SIGKILL');
    throw Object.assign(err as Error, { message: `${(err as Error).message}\n${child.output()}` });
  }
  return child;
}

/**
 * `pgward login` in `env`, with the device code confirmed on the dev IdP's pages (at `idp`) as
 * `email`; resolves with the command's output once it exited 0.
 */
export async function deviceLogin(idp: string, env: Record<string, string>, email: string): Promise<string> {
  const child = startCli(['login'], env);
  try {
    const url = await eventually(() => /open (\S+)/.exec(child.output())?.[1], 'the device login URL');
    await new IdpPageWalker(idp).walk(url, { email, password: 'password' }, () => false);
    const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
    assert.equal(code, 0, child.output());
    return child.output();
  } finally {
    await stopProcess(child);
  }
}

/** Sends `signal` and waits for the process to exit; returns its exit code. */
export function stopProcess(
  child: ChildProcess,
  signal: NodeJS.Signals = 'SIGTERM',
  timeoutMs = 20_000,
): Promise<number | null> {
  if (child.exitCode !== null) return Promise.resolve(child.exitCode);
  return new Promise((resolve) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve(code);
    });
    child.kill(signal);
  });
}

/** Runs a PostgreSQL client program; resolves with its exit code and output. */
export function runProgram(
  program: string,
  args: string[],
  env: Record<string, string> = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      program,
      args,
      { env: { ...process.env, PGCONNECT_TIMEOUT: '10', ...env }, timeout: 60_000 },
      (err, stdout, stderr) => {
        // A failed start (ENOENT) has a string code: exit code 1 then.
        const code = (err as { code?: unknown } | null)?.code;
        resolve({ code: err ? (typeof code === 'number' ? code : 1) : 0, stdout, stderr });
      },
    );
  });
}
