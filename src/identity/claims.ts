/**
 * Claims mapping: the subject, email, name, groups and roles of a verified token, read by the
 * provider's configured claim paths and validated (types, sizes) before anything uses them.
 */
import { readClaim } from '../config/claim_path.js';
import type { ProviderConfig } from '../config/schema.js';
import { PgwardError } from '../errors.js';
import { checkOrganization, windowsGroupNames } from './preset_checks.js';

export interface MappedClaims {
  subject: string;
  email: string;
  emailVerified: boolean;
  name: string | undefined;
  preferredUsername: string | undefined;
  groups: string[];
  roles: string[];
  /** When the token was issued (`iat`), if it says. */
  issuedAt?: Date | undefined;
}

/** The most groups (or roles) a person may have, from any source. */
export const MAX_LIST = 512;
const MAX_ITEM = 256;
const MAX_SUBJECT = 255;
const MAX_EMAIL = 320;

function invalid(message: string): PgwardError {
  return new PgwardError('TOKEN_CLAIMS', message);
}

/**
 * C0 and C1 control characters (NUL among them): PostgreSQL's text cannot hold NUL, and none of
 * them belong in a name, an email or a group, where they would also forge lines in logs.
 */
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/;

function optionalString(value: unknown, what: string, max: number): string | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'string' || value.length > max)
    throw invalid(`the ${what} claim must be a string of at most ${max} characters`);
  if (CONTROL.test(value)) throw invalid(`the ${what} claim holds a control character`);
  return value;
}

function stringList(value: unknown, what: string): string[] {
  if (value === undefined || value === null) return [];
  // Some IdPs send a single group as a plain string.
  const list = typeof value === 'string' ? [value] : value;
  if (!Array.isArray(list) || list.length > MAX_LIST) {
    throw invalid(`the ${what} claim must be an array of at most ${MAX_LIST} strings`);
  }
  for (const item of list) {
    if (typeof item !== 'string' || item.length === 0 || item.length > MAX_ITEM) {
      throw invalid(`the ${what} claim must hold non-empty strings of at most ${MAX_ITEM} characters`);
    }
    if (CONTROL.test(item)) throw invalid(`the ${what} claim holds a control character`);
  }
  return [...new Set(list as string[])];
}

/**
 * The form of an email pgward stores and compares: ASCII letters in lower case, everything else
 * as sent. Unicode case mapping would make other addresses equal to ASCII ones (the Kelvin sign
 * K lower-cases to "k"), so a verified `\u212Aate@example.com` would become kate@example.com.
 */
export function emailKey(email: string): string {
  return email.replace(/[A-Z]+/g, (letters) => letters.toLowerCase());
}

/** Whether the email is read from the standard `email` claim, the one `email_verified` speaks of. */
function standardEmail(provider: ProviderConfig): boolean {
  const path = provider.claims.email;
  return path.length === 1 && path[0] === 'email';
}

/** Reads and validates the claims pgward uses; throws TOKEN_CLAIMS naming the bad claim. */
export function mapClaims(provider: ProviderConfig, claims: Record<string, unknown>): MappedClaims {
  checkOrganization(provider, claims);
  const subject = optionalString(readClaim(claims, provider.claims.subject), 'subject', MAX_SUBJECT);
  if (!subject) throw invalid('the token has no subject (sub) claim');
  const email = optionalString(readClaim(claims, provider.claims.email), 'email', MAX_EMAIL);
  if (!email || !/^[^\s@]+@[^\s@]+$/.test(email)) {
    throw invalid('the token has no usable email claim; ask for the "email" scope');
  }
  return {
    subject,
    email: emailKey(email),
    // email_verified vouches for the `email` claim only; an email read from another claim is
    // whatever that claim holds, verified by nobody.
    emailVerified: claims['email_verified'] === true && standardEmail(provider),
    name: optionalString(readClaim(claims, provider.claims.name), 'name', MAX_ITEM),
    preferredUsername: optionalString(claims['preferred_username'], 'preferred_username', MAX_EMAIL),
    groups: provider.claims.groups
      ? windowsGroupNames(provider, stringList(readClaim(claims, provider.claims.groups), 'groups'))
      : [],
    roles: [...new Set(provider.claims.roles.flatMap((p) => stringList(readClaim(claims, p), 'roles')))],
    issuedAt: typeof claims['iat'] === 'number' ? new Date(claims['iat'] * 1000) : undefined,
  };
}
