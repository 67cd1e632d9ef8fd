/**
 * One error family for all of pgward. Each failure has a stable `code`; the edges translate it:
 * HTTP status for the API, SQLSTATE for the PostgreSQL endpoint, exit code for the CLI.
 */

/** Every stable error code, with how each edge reports it. The only place codes are enumerated. */
export const ERRORS = {
  CONFIG_INVALID: { http: 500, sqlstate: 'XX000', exit: 78 },
  // The store does not answer (refused, terminated, timed out): retry shortly (57P03 cannot_connect_now).
  STORE_UNAVAILABLE: { http: 503, sqlstate: '57P03', exit: 69 },
  // A listener's port is taken: the message names the setting or flag that moves it.
  ADDRESS_IN_USE: { http: 500, sqlstate: 'XX000', exit: 78 },
  // Audit records cannot be made durable (audit.onStoreDown: refuse, or the spool is full).
  AUDIT_UNAVAILABLE: { http: 503, sqlstate: '57P03', exit: 69 },
  MIGRATION_FAILED: { http: 500, sqlstate: 'XX000', exit: 70 },
  IDP_UNREACHABLE: { http: 502, sqlstate: '08006', exit: 69 },
  LOGIN_FAILED: { http: 401, sqlstate: '28P01', exit: 77 },
  // A device login the person has not confirmed yet (RFC 8628 authorization_pending / slow_down).
  LOGIN_PENDING: { http: 400, sqlstate: '28000', exit: 75 },
  LOGIN_SLOW_DOWN: { http: 400, sqlstate: '28000', exit: 75 },
  // Token refusals: one code per reason, all "invalid password" on the wire.
  TOKEN_INVALID: { http: 401, sqlstate: '28P01', exit: 77 },
  TOKEN_MALFORMED: { http: 401, sqlstate: '28P01', exit: 77 },
  TOKEN_UNSIGNED: { http: 401, sqlstate: '28P01', exit: 77 },
  TOKEN_TYPE: { http: 401, sqlstate: '28P01', exit: 77 },
  TOKEN_KEY_REFERENCE: { http: 401, sqlstate: '28P01', exit: 77 },
  TOKEN_UNKNOWN_ISSUER: { http: 401, sqlstate: '28P01', exit: 77 },
  TOKEN_ISSUER: { http: 401, sqlstate: '28P01', exit: 77 },
  TOKEN_ALGORITHM: { http: 401, sqlstate: '28P01', exit: 77 },
  TOKEN_UNKNOWN_KEY: { http: 401, sqlstate: '28P01', exit: 77 },
  TOKEN_SIGNATURE: { http: 401, sqlstate: '28P01', exit: 77 },
  TOKEN_EXPIRED: { http: 401, sqlstate: '28P01', exit: 77 },
  TOKEN_NOT_YET_VALID: { http: 401, sqlstate: '28P01', exit: 77 },
  TOKEN_AUDIENCE: { http: 401, sqlstate: '28P01', exit: 77 },
  TOKEN_CLAIMS: { http: 401, sqlstate: '28P01', exit: 77 },
  // The token is of an organisation its provider does not accept (Google hd, Entra ID tid).
  TOKEN_ORGANIZATION: { http: 401, sqlstate: '28P01', exit: 77 },
  TOKEN_REVOKED: { http: 401, sqlstate: '28P01', exit: 77 },
  UNAUTHENTICATED: { http: 401, sqlstate: '28000', exit: 77 },
  RATE_LIMITED: { http: 429, sqlstate: '53400', exit: 75 },
  CONFLICT: { http: 409, sqlstate: '23505', exit: 65 },
  NOT_ALLOWED: { http: 403, sqlstate: '28000', exit: 77 },
  UNKNOWN_CONNECTION: { http: 404, sqlstate: '3D000', exit: 66 },
  NOT_FOUND: { http: 404, sqlstate: '42704', exit: 66 },
  PROTOCOL_VIOLATION: { http: 400, sqlstate: '08P01', exit: 76 },
  TOO_MANY_CONNECTIONS: { http: 503, sqlstate: '53300', exit: 75 },
  UPSTREAM_FAILED: { http: 502, sqlstate: '08006', exit: 69 },
  // A step of an upstream connection (connect, TLS, login, control query) ran past its deadline.
  UPSTREAM_TIMEOUT: { http: 504, sqlstate: '08006', exit: 69 },
  // The target answered that it is starting up (or shutting down, in recovery).
  UPSTREAM_STARTING: { http: 503, sqlstate: '57P03', exit: 75 },
  // The target asked for a vaulted password in cleartext or md5 over TLS pgward did not verify.
  UPSTREAM_PASSWORD_REFUSED: { http: 502, sqlstate: '08006', exit: 69 },
  // A login role was changed outside pgward; pgward undid it and refused the session.
  LOGIN_ROLE_TAMPERED: { http: 403, sqlstate: '42501', exit: 77 },
  BAD_REQUEST: { http: 400, sqlstate: '22023', exit: 64 },
  // A policy document with problems: each is named by the path of its field.
  POLICY_INVALID: { http: 400, sqlstate: '22023', exit: 65 },
  INTERNAL: { http: 500, sqlstate: 'XX000', exit: 70 },
} as const;

export type ErrorCode = keyof typeof ERRORS;

/** Every code that refuses a token (HTTP 401, SQLSTATE 28P01). */
export type TokenErrorCode = Extract<ErrorCode, `TOKEN_${string}`>;

/** The base class of every error pgward raises on purpose. `message` is safe to show a person. */
export class PgwardError extends Error {
  readonly code: ErrorCode;
  /** Extra detail that is safe to show (never a secret). */
  readonly detail: string | undefined;
  /** What the person can do about it. */
  readonly hint: string | undefined;

  constructor(
    code: ErrorCode,
    message: string,
    opts: { cause?: unknown; detail?: string; hint?: string } = {},
  ) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = 'PgwardError';
    this.code = code;
    this.detail = opts.detail;
    this.hint = opts.hint;
  }

  get httpStatus(): number {
    return ERRORS[this.code].http;
  }

  get sqlstate(): string {
    return ERRORS[this.code].sqlstate;
  }

  get exitCode(): number {
    return ERRORS[this.code].exit;
  }
}

/** Wraps anything thrown into a PgwardError; unknown errors become INTERNAL with a generic message. */
export function asPgwardError(err: unknown): PgwardError {
  if (err instanceof PgwardError) return err;
  return new PgwardError('INTERNAL', 'internal error', { cause: err });
}
