import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type pg from 'pg';
import { call } from './support/api.js';
import { runCli } from './support/cli.js';
import type { TestStack } from './support/dev_stack.js';
import { startFakeTarget } from './support/fake_target.js';
import { type LoginRoleStack, startLoginRoleStack } from './support/login_roles.js';

interface Answer {
  connection: string;
  ok: boolean;
  checks: { check: string; status: string; detail: string; action?: string }[];
}

describe('pgward admin check conn NAME', () => {
  let s: LoginRoleStack;
  let t: TestStack;
  let admin: string;
  let superuser: pg.Client;
  before(async () => {
    s = await startLoginRoleStack();
    ({ t, superuser } = s);
    admin = await t.token('admin@example.com');
    await s.addConnection({
      name: 'demo-missing-role',
      sslmode: 'disable',
      access: { viewer: ['app_readonly', 'no_such_role'] },
    });
    // A login role pgward made, so the check has one to look at.
    const r = await t.psql('viewer@example.com', ['-c', 'select 1']);
    assert.equal(r.code, 0, r.stderr);
  });
  after(async () => {
    await s?.close();
  });

  const check = (name: string, token = admin) =>
    call<Answer>(t.stack.info.http, 'POST', `/api/v1/connections/${name}/check`, { token });
  const byName = (answer: Answer) => Object.fromEntries(answer.checks.map((c) => [c.check, c]));

  it('reports each check of the demo connection, with what cannot be verified said as such', async () => {
    const res = await check('demo');
    assert.equal(res.status, 200, JSON.stringify(res.body));
    assert.equal(res.body.ok, true);
    const c = byName(res.body);
    assert.equal(c['target reachable']?.status, 'ok');
    assert.equal(c['TLS']?.status, 'warn');
    assert.match(c['TLS']!.detail, /the target offers no TLS/);
    assert.deepEqual(c['authentication method'], {
      check: 'authentication method',
      status: 'ok',
      detail: 'scram-sha-256',
    });
    assert.equal(c['credential logs in']?.status, 'ok');
    assert.equal(c['credential is not superuser']?.status, 'ok');
    assert.equal(c['mapped roles exist']?.status, 'ok');
    assert.equal(c['credential has CREATEROLE']?.status, 'ok');
    assert.equal(c['ADMIN OPTION on the mapped roles']?.status, 'ok');
    assert.equal(c['login roles']?.status, 'ok');
    assert.match(
      c['login roles']!.detail,
      /^1 made by pgward, each with VALID UNTIL and no stored settings$/,
    );
    assert.equal(c['pg_hba.conf']?.status, 'warn');
    assert.match(c['pg_hba.conf']!.detail, /cannot be verified without superuser/);
    assert.doesNotMatch(JSON.stringify(res.body), new RegExp(t.stack.target.admin.password));
  });

  it('warns about a login role with stored settings', async () => {
    await superuser.query(`ALTER ROLE "viewer@example.com" SET work_mem = '1MB'`);
    try {
      const c = byName((await check('demo')).body);
      assert.equal(c['login roles']?.status, 'warn');
      assert.match(c['login roles']!.detail, /with stored settings: "viewer@example.com"/);
    } finally {
      await superuser.query(`ALTER ROLE "viewer@example.com" RESET ALL`);
    }
  });

  it('fails a mapped role that does not exist; the CLI prints each line and exits non-zero', async () => {
    const res = await check('demo-missing-role');
    assert.equal(res.body.ok, false);
    assert.equal(byName(res.body)['mapped roles exist']?.status, 'fail');
    const env = { PGWARD_GATEWAY: t.stack.info.http, PGWARD_TOKEN: admin };
    const cli = await runCli(['admin', 'check', 'conn', 'demo-missing-role'], { env });
    assert.notEqual(cli.code, 0);
    assert.match(cli.stdout, /^ok {4}target reachable: 127\.0\.0\.1:\d+ answers$/m);
    assert.match(cli.stdout, /^fail {2}mapped roles exist: missing: "no_such_role"$/m);
    assert.match(cli.stdout, /^ {6}do: create them in the target, or change the access map$/m);
    assert.match(cli.stderr, /connection "demo-missing-role" failed 1 check/);
    const json = await runCli(['admin', 'check', 'conn', 'demo', '--json'], { env });
    assert.equal(json.code, 0, json.stderr);
    assert.equal((JSON.parse(json.stdout) as Answer).ok, true);
  });

  it('fails a target that asks the credential for cleartext over unverified TLS, without sending it', async () => {
    const fake = await startFakeTarget('cleartext');
    try {
      await s.addConnection({
        name: 'demo-cleartext',
        host: '127.0.0.1',
        port: fake.port,
        database: 'demo',
        sslmode: 'prefer',
        access: { viewer: ['app_readonly'] },
      });
      const res = await check('demo-cleartext');
      assert.equal(res.body.ok, false);
      const c = byName(res.body);
      assert.equal(c['TLS']?.status, 'warn');
      assert.equal(c['authentication method']?.status, 'fail');
      assert.match(
        c['authentication method']!.detail,
        /asks the credential for password, and TLS is not verified/,
      );
      assert.deepEqual(fake.passwords, []);
    } finally {
      await fake.close();
    }
  });

  it('is for administrators only', async () => {
    const res = await check('demo', await t.token('viewer@example.com'));
    assert.equal(res.status, 403);
  });
});
