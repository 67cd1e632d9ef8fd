import assert from 'node:assert/strict';
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { PACKAGE_ROOT } from '../src/package_root.js';
import { cancelRequest } from '../src/wire/encode.js';
import { deviceLogin, runCli, runProgram, startCli, stopProcess } from './support/cli.js';
import { startTestStack, type TestStack } from './support/dev_stack.js';
import { tempDir } from './support/temp_dir.js';

/** `pgward login | whoami | token | exec | admin | logout` against a dev stack, as a person would. */
describe('the pgward CLI against a gateway', () => {
  let t: TestStack;
  const homes: Record<string, string> = {};
  // No browser is opened unless a test asks for one.
  const env = (who: string) => ({
    XDG_CONFIG_HOME: homes[who]!,
    PGWARD_GATEWAY: t.stack.info.http,
    BROWSER: '',
    DISPLAY: '',
  });

  /** `pgward login`, with the device code confirmed on the dev IdP's pages as `who`. */
  async function login(who: string): Promise<string> {
    homes[who] = tempDir(`cli-${who}`);
    return deviceLogin(t.stack.info.idp, env(who), `${who}@example.com`);
  }

  before(async () => {
    t = await startTestStack();
    await Promise.all([login('admin'), login('viewer')]);
  });
  after(async () => {
    await t?.close();
  });

  it('usage errors exit 64 (EX_USAGE) with help; help and --version exit 0', async () => {
    const unknown = await runCli(['--no-such-flag']);
    assert.equal(unknown.code, 64, unknown.stderr);
    assert.match(unknown.stderr, /unknown option/);
    assert.equal((await runCli(['admin', 'create'])).code, 64, 'a missing argument');
    assert.equal((await runCli(['frobnicate'])).code, 64, 'an unknown command');
    assert.equal((await runCli(['--help'])).code, 0);
    assert.equal((await runCli(['--version'])).code, 0);
  });

  it('logs in with the device grant and caches the credentials privately', async () => {
    const file = path.join(homes['viewer']!, 'pgward', 'credentials.json');
    assert.equal(statSync(file).mode & 0o777, 0o600);
    assert.equal(statSync(path.dirname(file)).mode & 0o777, 0o700);
    const who = await runCli(['whoami', '--json'], { env: env('viewer') });
    assert.equal(who.code, 0, who.stderr);
    const me = JSON.parse(who.stdout) as { email: string; groups: string[] };
    assert.equal(me.email, 'viewer@example.com');
    assert.deepEqual(me.groups, ['dev:viewer', 'viewer']);
    const token = await runCli(['token'], { env: env('viewer') });
    assert.match(token.stdout.trim(), /^[\w-]+\.[\w-]+\.[\w-]+$/);
    const viaPsql = await t.psql('viewer@example.com', ['-tAc', 'select current_user'], {
      token: token.stdout.trim(),
    });
    assert.equal(viaPsql.stdout.trim(), 'viewer@example.com', viaPsql.stderr);
  });

  it('runs SQL with exec in table, json and csv, and fails with the PostgreSQL error', async () => {
    const table = await runCli(['exec', 'demo', '-c', "select 1 as one, 'a,b' as two"], {
      env: env('viewer'),
    });
    assert.equal(table.code, 0, table.stderr);
    assert.match(table.stdout, /one\s+two\n---\s+---\n1\s+a,b\n\(1 row\)/);
    const json = await runCli(['exec', 'demo', '-c', 'select 1 as one', '--format', 'json'], {
      env: env('viewer'),
    });
    assert.deepEqual(JSON.parse(json.stdout), [{ one: 1 }]);
    const csv = await runCli(['exec', 'demo', '-c', "select 'a,b' as two", '--format', 'csv'], {
      env: env('viewer'),
    });
    assert.equal(csv.stdout, 'two\n"a,b"\n');
    const denied = await runCli(
      ['exec', 'demo', '-c', "insert into users (username, email) values ('x', 'x@y')"],
      {
        env: env('viewer'),
      },
    );
    assert.equal(denied.code, 1);
    assert.match(denied.stderr, /ERROR: {2}permission denied for table users \(SQLSTATE 42501\)/);
  });

  it('administers connections with the -e form; a viewer may not, and no credential is shown', async () => {
    const target = new URL(t.stack.info.target);
    const password = t.stack.target.admin.password;
    const args = [
      'admin',
      'create',
      'conn',
      'cli-demo',
      '--type',
      'postgres',
      '-e',
      `HOST=${target.hostname}`,
      '-e',
      `PORT=${target.port}`,
      '-e',
      'USER=pgward_admin',
      '-e',
      'PASS=-',
      '-e',
      'DB=demo',
      '-e',
      'SSLMODE=disable',
      '-e',
      'ROLE_MODE=shared',
      '--access',
      'viewer=app_readonly',
    ];
    const denied = await runCli(args, { env: env('viewer'), input: 'whatever\n' });
    assert.equal(denied.code, 77);
    assert.match(denied.stderr, /only pgward administrators may do this/);
    const created = await runCli(args, { env: env('admin'), input: `${password}\n` });
    assert.equal(created.code, 0, created.stderr);
    assert.doesNotMatch(created.stdout, new RegExp(password));
    const listed = await runCli(['admin', 'get', 'conns'], { env: env('admin') });
    assert.match(listed.stdout, /cli-demo\s+127\.0\.0\.1/);
    assert.doesNotMatch(listed.stdout, new RegExp(password));
    const who = await runCli(['exec', 'cli-demo', '-c', 'select current_user as u', '--format', 'json'], {
      env: env('viewer'),
    });
    assert.deepEqual(JSON.parse(who.stdout), [{ u: 'pgward_admin' }], who.stderr);
    const sessions = await runCli(['admin', 'get', 'sessions', '--user', 'viewer@example.com', '--json'], {
      env: env('admin'),
    });
    assert.ok((JSON.parse(sessions.stdout) as unknown[]).length > 0);
    const gone = await runCli(['admin', 'delete', 'conn', 'cli-demo'], { env: env('admin') });
    assert.equal(gone.code, 0, gone.stderr);
    const missing = await runCli(['admin', 'get', 'conn', 'cli-demo'], { env: env('admin') });
    assert.equal(missing.code, 66);
    assert.match(missing.stderr, /connection "cli-demo" does not exist/);
  });

  it('logs in with --browser: the browser comes back to a loopback listener with a one-time code', async () => {
    homes['editor'] = tempDir('cli-editor');
    const browserLog = path.join(homes['editor'], 'browser.log');
    const login = await runCli(['login', '--browser'], {
      env: {
        ...env('editor'),
        BROWSER: `${process.execPath} ${path.join(PACKAGE_ROOT, 'dist', 'test', 'support', 'walking_browser.js')}`,
        PGWARD_TEST_IDP: t.stack.info.idp,
        PGWARD_TEST_EMAIL: 'editor@example.com',
        PGWARD_TEST_BROWSER_LOG: browserLog,
      },
    });
    assert.equal(
      login.code,
      0,
      `${login.stderr}\n${existsSync(browserLog) ? readFileSync(browserLog, 'utf8') : ''}`,
    );
    assert.match(login.stderr, /Opened your browser at http:\/\/127\.0\.0\.1:\d+\/login\/cli\?/);
    assert.match(login.stdout, /Signed in to .* as editor@example\.com \(dev\)/);
    const who = await runCli(['whoami', '--json'], { env: env('editor') });
    assert.equal((JSON.parse(who.stdout) as { email: string }).email, 'editor@example.com', who.stderr);
  });

  it('connect: a local port guarded by a password made up for the run, for psql, pg and pgbench', async () => {
    const child = startCli(['connect', 'demo', '--port', '0'], env('viewer'));
    try {
      let line: RegExpExecArray | null = null;
      for (let i = 0; i < 100 && !line; i++) {
        line = /psql "(postgresql:\/\/[^"]+)"/.exec(child.output());
        if (!line) await new Promise((r) => setTimeout(r, 100));
      }
      assert.ok(line, child.output());
      const url = new URL(line[1]!);
      assert.equal(url.hostname, '127.0.0.1');
      assert.equal(decodeURIComponent(url.username), 'viewer@example.com');
      assert.ok(url.password.length >= 24);
      const port = Number(url.port);

      const psql = (target: string, sql: string) =>
        runProgram('psql', [target, '-X', '-tA', '-v', 'ON_ERROR_STOP=1', '-c', sql]);
      const who = await psql(url.toString(), 'select current_user');
      assert.equal(who.stdout.trim(), 'viewer@example.com', who.stderr);
      // Still the viewer's rights: the local port changes how one connects, not who one is.
      const write = await psql(url.toString(), "insert into users (username, email) values ('c', 'c@d')");
      assert.match(write.stderr, /permission denied for table users/);

      const wrong = new URL(url);
      wrong.password = 'guess';
      const refused = await psql(wrong.toString(), 'select 1');
      assert.notEqual(refused.code, 0);
      assert.match(refused.stderr, /wrong password for this `pgward connect` port/);
      const noPassword = await runProgram('psql', [
        `postgresql://x@127.0.0.1:${port}/demo?sslmode=disable`,
        '-w',
        '-c',
        'select 1',
      ]);
      assert.notEqual(noPassword.code, 0);
      const other = new URL(url);
      other.pathname = '/postgres';
      assert.match((await psql(other.toString(), 'select 1')).stderr, /serves the connection "demo" only/);

      // node-postgres: extended protocol, and a cancel sent to the local port reaches the target.
      const client = new pg.Client({ connectionString: url.toString() });
      await client.connect();
      try {
        assert.deepEqual((await client.query('select $1::int + 1 as n', [41])).rows, [{ n: 42 }]);
        const sleeping = client.query('select pg_sleep(30)');
        await new Promise((r) => setTimeout(r, 300));
        const { processID, secretKey } = client as unknown as { processID: number; secretKey: number };
        const key = Buffer.alloc(4);
        key.writeInt32BE(secretKey);
        const socket = connect({ host: '127.0.0.1', port });
        socket.on('error', () => undefined);
        socket.end(cancelRequest(processID, key));
        await assert.rejects(sleeping, /canceling statement due to user request/);
      } finally {
        await client.end();
      }

      const script = path.join(tempDir('cli-bench'), 'read.sql');
      writeFileSync(script, 'select count(*) from users;\n');
      const bench = await runProgram(
        'pgbench',
        ['-n', '-f', script, '-c', '2', '-t', '20', '-M', 'extended', 'demo'],
        {
          PGHOST: '127.0.0.1',
          PGPORT: String(port),
          PGUSER: 'viewer@example.com',
          PGPASSWORD: url.password,
          PGSSLMODE: 'disable',
        },
      );
      assert.equal(bench.code, 0, bench.stderr);
      assert.match(bench.stdout, /number of transactions actually processed: 40\/40/);
    } finally {
      assert.equal(await stopProcess(child, 'SIGINT'), 0, child.output());
    }
  });

  it('administers providers and revokes a token or a person from the command line', async () => {
    const secret = 'partner-client-secret-7c1e';
    const create = [
      'admin',
      'create',
      'provider',
      'partner',
      '--issuer',
      'http://127.0.0.1:1/partner',
      '--client-id',
      'pgward',
      '--client-secret',
      '-',
      '--display-name',
      'Partner SSO',
      '--groups-claim',
      'https://partner.example/groups',
    ];
    assert.equal((await runCli(create, { env: env('viewer'), input: `${secret}\n` })).code, 77);
    const onArgv = await runCli(
      create.map((a) => (a === '-' ? secret : a)),
      { env: env('admin') },
    );
    assert.equal(onArgv.code, 64);
    assert.match(onArgv.stderr, /--client-secret takes "-" and reads the secret from stdin/);
    const created = await runCli(create, { env: env('admin'), input: `${secret}\n` });
    assert.equal(created.code, 0, created.stderr);
    const again = await runCli(create, { env: env('admin'), input: `${secret}\n` });
    assert.equal(again.code, 65);
    assert.match(again.stderr, /exists already/);
    const deactivated = await runCli(['admin', 'update', 'provider', 'partner', '--inactive'], {
      env: env('admin'),
    });
    assert.equal(deactivated.code, 0, deactivated.stderr);
    const listed = await runCli(['admin', 'get', 'providers', '--json'], { env: env('admin') });
    const partner = (
      JSON.parse(listed.stdout) as { name: string; isActive: boolean; displayName: string }[]
    ).find((p) => p.name === 'partner');
    assert.deepEqual([partner?.displayName, partner?.isActive], ['Partner SSO', false]);
    assert.doesNotMatch(listed.stdout + created.stdout, new RegExp(secret));

    // Groups, members and mappings from the command line.
    const admin = (...args: string[]) => runCli(['admin', ...args], { env: env('admin') });
    assert.equal((await admin('create', 'group', 'partners')).code, 0);
    const member = await admin('create', 'member', 'partners', '--user', 'viewer@example.com');
    assert.match(member.stdout, /viewer@example\.com is now a member of partners/, member.stderr);
    const members = await admin('get', 'members', 'partners', '--json');
    assert.deepEqual(
      (JSON.parse(members.stdout) as { email: string }[]).map((m) => m.email),
      ['viewer@example.com'],
    );
    const mapping = await admin(
      'create',
      'mapping',
      '--provider',
      'partner',
      '--external-group',
      'eng',
      '--group',
      'partners',
      '--json',
    );
    assert.equal(mapping.code, 0, mapping.stderr);
    const { mappingId } = JSON.parse(mapping.stdout) as { mappingId: string };
    const mappings = await admin('get', 'mappings', '--provider', 'partner', '--json');
    assert.equal((JSON.parse(mappings.stdout) as unknown[]).length, 1);
    const unmapped = await admin('delete', 'mapping', mappingId);
    assert.equal(unmapped.code, 0, `${mapping.stdout} ${unmapped.stderr}`);
    assert.equal((await admin('delete', 'member', 'partners', '--user', 'viewer@example.com')).code, 0);
    assert.equal((await admin('delete', 'group', 'partners')).code, 0);

    // A provider nobody signed in with can be deleted; a configured one cannot.
    const configured = await admin('delete', 'provider', 'dev');
    assert.equal(configured.code, 64);
    assert.match(configured.stderr, /comes from the configuration/);
    assert.equal((await admin('delete', 'provider', 'partner')).code, 0);
    const after = await admin('get', 'providers', '--json');
    assert.ok(!(JSON.parse(after.stdout) as { name: string }[]).some((p) => p.name === 'partner'));

    // One token, read from stdin (never argv): refused on the wire at once; the sign-in lives on.
    const token = (await runCli(['token'], { env: env('editor') })).stdout.trim();
    const revoked = await runCli(['admin', 'revoke', 'token'], { env: env('admin'), input: `${token}\n` });
    assert.equal(revoked.code, 0, revoked.stderr);
    assert.equal(
      (await t.refusal('editor@example.com', { password: token })).detail,
      'pgward error TOKEN_REVOKED',
    );
    // Every sign-in of a person.
    const user = await runCli(['admin', 'revoke', 'user', 'editor@example.com'], { env: env('admin') });
    assert.equal(user.code, 0, user.stderr);
    assert.match(user.stdout, /Revoked 1 sign-in of editor@example\.com/);
    const ended = await runCli(['whoami'], { env: env('editor') });
    assert.equal(ended.code, 77);
  });

  it('says what to do when not logged in, and logs out', async () => {
    const nobody = await runCli(['whoami'], {
      env: { XDG_CONFIG_HOME: tempDir('cli-none'), PGWARD_GATEWAY: t.stack.info.http },
    });
    assert.equal(nobody.code, 77);
    assert.match(nobody.stderr, /not logged in to .*\nhint: run `pgward login`/);
    const token = (await runCli(['token'], { env: env('viewer') })).stdout.trim();
    const out = await runCli(['logout'], { env: env('viewer') });
    assert.equal(out.code, 0, out.stderr);
    const after = await runCli(['whoami'], { env: env('viewer') });
    assert.equal(after.code, 77);
    const refused = await t.refusal('viewer@example.com', { password: token });
    assert.equal(refused.detail, 'pgward error TOKEN_REVOKED', 'the sign-in ended at the gateway too');
  });
});

describe('a gateway serving HTTPS (http.tls)', () => {
  let t: TestStack;
  before(async () => {
    t = await startTestStack({ PGWARD_HTTP_TLS: 'true' });
  });
  after(async () => {
    await t?.close();
  });

  it('serves the API over TLS with the PostgreSQL endpoint certificate; the CLI verifies it', async () => {
    const gateway = t.stack.info.http;
    assert.match(gateway, /^https:\/\/127\.0\.0\.1:\d+$/);
    const ca = path.join(t.dataDir, 'tls', 'cert.pem');
    const env = { XDG_CONFIG_HOME: tempDir('cli-https'), PGWARD_GATEWAY: gateway, BROWSER: '', DISPLAY: '' };
    // Trusting the dev certificate: the gateway answers with a device login.
    const device = await runCli(['login', '--no-open'], {
      env: { ...env, NODE_EXTRA_CA_CERTS: ca },
      timeoutMs: 3_000,
    });
    assert.match(
      device.stderr,
      /To sign in, open http:\/\/127\.0\.0\.1:\d+\/device\S*\nand confirm the code/,
    );
    // Without it, the self-signed certificate is refused: no silent downgrade.
    const untrusted = await runCli(['login', '--no-open'], { env: { ...env, NODE_EXTRA_CA_CERTS: '' } });
    assert.equal(untrusted.code, 69, untrusted.stderr);
    assert.match(untrusted.stderr, /cannot reach the gateway at https:/);
    const plain = await fetch(gateway.replace('https:', 'http:') + '/healthz').catch((err: Error) => err);
    assert.ok(plain instanceof Error, 'plain HTTP on the HTTPS port is not served');
  });
});
