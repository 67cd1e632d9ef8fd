/** `pgward exec CONN`: runs SQL through the gateway as the signed-in person and prints the rows. */
import { readFile } from 'node:fs/promises';
import pg from 'pg';
import { PgwardError } from '../errors.js';
import { accessToken, api, type GatewaySslMode, gatewayUrl, pgEndpoint } from './gateway_client.js';
import { type Format, render } from './output.js';

const MAX_SQL_BYTES = 64 * 1024 * 1024;

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of process.stdin as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_SQL_BYTES) throw new PgwardError('BAD_REQUEST', 'the SQL on stdin is larger than 64 MiB');
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8');
}

export interface ExecOptions {
  gateway?: string;
  command?: string;
  file?: string;
  format: Format;
  sslmode?: GatewaySslMode;
}

export async function runExec(connection: string, opts: ExecOptions): Promise<void> {
  const gateway = await gatewayUrl(opts.gateway);
  const sql = opts.command ?? (opts.file ? await readFile(opts.file, 'utf8') : await readStdin());
  if (sql.trim() === '')
    throw new PgwardError('BAD_REQUEST', 'no SQL given', { hint: 'use -c SQL, -f FILE or stdin' });
  const token = await accessToken(gateway);
  const [{ host, port, sslmode }, me] = await Promise.all([
    pgEndpoint(gateway, opts.sslmode),
    api<{ email: string }>(gateway, 'GET', '/api/v1/whoami', { token }),
  ]);
  const client = new pg.Client({
    host,
    port,
    user: me.email,
    password: token,
    database: connection,
    application_name: 'pgward exec',
    ssl: sslmode === 'disable' ? false : { rejectUnauthorized: sslmode === 'verify-full' },
  });
  try {
    await client.connect();
    const answer = (await client.query(sql)) as pg.QueryResult | pg.QueryResult[];
    for (const result of Array.isArray(answer) ? answer : [answer]) {
      if (result.fields.length > 0) {
        process.stdout.write(
          render(
            result.rows,
            opts.format,
            result.fields.map((f) => f.name),
          ),
        );
      } else if (opts.format === 'table') {
        process.stdout.write(`${result.command}${result.rowCount === null ? '' : ` ${result.rowCount}`}\n`);
      }
    }
  } catch (err) {
    const e = err as { code?: string; message?: string; hint?: string };
    if (typeof e.code === 'string' && /^[0-9A-Z]{5}$/.test(e.code)) {
      // A PostgreSQL error (from the target, or the gateway's refusal): show it as psql would.
      process.stderr.write(
        `ERROR:  ${e.message} (SQLSTATE ${e.code})\n${e.hint ? `HINT:  ${e.hint}\n` : ''}`,
      );
      process.exitCode = 1;
      return;
    }
    throw new PgwardError('UPSTREAM_FAILED', `cannot run the SQL: ${e.message ?? String(err)}`, {
      cause: err,
    });
  } finally {
    await client.end().catch(() => undefined);
  }
}
