/**
 * The one way a connection (as stored) becomes an upstream target: its address, its sslmode,
 * its choice about password methods, the deadline. The relay and pgward's own sessions use it.
 */
import type { Connection } from '../vault/connections.js';
import type { UpstreamTarget } from './upstream.js';

/** The target to log in to `connection` as `credential`, with extra startup parameters. */
export function upstreamTarget(
  connection: Connection,
  credential: { user: string; password: string },
  params: Record<string, string>,
  timeoutMs: number,
): UpstreamTarget {
  return {
    name: connection.name,
    host: connection.host,
    port: connection.port,
    database: connection.database,
    sslmode: connection.sslmode,
    sslCa: connection.sslCa,
    user: credential.user,
    password: credential.password,
    params,
    timeoutMs,
    allowUnverifiedPasswordAuth: connection.allowUnverifiedPasswordAuth,
  };
}
