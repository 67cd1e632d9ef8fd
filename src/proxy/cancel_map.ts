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

export class CancelMap {
  private readonly sessions = new Map<number, { secret: Buffer; session: Cancellable }>();

  /** Mints a key: 4-byte secret for protocol 3.0, 32 bytes for 3.2 (which allows longer keys). */
  register(session: Cancellable, minor: number): CancelKey {
    let pid: number;
    do pid = randomInt(1, 2 ** 31 - 1);
    while (this.sessions.has(pid));
    const secret = randomBytes(minor >= 2 ? 32 : 4);
    this.sessions.set(pid, { secret, session });
    return { pid, secret };
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
