/** What a client session needs from the rest of the gateway, in one place. */
import type { SecureContext } from 'node:tls';
import type { AuditWriter } from '../audit/audit_writer.js';
import type { Logger } from '../log/logger.js';
import type { Metrics } from '../metrics/metrics.js';
import type { PolicyCatalog } from '../policy/policy_catalog.js';
import type { SignedIn } from '../session/authenticator.js';
import type { RoleProvisioner } from '../upstream/role_provisioner.js';
import type { UpstreamPool } from '../upstream/upstream_pool.js';
import type { ConnectionRepository } from '../vault/connections.js';
import type { CancelMap } from './cancel_map.js';
import type { ConnectPath } from './connect_path.js';
import type { StatementInspector } from './relay.js';

export interface ProxyContext {
  config: {
    maxMessageBytes: number;
    allowLoopbackPlaintext: boolean;
    /** Startup and authentication must finish within this time. */
    authTimeoutMs: number;
    /** Longest statement text pgward runs and records (audit.maxStatementBytes). */
    maxStatementBytes: number;
    maxSessionsPerPerson: number;
    maxSessionsPerConnection: number;
    /** Deadline of each step with a target (connect, TLS, login, control query). */
    upstreamTimeoutMs: number;
  };
  log: Logger;
  /** TLS for clients; without it SSLRequest is answered "N". */
  tls: SecureContext | undefined;
  /** Who the token (the password) proves; throws a PgwardError to refuse. */
  authenticate(token: string, username: string): Promise<SignedIn>;
  connections: ConnectionRepository;
  provisioner: RoleProvisioner;
  pool: UpstreamPool;
  audit: AuditWriter;
  cancels: CancelMap;
  /** The statement inspectors every session runs, in order (the built-in rules first). */
  inspectors: readonly StatementInspector[];
  /** The policies, as they are now (see PolicyCatalog). */
  policies: Pick<PolicyCatalog, 'setFor' | 'generation'>;
  connectPath: ConnectPath;
  /** Where sessions and statements are counted (absent when metrics are off). */
  metrics: Metrics | undefined;
}
