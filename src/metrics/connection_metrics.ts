/**
 * The series of one connection (sessions and statements), as plain numbers that the proxy
 * updates without allocating; the registry reads them when it is scraped.
 */
import type { HistogramSeries } from './prebound_histogram.js';

/** How a session ended. */
export const SESSION_OUTCOMES = [
  /** The client sent Terminate. */
  'client_terminated',
  /** The client's socket closed without Terminate. */
  'client_disconnected',
  /** The target ended the session (its FATAL, or its socket closed). */
  'target_closed',
  /** pgward ended it: a protocol violation, a refusal, a failed target step. */
  'error',
  /** pgward ended it on purpose: revocation, lost access, deactivation. */
  'revoked',
  /** The gateway shut down. */
  'shutdown',
] as const;
export type SessionOutcome = (typeof SESSION_OUTCOMES)[number];

/** What became of a statement: the target ran it, the target failed it, or pgward refused it. */
export const STATEMENT_OUTCOMES = ['ok', 'error', 'refused'] as const;
export type StatementOutcome = (typeof STATEMENT_OUTCOMES)[number];

const SESSION_INDEX = Object.fromEntries(SESSION_OUTCOMES.map((o, i) => [o, i])) as Record<
  SessionOutcome,
  number
>;
const STATEMENT_INDEX = { ok: 0, error: 1, refused: 2 } as const satisfies Record<StatementOutcome, number>;

/** The live series of one connection; a session keeps it from connect to close. */
export class ConnectionMetrics {
  active = 0;
  started = 0;
  readonly ended = new Float64Array(SESSION_OUTCOMES.length);
  readonly statements = new Float64Array(STATEMENT_OUTCOMES.length);
  /** Labels made once: { connection } and { connection, outcome } per outcome. */
  readonly labels: Readonly<Record<'connection', string>>;
  readonly endedLabels: readonly Readonly<Record<'connection' | 'outcome', string>>[];
  readonly statementLabels: readonly Readonly<Record<'connection' | 'outcome', string>>[];

  constructor(
    readonly connection: string,
    private readonly duration: HistogramSeries,
  ) {
    this.labels = { connection };
    this.endedLabels = SESSION_OUTCOMES.map((outcome) => ({ connection, outcome }));
    this.statementLabels = STATEMENT_OUTCOMES.map((outcome) => ({ connection, outcome }));
  }

  /** A session on this connection began relaying (after ReadyForQuery). */
  sessionStarted(): void {
    this.active++;
    this.started++;
  }

  /** A session that sessionStarted() counted ended. */
  sessionEnded(outcome: SessionOutcome): void {
    if (this.active > 0) this.active--;
    const i = SESSION_INDEX[outcome] ?? SESSION_INDEX.error;
    this.ended[i] = this.ended[i]! + 1;
  }

  /** One statement and its duration (from the message that sent it to its completion). */
  statement(outcome: StatementOutcome, seconds: number): void {
    const i: number = STATEMENT_INDEX[outcome];
    this.statements[i] = this.statements[i]! + 1;
    this.duration.observe(seconds);
  }
}
