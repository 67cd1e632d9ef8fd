/**
 * The one translation of a PgwardError into the ErrorResponse a PostgreSQL client is sent: its
 * SQLSTATE (or the target's own, where pgward passes it on), a message a person can act on, the
 * stable pgward code in DETAIL, and a hint. Internal errors never carry their details out.
 */
import type { PgwardError } from '../errors.js';
import * as encode from '../wire/encode.js';

/** SQLSTATE the target reported, carried on an upstream failure (e.g. 53300, 57P03). */
export type WithUpstreamCode = PgwardError & { upstreamCode?: string };

export function errorResponseFor(err: PgwardError, severity: 'FATAL' | 'ERROR' = 'FATAL'): Buffer {
  const internal = err.code === 'INTERNAL';
  return encode.errorResponse({
    severity,
    code: (err as WithUpstreamCode).upstreamCode ?? err.sqlstate,
    message: internal ? 'pgward internal error' : err.message,
    // The stable code lets a person (or support) tell one refusal from another.
    detail: internal ? undefined : (err.detail ?? `pgward error ${err.code}`),
    hint: internal ? undefined : err.hint,
  });
}
