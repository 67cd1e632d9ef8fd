/**
 * pgward's own sessions on a target, logged in with the connection's vaulted credential, for
 * role provisioning and other control queries. A few per connection (a cap; callers beyond it
 * wait their turn under the deadline), kept for the connection as it is now: once it changes
 * (host, credential), the old sessions close and new ones log in.
 */
import { PgwardError } from '../errors.js';
import type { Connection, ConnectionRepository } from '../vault/connections.js';
import { DEFAULT_UPSTREAM_TIMEOUT_MS, UpstreamConnection, upstreamTimeout } from './upstream.js';
import { upstreamTarget } from './upstream_target.js';

export interface AdminPoolOptions {
  /** Sessions at once per connection. */
  max: number;
  /** An idle session closes after this long. */
  idleMs: number;
  /** The deadline of each upstream step, and of the wait for a free session. */
  timeoutMs: number;
}

interface Idle {
  conn: UpstreamConnection;
  timer: NodeJS.Timeout;
}

interface PerConnection {
  version: string;
  idle: Idle[];
  busy: number;
  waiting: (() => void)[];
}

const DEFAULTS: AdminPoolOptions = { max: 4, idleMs: 60_000, timeoutMs: DEFAULT_UPSTREAM_TIMEOUT_MS };

export class AdminPool {
  private readonly byConnection = new Map<string, PerConnection>();
  private readonly opts: AdminPoolOptions;
  private closed = false;

  constructor(
    private readonly connections: ConnectionRepository,
    opts: Partial<AdminPoolOptions> = {},
  ) {
    this.opts = { ...DEFAULTS, ...opts };
  }

  /** Runs `work` on an admin session of `connection`; the session goes back when it is at rest. */
  async use<T>(connection: Connection, work: (conn: UpstreamConnection) => Promise<T>): Promise<T> {
    const entry = await this.slot(connection);
    let conn: UpstreamConnection;
    try {
      conn = this.takeIdle(entry) ?? (await this.login(connection));
    } catch (err) {
      this.free(entry);
      throw err;
    }
    try {
      const result = await work(conn);
      this.giveBack(connection, entry, conn);
      return result;
    } catch (err) {
      conn.close();
      this.free(entry);
      throw err;
    }
  }

  /** Opens one session with the connection's credential. */
  private async login(connection: Connection): Promise<UpstreamConnection> {
    const credential = await this.connections.credential(connection);
    return UpstreamConnection.open(
      upstreamTarget(
        connection,
        credential,
        { application_name: 'pgward (administration)' },
        this.opts.timeoutMs,
      ),
    );
  }

  /** Waits for a free place under the cap (the connection as it is now). */
  private async slot(connection: Connection): Promise<PerConnection> {
    if (this.closed) throw new PgwardError('UPSTREAM_FAILED', 'pgward is shutting down');
    let entry = this.byConnection.get(connection.id);
    if (entry && entry.version !== connection.version) {
      for (const idle of entry.idle.splice(0)) {
        clearTimeout(idle.timer);
        idle.conn.close();
      }
      entry.version = connection.version;
    }
    if (!entry) {
      entry = { version: connection.version, idle: [], busy: 0, waiting: [] };
      this.byConnection.set(connection.id, entry);
    }
    const current = entry;
    while (current.busy >= this.opts.max) {
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => {
          const i = current.waiting.indexOf(wake);
          if (i >= 0) current.waiting.splice(i, 1);
          reject(
            upstreamTimeout({ ...connection, timeoutMs: this.opts.timeoutMs }, 'with a free admin session'),
          );
        }, this.opts.timeoutMs);
        const wake = () => {
          clearTimeout(timer);
          resolve();
        };
        current.waiting.push(wake);
      });
    }
    current.busy++;
    return current;
  }

  private free(entry: PerConnection): void {
    entry.busy--;
    entry.waiting.shift()?.();
  }

  private takeIdle(entry: PerConnection): UpstreamConnection | undefined {
    while (entry.idle.length > 0) {
      const { conn, timer } = entry.idle.pop()!;
      clearTimeout(timer);
      if (conn.alive) return conn;
      conn.close();
    }
    return undefined;
  }

  private giveBack(connection: Connection, entry: PerConnection, conn: UpstreamConnection): void {
    this.free(entry);
    if (this.closed || !conn.alive || conn.status !== 'I' || entry.version !== connection.version) {
      conn.close();
      return;
    }
    const timer = setTimeout(() => {
      const i = entry.idle.findIndex((e) => e.conn === conn);
      if (i >= 0) entry.idle.splice(i, 1);
      conn.close();
    }, this.opts.idleMs);
    timer.unref();
    entry.idle.push({ conn, timer });
  }

  close(): void {
    this.closed = true;
    for (const entry of this.byConnection.values()) {
      for (const idle of entry.idle.splice(0)) {
        clearTimeout(idle.timer);
        idle.conn.close();
      }
    }
    this.byConnection.clear();
  }
}
