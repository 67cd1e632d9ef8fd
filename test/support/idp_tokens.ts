/**
 * Tokens with chosen claims, signed with the dev IdP's own key (as the IdP itself would sign
 * them), and with pgward's own signing key: for attacks the real IdP would never issue.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { importJWK, type JWK, type JWTPayload, SignJWT } from 'jose';
import type pg from 'pg';
import { DEV_AUDIENCE } from '../../src/dev/dev_users.js';
import { SigningKeys } from '../../src/session/signing_keys.js';
import { SecretBox } from '../../src/vault/secret_box.js';

/** A dev IdP access token for `claims` (sub, email, ...); iat and exp default to now and +1 h. */
export async function devIdpToken(
  dataDir: string,
  issuer: string,
  claims: JWTPayload & Record<string, unknown>,
  header: { typ?: string } = {},
): Promise<string> {
  const keys = JSON.parse(readFileSync(path.join(dataDir, 'idp', 'keys.json'), 'utf8')) as { signing: JWK };
  const key = await importJWK(keys.signing, 'RS256');
  const now = Math.floor(Date.now() / 1000);
  return new SignJWT({ iat: now, exp: now + 3600, iss: issuer, aud: DEV_AUDIENCE, ...claims })
    .setProtectedHeader({ alg: 'RS256', kid: keys.signing.kid!, typ: header.typ ?? 'at+jwt' })
    .sign(key);
}

/** The gateway's current token signing key, opened with the data dir's secret key. */
export async function gatewaySigningKey(dataDir: string, store: pg.Pool) {
  const box = new SecretBox(
    Buffer.from(readFileSync(path.join(dataDir, 'secret.key'), 'utf8').trim(), 'base64'),
  );
  return new SigningKeys(store, box, { rotationMs: 24 * 3_600_000, tokenLifetimeMs: 900_000 }).current();
}
