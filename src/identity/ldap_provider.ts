/**
 * LDAP / Active Directory as an identity provider (ldapts): the service account (`clientId` is
 * its DN, `clientSecret` its password) finds the person by the configured filter, a bind with
 * the person's DN and password proves the password, and their groups are read, nested ones
 * included (Active Directory's LDAP_MATCHING_RULE_IN_CHAIN, or groups of groups followed by
 * `member`). Only over LDAPS or StartTLS off loopback; wrong passwords lock the user name.
 */
import { Client, type Entry, InvalidCredentialsError, SizeLimitExceededError } from 'ldapts';
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

/** Wrong passwords per (provider, user name): past the limit the name is locked for a while. */
export class LdapLockout {
  private readonly failures = new Map<string, { count: number; since: number; lockedUntil: number }>();

  private key(provider: ProviderConfig, username: string): string {
    return `${provider.name}\u0000${username.toLowerCase()}`;
  }

  /** Throws RATE_LIMITED while the user name is locked. */
  check(provider: ProviderConfig, username: string): void {
    const entry = this.failures.get(this.key(provider, username));
    if (entry && entry.lockedUntil > Date.now()) {
      const minutes = Math.ceil((entry.lockedUntil - Date.now()) / 60_000);
      throw new PgwardError(
        'RATE_LIMITED',
        `too many wrong passwords for this user name; try again in ${minutes} min`,
      );
    }
  }

  failed(provider: ProviderConfig, username: string): void {
    const { maxFailures, minutes } = provider.ldap!.lockout;
    const now = Date.now();
    const key = this.key(provider, username);
    let entry = this.failures.get(key);
    if (!entry || now - entry.since > minutes * 60_000) entry = { count: 0, since: now, lockedUntil: 0 };
    entry.count += 1;
    if (entry.count >= maxFailures) entry.lockedUntil = now + minutes * 60_000;
    this.failures.set(key, entry);
    if (this.failures.size > 100_000) this.failures.delete(this.failures.keys().next().value!);
  }

  succeeded(provider: ProviderConfig, username: string): void {
    this.failures.delete(this.key(provider, username));
  }
}

/** A client of the provider's server, over TLS (LDAPS, or StartTLS before anything is sent). */
async function open(provider: ProviderConfig): Promise<Client> {
  const l = provider.ldap!;
  const tlsOptions = { ...(l.ca ? { ca: [l.ca] } : {}), minVersion: 'TLSv1.2' as const };
  const client = new Client({
    url: l.url,
    timeout: l.timeoutSeconds * 1000,
    connectTimeout: l.timeoutSeconds * 1000,
    tlsOptions,
  });
  if (l.startTls) await client.startTLS(tlsOptions);
  return client;
}

async function connect(provider: ProviderConfig): Promise<Client> {
  let client: Client | undefined;
  try {
    client = await open(provider);
    await client.bind(provider.clientId, provider.clientSecret ?? '');
  } catch (err) {
    await client?.unbind().catch(() => {});
    throw new PgwardError(
      'IDP_UNREACHABLE',
      err instanceof InvalidCredentialsError
        ? `the LDAP service account of ${provider.name} was refused (clientId, clientSecret)`
        : `cannot reach the LDAP server of ${provider.name}`,
      { cause: err, hint: 'try again shortly; if it persists, the directory or the network to it is down' },
    );
  }
  return client!;
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
  lockout.check(provider, username);
  const filter = provider.ldap!.userFilter.replaceAll('{username}', escapeFilterValue(username));
  const service = await connect(provider);
  try {
    const entry = await findUser(provider, service, filter);
    if (!entry) {
      lockout.failed(provider, username);
      throw wrong();
    }
    let user: Client | undefined;
    try {
      user = await open(provider);
      await user.bind(entry.dn, password);
    } catch (err) {
      if (err instanceof InvalidCredentialsError) {
        lockout.failed(provider, username);
        throw wrong();
      }
      throw new PgwardError('IDP_UNREACHABLE', `cannot reach the LDAP server of ${provider.name}`, {
        cause: err,
      });
    } finally {
      await user?.unbind().catch(() => {});
    }
    lockout.succeeded(provider, username);
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
