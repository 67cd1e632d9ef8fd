/**
 * Live sessions follow the directory: after an access event (a revocation, deactivation,
 * sign-out, or a change of groups, mappings or connections, on any gateway sharing the store)
 * each session it concerns checks again whether its person may still hold it, as they are now.
 */
import type { AccessEvent } from '../directory/access_events.js';
import { concerns, type Recheck, type SignedIn } from '../session/authenticator.js';
import type { ConnectionRepository } from '../vault/connections.js';
import type { ClientSession } from './client_session.js';
import { allowedRoles } from './connect_path.js';

export interface RecheckParts {
  recheck(signedIn: SignedIn): Promise<Recheck>;
  connections: Pick<ConnectionRepository, 'find'>;
}

/**
 * Why `session` must end after `event`, or undefined while its access holds. When the store
 * cannot answer, the session goes on (an outage must not end every session); the next event
 * after it is back checks again.
 */
export async function accessLost(
  event: AccessEvent,
  session: ClientSession,
  parts: RecheckParts,
): Promise<string | undefined> {
  const signedIn = session.person;
  const held = session.connection;
  if (!signedIn || !held || !concerns(event, signedIn)) return undefined;
  const now = await parts.recheck(signedIn);
  if (!now.ok) return now.reason;
  const connection = await parts.connections.find(held.name);
  if (!connection || connection.id !== held.id) return `connection "${held.name}" was deleted`;
  const roles = allowedRoles(connection, now.person);
  if (roles.length === 0) return `${now.person.email} may no longer use connection "${held.name}"`;
  if (roles.join('\0') !== session.roles.join('\0'))
    return `the database roles of ${now.person.email} on "${held.name}" changed; connect again`;
  // Access holds; the policies that apply follow the person's groups as they are now.
  session.regroup(now.person.groups);
  return undefined;
}
