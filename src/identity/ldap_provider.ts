/**
 * LDAP / Active Directory as an identity provider (ldapts): the service account (`clientId` is
 * its DN, `clientSecret` its password) finds the person by the configured filter, a bind with
 * the person's DN and password proves the password, and their groups are read, nested ones
 * included (Active Directory's LDAP_MATCHING_RULE_IN_CHAIN, or groups of groups followed by
 * `member`). Only over LDAPS or StartTLS off loopback; wrong passwords lock the user name.
 */
import { createHash } from 'node:crypto';
import { isIP } from 'node:net';
import { Client, type Entry, InvalidCredentialsError, ResultCodeError, SizeLimitExceededError } from 'ldapts';
import type pg from 'pg';
import type { ProviderConfig } from '../config/schema.js';
import { PgwardError } from '../errors.js';
import { type MappedClaims, mapClaims } from './claims.js';

/** AD's matching rule that follows group nesting (LDAP_MATCHING_RULE_IN_CHAIN). */
const IN_CHAIN = '1.2.840.113556.1.4.1941';
const MAX_GROUPS = 512;
const MAX_DEPTH = 8;
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/;

/** RFC 4515 escaping of a value inside a search filter (no filter injection). */
export function escapeFilterValue(value: string): string {
  return value.replace(/[\\*()\u0000]/g, (c) => `\\${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
}

const wrong = () =>
  new PgwardError('LOGIN_FAILED', 'wrong user name or password', { hint: 'check both and try again' });

/**
 * Wrong passwords per (provider, user name), in the store so every gateway counts them: past
 * the limit the name is locked for a while. Only a hash of the name is kept.
 */
export class LdapLockout {
  constructor(private readonly pool: pg.Pool) {}

  private key(username: string): Buffer {
    return createHash('sha256').update(username.toLowerCase()).digest();
  }

  /** Throws RATE_LIMITED while the user name is locked. */
  async check(provider: ProviderConfig, username: string): Promise<void> {
    const { rows } = await this.pool.query<{ seconds: number }>(
      `SELECT ceil(extract(epoch FROM locked_until - now()))::int AS seconds FROM pgward.sign_in_failure
        WHERE provider = $1 AND username_hash = $2 AND locked_until > now()`,
      [provider.name, this.key(username)],
    );
    if (rows[0]) {
      const minutes = Math.max(1, Math.ceil(rows[0].seconds / 60));
      throw new PgwardError(
        'RATE_LIMITED',
        `too many wrong passwords for this user name; try again in ${minutes} min`,
      );
    }
  }

  async failed(provider: ProviderConfig, username: string): Promise<void> {
    const { maxFailures, minutes } = provider.ldap!.lockout;
    // A count older than the lockout window starts again.
    await this.pool.query(
      `INSERT INTO pgward.sign_in_failure AS f (provider, username_hash, failures, since)
       VALUES ($1, $2, 1, now())
       ON CONFLICT (provider, username_hash) DO UPDATE SET
         failures = CASE WHEN f.since < now() - make_interval(mins => $3) THEN 1 ELSE f.failures + 1 END,
         since = CASE WHEN f.since < now() - make_interval(mins => $3) THEN now() ELSE f.since END`,
      [provider.name, this.key(username), minutes],
    );
    await this.pool.query(
      `UPDATE pgward.sign_in_failure SET locked_until = now() + make_interval(mins => $4)
        WHERE provider = $1 AND username_hash = $2 AND failures >= $3
          AND (locked_until IS NULL OR locked_until < now())`,
      [provider.name, this.key(username), maxFailures, minutes],
    );
  }

  async succeeded(provider: ProviderConfig, username: string): Promise<void> {
    await this.pool.query('DELETE FROM pgward.sign_in_failure WHERE provider = $1 AND username_hash = $2', [
      provider.name,
      this.key(username),
    ]);
  }
}

/** Node's codes for a server certificate that failed verification (OpenSSL's X509_V_ERR names). */
const UNTRUSTED = new Set([
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'CERT_SIGNATURE_FAILURE',
  'CERT_NOT_YET_VALID',
  'CERT_HAS_EXPIRED',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'CERT_CHAIN_TOO_LONG',
  'CERT_REVOKED',
  'INVALID_CA',
  'INVALID_PURPOSE',
  'CERT_UNTRUSTED',
  'CERT_REJECTED',
  'HOSTNAME_MISMATCH',
  'ERR_TLS_CERT_ALTNAME_INVALID',
]);

/** Why the directory could not be used, naming what an administrator should check. */
function directoryFailure(provider: ProviderConfig, err: unknown): PgwardError {
  if (err instanceof PgwardError) return err;
  const code = (err as { code?: unknown } | undefined)?.code;
  if (typeof code === 'string' && UNTRUSTED.has(code)) {
    return new PgwardError(
      'IDP_UNREACHABLE',
      `the LDAP server of ${provider.name} has a certificate that is not trusted or not for its host name`,
      { cause: err, hint: 'an administrator should check ldap.ca and the host name in ldap.url' },
    );
  }
  return new PgwardError('IDP_UNREACHABLE', `cannot reach the LDAP server of ${provider.name}`, {
    cause: err,
    hint: 'try again shortly; if it persists, the directory or the network to it is down',
  });
}

/** A client of the provider's server, over TLS (LDAPS, or StartTLS before anything is sent). */
async function open(provider: ProviderConfig): Promise<Client> {
  const l = provider.ldap!;
  const url = new URL(l.url.replace(/^ldaps?:/, 'http:'));
  const ldaps = l.url.startsWith('ldaps:');
  const tlsOptions = { ...(l.ca ? { ca: [l.ca] } : {}), minVersion: 'TLSv1.2' as const };
  const client = new Client({
    url: l.url,
    timeout: l.timeoutSeconds * 1000,
    connectTimeout: l.timeoutSeconds * 1000,
    // ldapts opens TLS at connect whenever it has tlsOptions: on ldap:// they are StartTLS's.
    ...(ldaps ? { tlsOptions } : {}),
  });
  if (l.startTls && !ldaps) {
    // The name the certificate must carry (ldapts upgrades the socket without it); SNI takes no IP.
    const host = url.hostname.replace(/^\[|\]$/g, '');
    try {
      await client.startTLS({ ...tlsOptions, host, ...(isIP(host) ? {} : { servername: host }) });
    } catch (err) {
      await client.unbind().catch(() => {});
      if (err instanceof ResultCodeError) {
        // RFC 4513 §3.1.1: the server refused; going on in the clear would send the password.
        throw new PgwardError('IDP_UNREACHABLE', `the LDAP server of ${provider.name} refused StartTLS`, {
          cause: err,
          hint: 'an administrator should turn on TLS at the directory, or use ldaps:// in ldap.url',
        });
      }
      throw directoryFailure(provider, err);
    }
  }
  return client;
}

async function connect(provider: ProviderConfig): Promise<Client> {
  let client: Client | undefined;
  try {
    client = await open(provider);
    await client.bind(provider.clientId, provider.clientSecret ?? '');
  } catch (err) {
    await client?.unbind().catch(() => {});
    if (err instanceof InvalidCredentialsError) {
      throw new PgwardError(
        'IDP_UNREACHABLE',
        `the LDAP service account of ${provider.name} was refused (clientId, clientSecret)`,
        { cause: err, hint: 'an administrator should check the service account and its password' },
      );
    }
    throw directoryFailure(provider, err);
  }
  return client;
}

/** The first value of an attribute; attribute names are case-insensitive (RFC 4512 §2.5). */
const first = (entry: Entry, attribute: string): string | undefined => {
  const key = Object.keys(entry).find((k) => k.toLowerCase() === attribute.toLowerCase());
  const value = key === undefined ? undefined : entry[key];
  const one = Array.isArray(value) ? value[0] : value;
  if (Buffer.isBuffer(one)) return one.toString('hex');
  return typeof one === 'string' ? one : undefined;
};

/** The person's groups, nested ones included. */
async function groupsOf(provider: ProviderConfig, client: Client, dn: string): Promise<string[]> {
  const l = provider.ldap!;
  const base = l.groupBase ?? l.userBase;
  const search = async (filter: string) => {
    try {
      return (
        await client.search(base, {
          scope: 'sub',
          filter,
          attributes: [l.groupNameAttribute],
          sizeLimit: MAX_GROUPS,
        })
      ).searchEntries;
    } catch (err) {
      if (err instanceof SizeLimitExceededError) {
        throw new PgwardError(
          'LOGIN_FAILED',
          `the directory lists more than ${MAX_GROUPS} groups for this person`,
          {
            hint: 'an administrator should narrow ldap.groupBase',
          },
        );
      }
      throw err;
    }
  };
  const names = new Set<string>();
  const add = (entries: Entry[]) => {
    for (const e of entries) {
      const name = first(e, l.groupNameAttribute);
      if (name) names.add(name);
    }
  };
  if (l.nestedGroups === 'ad') {
    add(await search(`(member:${IN_CHAIN}:=${escapeFilterValue(dn)})`));
  } else {
    // Breadth first through groups of groups, each group once (cycles end).
    const seen = new Set<string>([dn.toLowerCase()]);
    let level = [dn];
    for (let depth = 0; depth < (l.nestedGroups === 'none' ? 1 : MAX_DEPTH) && level.length > 0; depth++) {
      const next: string[] = [];
      for (const member of level) {
        const v = escapeFilterValue(member);
        const entries = await search(`(|(member=${v})(uniqueMember=${v}))`);
        add(entries);
        for (const e of entries) {
          if (!seen.has(e.dn.toLowerCase()) && seen.size < MAX_GROUPS) {
            seen.add(e.dn.toLowerCase());
            next.push(e.dn);
          }
        }
      }
      level = next;
    }
  }
  return [...names].slice(0, MAX_GROUPS);
}

function identityOf(provider: ProviderConfig, entry: Entry, groups: string[]): MappedClaims {
  const l = provider.ldap!;
  const disabled = Number(first(entry, 'userAccountControl') ?? '0') & 2;
  if (disabled) throw new PgwardError('NOT_ALLOWED', 'this directory account is disabled');
  return mapClaims(
    {
      ...provider,
      claims: { subject: ['sub'], email: ['email'], name: ['name'], groups: ['groups'], roles: [] },
    },
    {
      sub: l.idAttribute === 'dn' ? entry.dn.toLowerCase() : first(entry, l.idAttribute),
      email: first(entry, l.emailAttribute),
      email_verified: false,
      name: first(entry, l.nameAttribute) ?? first(entry, 'cn'),
      groups,
    },
  );
}

async function findUser(
  provider: ProviderConfig,
  client: Client,
  filter: string,
): Promise<Entry | undefined> {
  const l = provider.ldap!;
  const { searchEntries } = await client.search(l.userBase, {
    scope: 'sub',
    filter,
    attributes: [l.idAttribute, l.emailAttribute, l.nameAttribute, 'cn', 'userAccountControl'],
    sizeLimit: 2,
  });
  if (searchEntries.length > 1) {
    throw new PgwardError('LOGIN_FAILED', 'the user name matches several people in the directory', {
      hint: 'sign in with a unique name (e.g. the email); an administrator should narrow ldap.userFilter',
    });
  }
  return searchEntries[0];
}

/**
 * Proves `password` for `username` by a bind and reads the person; the DN is returned as the
 * sign-in's refresh credential (a refresh reads the person again with the service account).
 */
export async function ldapSignIn(
  provider: ProviderConfig,
  username: string,
  password: string,
  lockout: LdapLockout,
): Promise<{ identity: MappedClaims; dn: string }> {
  if (username.length === 0 || username.length > 256 || CONTROL.test(username)) throw wrong();
  // An empty password would be an unauthenticated bind, which servers accept (RFC 4513 §5.1.2).
  if (password.length === 0 || password.length > 1024) throw wrong();
  await lockout.check(provider, username);
  const filter = provider.ldap!.userFilter.replaceAll('{username}', escapeFilterValue(username));
  const service = await connect(provider);
  try {
    const entry = await findUser(provider, service, filter);
    if (!entry) {
      await lockout.failed(provider, username);
      throw wrong();
    }
    let user: Client | undefined;
    try {
      user = await open(provider);
      await user.bind(entry.dn, password);
    } catch (err) {
      if (err instanceof InvalidCredentialsError) {
        await lockout.failed(provider, username);
        throw wrong();
      }
      throw directoryFailure(provider, err);
    } finally {
      await user?.unbind().catch(() => {});
    }
    await lockout.succeeded(provider, username);
    return {
      identity: identityOf(provider, entry, await groupsOf(provider, service, entry.dn)),
      dn: entry.dn,
    };
  } catch (err) {
    throw unreachable(provider, err);
  } finally {
    await service.unbind().catch(() => {});
  }
}

/** A failure of the directory itself (not a refusal of pgward's) as IDP_UNREACHABLE. */
function unreachable(provider: ProviderConfig, err: unknown): PgwardError {
  if (err instanceof PgwardError) return err;
  return new PgwardError('IDP_UNREACHABLE', `the LDAP server of ${provider.name} failed to answer`, {
    cause: err,
    hint: 'try again shortly; if it persists, the directory or the network to it is down',
  });
}

/** Reads a signed-in person again by their DN (a refresh); LOGIN_FAILED when they are gone or disabled. */
export async function ldapReread(provider: ProviderConfig, dn: string): Promise<MappedClaims> {
  const service = await connect(provider);
  try {
    const { searchEntries } = await service
      .search(dn, {
        scope: 'base',
        filter: '(objectClass=*)',
        attributes: [
          provider.ldap!.idAttribute,
          provider.ldap!.emailAttribute,
          provider.ldap!.nameAttribute,
          'cn',
          'userAccountControl',
        ],
      })
      .catch(() => ({ searchEntries: [] as Entry[] }));
    const entry = searchEntries[0];
    if (!entry) throw new PgwardError('LOGIN_FAILED', 'the person is no longer in the directory');
    try {
      return identityOf(provider, entry, await groupsOf(provider, service, entry.dn));
    } catch (err) {
      if (err instanceof PgwardError && err.code === 'NOT_ALLOWED')
        throw new PgwardError('LOGIN_FAILED', err.message);
      throw unreachable(provider, err);
    }
  } finally {
    await service.unbind().catch(() => {});
  }
}
