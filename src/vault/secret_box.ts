/**
 * Encryption of secrets at rest: AES-256-GCM under the gateway's 32-byte key. Each value is
 * bound to its owner (associated data, e.g. "connection:<id>") so a ciphertext copied to another
 * row does not decrypt. Layout: version byte, 12-byte nonce, ciphertext, 16-byte tag.
 */
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { PgwardError } from '../errors.js';

const VERSION = 1;
const NONCE = 12;
const TAG = 16;

export class SecretBox {
  constructor(private readonly key: Buffer) {
    if (key.length !== 32) throw new PgwardError('CONFIG_INVALID', 'the secret key must be 32 bytes');
  }

  seal(plaintext: string, owner: string): Buffer {
    const nonce = randomBytes(NONCE);
    const cipher = createCipheriv('aes-256-gcm', this.key, nonce);
    cipher.setAAD(Buffer.from(owner, 'utf8'));
    const body = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()]);
    return Buffer.concat([Buffer.from([VERSION]), nonce, body, cipher.getAuthTag()]);
  }

  open(sealed: Buffer, owner: string): string {
    if (sealed.length < 1 + NONCE + TAG || sealed[0] !== VERSION) {
      throw new PgwardError('INTERNAL', 'a vaulted secret is malformed');
    }
    try {
      const decipher = createDecipheriv('aes-256-gcm', this.key, sealed.subarray(1, 1 + NONCE));
      decipher.setAAD(Buffer.from(owner, 'utf8'));
      decipher.setAuthTag(sealed.subarray(sealed.length - TAG));
      return Buffer.concat([
        decipher.update(sealed.subarray(1 + NONCE, sealed.length - TAG)),
        decipher.final(),
      ]).toString('utf8');
    } catch (err) {
      throw new PgwardError('INTERNAL', 'a vaulted secret does not decrypt: wrong PGWARD_SECRET_KEY?', {
        cause: err,
      });
    }
  }
}
