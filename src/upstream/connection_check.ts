/**
 * `pgward admin check conn NAME`: what pgward can verify about a connection from its own
 * credential, one line per check (ok, warn or fail) with what to do. What a non-superuser
 * cannot see (pg_hba.conf) is said as such, never passed as ok.
 */
import { connect as netConnect } from 'node:net';
import { PgwardError } from '../errors.js';
import type { Connection, ConnectionRepository } from '../vault/connections.js';
import { tlsPlan } from '../vault/ssl_mode.js';
import { PasswordAuthRefused, UpstreamConnection } from './upstream.js';
import { upstreamTarget } from './upstream_target.js';

export type CheckStatus = 'ok' | 'warn' | 'fail';

export interface CheckLine {
  check: string;
  status: CheckStatus;
  detail: string;
  /** What to do about a warn or fail. */
  action?: string;
}

/** Connects and sends SSLRequest: whether the target answers, and whether it offers TLS. */
function probe(connection: Connection, timeoutMs: number): Promise<{ tls: boolean } | { error: string }> {
  return new Promise((resolve) => {
    const socket = netConnect({ host: connection.host, port: connection.port });
    const done = (result: { tls: boolean } | { error: string }) => {
      clearTimeout(timer);
      socket.destroy();
      resolve(result);
    };
    const timer = setTimeout(() => done({ error: `no answer within ${timeoutMs / 1000} s` }), timeoutMs);
    socket.once('error', (err: NodeJS.ErrnoException) => done({ error: err.code ?? err.message }));
    socket.once('connect', () => socket.write(Buffer.from([0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f])));
    socket.once('data', (chunk) => done({ tls: chunk[0] === 0x53 }));
  });
}

const SETTINGS_SQL = `SELECT r.rolsuper, r.rolcreaterole FROM pg_roles r WHERE r.rolname = current_user`;

/** For each mapped role: whether it exists and whether the credential holds ADMIN OPTION on it. */
const ROLES_SQL = `SELECT w.name, r.oid IS NOT NULL AS present,
    r.oid IS NOT NULL AND pg_has_role(current_user, r.oid, 'MEMBER WITH ADMIN OPTION') AS admin
  FROM json_array_elements_text($1::json) AS w(name) LEFT JOIN pg_roles r ON r.rolname = w.name
  ORDER BY 1`;

/** The login roles pgward made for this connection: VALID UNTIL and stored settings. */
const LOGIN_ROLES_SQL = `SELECT r.rolname, r.rolvaliduntil IS NOT NULL AND r.rolvaliduntil <> 'infinity' AS valid_until,
    EXISTS (SELECT FROM pg_db_role_setting s WHERE s.setrole = r.oid) AS settings
  FROM pg_roles r WHERE shobj_description(r.oid, 'pg_authid') LIKE $1 ORDER BY 1`;

const list = (names: string[]) => names.map((n) => `"${n}"`).join(', ');

/** Runs every check against `connection` with its vaulted credential. */
export async function checkConnection(
  connections: ConnectionRepository,
  connection: Connection,
  timeoutMs: number,
): Promise<CheckLine[]> {
  const lines: CheckLine[] = [];
  const address = `${connection.host}:${connection.port}`;
  const reached = await probe(connection, timeoutMs);
  if ('error' in reached) {
    lines.push({
      check: 'target reachable',
      status: 'fail',
      detail: `${address}: ${reached.error}`,
      action: 'check the host and port, and that the gateway may reach them (firewall, security group)',
    });
    return lines;
  }
  lines.push({ check: 'target reachable', status: 'ok', detail: `${address} answers` });

  const plan = tlsPlan(connection.sslmode, connection.sslCa);
  if (!reached.tls) {
    lines.push({
      check: 'TLS',
      status: plan.plaintextFallback ? 'warn' : 'fail',
      detail: `the target offers no TLS (sslmode=${connection.sslmode})`,
      action: 'turn ssl on in the target and use sslmode=verify-full with its CA',
    });
  } else if (!plan.request) {
    lines.push({
      check: 'TLS',
      status: 'warn',
      detail: 'the target offers TLS, but sslmode=disable does not use it',
      action: "use sslmode=verify-full with the target's CA",
    });
  } else {
    lines.push({
      check: 'TLS',
      status: plan.verifyChain ? 'ok' : 'warn',
      detail: plan.verifyChain
        ? `offered and verified (sslmode=${connection.sslmode}${plan.verifyHost ? '' : ', host name not checked'})`
        : `offered, certificate not verified (sslmode=${connection.sslmode})`,
      ...(plan.verifyChain ? {} : { action: "use sslmode=verify-full with the target's CA" }),
    });
  }

  const credential = await connections.credential(connection);
  let conn: UpstreamConnection;
  try {
    conn = await UpstreamConnection.open(
      upstreamTarget(connection, credential, { application_name: 'pgward (check)' }, timeoutMs),
    );
  } catch (err) {
    if (err instanceof PasswordAuthRefused) {
      lines.push({
        check: 'authentication method',
        status: 'fail',
        detail: `the target asks the credential for ${err.method}, and TLS is not verified: pgward does not send it`,
        action: err.hint ?? '',
      });
    } else {
      lines.push({
        check: 'credential logs in',
        status: 'fail',
        detail: err instanceof PgwardError ? err.message : 'the login failed',
        action: "check the credential (user and password) and pg_hba.conf for the gateway's address",
      });
    }
    return lines;
  }
  try {
    const method = conn.authMethod;
    lines.push(
      method === 'scram-sha-256'
        ? { check: 'authentication method', status: 'ok', detail: 'scram-sha-256' }
        : method === 'trust'
          ? {
              check: 'authentication method',
              status: 'warn',
              detail: 'trust: the target let the credential in without a password',
              action: 'use scram-sha-256 in pg_hba.conf for this role and address',
            }
          : {
              check: 'authentication method',
              status: conn.tls === 'verified' ? 'ok' : 'warn',
              detail: `${method}${conn.tls === 'verified' ? ', over verified TLS' : ', allowed by allowUnverifiedPasswordAuth (unsafe)'}`,
              action: 'use scram-sha-256 (password_encryption and pg_hba.conf)',
            },
    );
    lines.push({ check: 'credential logs in', status: 'ok', detail: `as "${credential.user}"` });

    const [[super_, createRole]] = (await conn.pipeline([{ sql: SETTINGS_SQL }], 'the check'))[0]! as [
      [string, string],
    ];
    const isSuper = super_ === 't';
    lines.push(
      isSuper
        ? {
            check: 'credential is not superuser',
            status: 'warn',
            detail: `"${credential.user}" is a superuser`,
            action: 'give pgward a role with CREATEROLE and ADMIN OPTION on the mapped roles instead',
          }
        : { check: 'credential is not superuser', status: 'ok', detail: `"${credential.user}" is not` },
    );

    const mapped = [...new Set([...connection.access.values()].flat())].sort();
    const [rows] = await conn.pipeline([{ sql: ROLES_SQL, params: [JSON.stringify(mapped)] }], 'the check');
    const missing = rows!.filter((r) => r[1] !== 't').map((r) => r[0]!);
    lines.push(
      missing.length === 0
        ? {
            check: 'mapped roles exist',
            status: 'ok',
            detail: mapped.length ? list(mapped) : 'the access map is empty',
          }
        : {
            check: 'mapped roles exist',
            status: 'fail',
            detail: `missing: ${list(missing)}`,
            action: 'create them in the target, or change the access map',
          },
    );
    if (connection.roleMode === 'provision') {
      lines.push(
        createRole === 't' || isSuper
          ? { check: 'credential has CREATEROLE', status: 'ok', detail: 'yes' }
          : {
              check: 'credential has CREATEROLE',
              status: 'fail',
              detail: `"${credential.user}" cannot create login roles`,
              action: `ALTER ROLE "${credential.user}" CREATEROLE`,
            },
      );
      const noAdmin = rows!.filter((r) => r[1] === 't' && r[2] !== 't').map((r) => r[0]!);
      lines.push(
        noAdmin.length === 0
          ? { check: 'ADMIN OPTION on the mapped roles', status: 'ok', detail: 'on every one' }
          : {
              check: 'ADMIN OPTION on the mapped roles',
              status: 'fail',
              detail: `missing on ${list(noAdmin)}`,
              action: `GRANT ${noAdmin.map((n) => `"${n}"`).join(', ')} TO "${credential.user}" WITH ADMIN OPTION`,
            },
      );
      const [logins] = await conn.pipeline(
        [{ sql: LOGIN_ROLES_SQL, params: [`pgward login role: connection ${connection.id}, %`] }],
        'the check',
      );
      const open = logins!.filter((r) => r[1] !== 't').map((r) => r[0]!);
      const stored = logins!.filter((r) => r[2] === 't').map((r) => r[0]!);
      lines.push(
        open.length === 0 && stored.length === 0
          ? {
              check: 'login roles',
              status: 'ok',
              detail: `${logins!.length} made by pgward, each with VALID UNTIL and no stored settings`,
            }
          : {
              check: 'login roles',
              status: 'warn',
              detail: [
                open.length ? `without VALID UNTIL: ${list(open)}` : '',
                stored.length ? `with stored settings: ${list(stored)}` : '',
              ]
                .filter(Boolean)
                .join('; '),
              action: "pgward repairs each at the person's next connect, and refuses that session",
            },
      );
    } else if (createRole === 't') {
      lines.push({
        check: 'shared credential has no CREATEROLE',
        status: 'warn',
        detail: `everyone on this connection acts as "${credential.user}", which may create and change roles`,
        action: `ALTER ROLE "${credential.user}" NOCREATEROLE, or use role mode provision`,
      });
    }
    lines.push({
      check: 'pg_hba.conf',
      status: 'warn',
      detail: isSuper
        ? "not checked: compare pg_hba_file_rules with the gateway's address by hand"
        : 'cannot be verified without superuser',
      action: "accept pgward's login roles only from the gateway's address (docs/security.md)",
    });
  } finally {
    conn.close();
  }
  return lines;
}
