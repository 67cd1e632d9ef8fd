/**
 * The gateway's Prometheus metrics: one registry per gateway (never prom-client's global one, so
 * tests and several gateways in one process do not collide), prom-client's default process and
 * runtime metrics, and pgward's own series, all prefixed `pgward_`. Every label is bounded:
 * connection and provider names come from configuration (and are capped), reasons and outcomes
 * from fixed lists; never an email, a role or SQL text. State owned by other parts (the audit
 * queue, the pool, the providers' keys) is read when scraped, through the observe*() sources.
 */
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';
import { ERRORS, type ErrorCode } from '../errors.js';
import {
  ConnectionMetrics,
  SESSION_OUTCOMES,
  type SessionOutcome,
  STATEMENT_OUTCOMES,
  type StatementOutcome,
} from './connection_metrics.js';
import { type HistogramSeries, PreboundHistogram } from './prebound_histogram.js';

export { ConnectionMetrics, type SessionOutcome, type StatementOutcome };

/** Distinct connection labels kept; any more are counted under OTHER (a bound on series). */
const MAX_CONNECTION_LABELS = 500;
/** Distinct provider labels kept (providers come from configuration and the API). */
const MAX_PROVIDER_LABELS = 100;
/** The label of what falls past a cap, and of a token that names no configured provider. */
export const OTHER_LABEL = '(other)';
export const UNKNOWN_PROVIDER = '(unknown)';

/** Statements: sub-millisecond reads up to long reports. */
const STATEMENT_BUCKETS = [
  0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30,
];
/** Client startup to ReadyForQuery: TLS, token check, provisioning and the target's login. */
const CONNECT_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];
const WAIT_BUCKETS = [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30];

/** What the audit writer reports (read at each scrape). Totals only grow. */
export interface AuditSnapshot {
  /** Records queued in memory, not yet written. */
  queued: number;
  /** Bytes in the spool file waiting for the store (0 without a spool). */
  spoolBytes?: number;
  statementsWritten: number;
  sessionStartsWritten: number;
  sessionEndsWritten: number;
  statementsDropped: number;
}

/** What the upstream pool reports (read at each scrape). */
export interface PoolSnapshot {
  /** Idle upstream connections kept for reuse. */
  idle: number;
}

/** Per provider: whether its signing keys are loaded (TokenVerifier.health()). */
export type ProviderHealth = Record<string, { ok: boolean }>;

export interface MetricsOptions {
  /** prom-client's process and Node.js runtime metrics (default true). */
  defaultMetrics?: boolean;
}

export class Metrics {
  readonly registry = new Registry();
  private readonly connections = new Map<string, ConnectionMetrics>();
  private readonly statementDuration: PreboundHistogram;
  private readonly connectDuration: HistogramSeries;
  private readonly refusals = new Map<ErrorCode, number>();
  private readonly tokenVerifications: Counter<'provider' | 'result'>;
  private readonly jwksLastSuccess: Gauge<'provider'>;
  private readonly jwksFailures: Counter<'provider'>;
  private readonly poolCheckouts: Counter<'result'>;
  private readonly poolWait: Histogram;
  private readonly providerLabels = new Set<string>();
  private audit: (() => AuditSnapshot) | undefined;
  private pool: (() => PoolSnapshot) | undefined;
  private providers: (() => ProviderHealth) | undefined;

  constructor(opts: MetricsOptions = {}) {
    const registers = [this.registry];
    if (opts.defaultMetrics !== false) collectDefaultMetrics({ register: this.registry, prefix: 'pgward_' });
    const metrics = this;

    // Sessions and statements: the proxy's counts, read from each connection's series.
    new Gauge({
      name: 'pgward_sessions_active',
      help: 'Client sessions relaying now, by connection',
      labelNames: ['connection'],
      registers,
      collect() {
        for (const c of metrics.connections.values()) this.set(c.labels, c.active);
      },
    });
    new Counter({
      name: 'pgward_sessions_started_total',
      help: 'Client sessions that reached ReadyForQuery, by connection',
      labelNames: ['connection'],
      registers,
      collect() {
        this.reset();
        for (const c of metrics.connections.values()) this.inc(c.labels, c.started);
      },
    });
    new Counter({
      name: 'pgward_sessions_ended_total',
      help: `Client sessions that ended, by connection and outcome (${SESSION_OUTCOMES.join(', ')})`,
      labelNames: ['connection', 'outcome'],
      registers,
      collect() {
        this.reset();
        for (const c of metrics.connections.values())
          for (let i = 0; i < SESSION_OUTCOMES.length; i++) this.inc(c.endedLabels[i]!, c.ended[i]!);
      },
    });
    new Counter({
      name: 'pgward_statements_total',
      help: `Statements by connection and outcome (${STATEMENT_OUTCOMES.join(', ')})`,
      labelNames: ['connection', 'outcome'],
      registers,
      collect() {
        this.reset();
        for (const c of metrics.connections.values())
          for (let i = 0; i < STATEMENT_OUTCOMES.length; i++)
            this.inc(c.statementLabels[i]!, c.statements[i]!);
      },
    });
    this.statementDuration = new PreboundHistogram(
      'pgward_statement_duration_seconds',
      'Statement duration from the client message to its completion, by connection',
      STATEMENT_BUCKETS,
      this.registry,
    );
    this.connectDuration = new PreboundHistogram(
      'pgward_connect_duration_seconds',
      'Time from a client startup message to ReadyForQuery',
      CONNECT_BUCKETS,
      this.registry,
    ).series();
    new Counter({
      name: 'pgward_login_refusals_total',
      help: 'Client logins refused at the PostgreSQL endpoint, by pgward error code',
      labelNames: ['code'],
      registers,
      collect() {
        this.reset();
        for (const [code, n] of metrics.refusals) this.inc({ code }, n);
      },
    });

    // Identity.
    this.tokenVerifications = new Counter({
      name: 'pgward_token_verifications_total',
      help: 'IdP token verifications, by provider and result (ok or the pgward error code)',
      labelNames: ['provider', 'result'],
      registers,
    });
    this.jwksLastSuccess = new Gauge({
      name: 'pgward_jwks_last_success_timestamp_seconds',
      help: "Unix time of the last successful fetch of a provider's signing keys (JWKS)",
      labelNames: ['provider'],
      registers,
    });
    this.jwksFailures = new Counter({
      name: 'pgward_jwks_fetch_failures_total',
      help: "Failed fetches of a provider's discovery document or signing keys (JWKS)",
      labelNames: ['provider'],
      registers,
    });
    new Gauge({
      name: 'pgward_identity_provider_up',
      help: 'Whether a provider can verify tokens now (keys loaded, last fetch fine): 1 or 0',
      labelNames: ['provider'],
      registers,
      collect() {
        this.reset();
        const health = metrics.providers?.() ?? {};
        for (const [name, h] of Object.entries(health))
          this.set({ provider: metrics.provider(name) }, h.ok ? 1 : 0);
      },
    });

    // Upstream pool.
    new Gauge({
      name: 'pgward_upstream_pool_idle_connections',
      help: 'Idle upstream connections kept for reuse',
      registers,
      collect() {
        this.set(metrics.pool?.().idle ?? 0);
      },
    });
    this.poolCheckouts = new Counter({
      name: 'pgward_upstream_pool_checkouts_total',
      help: 'Upstream connections handed to sessions: reused from the pool or opened',
      labelNames: ['result'],
      registers,
    });
    this.poolWait = new Histogram({
      name: 'pgward_upstream_pool_wait_seconds',
      help: 'Time a session waited for a pooled upstream connection (pool at its size)',
      buckets: WAIT_BUCKETS,
      registers,
    });

    // Audit.
    new Gauge({
      name: 'pgward_audit_queue_records',
      help: 'Audit records queued in memory, not yet written to the store',
      registers,
      collect() {
        this.set(metrics.audit?.().queued ?? 0);
      },
    });
    new Gauge({
      name: 'pgward_audit_spool_bytes',
      help: 'Bytes of audit records in the spool file, waiting for the store',
      registers,
      collect() {
        this.set(metrics.audit?.().spoolBytes ?? 0);
      },
    });
    new Counter({
      name: 'pgward_audit_records_written_total',
      help: 'Audit records written to the store, by kind (statement, session_start, session_end)',
      labelNames: ['kind'],
      registers,
      collect() {
        this.reset();
        const a = metrics.audit?.();
        this.inc({ kind: 'statement' }, a?.statementsWritten ?? 0);
        this.inc({ kind: 'session_start' }, a?.sessionStartsWritten ?? 0);
        this.inc({ kind: 'session_end' }, a?.sessionEndsWritten ?? 0);
      },
    });
    new Counter({
      name: 'pgward_audit_records_dropped_total',
      help: 'Statement records dropped because the audit queue was full (never silent: also logged)',
      registers,
      collect() {
        this.reset();
        this.inc(metrics.audit?.().statementsDropped ?? 0);
      },
    });
  }

  /**
   * The series of a connection, made at its first use; a session looks it up once and calls it
   * for each statement. Past MAX_CONNECTION_LABELS names, new ones share the OTHER series.
   */
  connection(name: string): ConnectionMetrics {
    let series = this.connections.get(name);
    if (series) return series;
    const label = this.connections.size < MAX_CONNECTION_LABELS ? name : OTHER_LABEL;
    series = this.connections.get(label);
    if (!series) {
      series = new ConnectionMetrics(label, this.statementDuration.series({ connection: label }));
      this.connections.set(label, series);
    }
    return series;
  }

  /** A client session on `connection` reached ReadyForQuery. */
  sessionStarted(connection: string): void {
    this.connection(connection).sessionStarted();
  }

  /** A session that sessionStarted() counted ended. */
  sessionEnded(connection: string, outcome: SessionOutcome): void {
    this.connection(connection).sessionEnded(outcome);
  }

  /** One statement on `connection`: its outcome and duration in seconds. Hot path: no allocation. */
  statement(connection: string, outcome: StatementOutcome, seconds: number): void {
    this.connection(connection).statement(outcome, seconds);
  }

  /** Startup message to ReadyForQuery took `seconds`. */
  connected(seconds: number): void {
    this.connectDuration.observe(seconds);
  }

  /** A login at the PostgreSQL endpoint was refused with this error code. */
  loginRefused(code: ErrorCode): void {
    const key: ErrorCode = Object.hasOwn(ERRORS, code) ? code : 'INTERNAL';
    this.refusals.set(key, (this.refusals.get(key) ?? 0) + 1);
  }

  /** One IdP token verification: `ok`, or the error code it failed with. */
  tokenVerified(provider: string, result: 'ok' | ErrorCode): void {
    const label: string = result === 'ok' || Object.hasOwn(ERRORS, result) ? result : 'INTERNAL';
    this.tokenVerifications.inc({ provider: this.provider(provider), result: label });
  }

  /** One fetch of a provider's discovery document or keys, and whether it worked. */
  jwksFetched(provider: string, ok: boolean, nowMs = Date.now()): void {
    const labels = { provider: this.provider(provider) };
    if (ok) this.jwksLastSuccess.set(labels, nowMs / 1000);
    else this.jwksFailures.inc(labels);
  }

  /** An upstream connection was handed to a session: `reused` from the pool, or `opened`. */
  poolCheckout(result: 'reused' | 'opened'): void {
    this.poolCheckouts.inc({ result });
  }

  /** A session waited `seconds` for a pooled upstream connection. */
  poolWaited(seconds: number): void {
    this.poolWait.observe(Math.max(seconds, 0) || 0);
  }

  /** Reads the audit writer's state at each scrape. */
  observeAudit(read: () => AuditSnapshot): void {
    this.audit = read;
  }

  /** Reads the upstream pool's state at each scrape. */
  observePool(read: () => PoolSnapshot): void {
    this.pool = read;
  }

  /** Reads the providers' key health at each scrape. */
  observeProviders(read: () => ProviderHealth): void {
    this.providers = read;
  }

  /** The scrape: Prometheus text exposition of every series. */
  text(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  /** A provider's label: its name while under the cap, OTHER_LABEL past it. */
  private provider(name: string): string {
    if (this.providerLabels.has(name)) return name;
    if (this.providerLabels.size >= MAX_PROVIDER_LABELS) return OTHER_LABEL;
    this.providerLabels.add(name);
    return name;
  }
}
