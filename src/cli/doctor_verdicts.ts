/**
 * The verdicts of `pgward doctor` that need no I/O: a certificate's facts and the gateway's Date
 * header become ok, warn or fail with what to do.
 */
import { isLoopbackHost } from '../loopback.js';
import type { TlsFacts } from './tls_probe.js';

export type CheckStatus = 'ok' | 'warn' | 'fail' | 'skip';

/** One line of `pgward doctor`. */
export interface DoctorCheck {
  check: string;
  status: CheckStatus;
  detail: string;
  /** What to do about it (for warn and fail). */
  action?: string;
}

/** pgward accepts tokens up to 30 s before or after their times (docs/identity.md). */
const SKEW_FAIL_MS = 30_000;
const SKEW_WARN_MS = 5_000;
/** A certificate that ends sooner than this is a warning. */
const EXPIRY_WARN_MS = 14 * 24 * 3600_000;

/**
 * The clock against the gateway's: a request sent at `sent` and answered at `received` (local
 * times) with the HTTP `Date` header `date`. The header has whole seconds, and the gateway
 * stamped it somewhere in the round trip: both count as slack, never as skew.
 */
export function clockCheck(sent: number, received: number, date: string | null): DoctorCheck {
  const stamped = Date.parse(date ?? '');
  if (Number.isNaN(stamped))
    return { check: 'clock', status: 'skip', detail: 'the gateway sent no Date header' };
  const skew = (sent + received) / 2 - (stamped + 500);
  const slack = (received - sent) / 2 + 500;
  const off = Math.max(0, Math.abs(skew) - slack);
  const side = skew > 0 ? 'ahead of' : 'behind';
  const detail = `this machine is ${(Math.abs(skew) / 1000).toFixed(1)} s ${side} the gateway`;
  const action = 'set the clock right (NTP: e.g. `timedatectl set-ntp true`); tokens allow 30 s';
  if (off > SKEW_FAIL_MS) return { check: 'clock', status: 'fail', detail, action };
  if (off > SKEW_WARN_MS) return { check: 'clock', status: 'warn', detail, action };
  return {
    check: 'clock',
    status: 'ok',
    detail: `within ${Math.ceil((Math.abs(skew) + slack) / 1000)} s of the gateway`,
  };
}

/**
 * One check on a certificate: trust, host name, expiry. `loopbackRelaxed`: on loopback an
 * unverified certificate is fine, as it is to the PostgreSQL clients (sslmode=require there).
 */
export function certificateCheck(
  name: string,
  host: string,
  facts: TlsFacts,
  fixTrust: string,
  loopbackRelaxed: boolean,
  now = Date.now(),
): DoctorCheck {
  const relaxed = loopbackRelaxed && isLoopbackHost(host);
  const ends = new Date(facts.cert.valid_to);
  const left = ends.getTime() - now;
  const until = `valid until ${ends.toISOString()}`;
  if (left <= 0) {
    return {
      check: name,
      status: 'fail',
      detail: `the certificate expired at ${ends.toISOString()}`,
      action: "ask the gateway's operator to renew it",
    };
  }
  if (facts.untrusted && !relaxed) {
    return {
      check: name,
      status: 'fail',
      detail: `the certificate is not trusted: ${facts.untrusted}`,
      action: fixTrust,
    };
  }
  if (facts.wrongName && !relaxed) {
    return {
      check: name,
      status: 'fail',
      detail: facts.wrongName,
      action: 'use the host name the certificate names, or ask the operator for a certificate for this one',
    };
  }
  if (left < EXPIRY_WARN_MS) {
    return {
      check: name,
      status: 'warn',
      detail: `${until}: under 14 days left`,
      action: "ask the gateway's operator to renew it",
    };
  }
  const trust = facts.untrusted
    ? `not verified (${facts.untrusted}), accepted on loopback`
    : 'trusted, names the host';
  return { check: name, status: 'ok', detail: `${trust}, ${until}` };
}
