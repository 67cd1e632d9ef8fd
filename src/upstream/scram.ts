/**
 * SCRAM-SHA-256 (RFC 5802, RFC 7677) as PostgreSQL uses it: the client side of the upstream
 * login, and the verifier pgward sets on the roles it provisions (so a plaintext password never
 * travels in SQL). Channel binding (-PLUS) is not used.
 */
import { createHash, createHmac, pbkdf2, randomBytes, timingSafeEqual } from 'node:crypto';
import { promisify } from 'node:util';
import { PgwardError } from '../errors.js';

export const SCRAM_MECHANISM = 'SCRAM-SHA-256';
const MIN_ITERATIONS = 1;
const MAX_ITERATIONS = 1_000_000;
const VERIFIER_ITERATIONS = 4096;

const hmac = (key: Buffer, text: string) => createHmac('sha256', key).update(text).digest();
const sha256 = (data: Buffer) => createHash('sha256').update(data).digest();
const pbkdf2Async = promisify(pbkdf2);

/** Salted-password derivations, cached: the same role logs in again and again with the same salt. */
const keyCache = new Map<string, { clientKey: Buffer; serverKey: Buffer }>();
const KEY_CACHE_MAX = 1000;

async function keys(password: string, salt: Buffer, iterations: number) {
  const cacheKey = createHash('sha256')
    .update(password)
    .update('\0')
    .update(salt)
    .update(String(iterations))
    .digest('hex');
  let entry = keyCache.get(cacheKey);
  if (!entry) {
    // Off the event loop: 4096 rounds take milliseconds.
    const salted = await pbkdf2Async(password.normalize('NFKC'), salt, iterations, 32, 'sha256');
    entry = { clientKey: hmac(salted, 'Client Key'), serverKey: hmac(salted, 'Server Key') };
    if (keyCache.size >= KEY_CACHE_MAX) keyCache.clear();
    keyCache.set(cacheKey, entry);
  }
  return entry;
}

function fail(message: string): PgwardError {
  return new PgwardError('UPSTREAM_FAILED', `SCRAM login to the target failed: ${message}`);
}

/** One SCRAM exchange, client side. */
export class ScramClient {
  private readonly nonce = randomBytes(18).toString('base64');
  private readonly firstBare = `n=,r=${this.nonce}`;
  private expectedServerSignature: Buffer | undefined;
  private serverVerified = false;

  constructor(private readonly password: string) {}

  /** client-first-message (no channel binding: "n,,"). */
  clientFirst(): Buffer {
    return Buffer.from(`n,,${this.firstBare}`);
  }

  /** Answers server-first-message with client-final-message. */
  async clientFinal(serverFirst: string): Promise<Buffer> {
    const attrs = new Map(serverFirst.split(',').map((kv) => [kv.slice(0, 1), kv.slice(2)] as const));
    const nonce = attrs.get('r');
    const salt = attrs.get('s');
    const iterations = Number(attrs.get('i'));
    if (!nonce?.startsWith(this.nonce) || nonce.length === this.nonce.length)
      throw fail('server nonce is invalid');
    if (!salt) throw fail('server sent no salt');
    if (!Number.isInteger(iterations) || iterations < MIN_ITERATIONS || iterations > MAX_ITERATIONS) {
      throw fail('server iteration count is out of range');
    }
    const { clientKey, serverKey } = await keys(this.password, Buffer.from(salt, 'base64'), iterations);
    const finalWithoutProof = `c=biws,r=${nonce}`;
    const authMessage = `${this.firstBare},${serverFirst},${finalWithoutProof}`;
    const signature = hmac(sha256(clientKey), authMessage);
    const proof = Buffer.alloc(32);
    for (let i = 0; i < 32; i++) proof[i] = clientKey[i]! ^ signature[i]!;
    this.expectedServerSignature = hmac(serverKey, authMessage);
    return Buffer.from(`${finalWithoutProof},p=${proof.toString('base64')}`);
  }

  /** Checks server-final-message: the server must prove it knows the verifier too. */
  verifyServerFinal(serverFinal: string): void {
    const v = /(?:^|,)v=([^,]+)/.exec(serverFinal)?.[1];
    const expected = this.expectedServerSignature;
    const given = v ? Buffer.from(v, 'base64') : Buffer.alloc(0);
    if (!expected || given.length !== expected.length || !timingSafeEqual(given, expected)) {
      throw fail('the server signature does not match');
    }
    this.serverVerified = true;
  }

  /**
   * Refuses a login the server declares done (AuthenticationOk) before it proved it knows the
   * verifier: skipping the server-final message would skip the check above.
   */
  checkDone(): void {
    if (!this.serverVerified) throw fail('the server ended the exchange without proving its identity');
  }
}

/** The SCRAM verifier PostgreSQL stores for `password` (for ALTER ROLE ... PASSWORD). */
export async function scramVerifier(password: string): Promise<string> {
  const salt = randomBytes(16);
  const { clientKey, serverKey } = await keys(password, salt, VERIFIER_ITERATIONS);
  return `SCRAM-SHA-256$${VERIFIER_ITERATIONS}:${salt.toString('base64')}$${sha256(clientKey).toString('base64')}:${serverKey.toString('base64')}`;
}
