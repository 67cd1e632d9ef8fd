/**
 * The gateway's own cancel keys. Each client gets a BackendKeyData minted here (never the
 * upstream's pid and secret); a CancelRequest is matched to its session in constant time and
 * forwarded to the upstream connection serving that client at that moment.
 */
import { randomBytes, randomInt, timingSafeEqual } from 'node:crypto';

export interface Cancellable {
  cancelUpstream(): void;
}

export interface CancelKey {
  pid: number;
  secret: Buffer;
}

/** Secrets are cut from random bytes drawn this many at a time: one call into the CSPRNG per hundred keys. */
const RANDOM_BATCH = 4096;

export class CancelMap {
  private readonly sessions = new Map<number, { secret: Buffer; session: Cancellable }>();
  private random = Buffer.alloc(0);
  private randomUsed = 0;

  /** Mints a key: 4-byte secret for protocol 3.0, 32 bytes for 3.2 (which allows longer keys). */
  register(session: Cancellable, minor: number): CancelKey {
    let pid: number;
    do pid = randomInt(1, 2 ** 31 - 1);
    while (this.sessions.has(pid));
    const secret = this.randomSecret(minor >= 2 ? 32 : 4);
    this.sessions.set(pid, { secret, session });
    return { pid, secret };
  }

  /** `n` fresh random bytes; each is handed out once, then wiped from the batch. */
  private randomSecret(n: number): Buffer {
    if (this.randomUsed + n > this.random.length) {
      this.random = randomBytes(RANDOM_BATCH);
      this.randomUsed = 0;
    }
    const secret = Buffer.from(this.random.subarray(this.randomUsed, this.randomUsed + n));
    this.random.fill(0, this.randomUsed, this.randomUsed + n);
    this.randomUsed += n;
    return secret;
  }

  unregister(key: CancelKey): void {
    this.sessions.delete(key.pid);
  }

  /** The session a CancelRequest names, if its secret matches. */
  find(pid: number, secret: Buffer): Cancellable | undefined {
    const entry = this.sessions.get(pid);
    if (!entry || entry.secret.length !== secret.length || !timingSafeEqual(entry.secret, secret))
      return undefined;
    return entry.session;
  }
}
