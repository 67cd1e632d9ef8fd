/**
 * The audit's sessions and statements as the API lists them. Without imports, so that the
 * console's bundle shares them (as they arrive over JSON: see `OverJson`).
 */
export interface SessionRecord {
  sessionId: string;
  userId: string | null;
  email: string | null;
  provider: string | null;
  connection: string | null;
  loginRole: string | null;
  clientAddr: string | null;
  applicationName: string | null;
  startedAt: Date;
  endedAt: Date | null;
  bytesIn: number;
  bytesOut: number;
  endReason: string | null;
}

export interface StatementRecord {
  sessionId: string;
  seq: number;
  kind: string;
  text: string;
  startedAt: Date;
  durationMs: number | null;
  commandTag: string | null;
  rows: number | null;
  sqlstate: string | null;
  /** allowed, refused or observed by a policy (or refused by a built-in rule); null when none applied. */
  decision: string | null;
  /** The outcomes behind `decision`: policy, rule, outcome, message. */
  decidedBy: { policy: string; rule: string; outcome: string; message?: string }[] | null;
  email: string | null;
  connection: string | null;
}

/** A record as it arrives over JSON: dates become ISO strings. */
export type OverJson<T> = {
  [K in keyof T]: T[K] extends Date ? string : T[K] extends Date | null ? string | null : T[K];
};
