/** Handler of `pgward dev token`: kept apart from the dev stack so it loads no server code. */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { devLogin } from '../dev/dev_login.js';
import { DEV_PROVIDER_NAME } from '../dev/dev_users.js';
import { PgwardError } from '../errors.js';

const DISCOVERY_TIMEOUT_MS = 5_000;

/** Finds the dev IdP's issuer: from a gateway's discovery document, or the dev stack's dev.json. */
async function devIssuer(opts: { gateway?: string; dataDir: string }): Promise<string> {
  const gateway = opts.gateway ?? process.env['PGWARD_GATEWAY'];
  if (gateway) {
    let body: { providers?: { name: string; issuer: string }[] };
    try {
      const res = await fetch(new URL('/.well-known/pgward-configuration', gateway), {
        signal: AbortSignal.timeout(DISCOVERY_TIMEOUT_MS),
      });
      body = (await res.json()) as typeof body;
    } catch (err) {
      throw new PgwardError('IDP_UNREACHABLE', `cannot reach the gateway at ${gateway}`, { cause: err });
    }
    const provider = body.providers?.find((p) => p.name === DEV_PROVIDER_NAME);
    if (!provider)
      throw new PgwardError('NOT_FOUND', `the gateway at ${gateway} has no dev IdP (is it \`pgward dev\`?)`);
    return provider.issuer;
  }
  const file = path.join(opts.dataDir, 'dev.json');
  try {
    return (JSON.parse(await readFile(file, 'utf8')) as { idp: string }).idp;
  } catch (err) {
    throw new PgwardError('NOT_FOUND', `no dev stack found: cannot read ${file}`, {
      cause: err,
      hint: 'start it with `pgward dev`, or pass --gateway URL',
    });
  }
}

export async function runDevToken(
  email: string,
  opts: { gateway?: string; dataDir: string; password: string; idToken?: boolean },
): Promise<void> {
  const issuer = await devIssuer(opts);
  const tokens = await devLogin({ issuer, email, password: opts.password });
  const token = opts.idToken ? tokens.id_token : tokens.access_token;
  if (!token) throw new PgwardError('LOGIN_FAILED', 'the dev IdP returned no such token');
  process.stdout.write(`${token}\n`);
}
