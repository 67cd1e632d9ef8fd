/**
 * The `pgward` command. Each command declares its flags here and loads its handler lazily, so
 * `pgward --help` does not pay for the gateway's dependencies.
 */
import { Command, InvalidArgumentError } from 'commander';
import { PgwardError } from '../errors.js';
import type { AdminOptions } from './admin_command.js';

function portOption(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1 || n > 65535)
    throw new InvalidArgumentError('expected a port from 1 to 65535');
  return n;
}

/** Prints a failure as one line (plus hint), and sets the exit code from the error's code. */
function reportFailure(err: unknown, verbose: boolean): void {
  if (err instanceof PgwardError) {
    process.stderr.write(`pgward: ${err.message}\n`);
    if (err.detail && verbose) process.stderr.write(`${err.detail}\n`);
    if (err.hint) process.stderr.write(`hint: ${err.hint}\n`);
    if (verbose && err.cause)
      process.stderr.write(`cause: ${String((err.cause as Error).stack ?? err.cause)}\n`);
    process.exitCode = err.exitCode;
    return;
  }
  process.stderr.write(`pgward: unexpected error: ${(err as Error)?.message ?? String(err)}\n`);
  if (verbose) process.stderr.write(`${(err as Error)?.stack ?? ''}\n`);
  process.exitCode = 70;
}

/** Wraps a handler so that every command fails the same way. */
function run<A extends unknown[]>(handler: (...args: A) => Promise<void>) {
  return async (...args: A) => {
    try {
      await handler(...args);
    } catch (err) {
      reportFailure(err, program.opts()['verbose'] === true);
    }
  };
}

const program = new Command('pgward')
  .description('SSO access gateway for PostgreSQL')
  .option('--verbose', 'show details of failures')
  .showHelpAfterError()
  // A usage error (unknown command or option, a missing or bad argument) is bad input: sysexits'
  // EX_USAGE, as documented; help and --version stay 0. Subcommands inherit this.
  .exitOverride((err) => process.exit(err.exitCode === 0 ? 0 : 64));

const dev = program
  .command('dev')
  .description('run the dev stack: embedded store, dev IdP, demo target and gateway, in one process')
  .option('--data-dir <dir>', 'where data is kept (survives restarts)', '.pgward')
  .option('--http-port <port>', 'HTTP port of the gateway', portOption, 8080)
  .option('--pg-port <port>', 'PostgreSQL port of the gateway', portOption, 55432)
  .option('--idp-port <port>', 'port of the dev IdP', portOption, 5556)
  .option('--log-level <level>', 'fatal|error|warn|info|debug|trace', 'info')
  .addHelpText('after', '\nExample:\n  $ pgward dev --data-dir /tmp/pgward-demo')
  .action(
    run(
      async (opts: {
        dataDir: string;
        httpPort: number;
        pgPort: number;
        idpPort: number;
        logLevel: string;
      }) => {
        const { runDev } = await import('./dev_command.js');
        await runDev(opts);
      },
    ),
  );

dev
  .command('token')
  .description('print an access token for a dev user, by signing in to the dev IdP (dev stack only)')
  .argument('<email>', 'a dev user, e.g. viewer@example.com')
  .option('--gateway <url>', 'gateway URL (default: PGWARD_GATEWAY, else the dev stack in --data-dir)')
  .option('--password <password>', 'the dev user password', 'password')
  .option('--id-token', 'print the ID token instead of the access token')
  .addHelpText('after', '\nExample:\n  $ PGPASSWORD=$(pgward dev token viewer@example.com) psql ...')
  .action(
    run(
      async (
        email: string,
        opts: { gateway?: string; password: string; idToken?: boolean },
        cmd: Command,
      ) => {
        const { runDevToken } = await import('./dev_token_command.js');
        // --data-dir belongs to `pgward dev` and is shared with this subcommand.
        await runDevToken(email, { ...opts, dataDir: cmd.parent!.opts()['dataDir'] as string });
      },
    ),
  );

program
  .command('serve')
  .description('run the gateway with an external store and real identity providers')
  .option('--config <file>', 'YAML or JSON configuration file (else PGWARD_CONFIG)')
  .addHelpText(
    'after',
    '\nExample:\n  $ PGWARD_DATABASE_URL=postgres://... pgward serve --config pgward.yaml',
  )
  .action(
    run(async (opts: { config?: string }) => {
      const { runServe } = await import('./serve_command.js');
      await runServe(opts);
    }),
  );

program
  .command('config')
  .description('inspect the configuration')
  .addHelpText('after', '\nExample:\n  $ pgward config print --config pgward.yaml')
  .command('print')
  .description('print the effective configuration with secrets redacted')
  .option('--config <file>', 'YAML or JSON configuration file (else PGWARD_CONFIG)')
  .addHelpText(
    'after',
    '\nExample:\n  $ IDP_ISSUER=https://idp.example.com IDP_CLIENT_ID=pgward pgward config print',
  )
  .action(
    run(async (opts: { config?: string }) => {
      const { loadConfig } = await import('../config/load.js');
      const { redactConfig } = await import('../config/redact.js');
      process.stdout.write(`${JSON.stringify(redactConfig(loadConfig({ file: opts.config })), null, 2)}\n`);
    }),
  );

const gatewayOption = '--gateway <url>';
const gatewayHelp = 'gateway URL (else PGWARD_GATEWAY, else the last one logged in to)';

program
  .command('login')
  .description(
    'sign in with your identity provider: confirm a code in any browser (device login), or --browser',
  )
  .option(gatewayOption, gatewayHelp)
  .option('--provider <name>', 'identity provider to use (default: the first the gateway lists)')
  .option('--browser', 'sign in in a browser on this machine (loopback redirect with PKCE)')
  .option('--no-open', 'print the sign-in URL without opening a browser')
  .addHelpText(
    'after',
    '\nExamples:\n  $ pgward login --gateway https://pgward.example.com\n  $ pgward login --browser --provider okta',
  )
  .action(
    run(async (opts: import('./session_commands.js').LoginOptions) => {
      const { runLogin } = await import('./session_commands.js');
      await runLogin(opts);
    }),
  );

program
  .command('logout')
  .description('end your sign-in at the gateway and forget the cached credentials')
  .option(gatewayOption, gatewayHelp)
  .addHelpText('after', '\nExample:\n  $ pgward logout')
  .action(
    run(async (opts: { gateway?: string }) => {
      const { runLogout } = await import('./session_commands.js');
      await runLogout(opts);
    }),
  );

program
  .command('whoami')
  .description('show who you are signed in as, your groups, and until when')
  .option(gatewayOption, gatewayHelp)
  .option('--json', 'machine-readable output')
  .addHelpText('after', '\nExample:\n  $ pgward whoami --json')
  .action(
    run(async (opts: { gateway?: string; json?: boolean }) => {
      const { runWhoami } = await import('./session_commands.js');
      await runWhoami(opts);
    }),
  );

program
  .command('token')
  .description('print a fresh access token (refreshed when needed), to use as PGPASSWORD')
  .option(gatewayOption, gatewayHelp)
  .addHelpText(
    'after',
    '\nExample:\n  $ PGPASSWORD=$(pgward token) psql "postgresql://me@example.com@127.0.0.1:55432/demo?sslmode=require"',
  )
  .action(
    run(async (opts: { gateway?: string }) => {
      const { runToken } = await import('./session_commands.js');
      await runToken(opts);
    }),
  );

program
  .command('exec')
  .description('run SQL on a connection through the gateway, as yourself')
  .argument('<connection>', 'connection name (the database name at the gateway)')
  .option(gatewayOption, gatewayHelp)
  .option('-c, --command <sql>', 'SQL to run')
  .option('-f, --file <file>', 'file of SQL to run (else the SQL is read from stdin)')
  .option('--format <format>', 'table, json or csv', 'table')
  .option('--sslmode <mode>', 'disable, require or verify-full (default: verify-full, require on loopback)')
  .addHelpText('after', '\nExample:\n  $ pgward exec demo -c "select count(*) from users" --format json')
  .action(
    run(
      async (
        connection: string,
        opts: { gateway?: string; command?: string; file?: string; format: string; sslmode?: string },
      ) => {
        if (!['table', 'json', 'csv'].includes(opts.format)) {
          throw new PgwardError('BAD_REQUEST', `--format ${opts.format}: expected table, json or csv`);
        }
        if (opts.sslmode && !['disable', 'require', 'verify-full'].includes(opts.sslmode)) {
          throw new PgwardError(
            'BAD_REQUEST',
            `--sslmode ${opts.sslmode}: expected disable, require or verify-full`,
          );
        }
        const { runExec } = await import('./exec_command.js');
        await runExec(connection, opts as Parameters<typeof runExec>[1]);
      },
    ),
  );

function localPortOption(value: string): number {
  return value === '0' ? 0 : portOption(value);
}

program
  .command('connect')
  .description(
    'serve a connection on a local port for any client, guarded by a password made up for this run',
  )
  .argument('<connection>', 'connection name (the database name at the gateway)')
  .option(gatewayOption, gatewayHelp)
  .option('--port <port>', 'local port on 127.0.0.1 (0: any free port)', localPortOption, 5433)
  .option(
    '--sslmode <mode>',
    'to the gateway: require or verify-full (default: verify-full, require on loopback)',
  )
  .addHelpText(
    'after',
    '\nExample:\n  $ pgward connect orders --port 5433\n  (then run the psql line it prints, or give its URL to DBeaver or JDBC)',
  )
  .action(
    run(async (connection: string, opts: { gateway?: string; port: number; sslmode?: string }) => {
      if (opts.sslmode && !['require', 'verify-full'].includes(opts.sslmode)) {
        throw new PgwardError('BAD_REQUEST', `--sslmode ${opts.sslmode}: expected require or verify-full`);
      }
      const { runConnect } = await import('./connect_command.js');
      await runConnect(connection, opts as Parameters<typeof runConnect>[1]);
    }),
  );

// ---- everyday commands: version, ls, psql, run, env, service, doctor, completion ------------

{
  const { PACKAGE_VERSION } = await import('../package_version.js');
  program.version(`pgward ${PACKAGE_VERSION}`, '-V, --version', 'print the version of pgward');
  const sslmodeOption = () =>
    program
      .createOption('--sslmode <mode>', 'to the gateway (default: verify-full, require on loopback)')
      .choices(['require', 'verify-full']);
  type Flags = { gateway?: string; sslmode?: 'require' | 'verify-full'; json?: boolean };
  const everyday = () => import('./everyday_commands.js');

  program
    .command('version')
    .description("print the version of pgward, and the gateway's when signed in")
    .option(gatewayOption, gatewayHelp)
    .option('--json', 'machine-readable output')
    .addHelpText('after', '\nExample:\n  $ pgward version --json')
    .action(run(async (opts: Flags) => (await everyday()).runVersion(opts)));

  program
    .command('ls')
    .alias('connections')
    .description('list the connections you may use, your database roles there and the policies that apply')
    .option(gatewayOption, gatewayHelp)
    .option('--json', 'machine-readable output')
    .addHelpText('after', '\nExample:\n  $ pgward ls')
    .action(run(async (opts: Flags) => (await everyday()).runLs(opts)));

  program
    .command('psql')
    .description("start psql on a connection as you (a fresh token in PGPASSWORD); exits with psql's code")
    .argument('<connection>', 'connection name (see pgward ls)')
    .argument('[args...]', 'arguments for psql, after --')
    .option(gatewayOption, gatewayHelp)
    .addOption(sslmodeOption())
    .addHelpText('after', "\nExamples:\n  $ pgward psql demo\n  $ pgward psql demo -- -c 'select now()'")
    .action(
      run(async (connection: string, args: string[], opts: Flags) =>
        (await everyday()).runPsql(connection, args, opts),
      ),
    );

  program
    .command('run')
    .description(
      'run any client on a connection as you: PGHOST, PGPORT, PGUSER, PGDATABASE, PGSSLMODE, PGPASSWORD set',
    )
    .argument('<connection>', 'connection name (see pgward ls)')
    .argument('<command...>', 'the client and its arguments, after --')
    .option(gatewayOption, gatewayHelp)
    .addOption(sslmodeOption())
    .addHelpText(
      'after',
      '\nExample:\n  $ pgward run demo -- pgbench -n -f read.sql -T 60\n  (the client reaches the gateway through a local port of this run; each of its connections gets a fresh token)',
    )
    .action(
      run(async (connection: string, command: string[], opts: Flags) =>
        (await everyday()).runRun(connection, command, opts),
      ),
    );

  program
    .command('env')
    .description(
      "print a connection's libpq variables for your shell (the password only with --with-password)",
    )
    .argument('<connection>', 'connection name (see pgward ls)')
    .option(gatewayOption, gatewayHelp)
    .addOption(sslmodeOption())
    .addOption(
      program
        .createOption('--shell <shell>', 'the syntax to print')
        .choices(['sh', 'fish', 'powershell'])
        .default('sh'),
    )
    .option('--with-password', 'also PGPASSWORD: your access token (it expires; run again for a fresh one)')
    .addHelpText(
      'after',
      '\nExamples:\n  $ eval "$(pgward env demo --with-password)"\n  > pgward env demo --shell fish --with-password | source',
    )
    .action(
      run(
        async (
          connection: string,
          opts: Flags & { shell: 'sh' | 'fish' | 'powershell'; withPassword?: boolean },
        ) => (await everyday()).runEnv(connection, opts),
      ),
    );

  program
    .command('service')
    .description(
      'write (or update) a section of ~/.pg_service.conf (PGSERVICEFILE) for a connection; no password',
    )
    .argument('<connection>', 'connection name (see pgward ls)')
    .option(gatewayOption, gatewayHelp)
    .addOption(sslmodeOption())
    .option('--name <service>', 'the service name (default: the connection name)')
    .addHelpText(
      'after',
      '\nExample:\n  $ pgward service demo && PGPASSWORD="$(pgward token)" psql service=demo',
    )
    .action(
      run(async (connection: string, opts: Flags & { name?: string }) => {
        const { runService } = await import('./service_file.js');
        await runService(connection, opts);
      }),
    );

  program
    .command('doctor')
    .description('check the gateway, TLS, clock, sign-in, token refresh and each connection; say what to fix')
    .option(gatewayOption, gatewayHelp)
    .option('--json', 'machine-readable output')
    .addHelpText('after', '\nExample:\n  $ pgward doctor')
    .action(
      run(async (opts: Flags) => {
        const { runDoctor } = await import('./doctor_command.js');
        await runDoctor(opts);
      }),
    );

  program
    .command('completion')
    .description('print the shell completion script: commands, flags and your connection names')
    .addArgument(program.createArgument('<shell>', 'bash, zsh or fish').choices(['bash', 'zsh', 'fish']))
    .addHelpText(
      'after',
      '\nExamples:\n  $ source <(pgward completion bash)     # in ~/.bashrc\n  $ source <(pgward completion zsh)      # in ~/.zshrc\n  > pgward completion fish | source      # in ~/.config/fish/config.fish',
    )
    .action(
      run(async (shell: string) => {
        const { runCompletion } = await import('./completion.js');
        runCompletion(shell, program);
      }),
    );

  program
    .command('__connections', { hidden: true })
    .option(gatewayOption, gatewayHelp)
    .action(
      run(async (opts: Flags) => {
        const { runConnectionNames } = await import('./completion.js');
        await runConnectionNames(opts);
      }),
    );
}

const admin = program
  .command('admin')
  .description('administer connections, groups, mappings, providers, users and sessions (administrators)')
  .addHelpText('after', '\nExample:\n  $ pgward admin get conns');
const collect = (value: string, previous: string[] = []) => [...previous, value];
const adminFlags = (cmd: Command) =>
  cmd.option(gatewayOption, gatewayHelp).option('--json', 'machine-readable output');

adminFlags(
  admin
    .command('create')
    .description('create a conn, group, member, mapping, provider, or create or replace a policy')
    .argument('<resource>', 'conn | group | member | mapping | provider | policy')
    .argument('[name]', 'its name (the group, for member)')
    .option(
      '--type <type>',
      'connection type (postgres), or provider type (google, azuread, okta, auth0, ...)',
    )
    .option(
      '-e, --env <KEY=VALUE>',
      'HOST, PORT, USER, PASS (- reads stdin), DB, SSLMODE, ROLE_MODE',
      collect,
    )
    .option('--access <GROUP=ROLE[,ROLE]>', 'who may use the connection, as which database roles', collect)
    .option('--user <email>', 'the person (member)')
    .option('--provider <name>', 'the provider (mapping)')
    .option('--external-group <name>', 'IdP group (mapping)')
    .option('--external-role <name>', 'IdP role (mapping)')
    .option('--group <name>', 'pgward group (mapping)')
    .option('--issuer <url>', 'OpenID Connect issuer (provider)')
    .option('--client-id <id>', 'OAuth client id at the IdP (provider)')
    .option('--client-secret <->', 'read the client secret from stdin (provider)')
    .option('--display-name <text>', 'name on the login page (provider)')
    .option('--validation <how>', 'jwks or userinfo (provider)')
    .option('--audience <aud>', 'expected token audience, default the client id (provider)')
    .option('--groups-claim <path>', 'claim holding the groups, e.g. https://example.com/groups (provider)')
    .option('--admin-group <name>', 'IdP group or role of administrators (provider; repeatable)', collect)
    .option('--link-by-email', 'join people with the same verified email (provider)')
    .option('--hosted-domain <domain>', 'Google Workspace domain allowed (provider --type google)')
    .option('--tenant-id <id>', 'Entra ID directory id, or organizations (provider --type azuread)')
    .option('--allowed-tenant <id>', 'tenant allowed in a multi-tenant app (provider; repeatable)', collect)
    .option(
      '--file <file>',
      'provider settings in the configuration format, or the policy document; YAML or JSON (provider, policy)',
    )
    .addHelpText(
      'after',
      '\nExamples:\n  $ pgward admin create policy editors-safe-writes --file editors-safe-writes.yaml\n  $ echo "$DB_PASSWORD" | pgward admin create conn orders --type postgres -e HOST=db.internal \\\n      -e PORT=5432 -e USER=pgward_admin -e PASS=- -e DB=orders -e SSLMODE=verify-full --access viewer=app_readonly\n  $ echo "$CLIENT_SECRET" | pgward admin create provider okta --issuer https://corp.okta.com \\\n      --client-id 0oa1 --client-secret -',
    ),
).action(
  run(
    async (resource: string, name: string | undefined, opts: { type?: string } & Record<string, unknown>) => {
      if (resource !== 'provider' && opts.type !== undefined && opts.type !== 'postgres')
        throw new PgwardError('BAD_REQUEST', `--type ${opts.type}: only postgres is supported`);
      const { runAdminCreate } = await import('./admin_command.js');
      await runAdminCreate(resource, name, opts as AdminOptions);
    },
  ),
);

adminFlags(
  admin
    .command('get')
    .description(
      'list or show conns, conn, groups, members, mappings, providers, users, user, sessions, statements, policies, policy, provider-usage, stale-identities',
    )
    .argument('<resource>', 'what to show')
    .argument('[name]', 'which one (conn, members, user, policies)')
    .option('--provider <name>', 'only this provider (mappings)')
    .option('--user <email>', 'only this person (sessions, statements)')
    .option('--connection <name>', 'only this connection (sessions, statements)')
    .option('--limit <n>', 'at most this many (sessions, statements)')
    .option('--refused', 'only statements pgward refused (statements)')
    .option('--decision <d>', 'only statements policies allowed, refused or observed (statements)')
    .addHelpText(
      'after',
      '\nExamples:\n  $ pgward admin get sessions --user viewer@example.com --json\n  $ pgward admin get statements --refused',
    ),
).action(
  run(async (resource: string, name: string | undefined, opts: Record<string, unknown>) => {
    const { runAdminGet } = await import('./admin_command.js');
    await runAdminGet(resource, name, opts as AdminOptions);
  }),
);

adminFlags(
  admin
    .command('update')
    .description('change a conn (-e, --access), or (de)activate a user or a provider')
    .argument('<resource>', 'conn | user | provider')
    .argument('<name>', 'which one')
    .option(
      '-e, --env <KEY=VALUE>',
      'HOST, PORT, USER, PASS (- reads stdin), DB, SSLMODE, ROLE_MODE',
      collect,
    )
    .option('--access <GROUP=ROLE[,ROLE]>', 'replaces who may use the connection', collect)
    .option('--active', 'reactivate the user or provider')
    .option('--inactive', 'deactivate the user (ends their sign-ins) or provider (its tokens are refused)')
    .addHelpText(
      'after',
      '\nExample:\n  $ pgward admin update conn demo --access viewer=app_readonly --access editor=app_readwrite',
    ),
).action(
  run(async (resource: string, name: string, opts: Record<string, unknown>) => {
    const active = opts['active'] ? true : opts['inactive'] ? false : undefined;
    const { runAdminUpdate } = await import('./admin_command.js');
    await runAdminUpdate(resource, name, {
      ...(opts as AdminOptions),
      ...(active === undefined ? {} : { active }),
    });
  }),
);

adminFlags(
  admin
    .command('delete')
    .description(
      'delete a conn, group, mapping (by id), member, policy, or a provider nobody signed in with (people are deactivated, not deleted)',
    )
    .argument('<resource>', 'conn | group | mapping | member | provider | policy')
    .argument('<name>', 'which one (the group, for member)')
    .option('--user <email>', 'the person (member)')
    .addHelpText('after', '\nExample:\n  $ pgward admin delete conn orders'),
).action(
  run(async (resource: string, name: string, opts: Record<string, unknown>) => {
    const { runAdminDelete } = await import('./admin_command.js');
    await runAdminDelete(resource, name, opts as AdminOptions);
  }),
);

adminFlags(
  admin
    .command('check')
    .description('check what pgward can verify about a connection: reachability, TLS, credential, roles')
    .argument('<resource>', 'conn')
    .argument('<name>', 'the connection')
    .addHelpText('after', '\nExample:\n  $ pgward admin check conn demo'),
).action(
  run(async (resource: string, name: string, opts: Record<string, unknown>) => {
    const { runAdminCheck } = await import('./admin_command.js');
    await runAdminCheck(resource, name, opts as AdminOptions);
  }),
);

adminFlags(
  admin
    .command('revoke')
    .description('end every sign-in of a person, or revoke one pgward token (read from stdin)')
    .argument('<what>', 'user | token')
    .argument('[email]', 'the person (user)')
    .addHelpText(
      'after',
      '\nExamples:\n  $ pgward admin revoke user viewer@example.com\n  $ echo "$LEAKED_TOKEN" | pgward admin revoke token',
    ),
).action(
  run(async (what: string, email: string | undefined, opts: Record<string, unknown>) => {
    const { runAdminRevoke } = await import('./admin_command.js');
    await runAdminRevoke(what, email, opts as AdminOptions);
  }),
);

const policy = program.command('policy').description('policies as code: check documents before they apply');
policy
  .command('test')
  .description(
    'judge each statement of a SQL file under policy documents, offline; exits 1 where a `-- expect: allow|deny|observe` comment disagrees',
  )
  .argument('<policy-file>', 'a policy document (YAML or JSON); several: a YAML stream or a list')
  .argument(
    '<statements-file>',
    'SQL statements; `-- expect: ...` on the lines before one says what it should get',
  )
  .option(
    '--as <group>',
    'judge as a person in this group (repeatable; default: every policy applies)',
    collect,
  )
  .option('--json', 'machine-readable output')
  .addHelpText(
    'after',
    '\nExample:\n  $ pgward policy test policies/editors.yaml tests/editors.sql --as editor',
  )
  .action(
    run(async (policyFile: string, statementsFile: string, opts: { as?: string[]; json?: boolean }) => {
      const { runPolicyTest } = await import('./policy_test_command.js');
      process.exitCode = await runPolicyTest(policyFile, statementsFile, opts);
    }),
  );

await program.parseAsync(process.argv);
