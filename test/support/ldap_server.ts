/**
 * A real OpenLDAP server (Debian's slapd) for one test file, on loopback: a fresh cn=config and
 * mdb database in a temporary folder, loaded with slapadd before start; ldaps:// and StartTLS on
 * ldap:// with a self-signed certificate for 127.0.0.1 (or plain ldap:// only, `tls: false`, a
 * server that offers no StartTLS). Passwords are stored as {SSHA}; the ACLs let anyone bind and
 * only the service account search and read (never userPassword). slapd's stats log
 * (`-d 256`) is read for the binds it saw and whether TLS was up on their connection.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { Attribute, Change, Client } from 'ldapts';
import { generate } from 'selfsigned';
import { freePort } from '../../src/store/free_port.js';

export interface LdapEntry {
  dn: string;
  attributes: Record<string, string | string[]>;
  /** The entry's password (stored as {SSHA} in userPassword), for binds. */
  password?: string;
}

/** A simple bind slapd answered. */
export interface SeenBind {
  /** Lowercase, no spaces after commas. */
  dn: string;
  ok: boolean;
  /** TLS was established on the connection before the bind (LDAPS or StartTLS). */
  tls: boolean;
}

export interface TestLdap {
  /** `ldaps://127.0.0.1:PORT`; undefined with `tls: false`. */
  url: string | undefined;
  /** `ldap://127.0.0.1:PORT`, which offers StartTLS unless `tls: false`. */
  startTlsUrl: string;
  /** The server's self-signed certificate (PEM), the CA to trust. */
  ca: string;
  /** Every simple bind answered so far, in order (waits until slapd has logged all of them). */
  binds(): Promise<SeenBind[]>;
  /** Replaces an attribute's values, as an administrator would (the rootdn, over LDAPS). */
  replace(dn: string, attribute: string, values: string[]): Promise<void>;
  close(): Promise<void>;
}

export interface TestLdapOptions {
  /** The naming context, e.g. `dc=corp,dc=example`; missing `ou=` parents are created. */
  suffix: string;
  entries: LdapEntry[];
  /** The only DN allowed to search. */
  serviceDn: string;
  /** false: no certificate, ldap:// only, StartTLS answered with an error. */
  tls?: boolean;
}

const START_MS = 10_000;
const STOP_MS = 5_000;
const SCHEMAS = ['core', 'cosine', 'inetorgperson'];

export const norm = (dn: string) => dn.replace(/,\s+/g, ',').toLowerCase();

/** Debian installs slapd and slapadd in /usr/sbin, which is not on every user's PATH. */
function sbin(name: string): string {
  const file = `/usr/sbin/${name}`;
  if (existsSync(file)) return file;
  const found = spawnSync('sh', ['-c', `command -v ${name}`], { encoding: 'utf8' }).stdout.trim();
  if (!found) throw new Error(`${name} is not installed (Debian: apt-get install slapd)`);
  return found;
}

/** {SSHA}: base64(SHA-1(password + salt) + salt), as slappasswd makes it. */
function ssha(password: string): string {
  const salt = randomBytes(8);
  const digest = createHash('sha1').update(password).update(salt).digest();
  return `{SSHA}${Buffer.concat([digest, salt]).toString('base64')}`;
}

/** One LDIF line (RFC 2849): base64 where the value is not a SAFE-STRING. */
function line(attribute: string, value: string): string {
  const safe = /^(?![ :<])[\x01-\x09\x0b\x0c\x0e-\x7f]*$/.test(value) && !value.endsWith(' ');
  return safe ? `${attribute}: ${value}` : `${attribute}:: ${Buffer.from(value).toString('base64')}`;
}

function ldif(records: { dn: string; attributes: Record<string, string | string[]> }[]): string {
  return records
    .map((r) =>
      [
        line('dn', r.dn),
        ...Object.entries(r.attributes).flatMap(([a, v]) => [v].flat().map((one) => line(a, one))),
      ].join('\n'),
    )
    .join('\n\n')
    .concat('\n');
}

const rdns = (dn: string) => dn.split(/(?<!\\),\s*/);

/** The entries with their missing parents (the suffix, `ou=` containers), parents first. */
function withParents(suffix: string, entries: LdapEntry[]): LdapEntry[] {
  const all = new Map(entries.map((e) => [norm(e.dn), e]));
  const depth = rdns(suffix).length;
  for (const e of entries) {
    if (!norm(e.dn).endsWith(norm(suffix))) throw new Error(`${e.dn} is not under ${suffix}`);
    const parts = rdns(e.dn);
    for (let i = 1; parts.length - i >= depth; i++) {
      const dn = parts.slice(i).join(',');
      if (all.has(norm(dn))) continue;
      const [type, value = ''] = parts[i]!.split('=');
      const attributes: Record<string, string | string[]> =
        parts.length - i === depth
          ? { objectClass: ['dcObject', 'organization'], dc: value, o: value }
          : type?.toLowerCase() === 'ou'
            ? { objectClass: 'organizationalUnit', ou: value }
            : {};
      if (!attributes['objectClass']) throw new Error(`add the parent entry ${dn} of ${e.dn}`);
      all.set(norm(dn), { dn, attributes });
    }
  }
  return [...all.values()].sort((a, b) => rdns(a.dn).length - rdns(b.dn).length);
}

function configLdif(dir: string, o: TestLdapOptions, rootDn: string, rootPw: string, tls: boolean): string {
  const schemas = SCHEMAS.map((s) => `include: file:///etc/ldap/schema/${s}.ldif`).join('\n');
  return [
    ldif([
      {
        dn: 'cn=config',
        attributes: {
          objectClass: 'olcGlobal',
          cn: 'config',
          olcPidFile: path.join(dir, 'slapd.pid'),
          ...(tls
            ? {
                olcTLSCertificateFile: path.join(dir, 'cert.pem'),
                olcTLSCertificateKeyFile: path.join(dir, 'key.pem'),
                // TLS 1.2 or later, as pgward asks.
                olcTLSProtocolMin: '3.3',
              }
            : {}),
        },
      },
      {
        dn: 'cn=module{0},cn=config',
        attributes: {
          objectClass: 'olcModuleList',
          cn: 'module{0}',
          olcModulePath: '/usr/lib/ldap',
          olcModuleLoad: 'back_mdb',
        },
      },
      { dn: 'cn=schema,cn=config', attributes: { objectClass: 'olcSchemaConfig', cn: 'schema' } },
    ]),
    schemas,
    '',
    ldif([
      {
        dn: 'olcDatabase={-1}frontend,cn=config',
        attributes: { objectClass: ['olcDatabaseConfig', 'olcFrontendConfig'], olcDatabase: '{-1}frontend' },
      },
      {
        dn: 'olcDatabase={0}config,cn=config',
        attributes: {
          objectClass: 'olcDatabaseConfig',
          olcDatabase: '{0}config',
          olcAccess: 'to * by * none',
        },
      },
      {
        dn: 'olcDatabase={1}mdb,cn=config',
        attributes: {
          objectClass: ['olcDatabaseConfig', 'olcMdbConfig'],
          olcDatabase: '{1}mdb',
          olcSuffix: o.suffix,
          olcRootDN: rootDn,
          olcRootPW: ssha(rootPw),
          olcDbDirectory: path.join(dir, 'data'),
          olcAccess: [
            // Anyone may bind (compare the password); no one reads it.
            '{0}to attrs=userPassword by anonymous auth by * none',
            `{1}to * by dn.exact="${o.serviceDn}" read by * none`,
          ],
        },
      },
    ]),
  ].join('\n');
}

function run(command: string, args: string[]): void {
  const r = spawnSync(command, args, { encoding: 'utf8', timeout: START_MS });
  if (r.status !== 0)
    throw new Error(`${path.basename(command)} ${args.join(' ')} failed: ${r.error ?? ''}${r.stderr}`);
}

/** Reads slapd's stats log: binds with their results and whether TLS was up on the connection. */
class StatsLog {
  /** Binds of pgward (the harness's own, as the rootdn, are left out). */
  readonly binds: SeenBind[] = [];
  readonly tail: string[] = [];
  private readonly tls = new Set<string>();
  private readonly pending = new Map<string, string>();
  private readonly marks = new Map<string, () => void>();
  private readonly markOps = new Map<string, string>();

  constructor(private readonly rootDn: string) {}

  /** Each stats line of interest, by its shape (`conn=N op=M ...`). */
  private readonly lines: [RegExp, (m: string[]) => void][] = [
    [/conn=(\d+) fd=\d+ TLS established/, ([, c]) => this.tls.add(c!)],
    [/conn=(\d+) fd=\d+ closed/, ([, c]) => this.tls.delete(c!)],
    [/conn=(\d+) op=(\d+) BIND dn="([^"]*)" method=/, ([, c, op, dn]) => this.pending.set(`${c}/${op}`, dn!)],
    [
      /conn=(\d+) op=(\d+) RESULT tag=97 err=(\d+)/,
      ([, c, op, err]) => {
        const dn = this.pending.get(`${c}/${op}`);
        this.pending.delete(`${c}/${op}`);
        if (dn !== undefined && norm(dn) !== norm(this.rootDn))
          this.binds.push({ dn: norm(dn), ok: err === '0', tls: this.tls.has(c!) });
      },
    ],
    [/conn=(\d+) op=(\d+) SRCH base="cn=mark-(\w+)/, ([, c, op, id]) => this.markOps.set(`${c}/${op}`, id!)],
    [
      /conn=(\d+) op=(\d+) SEARCH RESULT/,
      ([, c, op]) => {
        const id = this.markOps.get(`${c}/${op}`);
        if (id !== undefined) this.marks.get(id)?.();
      },
    ],
  ];

  read(text: string): void {
    this.tail.push(text);
    if (this.tail.length > 40) this.tail.shift();
    for (const [shape, handle] of this.lines) {
      const m = shape.exec(text);
      if (m) {
        handle(m);
        return;
      }
    }
  }

  /** Resolves once slapd has logged the answer to a search for `cn=mark-ID`. */
  mark(id: string): Promise<void> {
    return new Promise((resolve) => this.marks.set(id, resolve));
  }
}

/** Starts slapd with `entries`; close() stops it and removes its folder. */
export async function startTestLdap(o: TestLdapOptions): Promise<TestLdap> {
  const tls = o.tls ?? true;
  const slapd = sbin('slapd');
  const slapadd = sbin('slapadd');
  // 0700: it holds the private key. slapd runs as the test's user (root in CI), so a 0700
  // temporary folder above it is no obstacle.
  const dir = mkdtempSync(path.join(tmpdir(), 'pgward-slapd-'));
  let child: ChildProcess | undefined;
  try {
    mkdirSync(path.join(dir, 'config'));
    mkdirSync(path.join(dir, 'data'));
    const pems = await generate([{ name: 'commonName', value: '127.0.0.1' }], {
      keySize: 2048,
      algorithm: 'sha256',
      extensions: [{ name: 'subjectAltName', altNames: [{ type: 7, ip: '127.0.0.1' }] }],
    });
    writeFileSync(path.join(dir, 'cert.pem'), pems.cert);
    writeFileSync(path.join(dir, 'key.pem'), pems.private, { mode: 0o600 });
    const rootDn = `cn=admin,${o.suffix}`;
    const rootPw = randomBytes(16).toString('hex');
    writeFileSync(path.join(dir, 'config.ldif'), configLdif(dir, o, rootDn, rootPw, tls));
    const records = withParents(o.suffix, o.entries).map((e) => ({
      dn: e.dn,
      attributes: {
        ...e.attributes,
        ...(e.password === undefined ? {} : { userPassword: ssha(e.password) }),
      },
    }));
    writeFileSync(path.join(dir, 'data.ldif'), ldif(records));
    const configDir = path.join(dir, 'config');
    run(slapadd, ['-n0', '-F', configDir, '-l', path.join(dir, 'config.ldif')]);
    run(slapadd, ['-n1', '-F', configDir, '-l', path.join(dir, 'data.ldif')]);

    const plainPort = await freePort();
    const tlsPort = tls ? await freePort() : undefined;
    const listeners = [`ldap://127.0.0.1:${plainPort}/`, ...(tls ? [`ldaps://127.0.0.1:${tlsPort}/`] : [])];
    // -d 256: the stats log on stderr, and slapd stays in the foreground as our child.
    const proc = spawn(slapd, ['-d', '256', '-F', configDir, '-h', listeners.join(' ')], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    child = proc;
    const log = new StatsLog(rootDn);
    createInterface({ input: proc.stderr! }).on('line', (l) => log.read(l));
    const exited = new Promise<never>((_, reject) =>
      proc.once('exit', (code, signal) =>
        reject(new Error(`slapd exited (${code ?? signal}):\n${log.tail.join('\n')}`)),
      ),
    );
    exited.catch(() => {});

    const url = tls ? `ldaps://127.0.0.1:${tlsPort}` : undefined;
    const startTlsUrl = `ldap://127.0.0.1:${plainPort}`;
    const admin = () => {
      const c = new Client({
        url: url ?? startTlsUrl,
        timeout: 2000,
        connectTimeout: 2000,
        ...(url ? { tlsOptions: { ca: [pems.cert] } } : {}),
      });
      return c;
    };
    const asAdmin = async <T>(work: (c: Client) => Promise<T>): Promise<T> => {
      const c = admin();
      try {
        await c.bind(rootDn, rootPw);
        return await work(c);
      } finally {
        await c.unbind().catch(() => {});
      }
    };

    // Ready once the rootdn can bind over the TLS listener (or the plain one).
    const deadline = Date.now() + START_MS;
    for (;;) {
      const ok = await Promise.race([asAdmin(async () => true).catch(() => false), exited]);
      if (ok) break;
      if (Date.now() > deadline)
        throw new Error(`slapd did not answer within ${START_MS} ms:\n${log.tail.join('\n')}`);
      await new Promise((r) => setTimeout(r, 50));
    }

    let marks = 0;
    return {
      url,
      startTlsUrl,
      ca: pems.cert,
      async binds() {
        // A search slapd logs after every earlier answer: once it is logged, so are they.
        const id = `${process.pid}x${++marks}`;
        const logged = log.mark(id);
        await asAdmin((c) => c.search(`cn=mark-${id},${o.suffix}`, { scope: 'base' }).catch(() => {}));
        let timer: NodeJS.Timeout | undefined;
        await Promise.race([
          logged,
          new Promise((_, reject) => {
            timer = setTimeout(() => reject(new Error('slapd did not log the mark search')), 2000);
          }),
        ]).finally(() => clearTimeout(timer));
        return [...log.binds];
      },
      async replace(dn, attribute, values) {
        await asAdmin((c) =>
          c.modify(
            dn,
            new Change({ operation: 'replace', modification: new Attribute({ type: attribute, values }) }),
          ),
        );
      },
      async close() {
        await stop(proc);
        rmSync(dir, { recursive: true, force: true });
      },
    };
  } catch (err) {
    if (child) await stop(child);
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
}

/** SIGTERM, then SIGKILL if slapd has not exited within STOP_MS. */
async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<boolean>((resolve) => {
    timer = setTimeout(() => resolve(true), STOP_MS);
  });
  if (await Promise.race([exited.then(() => false), late])) {
    child.kill('SIGKILL');
    await exited;
  }
  clearTimeout(timer);
}
