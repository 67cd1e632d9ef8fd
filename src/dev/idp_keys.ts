/**
 * The dev IdP's signing key and cookie keys, kept in the data dir so tokens stay valid across
 * restarts of `pgward dev`. Files are created with mode 0600.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { calculateJwkThumbprint, exportJWK, generateKeyPair, type JWK } from 'jose';

export interface IdpKeys {
  signing: JWK;
  cookies: string[];
}

/** Loads the keys from `dir/keys.json`, generating them on first use. */
export async function loadIdpKeys(dir: string): Promise<IdpKeys> {
  const file = path.join(dir, 'keys.json');
  try {
    return JSON.parse(await readFile(file, 'utf8')) as IdpKeys;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  const { privateKey } = await generateKeyPair('RS256', { extractable: true, modulusLength: 2048 });
  const signing = await exportJWK(privateKey);
  signing.kid = await calculateJwkThumbprint(signing);
  signing.alg = 'RS256';
  signing.use = 'sig';
  const keys: IdpKeys = { signing, cookies: [randomBytes(32).toString('base64url')] };
  await mkdir(dir, { recursive: true, mode: 0o700 });
  await writeFile(file, JSON.stringify(keys), { mode: 0o600 });
  return keys;
}
