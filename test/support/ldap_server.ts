/**
 * A real LDAP server in the test process (ldapjs's server API): LDAPS with a self-signed
 * certificate, simple binds checked against each entry's password, searches only for the service
 * account, filters matched by ldapjs, and Active Directory's LDAP_MATCHING_RULE_IN_CHAIN on
 * `member` answered with the nested groups, as a domain controller does.
 */
import ldap from 'ldapjs';
import { generate } from 'selfsigned';
import { freePort } from '../../src/store/free_port.js';

export interface LdapEntry {
  dn: string;
  attributes: Record<string, string | string[]>;
  /** The entry's password, for binds. */
  password?: string;
}

export interface TestLdap {
  /** `ldaps://127.0.0.1:PORT` */
  url: string;
  ca: string;
  entries: LdapEntry[];
  /** Simple binds seen (DN and whether they succeeded). */
  binds: { dn: string; ok: boolean }[];
  close(): Promise<void>;
}

/** The parts of ldapjs's server requests and responses used here (its types cover the client). */
interface Req {
  dn: { toString(): string };
  credentials: string;
  scope: 'base' | 'one' | 'sub';
  filter: unknown;
  attributes: string[];
  connection: { ldap: { bindDN: { toString(): string } } };
}
interface Res {
  send(entry: { dn: string; attributes: Record<string, string | string[]> }): void;
  /** The requested attributes, by which ldapjs filters what is sent (case-sensitively, so not used). */
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

const norm = (dn: string) => dn.replace(/,\s+/g, ',').toLowerCase();
const IN_CHAIN = '1.2.840.113556.1.4.1941';

export async function startTestLdap(entries: LdapEntry[], serviceDn: string): Promise<TestLdap> {
  const pems = await generate([{ name: 'commonName', value: '127.0.0.1' }], {
    keySize: 2048,
    algorithm: 'sha256',
    extensions: [{ name: 'subjectAltName', altNames: [{ type: 7, ip: '127.0.0.1' }] }],
  });
  const server = ldap.createServer({ certificate: pems.cert, key: pems.private }) as unknown as Server;
  const binds: TestLdap['binds'] = [];
  const find = (dn: string) => entries.find((e) => norm(e.dn) === norm(dn));

  server.bind('', (req, res, next) => {
    const dn = req.dn.toString();
    const entry = find(dn);
    const ok = entry?.password !== undefined && req.credentials === entry.password;
    binds.push({ dn: norm(dn), ok });
    if (!ok) return next(new ldap.InvalidCredentialsError());
    res.end();
    return next();
  });

  /** DNs of the groups `member` is in, through groups of groups. */
  const inChain = (member: string): Set<string> => {
    const found = new Set<string>();
    let level = [norm(member)];
    while (level.length > 0) {
      const next: string[] = [];
      for (const m of level) {
        for (const e of entries) {
          const members = [e.attributes['member'] ?? []].flat().map(norm);
          if (members.includes(m) && !found.has(norm(e.dn))) {
            found.add(norm(e.dn));
            next.push(norm(e.dn));
          }
        }
      }
      level = next;
    }
    return found;
  };

  server.search('', (req, res, next) => {
    const bound = norm(
      (req.connection as unknown as { ldap: { bindDN: { toString(): string } } }).ldap.bindDN.toString(),
    );
    if (bound !== norm(serviceDn)) return next(new ldap.InsufficientAccessRightsError());
    const base = norm(req.dn.toString());
    const filter = req.filter as unknown as {
      matchingRule?: string;
      matchType?: string;
      matchValue?: string;
      matches(o: unknown, strict?: boolean): boolean;
    };
    const chain =
      filter.matchingRule === IN_CHAIN && filter.matchType === 'member'
        ? inChain(filter.matchValue!)
        : undefined;
    for (const e of entries) {
      const dn = norm(e.dn);
      const inScope =
        req.scope === 'base'
          ? dn === base
          : req.scope === 'one'
            ? dn.split(',').slice(1).join(',') === base
            : dn.endsWith(base);
      if (!inScope) continue;
      const match = chain ? chain.has(dn) : filter.matches(e.attributes, false);
      // The requested attributes (names are case-insensitive), spelt as requested.
      const wanted = req.attributes.filter((a) => a !== '*');
      res.attributes = [];
      const attributes =
        wanted.length === 0
          ? e.attributes
          : Object.fromEntries(
              wanted.flatMap((name) => {
                const key = Object.keys(e.attributes).find((k) => k.toLowerCase() === name.toLowerCase());
                return key === undefined ? [] : [[name, e.attributes[key]!]];
              }),
            );
      if (match) res.send({ dn: e.dn, attributes });
    }
    res.end();
    return next();
  });

  const port = await freePort();
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', () => resolve()));
  return {
    url: `ldaps://127.0.0.1:${port}`,
    ca: pems.cert,
    entries,
    binds,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
