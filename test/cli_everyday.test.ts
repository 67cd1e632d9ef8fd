import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { chmodSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { type Shell, shellAssignment } from '../src/cli/client_env.js';
import { certificateCheck, clockCheck } from '../src/cli/doctor_verdicts.js';
import { connectionRows } from '../src/cli/everyday_commands.js';
import { render } from '../src/cli/output.js';
import { serviceSection, upsertSection } from '../src/cli/service_file.js';
import { PACKAGE_ROOT } from '../src/package_root.js';
import { deviceLogin, PGWARD_BIN, runCli, runProgram } from './support/cli.js';
import { startTestStack, type TestStack } from './support/dev_stack.js';
import { tempDir } from './support/temp_dir.js';

const VERSION = (
  JSON.parse(readFileSync(path.join(PACKAGE_ROOT, 'package.json'), 'utf8')) as { version: string }
).version;

/** Whether a program is on PATH. */
function installed(program: string): boolean {
  try {
    execFileSync('sh', ['-c', `command -v ${program}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** A folder holding a `pgward` that runs this checkout, for shells that call `pgward` by name. */
function pgwardOnPath(): string {
  const dir = tempDir('cli-bin');
  const bin = path.join(dir, 'pgward');
  writeFileSync(bin, `#!/bin/sh\nexec '${process.execPath}' '${PGWARD_BIN}' "$@"\n`);
  chmodSync(bin, 0o755);
  return dir;
}

describe('what the everyday commands print and write (no gateway needed)', () => {
  it('ls shows policies by name, read-only ones marked, and descriptions only when there are any', () => {
    const rows = connectionRows([
      {
        name: 'orders',
        roles: ['app_readonly', 'reporting'],
        policies: [
          { name: 'prod-readonly', mode: 'enforce', readOnly: true },
          { name: 'mask-email', mode: 'observe', readOnly: false },
        ],
      },
      { name: 'demo', roles: ['app_readonly'] },
    ]);
    assert.deepEqual(rows, [
      {
        NAME: 'orders',
        ROLES: 'app_readonly, reporting',
        POLICIES: 'prod-readonly (read-only), mask-email [observe]',
      },
      { NAME: 'demo', ROLES: 'app_readonly', POLICIES: '' },
    ]);
    assert.match(render(rows, 'table'), /^NAME\s+ROLES\s+POLICIES\n/);
    const described = connectionRows([{ name: 'a', description: 'the A database', roles: ['r'] }]);
    assert.equal(described[0]!['DESCRIPTION'], 'the A database');
  });

  it('doctor: clock skew from the Date header, with the round trip and whole seconds as slack', () => {
    const at = Date.parse('2026-12-02T10:00:00Z');
    const date = new Date(at).toUTCString();
    assert.equal(clockCheck(at + 100, at + 300, date).status, 'ok');
    assert.equal(clockCheck(at + 100, at + 300, null).status, 'skip');
    const ahead = clockCheck(at + 45_000, at + 45_100, date);
    assert.deepEqual([ahead.status, ahead.detail], ['fail', 'this machine is 44.5 s ahead of the gateway']);
    assert.match(ahead.action!, /NTP/);
    assert.equal(clockCheck(at - 10_000, at - 9_900, date).status, 'warn');
    assert.match(clockCheck(at - 10_000, at - 9_900, date).detail, /behind the gateway/);
    // A slow answer is not skew: the gateway may have stamped it anywhere in the 40 s.
    assert.equal(clockCheck(at - 20_000, at + 20_000, date).status, 'ok');
  });

  it('doctor: certificate expiry, trust and host name; loopback leniency only where clients have it', () => {
    const now = Date.parse('2026-12-02T10:00:00Z');
    const cert = (validTo: string) => ({ valid_to: validTo }) as import('node:tls').PeerCertificate;
    const good = { cert: cert('Dec 2 10:00:00 2027 GMT'), untrusted: undefined, wrongName: undefined };
    const check = (facts: typeof good | Record<string, unknown>, host = 'gw.example.com', relaxed = true) =>
      certificateCheck('pg tls', host, facts as typeof good, 'set PGWARD_CA', relaxed, now);
    assert.equal(check(good).status, 'ok');
    const expired = check({ ...good, cert: cert('Dec 1 10:00:00 2026 GMT') });
    assert.deepEqual(
      [expired.status, expired.detail],
      ['fail', 'the certificate expired at 2026-12-01T10:00:00.000Z'],
    );
    assert.equal(check({ ...good, cert: cert('Dec 10 10:00:00 2026 GMT') }).status, 'warn');
    const self = { ...good, untrusted: 'DEPTH_ZERO_SELF_SIGNED_CERT' };
    assert.deepEqual([check(self).status, check(self).action], ['fail', 'set PGWARD_CA']);
    assert.equal(check(self, '127.0.0.1').status, 'ok');
    assert.equal(check(self, '127.0.0.1', false).status, 'fail');
    const other = { ...good, wrongName: "Hostname/IP does not match certificate's altnames" };
    assert.equal(check(other).status, 'fail');
  });

  it('service: a value with a line break cannot add settings of its own to the file', () => {
    const target = {
      gateway: 'https://gw.example.com',
      host: 'gw.example.com',
      port: 55432,
      sslmode: 'verify-full' as const,
      user: 'me@example.com\npassword=x',
      database: 'demo',
      sslRootCert: undefined,
    };
    assert.throws(() => serviceSection('demo', target), /spans lines/);
    const section = serviceSection('demo', { ...target, user: 'me@example.com' });
    const once = upsertSection('[a]\nhost=x\n\n[b]\nhost=y\n', 'demo', section);
    assert.equal(upsertSection(once, 'demo', section), once, 'rewriting is idempotent');
    const between = upsertSection(`${once}\n[c]\nhost=z\n`, 'demo', [...section.slice(0, 2), 'host=new']);
    assert.match(
      between,
      /\[b\]\nhost=y\n\n\[demo\]\n# written by `pgward service`[^\n]*\nhost=new\n\n\[c\]\nhost=z\n$/,
    );
  });
});

/** The everyday commands (issue 19) run as a person would, against a dev stack. */
describe('the everyday pgward commands', () => {
  let t: TestStack;
  let stopped = false;
  const homes: Record<string, string> = {};
  const env = (who: string) => ({
    XDG_CONFIG_HOME: homes[who]!,
    PGWARD_GATEWAY: t.stack.info.http,
    BROWSER: '',
    DISPLAY: '',
  });
  const credentials = (who: string) =>
    JSON.parse(readFileSync(path.join(homes[who]!, 'pgward', 'credentials.json'), 'utf8')) as {
      gateways: Record<string, { access_token: string; expires_at: number }>;
    };

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
    if (!stopped) await t?.close();
  });

  it('prints its version, and the gateway version when signed in (the API tells only the signed in)', async () => {
    const flag = await runCli(['--version']);
    assert.equal(flag.code, 0, flag.stderr);
    assert.equal(flag.stdout, `pgward ${VERSION}\n`);
    const json = await runCli(['version', '--json'], { env: env('viewer') });
    assert.equal(json.code, 0, json.stderr);
    assert.deepEqual(JSON.parse(json.stdout), {
      cli: VERSION,
      gateway: { url: t.stack.info.http, version: VERSION },
    });
    const nobody = await runCli(['version', '--json'], {
      env: { XDG_CONFIG_HOME: tempDir('cli-none'), PGWARD_GATEWAY: t.stack.info.http },
    });
    assert.equal(nobody.code, 0, nobody.stderr);
    assert.deepEqual(JSON.parse(nobody.stdout), { cli: VERSION });
    const text = await runCli(['version'], {
      env: { XDG_CONFIG_HOME: tempDir('cli-none'), PGWARD_GATEWAY: t.stack.info.http },
    });
    assert.match(text.stdout, /^pgward \S+\ngateway: unknown \(not logged in to .*\)\n$/);
    const anonymous = await fetch(`${t.stack.info.http}/api/v1/version`);
    assert.equal(anonymous.status, 401);
  });

  it('ls: the connections you may use with your roles there, as viewer and as admin', async () => {
    // A connection only editors may use: an administrator administers it, but does not use it.
    const target = new URL(t.stack.info.target);
    const created = await runCli(
      [
        'admin',
        'create',
        'conn',
        'editors-only',
        '--type',
        'postgres',
        ...['-e', `HOST=${target.hostname}`, '-e', `PORT=${target.port}`, '-e', 'USER=pgward_admin'],
        ...['-e', 'PASS=-', '-e', 'DB=demo', '-e', 'SSLMODE=disable', '-e', 'ROLE_MODE=shared'],
        ...['--access', 'editor=app_readwrite'],
      ],
      { env: env('admin'), input: `${t.stack.target.admin.password}\n` },
    );
    assert.equal(created.code, 0, created.stderr);
    try {
      const viewer = await runCli(['ls'], { env: env('viewer') });
      assert.equal(viewer.code, 0, viewer.stderr);
      assert.match(
        viewer.stdout,
        /^NAME\s+ROLES\s+POLICIES\n-+\s+-+\s+-+\ndemo\s+app_readonly\n\(1 row\)\n$/,
      );
      const json = await runCli(['connections', '--json'], { env: env('viewer') });
      assert.deepEqual(JSON.parse(json.stdout), [{ name: 'demo', roles: ['app_readonly'], policies: [] }]);
      const admin = await runCli(['ls', '--json'], { env: env('admin') });
      assert.deepEqual(
        JSON.parse(admin.stdout),
        [{ name: 'demo', roles: ['app_admin'], policies: [] }],
        admin.stderr,
      );
      const all = await runCli(['admin', 'get', 'conns', '--json'], { env: env('admin') });
      assert.ok((JSON.parse(all.stdout) as { name: string }[]).some((c) => c.name === 'editors-only'));
    } finally {
      await runCli(['admin', 'delete', 'conn', 'editors-only'], { env: env('admin') });
    }
    const nobody = await runCli(['ls'], {
      env: { XDG_CONFIG_HOME: tempDir('cli-none'), PGWARD_GATEWAY: t.stack.info.http },
    });
    assert.equal(nobody.code, 77);
    assert.match(nobody.stderr, /not logged in to .*\nhint: run `pgward login`/);
  });

  it('psql: runs a query as you, reads stdin, and exits with psql exit code', async () => {
    const who = await runCli(
      [
        'psql',
        'demo',
        '--',
        '-X',
        '-tA',
        '-c',
        "select current_user || ' ' || current_setting('application_name')",
      ],
      { env: env('viewer') },
    );
    assert.equal(who.code, 0, who.stderr);
    assert.equal(who.stdout, 'viewer@example.com pgward psql\n');
    // psql's own code: 3 for an error in a script with ON_ERROR_STOP (here, stdin), 1 for -c.
    const script = await runCli(['psql', 'demo', '--', '-X', '-v', 'ON_ERROR_STOP=1'], {
      env: env('viewer'),
      input: 'select 1;\nselect 1/0;\nselect 2;\n',
    });
    assert.equal(script.code, 3, script.stderr);
    assert.match(script.stderr, /ERROR: {2}division by zero/);
    const direct = await t.psql('viewer@example.com', ['-c', 'select 1/0']);
    const command = await runCli(['psql', 'demo', '--', '-X', '-v', 'ON_ERROR_STOP=1', '-c', 'select 1/0'], {
      env: env('viewer'),
    });
    assert.equal(command.code, direct.code);
    assert.equal(command.code, 1);

    // verify-full: psql verifies the gateway's certificate against PGWARD_CA (as PGSSLROOTCERT).
    const ca = path.join(t.dataDir, 'tls', 'cert.pem');
    const home = tempDir('cli-home');
    const args = ['psql', 'demo', '--sslmode', 'verify-full', '--', '-X', '-tAc', 'select 1'];
    const verified = await runCli(args, { env: { ...env('viewer'), PGWARD_CA: ca, HOME: home } });
    assert.equal(verified.stdout, '1\n', verified.stderr);
    const unverifiable = await runCli(args, { env: { ...env('viewer'), HOME: home } });
    assert.equal(unverifiable.code, 2);
    assert.match(unverifiable.stderr, /root certificate file .* does not exist/);

    const unknown = await runCli(['psql', 'nope'], { env: env('viewer') });
    assert.equal(unknown.code, 66);
    assert.match(
      unknown.stderr,
      /no connection "nope" that you may use\nhint: yours: demo; `pgward ls` lists them/,
    );
  });

  it('run: pgbench reconnecting for each transaction, the token refreshed between connections', async (ctx) => {
    const dir = tempDir('cli-run');
    const script = path.join(dir, 'read.sql');
    writeFileSync(script, 'select count(*) from users;\n');
    // -C: a new connection per transaction, each logged in at the gateway with the person's token.
    const bench = await runCli(
      ['run', 'demo', '--', 'pgbench', '-n', '-C', '-c', '2', '-t', '10', '-f', script],
      {
        env: env('viewer'),
        timeoutMs: 120_000,
      },
    );
    assert.equal(bench.code, 0, bench.stderr);
    assert.match(bench.stdout, /number of transactions actually processed: 20\/20/);
    ctx.diagnostic(
      `pgbench -C through run: ${/tps = [\d.]+ \(including reconnection times\)/.exec(bench.stdout)?.[0] ?? bench.stdout}`,
    );

    // What the client holds: the libpq variables, and a password that is not the token.
    const token = (await runCli(['token'], { env: env('viewer') })).stdout.trim();
    const shown = await runCli(
      [
        'run',
        'demo',
        '--',
        'sh',
        '-c',
        'echo "$PGHOST $PGUSER $PGDATABASE $PGSSLMODE $PGPORT"; echo "$PGPASSWORD"',
      ],
      { env: env('viewer') },
    );
    const [vars, password] = shown.stdout.trim().split('\n');
    assert.match(vars!, /^127\.0\.0\.1 viewer@example\.com demo disable \d+$/, shown.stderr);
    assert.ok(password && password.length >= 24 && password !== token);

    // A long job: the cached token runs out between two connections; the second gets a fresh one.
    const file = path.join(homes['viewer']!, 'pgward', 'credentials.json');
    const before = credentials('viewer').gateways[t.stack.info.http]!.access_token;
    const expire = `const f=${JSON.stringify(file)},c=JSON.parse(require('fs').readFileSync(f,'utf8'));for(const g of Object.values(c.gateways))g.expires_at=0;require('fs').writeFileSync(f,JSON.stringify(c))`;
    const job = await runCli(
      [
        'run',
        'demo',
        '--',
        'sh',
        '-c',
        `psql -X -tAc 'select 1' && '${process.execPath}' -e "$EXPIRE" && psql -X -tAc 'select current_user'`,
      ],
      { env: { ...env('viewer'), EXPIRE: expire } },
    );
    assert.equal(job.code, 0, job.stderr);
    assert.equal(job.stdout, '1\nviewer@example.com\n');
    const renewed = credentials('viewer').gateways[t.stack.info.http]!;
    assert.notEqual(renewed.access_token, before, 'the second connection refreshed the token');
    assert.ok(renewed.expires_at > Date.now());

    const code = await runCli(['run', 'demo', '--', 'sh', '-c', 'exit 7'], { env: env('viewer') });
    assert.equal(code.code, 7);
    const missing = await runCli(['run', 'demo', '--', 'no-such-client-xyz'], { env: env('viewer') });
    assert.equal(missing.code, 66);
    assert.match(missing.stderr, /no-such-client-xyz: command not found/);
  });

  /** How each shell runs a script that ends by printing $X. */
  const shells: Record<Shell, { bin: string; script: (text: string) => string[]; capture: string }> = {
    sh: { bin: 'sh', script: (text) => ['-c', `${text}\nprintf '%s\\n' "$X"`], capture: 'X=$(%s)' },
    fish: { bin: 'fish', script: (text) => ['-c', `${text}\nprintf '%s\\n' "$X"`], capture: 'set X (%s)' },
    powershell: {
      bin: 'pwsh',
      script: (text) => ['-NoProfile', '-Command', `${text}\nWrite-Output $Env:X`],
      capture: '$Env:X = (%s)',
    },
  };
  for (const shell of ['sh', 'fish', 'powershell'] as const) {
    const { bin, script, capture } = shells[shell];
    it(`env --shell ${shell}: parsed back by ${bin}, and psql signs in with what it sets`, {
      skip: installed(bin) ? false : `${bin} is not installed here`,
    }, async () => {
      const out = await runCli(['env', 'demo', '--shell', shell, '--with-password'], { env: env('viewer') });
      assert.equal(out.code, 0, out.stderr);
      const plain = await runCli(['env', 'demo', '--shell', shell], { env: env('viewer') });
      assert.doesNotMatch(plain.stdout, /PGPASSWORD\W+ey/, 'no token without --with-password');
      assert.match(plain.stdout, /# PGPASSWORD is your pgward token/);
      // Quoting: nothing in a value is expanded by the shell.
      const tricky = `it's "quoted" \\ $HOME \`x\` $(echo no) %PATH%`;
      const back = await runProgram(bin, script(shellAssignment(shell, 'X', tricky)));
      assert.equal(back.stdout, `${tricky}\n`, back.stderr);
      // A service set in the shell would win over the variables: the output unsets it.
      const psql = capture.replace('%s', 'psql -X -tAc "select current_user"');
      const signedIn = await runProgram(bin, script(`${out.stdout}\n${psql}`), {
        PGPASSWORD: '',
        PGSERVICE: 'elsewhere',
      });
      assert.equal(signedIn.stdout, 'viewer@example.com\n', `${signedIn.stderr}\n${out.stdout}`);
    });
  }

  it('service: writes its own section (no password), psql service=demo works, a foreign one is kept', async () => {
    const file = path.join(tempDir('cli-service'), 'pg_service.conf');
    writeFileSync(file, '# mine\n[other]\nhost=db.example.com\ndbname=other\n');
    const mode = statSync(file).mode & 0o777;
    const serviceEnv = { ...env('viewer'), PGSERVICEFILE: file };
    const wrote = await runCli(['service', 'demo'], { env: serviceEnv });
    assert.equal(wrote.code, 0, wrote.stderr);
    assert.match(wrote.stdout, /PGPASSWORD="\$\(pgward token\)" psql service=demo/);
    const again = await runCli(['service', 'demo'], { env: serviceEnv });
    assert.equal(again.code, 0, again.stderr);
    const text = readFileSync(file, 'utf8');
    assert.equal(text.match(/^\[demo\]$/gm)?.length, 1, text);
    assert.ok(text.startsWith('# mine\n[other]\nhost=db.example.com\ndbname=other\n\n[demo]\n'), text);
    assert.match(text, /^user=viewer@example\.com$/m);
    assert.match(text, /^sslmode=require$/m);
    assert.doesNotMatch(text, /password\s*=/i);
    const token = (await runCli(['token'], { env: env('viewer') })).stdout.trim();
    assert.ok(!text.includes(token));
    assert.equal(statSync(file).mode & 0o777, mode, 'the file keeps its mode');

    const psql = await runProgram('psql', ['service=demo', '-X', '-tAc', 'select current_user'], {
      PGSERVICEFILE: file,
      PGPASSWORD: token,
    });
    assert.equal(psql.stdout, 'viewer@example.com\n', psql.stderr);

    const foreign = await runCli(['service', 'demo', '--name', 'other'], { env: serviceEnv });
    assert.equal(foreign.code, 65);
    assert.match(
      foreign.stderr,
      /a section \[other\] that pgward did not write\nhint: pick another name with --name/,
    );
    assert.equal(readFileSync(file, 'utf8'), text);
  });

  it('completion: bash loads it and completes commands, flags, choices and connection names', async () => {
    const bin = pgwardOnPath();
    const shellEnv = { ...env('viewer'), PATH: `${bin}:${process.env['PATH']}` };
    const loaded = await runProgram(
      'bash',
      ['-c', 'source <(pgward completion bash) && complete -p pgward'],
      shellEnv,
    );
    assert.equal(loaded.stdout, 'complete -o default -F _pgward pgward\n', loaded.stderr);
    const complete = async (...words: string[]) => {
      const line = words.map((w) => `'${w}'`).join(' ');
      const r = await runProgram(
        'bash',
        [
          '-c',
          `source <(pgward completion bash); COMP_WORDS=(${line}); COMP_CWORD=${words.length - 1}; _pgward; printf '%s\\n' "\${COMPREPLY[@]}"`,
        ],
        shellEnv,
      );
      assert.equal(r.stderr, '');
      return r.stdout.split('\n').filter(Boolean);
    };
    assert.deepEqual(await complete('pgward', 'ps'), ['psql']);
    assert.deepEqual(await complete('pgward', 'psql', ''), ['demo']);
    assert.deepEqual(await complete('pgward', '--verbose', 'run', 'd'), ['demo']);
    assert.deepEqual(await complete('pgward', 'psql', 'demo', ''), [], 'one connection only');
    assert.deepEqual(await complete('pgward', 'env', 'demo', '--sh'), ['--shell']);
    assert.deepEqual(await complete('pgward', 'env', '--shell', 'f'), ['fish']);
    assert.deepEqual(await complete('pgward', 'env', '--shell', 'fish', ''), ['demo']);
    assert.deepEqual(await complete('pgward', 'admin', 'g'), ['get']);
    assert.deepEqual(await complete('pgward', 'completion', 'z'), ['zsh']);
    assert.deepEqual((await complete('pgward', 'ls', '--')).sort(), ['--gateway', '--help', '--json']);
  });

  it('completion: zsh loads it through bashcompinit and completes connection names', {
    skip: installed('zsh') ? false : 'zsh is not installed here',
  }, async () => {
    const shellEnv = {
      ...env('viewer'),
      PATH: `${pgwardOnPath()}:${process.env['PATH']}`,
      HOME: tempDir('cli-home'),
    };
    const r = await runProgram(
      'zsh',
      [
        '-c',
        `source <(pgward completion zsh); COMP_WORDS=(pgward psql ''); COMP_CWORD=2; _pgward; print -l $COMPREPLY`,
      ],
      shellEnv,
    );
    assert.equal(r.stdout, 'demo\n', r.stderr);
  });

  it('completion: fish completes commands, flags and connection names', {
    skip: installed('fish') ? false : 'fish is not installed here',
  }, async () => {
    const shellEnv = {
      ...env('viewer'),
      PATH: `${pgwardOnPath()}:${process.env['PATH']}`,
      HOME: tempDir('cli-home'),
    };
    const complete = async (line: string) => {
      const r = await runProgram(
        'fish',
        ['-c', `pgward completion fish | source; complete -C '${line}'`],
        shellEnv,
      );
      assert.equal(r.stderr, '');
      return r.stdout
        .split('\n')
        .filter(Boolean)
        .map((l) => l.split('\t')[0]);
    };
    assert.deepEqual(await complete('pgward psql '), ['demo']);
    assert.deepEqual(await complete('pgward ps'), ['psql']);
    assert.deepEqual(await complete('pgward env demo --sh'), ['--shell']);
    assert.deepEqual(await complete('pgward env demo --shell '), ['fish', 'powershell', 'sh']);
    assert.deepEqual(await complete('pgward admin g'), ['get']);
  });

  it('doctor: every check passes on a healthy stack; not signed in, it says to log in', async (ctx) => {
    const healthy = await runCli(['doctor'], { env: env('viewer') });
    for (const line of healthy.stdout.trim().split('\n')) ctx.diagnostic(line);
    assert.equal(healthy.code, 0, healthy.stdout + healthy.stderr);
    const lines = healthy.stdout.trim().split('\n');
    for (const check of [
      'gateway',
      'clock',
      'http tls',
      'pg tls',
      'signed in',
      'token refresh',
      'connection demo',
    ]) {
      assert.ok(
        lines.some((l) => l.startsWith(`ok    ${check}: `)),
        `${check}:\n${healthy.stdout}`,
      );
    }
    assert.match(healthy.stdout, /ok {4}connection demo: select 1 answered in \d+ ms/);
    assert.match(
      healthy.stdout,
      /ok {4}signed in: as viewer@example\.com via dev; token until \S+, sign-in until /,
    );
    const json = await runCli(['doctor', '--json'], { env: env('viewer') });
    assert.ok((JSON.parse(json.stdout) as { status: string }[]).every((c) => c.status === 'ok'));
    const ca = path.join(t.dataDir, 'tls', 'cert.pem');
    const verified = await runCli(['doctor'], { env: { ...env('viewer'), PGWARD_CA: ca } });
    assert.match(verified.stdout, /ok {4}pg tls: 127\.0\.0\.1:\d+ trusted, names the host, valid until /);

    const nobody = await runCli(['doctor'], {
      env: { XDG_CONFIG_HOME: tempDir('cli-none'), PGWARD_GATEWAY: t.stack.info.http },
    });
    assert.equal(nobody.code, 69);
    assert.match(nobody.stdout, /fail {2}signed in: not logged in to .*\n {6}do: run `pgward login`/);
    assert.match(nobody.stderr, /pgward: 1 check failed/);
  });

  // Last: it stops the stack.
  it('doctor: with the gateway stopped, says it cannot be reached and exits non-zero', async (ctx) => {
    await t.close();
    stopped = true;
    const down = await runCli(['doctor'], { env: env('viewer') });
    for (const line of down.stdout.trim().split('\n')) ctx.diagnostic(line);
    assert.equal(down.code, 69, down.stdout + down.stderr);
    assert.match(
      down.stdout,
      /^fail {2}gateway: cannot reach http:\/\/127\.0\.0\.1:\d+: fetch failed \(ECONNREFUSED\)\n {6}do: start the gateway/,
    );
    assert.match(down.stdout, /skip {2}signed in: the gateway did not answer/);
  });
});

describe('pgward doctor against a gateway serving HTTPS', () => {
  let t: TestStack;
  before(async () => {
    t = await startTestStack({ PGWARD_HTTP_TLS: 'true' });
  });
  after(async () => {
    await t?.close();
  });

  it('checks the HTTP certificate: trusted with its CA, a failure with what to do without it', async () => {
    const ca = path.join(t.dataDir, 'tls', 'cert.pem');
    const env = { XDG_CONFIG_HOME: tempDir('cli-https'), PGWARD_GATEWAY: t.stack.info.http };
    const trusted = await runCli(['doctor'], { env: { ...env, NODE_EXTRA_CA_CERTS: ca } });
    assert.match(trusted.stdout, /^ok {4}gateway: https:\/\/127\.0\.0\.1:\d+ answered/, trusted.stdout);
    assert.match(trusted.stdout, /\nok {4}http tls: trusted, names the host, valid until /);
    // Not signed in here: that check fails, and says what to do.
    assert.match(trusted.stdout, /\nfail {2}signed in: not logged in to .*\n {6}do: run `pgward login`/);
    assert.equal(trusted.code, 69);

    const untrusted = await runCli(['doctor'], { env: { ...env, NODE_EXTRA_CA_CERTS: '' } });
    assert.equal(untrusted.code, 69);
    assert.match(untrusted.stdout, /^fail {2}gateway: cannot reach https:.*\n {6}do: see http tls below\n/);
    assert.match(
      untrusted.stdout,
      /\nfail {2}http tls: the certificate is not trusted: DEPTH_ZERO_SELF_SIGNED_CERT\n {6}do: trust its CA: NODE_EXTRA_CA_CERTS=FILE\n/,
    );
  });
});
