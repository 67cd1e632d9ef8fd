/** What a policy document may name, from what exists now: connections and groups. */
import type { ProviderConfig } from '../config/schema.js';
import type { KnownNames } from './policy_document.js';

/**
 * Groups a policy may name: pgward groups, groups named in a connection's access map or a
 * provider's mappings or admin groups, and a provider's own groups (`okta:dba`) for a provider
 * that exists (pgward cannot list an IdP's groups).
 */
export function knownNames(
  connections: readonly { name: string; access: ReadonlyMap<string, unknown> }[],
  groups: readonly { name: string }[],
  providers: readonly ProviderConfig[],
): KnownNames {
  const names = new Set(groups.map((g) => g.name));
  for (const c of connections) for (const g of c.access.keys()) names.add(g);
  for (const p of providers) {
    for (const g of p.adminGroups) names.add(g);
    for (const targets of Object.values(p.mappings.groups)) for (const g of targets) names.add(g);
    for (const targets of Object.values(p.mappings.roles)) for (const g of targets) names.add(g);
  }
  const providerNames = new Set(providers.map((p) => p.name));
  return {
    connections: new Set(connections.map((c) => c.name)),
    isGroup: (name) => {
      if (names.has(name)) return true;
      const colon = name.indexOf(':');
      return colon > 0 && providerNames.has(name.slice(0, colon));
    },
  };
}
