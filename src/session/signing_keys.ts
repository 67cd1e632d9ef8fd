/**
 * The keys that sign pgward's own tokens. They live in the store (sealed with the gateway's
 * secret key) so every gateway sharing the store signs and verifies alike, and they rotate: a new
 * key is made every rotation period, and an older one stays published (at /.well-known/jwks.json)
 * until the tokens it signed have expired.
 */
import { randomUUID } from 'node:crypto';
import { exportJWK, generateKeyPair, importJWK, type JWK } from 'jose';
import type pg from 'pg';
import { PgwardError } from '../errors.js';
import { withTransaction } from '../store/transaction.js';
import type { SecretBox } from '../vault/secret_box.js';

export const TOKEN_ALG = 'ES256';
/** How often keys are re-read from the store (another gateway may have rotated). */
const RELOAD_MS = 60_000;
/** Serializes rotation between gateways sharing a store. */
const ROTATION_LOCK = 0x70677764; // "pgwd"

interface KeyRow {
  kid: string;
  public_jwk: JWK;
  private_jwk: Buffer;
  created_at: Date;
}

interface SigningKey {
  kid: string;
  publicJwk: JWK;
  privateKey: Awaited<ReturnType<typeof importJWK>>;
  createdAt: Date;
}

const owner = (kid: string) => `signing-key:${kid}`;

export class SigningKeys {
  private keys: SigningKey[] = [];
  private loadedAt = 0;
  private loading: Promise<void> | undefined;

  constructor(
    private readonly pool: pg.Pool,
    private readonly box: SecretBox,
    private readonly timing: { rotationMs: number; tokenLifetimeMs: number },
  ) {}

  /** The key to sign with now, making a new one when the newest is older than the rotation period. */
  async current(): Promise<SigningKey> {
    await this.fresh();
    const newest = this.keys[0];
    if (newest && Date.now() - newest.createdAt.getTime() < this.timing.rotationMs) return newest;
    await this.rotate();
    return this.keys[0]!;
  }

  /** The public key with this kid, re-reading the store once when it is unknown. */
  async publicKey(kid: string): Promise<JWK | undefined> {
    await this.fresh();
    let key = this.keys.find((k) => k.kid === kid);
    if (!key && Date.now() - this.loadedAt > 1_000) {
      await this.reload();
      key = this.keys.find((k) => k.kid === kid);
    }
    return key?.publicJwk;
  }

  /** The published key set: every key whose tokens may still be alive. */
  async jwks(): Promise<{ keys: JWK[] }> {
    await this.fresh();
    return { keys: this.keys.map((k) => k.publicJwk) };
  }

  private async fresh(): Promise<void> {
    if (Date.now() - this.loadedAt > RELOAD_MS) await this.reload();
  }

  private reload(): Promise<void> {
    this.loading ??= (async () => {
      try {
        // A key stops signing after one rotation period and its tokens live one lifetime more.
        const horizonMs = this.timing.rotationMs + this.timing.tokenLifetimeMs + 60_000;
        const { rows } = await this.pool.query<KeyRow>(
          `SELECT kid, public_jwk, private_jwk, created_at FROM pgward.signing_key
            WHERE created_at > now() - make_interval(secs => $1) ORDER BY created_at DESC`,
          [horizonMs / 1000],
        );
        this.keys = await Promise.all(
          rows.map(async (row) => ({
            kid: row.kid,
            publicJwk: row.public_jwk,
            privateKey: await importJWK(
              JSON.parse(this.box.open(row.private_jwk, owner(row.kid))),
              TOKEN_ALG,
            ),
            createdAt: row.created_at,
          })),
        );
        this.loadedAt = Date.now();
      } finally {
        this.loading = undefined;
      }
    })();
    return this.loading;
  }

  private async rotate(): Promise<void> {
    try {
      await withTransaction(this.pool, async (client) => {
        await client.query('SELECT pg_advisory_xact_lock($1)', [ROTATION_LOCK]);
        // Another gateway may have rotated while this one waited for the lock.
        const { rows } = await client.query<{ fresh: boolean }>(
          `SELECT EXISTS (SELECT FROM pgward.signing_key
                         WHERE created_at > now() - make_interval(secs => $1)) AS fresh`,
          [this.timing.rotationMs / 1000],
        );
        if (!rows[0]!.fresh) {
          const kid = randomUUID();
          const { publicKey, privateKey } = await generateKeyPair(TOKEN_ALG, { extractable: true });
          const publicJwk = { ...(await exportJWK(publicKey)), kid, alg: TOKEN_ALG, use: 'sig' };
          const sealed = this.box.seal(JSON.stringify(await exportJWK(privateKey)), owner(kid));
          await client.query(
            'INSERT INTO pgward.signing_key (kid, alg, public_jwk, private_jwk) VALUES ($1, $2, $3, $4)',
            [kid, TOKEN_ALG, publicJwk, sealed],
          );
        }
      });
    } catch (err) {
      throw new PgwardError('STORE_UNAVAILABLE', 'cannot rotate the token signing key', { cause: err });
    }
    await this.reload();
  }
}
