/**
 * Where store errors are born: a failure to reach the store (refused, reset, terminated, timed
 * out, shutting down) becomes STORE_UNAVAILABLE, so that every caller reports it the same way
 * (SQLSTATE 57P03 to PostgreSQL clients, HTTP 503 with Retry-After to the API). Other errors
 * (a constraint, a syntax error) pass through unchanged: they are bugs or conflicts, not outages.
 */
import { PgwardError } from '../errors.js';

/** What a client of pgward is told while its store is down. The cause is logged, never shown. */
export const STORE_DOWN_MESSAGE = 'pgward cannot reach its store; try again shortly';

/** Socket errors of a connection that could not be made or was lost. */
const NETWORK_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EPIPE',
]);

/**
 * SQLSTATEs of a store that is there but cannot serve: shutting down (57P01, 57P02), starting
 * up (57P03), out of connections (53300). Class 08 is every connection exception.
 */
const UNAVAILABLE_SQLSTATES = new Set(['57P01', '57P02', '57P03', '53300']);

/** node-postgres reports a lost or late connection with these messages (no code). */
const LOST_CONNECTION =
  /Connection terminated|timeout exceeded when trying to connect|Query read timeout|connection timeout|Client has encountered a connection error|Connection ended unexpectedly/i;

/** Whether `err` says the store cannot be reached (as opposed to refusing a query). */
export function isStoreUnreachable(err: unknown): boolean {
  if (err instanceof PgwardError) return err.code === 'STORE_UNAVAILABLE';
  if (typeof err !== 'object' || err === null) return false;
  const code = (err as { code?: unknown }).code;
  if (typeof code === 'string') {
    if (NETWORK_CODES.has(code) || UNAVAILABLE_SQLSTATES.has(code) || /^08[0-9A-Z]{3}$/.test(code))
      return true;
  }
  // A failed connect to several addresses (IPv4 and IPv6) is an AggregateError of socket errors.
  if (err instanceof AggregateError && err.errors.some(isStoreUnreachable)) return true;
  return LOST_CONNECTION.test(String((err as { message?: unknown }).message ?? ''));
}

/** `err` as STORE_UNAVAILABLE when the store cannot be reached, else unchanged. */
export function translateStoreError(err: unknown): unknown {
  if (err instanceof PgwardError || !isStoreUnreachable(err)) return err;
  return new PgwardError('STORE_UNAVAILABLE', STORE_DOWN_MESSAGE, { cause: err });
}
