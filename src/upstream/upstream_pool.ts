/**
 * Session pooling: authenticated upstream connections are kept per (connection, login role)
 * after their client leaves, reset with DISCARD ALL, and handed to the next session of the same
 * person with the same startup parameters. Idle ones close after a timeout. Only connections
 * at rest (idle, outside a transaction) are pooled; anything else is closed.
 */
import type { Logger } from '../log/logger.js';
import type { Metrics } from '../metrics/metrics.js';
import { UpstreamConnection, type UpstreamTarget } from './upstream.js';

interface Idle {
  conn: UpstreamConnection;
  timer: NodeJS.Timeout;
}

export interface PoolOptions {
  idleTimeoutMs: number;
  maxIdlePerKey: number;
  /** The deadline of each upstream step, for targets that do not set their own. */
  timeoutMs?: number;
}

export class UpstreamPool {
  private readonly idle = new Map<string, Idle[]>();
  private closed = false;

  constructor(
    private readonly opts: PoolOptions,
    private readonly log: Logger,
    private readonly metrics?: Metrics,
  ) {}

  /** An idle connection for `key`, or undefined. */
  take(key: string): UpstreamConnection | undefined {
    const list = this.idle.get(key);
    while (list && list.length > 0) {
      const entry = list.pop()!;
      clearTimeout(entry.timer);
      if (entry.conn.alive) {
        this.metrics?.poolCheckout('reused');
        return entry.conn;
      }
      entry.conn.close();
    }
    return undefined;
  }

  /** Opens a new connection (the caller decided none can be reused). */
  open(target: UpstreamTarget): Promise<UpstreamConnection> {
    this.metrics?.poolCheckout('opened');
    return UpstreamConnection.open({ timeoutMs: this.opts.timeoutMs, ...target });
  }

  /** Gives a connection back after its client left: reset and keep, or close. */
  async release(key: string, conn: UpstreamConnection): Promise<void> {
    if (this.closed || !conn.alive || conn.status !== 'I') {
      conn.close();
      return;
    }
    const list = this.idle.get(key) ?? [];
    if (list.length >= this.opts.maxIdlePerKey) {
      conn.close();
      return;
    }
    try {
      // Drops prepared statements, temp tables, LISTENs, advisory locks and session settings.
      await conn.query('DISCARD ALL');
    } catch (err) {
      this.log.debug({ err: (err as Error).message }, 'upstream reset failed; closing it');
      conn.close();
      return;
    }
    if (this.closed) {
      conn.close();
      return;
    }
    const timer = setTimeout(() => {
      const current = this.idle.get(key);
      const i = current?.findIndex((e) => e.conn === conn) ?? -1;
      if (current && i >= 0) current.splice(i, 1);
      conn.close();
    }, this.opts.idleTimeoutMs);
    timer.unref();
    list.push({ conn, timer });
    this.idle.set(key, list);
  }

  /** Number of idle connections (for health and tests). */
  get size(): number {
    let n = 0;
    for (const list of this.idle.values()) n += list.length;
    return n;
  }

  close(): void {
    this.closed = true;
    for (const list of this.idle.values()) {
      for (const entry of list) {
        clearTimeout(entry.timer);
        entry.conn.close();
      }
    }
    this.idle.clear();
  }
}
