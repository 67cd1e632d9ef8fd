/** What a client session needs from the rest of the gateway, in one place. */
import type { SecureContext } from 'node:tls';
import type { AuditWriter } from '../audit/audit_writer.js';
import type { Logger } from '../log/logger.js';
import type { SignedIn } from '../session/authenticator.js';
import type { ConnectionRepository } from '../vault/connections.js';
import type { CancelMap } from './cancel_map.js';
import type { RoleProvisioner } from '../upstream/role_provisioner.js';
import type { UpstreamPool } from '../upstream/upstream_pool.js';

export interface ProxyContext {
  config: {
    maxMessageBytes: number;
    allowLoopbackPlaintext: boolean;
    /** Startup and authentication must finish within this time. */
    authTimeoutMs: number;
  };
  log: Logger;
  /** TLS for clients; without it SSLRequest is answered "N". */
  tls: SecureContext | undefined;
  /** Who the token (the password) proves; throws a PgwardError to refuse. */
  authenticate(token: string): Promise<SignedIn>;
  connections: ConnectionRepository;
  provisioner: RoleProvisioner;
  pool: UpstreamPool;
  audit: AuditWriter;
  cancels: CancelMap;
}
