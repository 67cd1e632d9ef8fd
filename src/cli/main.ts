/**
 * The `pgward` command. Each command declares its flags here and loads its handler lazily, so
 * `pgward --help` does not pay for the gateway's dependencies.
 */
import { Command, InvalidArgumentError } from 'commander';
import { PgwardError } from '../errors.js';

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
  .showHelpAfterError();

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

await program.parseAsync(process.argv);
