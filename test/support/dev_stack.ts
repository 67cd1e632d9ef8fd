/** A dev stack in the test process, on free ports, with helpers to reach it as each dev user. */
import { connect } from 'node:net';
import path from 'node:path';
import pg from 'pg';
import { devLogin } from '../../src/dev/dev_login.js';
import { type DevStack, startDevStack } from '../../src/dev/dev_stack.js';
import type { Logger } from '../../src/log/logger.js';
import { freePort } from '../../src/store/free_port.js';
import { cancelRequest } from '../../src/wire/encode.js';
import { runProgram } from './cli.js';
import { quietLog } from './quiet_log.js';
import { RawSession } from './raw_session.js';
import { removeTempDir, tempDir } from './temp_dir.js';

export interface TestStack {
  stack: DevStack;
  dataDir: string;
  token(email: string): Promise<string>;
  /** postgresql:// URL of the gateway for `email`, connection `database`. */
  url(email: string, database?: string, sslmode?: string): string;
  /** A connected node-postgres client through the gateway. */
  client(
    email: string,
    opts?: {
      database?: string;
      ssl?: boolean;
      applicationName?: string;
      password?: string;
      /** Called with each ParameterStatus the client receives, from the welcome on. */
      onParameter?: (name: string, value: string) => void;
    },
  ): Promise<pg.Client>;
  /** A session through the gateway spoken message by message, signed in with `email`'s token. */
  raw(email: string, opts?: { database?: string; password?: string }): Promise<RawSession>;
  /** The error the gateway answers a connection attempt with (fails the test if it connects). */
  refusal(
    email: string,
    opts: { database?: string; password?: string },
  ): Promise<{ code: string; message: string; hint?: string; detail?: string }>;
  /** Sends a CancelRequest with the key the gateway gave `client`, as libpq's PQcancel does. */
  cancel(client: pg.Client): void;
  /** Runs psql through the gateway; resolves with its output and exit code. */
  psql(
    email: string,
    args: string[],
    opts?: { sslmode?: string; database?: string; token?: string },
  ): Promise<{ code: number; stdout: string; stderr: string }>;
  /** A superuser client on the store (for audit assertions). */
  store(): pg.Pool;
  close(): Promise<void>;
}

export async function startTestStack(
  env: Record<string, string> = {},
  log: Logger = quietLog,
): Promise<TestStack> {
  const root = tempDir('stack');
  const dataDir = path.join(root, 'data');
  const stack = await startDevStack({
    dataDir,
    httpPort: await freePort(),
    pgPort: await freePort(),
    idpPort: await freePort(),
    log,
    env,
  });
  const tokens = new Map<string, string>();
  const token = async (email: string) => {
    let t = tokens.get(email);
    if (!t) {
      t = (await devLogin({ issuer: stack.info.idp, email, password: 'password' })).access_token;
      tokens.set(email, t);
    }
    return t;
  };
  const url = (email: string, database = 'demo', sslmode = 'require') =>
    `postgresql://${encodeURIComponent(email)}@${stack.info.pg.host}:${stack.info.pg.port}/${database}?sslmode=${sslmode}`;
  const client: TestStack['client'] = async (email, opts = {}) => {
    const connection = new pg.Client({
      host: stack.info.pg.host,
      port: stack.info.pg.port,
      user: email,
      database: opts.database ?? 'demo',
      password: opts.password ?? (await token(email)),
      ssl: opts.ssl === false ? false : { rejectUnauthorized: false },
      application_name:
        opts.applicationName === undefined ? 'pgward-test' : opts.applicationName || undefined,
    });
    // Errors after a test is done with a client (e.g. the gateway shutting down) are expected.
    connection.on('error', () => undefined);
    const onParameter = opts.onParameter;
    if (onParameter) {
      const wire = (connection as unknown as { connection: import('node:events').EventEmitter }).connection;
      wire.on('parameterStatus', (m: { parameterName: string; parameterValue: string }) =>
        onParameter(m.parameterName, m.parameterValue),
      );
    }
    await connection.connect();
    return connection;
  };

  return {
    stack,
    dataDir,
    token,
    url,
    client,
    async raw(email, opts = {}) {
      return RawSession.open({
        host: stack.info.pg.host,
        port: stack.info.pg.port,
        user: email,
        database: opts.database ?? 'demo',
        password: opts.password ?? (await token(email)),
      });
    },
    async refusal(email, opts) {
      try {
        const connected = await client(email, opts);
        await connected.end();
      } catch (err) {
        return err as { code: string; message: string; hint?: string; detail?: string };
      }
      throw new Error('the gateway accepted the connection');
    },
    cancel(client) {
      const { processID, secretKey } = client as unknown as { processID: number; secretKey: number };
      const key = Buffer.alloc(4);
      key.writeInt32BE(secretKey);
      const socket = connect({ host: stack.info.pg.host, port: stack.info.pg.port });
      socket.on('error', () => undefined);
      socket.end(cancelRequest(processID, key));
    },
    async psql(email, args, opts = {}) {
      return runProgram(
        'psql',
        [url(email, opts.database, opts.sslmode), '-X', '-v', 'ON_ERROR_STOP=1', ...args],
        { PGPASSWORD: opts.token ?? (await token(email)) },
      );
    },
    store: () => stack.gateway.store.pool,
    async close() {
      await stack.close();
      removeTempDir(root);
    },
  };
}
