/**
 * Access events: a change that takes access away (a person revoked or deactivated, a sign-in
 * ended, a group, mapping or connection changed) is published on a LISTEN/NOTIFY channel of the
 * store, so every gateway sharing it hears of it within moments and its live sessions check
 * themselves again. One dedicated client per gateway LISTENs; it reconnects after the store
 * restarts or the connection drops, and since events sent meanwhile are lost, it then tells its
 * subscribers that everyone must recheck.
 */
import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { PgwardError } from '../errors.js';
import type { Logger } from '../log/logger.js';

export type AccessEvent =
  /** One person: revoked, deactivated, an identity deactivated, a membership changed. */
  | { kind: 'person'; userId: string; reason: string }
  /** One sign-in ended (logout, refresh token reuse): sessions opened with its tokens. */
  | { kind: 'sign-in'; signInId: string; reason: string }
  /** Groups, mappings, providers or connections changed: every session checks its access. */
  | { kind: 'everyone'; reason: string }
  /** A policy was added, changed or deleted: every gateway reads the policies again. */
  | { kind: 'policies'; reason: string };

export type AccessListener = (event: AccessEvent) => void;

/** The NOTIFY channel (an identifier, so lowercase and unquoted). */
export const ACCESS_CHANNEL = 'pgward_access';
/** NOTIFY payloads must stay under 8000 bytes; ours are far smaller, and reasons are capped. */
const MAX_PAYLOAD_BYTES = 7_900;
const MAX_REASON_CHARS = 200;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export interface AccessEventsOptions {
  /** Connection URL of the store (holds its password: never logged). */
  url: string;
  /** The store's pool, which sends the notifications. */
  pool: pg.Pool;
  log: Logger;
  /** Backoff between reconnection attempts, doubling from `minMs` up to `maxMs`. */
  retry?: { minMs: number; maxMs: number };
  /** How often the listening connection proves it is alive. */
  heartbeatMs?: number;
}

const CONNECT_TIMEOUT_MS = 5_000;

/** Validates a notification's payload; anything else on the channel is ignored. */
export function parseAccessEvent(payload: string): { origin: string; event: AccessEvent } | undefined {
  let data: unknown;
  try {
    data = JSON.parse(payload);
  } catch {
    return undefined;
  }
  if (typeof data !== 'object' || data === null) return undefined;
  const { o, e } = data as { o?: unknown; e?: Record<string, unknown> };
  if (typeof o !== 'string' || typeof e !== 'object' || e === null) return undefined;
  const reason = typeof e['reason'] === 'string' ? e['reason'].slice(0, MAX_REASON_CHARS) : 'access changed';
  const id = (name: string) => {
    const value = e[name];
    return typeof value === 'string' && UUID.test(value) ? value : undefined;
  };
  switch (e['kind']) {
    case 'person': {
      const userId = id('userId');
      return userId ? { origin: o, event: { kind: 'person', userId, reason } } : undefined;
    }
    case 'sign-in': {
      const signInId = id('signInId');
      return signInId ? { origin: o, event: { kind: 'sign-in', signInId, reason } } : undefined;
    }
    case 'everyone':
      return { origin: o, event: { kind: 'everyone', reason } };
    case 'policies':
      return { origin: o, event: { kind: 'policies', reason } };
    default:
      return undefined;
  }
}

export class AccessEvents {
  /** Tells this gateway's own notifications apart: they were delivered here already. */
  private readonly origin = randomUUID();
  private readonly listeners = new Set<AccessListener>();
  private client: pg.Client | undefined;
  private connected = false;
  private closed = false;
  private attempt = 0;
  private retryTimer: NodeJS.Timeout | undefined;
  private heartbeat: NodeJS.Timeout | undefined;
  private readonly retry: { minMs: number; maxMs: number };

  constructor(private readonly opts: AccessEventsOptions) {
    this.retry = opts.retry ?? { minMs: 200, maxMs: 5_000 };
  }

  /** Whether this gateway hears events now (while it does not, nothing may be cached on their word). */
  get listening(): boolean {
    return this.connected;
  }

  /** Connects and LISTENs; resolves once listening or, if the store is down, once retrying. */
  async start(): Promise<void> {
    await this.connect();
  }

  /** Calls `listener` with every event, this gateway's own included; returns the unsubscribe. */
  subscribe(listener: AccessListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /**
   * Publishes an event: at once to this gateway's subscribers, then to every other gateway on the
   * store. Throws STORE_UNAVAILABLE when the store cannot take it (the change should be retried).
   */
  async publish(event: AccessEvent): Promise<void> {
    const capped = { ...event, reason: event.reason.slice(0, MAX_REASON_CHARS) } as AccessEvent;
    this.deliver(capped);
    const payload = JSON.stringify({ o: this.origin, e: capped });
    if (Buffer.byteLength(payload) > MAX_PAYLOAD_BYTES) {
      throw new PgwardError('INTERNAL', 'an access event is too large to publish');
    }
    try {
      await this.opts.pool.query('SELECT pg_notify($1, $2)', [ACCESS_CHANNEL, payload]);
    } catch (err) {
      throw new PgwardError('STORE_UNAVAILABLE', 'cannot tell the other gateways about this change', {
        cause: err,
        hint: 'the change is made here; repeat it once the store answers so every gateway applies it',
      });
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.retryTimer);
    clearInterval(this.heartbeat);
    this.listeners.clear();
    const client = this.client;
    this.client = undefined;
    this.connected = false;
    await client?.end().catch(() => undefined);
  }

  private deliver(event: AccessEvent): void {
    for (const listener of this.listeners) {
      try {
        listener(event);
      } catch (err) {
        this.opts.log.error({ err, kind: event.kind }, 'an access event listener failed');
      }
    }
  }

  private async connect(): Promise<void> {
    if (this.closed) return;
    const client = new pg.Client({
      connectionString: this.opts.url,
      connectionTimeoutMillis: CONNECT_TIMEOUT_MS,
      keepAlive: true,
      application_name: 'pgward access events',
    });
    this.client = client;
    // A dropped connection ends in 'error' and/or 'end'; either one schedules the reconnection.
    const lost = () => this.lost(client);
    client.on('error', lost);
    client.on('end', lost);
    client.on('notification', (message) => {
      if (message.channel !== ACCESS_CHANNEL || message.payload === undefined) return;
      const parsed = parseAccessEvent(message.payload);
      if (!parsed) {
        this.opts.log.warn('ignored a malformed access event');
        return;
      }
      if (parsed.origin !== this.origin) this.deliver(parsed.event);
    });
    try {
      await client.connect();
      await client.query(`LISTEN ${ACCESS_CHANNEL}`);
    } catch (err) {
      this.opts.log.warn({ err: (err as Error).message }, 'cannot listen for access events yet; retrying');
      lost();
      return;
    }
    if (this.client !== client) return;
    const resumed = this.attempt > 0;
    this.connected = true;
    this.attempt = 0;
    clearInterval(this.heartbeat);
    this.heartbeat = setInterval(() => {
      client.query('SELECT 1').catch(lost);
    }, this.opts.heartbeatMs ?? 15_000);
    this.heartbeat.unref();
    if (resumed) {
      this.opts.log.info('listening for access events again');
      // Whatever was published while this gateway was not listening is lost: recheck everyone.
      this.deliver({ kind: 'everyone', reason: 'access events resumed after an interruption' });
    }
  }

  private lost(client: pg.Client): void {
    if (this.client !== client || this.closed) return;
    this.client = undefined;
    this.connected = false;
    clearInterval(this.heartbeat);
    client.end().catch(() => undefined);
    const delay = Math.min(this.retry.maxMs, this.retry.minMs * 2 ** this.attempt);
    this.attempt = Math.min(this.attempt + 1, 20);
    this.retryTimer = setTimeout(() => void this.connect(), delay);
    this.retryTimer.unref();
  }
}
