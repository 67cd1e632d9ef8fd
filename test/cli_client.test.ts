import assert from 'node:assert/strict';
import { statSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { IdpPageWalker } from '../src/dev/dev_login.js';
import { runCli, startCli, stopProcess } from './support/cli.js';
import { startTestStack, type TestStack } from './support/dev_stack.js';
import { tempDir } from './support/temp_dir.js';

/** `pgward login | whoami | token | exec | admin | logout` against a dev stack, as a person would. */
describe('the pgward CLI against a gateway', () => {
  let t: TestStack;
  const homes: Record<string, string> = {};
  const env = (who: string) => ({ XDG_CONFIG_HOME: homes[who]!, PGWARD_GATEWAY: t.stack.info.http });

  /** `pgward login`, with the device code confirmed on the dev IdP's pages as `who`. */
  async function login(who: string): Promise<string> {
    homes[who] = tempDir(`cli-${who}`);
    const child = startCli(['login'], env(who));
    try {
      let url: string | undefined;
      for (let i = 0; i < 100 && !url; i++) {
        url = /open (\S+)/.exec(child.output())?.[1];
        if (!url) await new Promise((r) => setTimeout(r, 100));
      }
      assert.ok(url, child.output());
      await new IdpPageWalker(t.stack.info.idp).walk(
        url,
        { email: `${who}@example.com`, password: 'password' },
        () => false,
      );
      const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
      assert.equal(code, 0, child.output());
      return child.output();
    } finally {
      await stopProcess(child);
    }
  }

  before(async () => {
    t = await startTestStack();
    await Promise.all([login('admin'), login('viewer')]);
  });
  after(async () => {
    await t?.close();
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
