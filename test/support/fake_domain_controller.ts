/**
 * An emulation of an Active Directory domain controller, for what OpenLDAP cannot show: the
 * LDAP_MATCHING_RULE_IN_CHAIN matching rule (1.2.840.113556.1.4.1941) and `userAccountControl`.
 * No domain controller can run in the tests, so this is an in-process ldapjs server over LDAPS
 * that answers only what pgward's `nestedGroups: ad` mode asks: simple binds checked against each
 * entry's password, and searches (by the service account only) matched by ldapjs's filters, or,
 * for IN_CHAIN on `member`, with the groups the DN is in through groups of groups. Everything
 * else is tested against slapd (ldap_server.ts).
 */
import ldap from 'ldapjs';
import { generate } from 'selfsigned';
import { freePort } from '../../src/store/free_port.js';
import { type LdapEntry, norm } from './ldap_server.js';

export interface FakeDomainController {
  /** `ldaps://127.0.0.1:PORT` */
  url: string;
  ca: string;
  /** The filters of the searches answered, as ldapjs prints them. */
  filters: string[];
  close(): Promise<void>;
}

/** The parts of ldapjs's server requests and responses used here (its types cover the client). */
interface Req {
  dn: { toString(): string };
  credentials: string;
  scope: 'base' | 'one' | 'sub';
  filter: {
    matchingRule?: string;
    matchType?: string;
    matchValue?: string;
    matches(o: unknown, strictAttributeCase?: boolean): boolean;
    toString(): string;
  };
  attributes: string[];
  connection: { ldap: { bindDN: { toString(): string } } };
}
interface Res {
  send(entry: { dn: string; attributes: Record<string, string | string[]> }): void;
  /** ldapjs filters what is sent by these, case-sensitively: emptied, the handler picks instead. */
  attributes: string[];
  end(): void;
}
type Next = (err?: unknown) => void;
interface Server {
  bind(base: string, handler: (req: Req, res: Res, next: Next) => void): void;
  search(base: string, handler: (req: Req, res: Res, next: Next) => void): void;
  listen(port: number, host: string, cb: () => void): void;
  close(cb: () => void): void;
}

const IN_CHAIN = '1.2.840.113556.1.4.1941';

export async function startFakeDomainController(
  entries: LdapEntry[],
  serviceDn: string,
): Promise<FakeDomainController> {
  const pems = await generate([{ name: 'commonName', value: '127.0.0.1' }], {
    keySize: 2048,
    algorithm: 'sha256',
    extensions: [{ name: 'subjectAltName', altNames: [{ type: 7, ip: '127.0.0.1' }] }],
  });
  const server = ldap.createServer({ certificate: pems.cert, key: pems.private }) as unknown as Server;
  const filters: string[] = [];

  server.bind('', (req, res, next) => {
    const entry = entries.find((e) => norm(e.dn) === norm(req.dn.toString()));
    if (entry?.password === undefined || req.credentials !== entry.password)
      return next(new ldap.InvalidCredentialsError());
    res.end();
    return next();
  });

  /** DNs of the groups `member` is in, through groups of groups (what IN_CHAIN answers). */
  const inChain = (member: string): Set<string> => {
    const found = new Set<string>();
    let level = [norm(member)];
    while (level.length > 0) {
      const next: string[] = [];
      for (const e of entries) {
        const members = [e.attributes['member'] ?? []].flat().map(norm);
        if (!found.has(norm(e.dn)) && members.some((m) => level.includes(m))) {
          found.add(norm(e.dn));
          next.push(norm(e.dn));
        }
      }
      level = next;
    }
    return found;
  };

  server.search('', (req, res, next) => {
    if (norm(req.connection.ldap.bindDN.toString()) !== norm(serviceDn))
      return next(new ldap.InsufficientAccessRightsError());
    const base = norm(req.dn.toString());
    const { filter } = req;
    filters.push(filter.toString());
    const chain =
      filter.matchingRule === IN_CHAIN && filter.matchType === 'member'
        ? inChain(filter.matchValue!)
        : undefined;
    res.attributes = [];
    for (const e of entries) {
      const dn = norm(e.dn);
      if (req.scope === 'base' ? dn !== base : !dn.endsWith(base)) continue;
      if (!(chain ? chain.has(dn) : filter.matches(e.attributes, false))) continue;
      // The requested attributes (names are case-insensitive), spelt as requested.
      const attributes = Object.fromEntries(
        req.attributes.flatMap((name) => {
          const key = Object.keys(e.attributes).find((k) => k.toLowerCase() === name.toLowerCase());
          return key === undefined ? [] : [[name, e.attributes[key]!]];
        }),
      );
      res.send({ dn: e.dn, attributes });
    }
    res.end();
    return next();
  });

  const port = await freePort();
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', () => resolve()));
  return {
    url: `ldaps://127.0.0.1:${port}`,
    ca: pems.cert,
    filters,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
