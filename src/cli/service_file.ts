/**
 * `pgward service CONN`: a section of the connection service file (PGSERVICEFILE, else
 * ~/.pg_service.conf) so that `psql service=NAME` and GUI clients reach the connection through
 * the gateway. pgward writes and rewrites only sections it marked as its own, and never a
 * password: the client asks for one, which is `pgward token`.
 */
import { chmod, readFile, rename, stat, writeFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import path from 'node:path';
import { PgwardError } from '../errors.js';
import { type ClientTarget, resolveTarget } from './client_env.js';
import type { GatewaySslMode } from './gateway_client.js';

/** The comment that marks a section as pgward's (the first line after its header). */
const MARK = '# written by `pgward service`';
/** A service file larger than this is not one a person keeps by hand. */
const MAX_FILE_BYTES = 1024 * 1024;
const SERVICE_NAME = /^[A-Za-z0-9_.-]{1,63}$/;

/** The service file libpq reads: PGSERVICEFILE, else ~/.pg_service.conf. */
export function serviceFilePath(): string {
  return process.env['PGSERVICEFILE'] || path.join(homedir(), '.pg_service.conf');
}

/** The lines of pgward's section for the target. */
export function serviceSection(name: string, target: ClientTarget): string[] {
  for (const value of [target.gateway, target.host, target.user, target.sslRootCert ?? '']) {
    // One line per setting: a line break in a value would write settings of its own.
    if (/[\r\n]/.test(value))
      throw new PgwardError('BAD_REQUEST', 'a value for the service file spans lines');
  }
  return [
    `[${name}]`,
    `${MARK} for ${target.gateway}; password: the output of \`pgward token\``,
    `host=${target.host}`,
    `port=${target.port}`,
    `dbname=${target.database}`,
    `user=${target.user}`,
    `sslmode=${target.sslmode}`,
    ...(target.sslRootCert ? [`sslrootcert=${target.sslRootCert}`] : []),
    'application_name=pgward service',
  ];
}

/**
 * The file's text with section `name` replaced by (or, when absent, followed by) `section`.
 * A section of that name that pgward did not write is left alone: that is a conflict.
 */
export function upsertSection(text: string, name: string, section: string[]): string {
  const lines = text === '' ? [] : text.replace(/\r?\n$/, '').split(/\r?\n/);
  const header = (line: string) => /^\s*\[([^\]]*)\]\s*$/.exec(line)?.[1];
  const start = lines.findIndex((l) => header(l) === name);
  if (start === -1) {
    const gap = lines.length > 0 && lines.at(-1)!.trim() !== '' ? [''] : [];
    return `${[...lines, ...gap, ...section].join('\n')}\n`;
  }
  if (!lines[start + 1]?.startsWith(MARK)) {
    throw new PgwardError('CONFLICT', `the service file has a section [${name}] that pgward did not write`, {
      hint: `pick another name with --name, or remove that section yourself`,
    });
  }
  let end = start + 1;
  while (end < lines.length && header(lines[end]!) === undefined) end++;
  // Blank lines before the next section stay with it.
  while (end > start + 1 && lines[end - 1]!.trim() === '') end--;
  return `${[...lines.slice(0, start), ...section, ...lines.slice(end)].join('\n')}\n`;
}

async function readIfThere(file: string): Promise<{ text: string; mode: number | undefined }> {
  try {
    const info = await stat(file);
    if (info.size > MAX_FILE_BYTES) {
      throw new PgwardError('BAD_REQUEST', `${file} is larger than 1 MiB: not a service file pgward edits`);
    }
    return { text: await readFile(file, 'utf8'), mode: info.mode & 0o777 };
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { text: '', mode: undefined };
    throw err;
  }
}

export async function runService(
  connection: string,
  opts: { gateway?: string; sslmode?: GatewaySslMode; name?: string },
): Promise<void> {
  const name = opts.name ?? connection;
  if (!SERVICE_NAME.test(name)) {
    throw new PgwardError('BAD_REQUEST', `--name ${name}: expected letters, digits, _ . - (at most 63)`);
  }
  const { target } = await resolveTarget(connection, opts);
  const file = serviceFilePath();
  const { text, mode } = await readIfThere(file);
  const next = upsertSection(text, name, serviceSection(name, target));
  const tmp = `${file}.${process.pid}.tmp`;
  await writeFile(tmp, next, { mode: mode ?? 0o600 });
  await chmod(tmp, mode ?? 0o600);
  await rename(tmp, file);
  process.stdout.write(
    `Wrote the service "${name}" to ${file}.\n` +
      `Connect with:  PGPASSWORD="$(pgward token)" psql service=${name}\n` +
      '(GUI clients: service name, and the output of `pgward token` as the password; it expires)\n',
  );
}
