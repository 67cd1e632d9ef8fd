/**
 * Claim paths: where in a token's claims a value lives. Accepts a plain claim name
 * (`groups`, `https://app.hoop.dev/groups`) or the JSONPath subset Hasura's `claims_map` uses
 * (`$.groups`, `$.realm_access.roles`, `$['https://x/groups']`, `$.groups[0]`).
 * Both forms normalise to the same list of segments, so configurations compare equal.
 */

export type ClaimPath = readonly (string | number)[];

const MAX_PATH_LENGTH = 512;
const MAX_SEGMENTS = 16;

/** Parses a claim name or JSONPath into segments; throws an Error whose message names the problem. */
export function parseClaimPath(input: string): ClaimPath {
  if (input.length === 0) throw new Error('claim path is empty');
  if (input.length > MAX_PATH_LENGTH)
    throw new Error(`claim path is longer than ${MAX_PATH_LENGTH} characters`);
  if (!input.startsWith('$')) return [input];

  const segments: (string | number)[] = [];
  let i = 1;
  while (i < input.length) {
    const c = input[i];
    if (c === '.') {
      const m = /^[A-Za-z0-9_\-:]+/.exec(input.slice(i + 1));
      if (!m) throw new Error(`claim path "${input}": expected a name after "." at position ${i + 1}`);
      segments.push(m[0]);
      i += 1 + m[0].length;
    } else if (c === '[') {
      const rest = input.slice(i);
      const index = /^\[(\d{1,6})\]/.exec(rest);
      const quoted = /^\[(['"])((?:(?!\1)[^\\]|\\.)*)\1\]/.exec(rest);
      if (index) {
        segments.push(Number(index[1]));
        i += index[0].length;
      } else if (quoted) {
        segments.push(quoted[2]!.replace(/\\(.)/g, '$1'));
        i += quoted[0].length;
      } else {
        throw new Error(`claim path "${input}": expected [index] or ['name'] at position ${i}`);
      }
    } else {
      throw new Error(`claim path "${input}": unexpected "${c}" at position ${i}`);
    }
    if (segments.length > MAX_SEGMENTS)
      throw new Error(`claim path "${input}" has more than ${MAX_SEGMENTS} parts`);
  }
  if (segments.length === 0) throw new Error(`claim path "${input}" selects the whole token; name a claim`);
  return segments;
}

/** Reads the value at `path` in `claims`, or undefined when any step is missing. */
export function readClaim(claims: unknown, path: ClaimPath): unknown {
  let value: unknown = claims;
  for (const segment of path) {
    if (value === null || typeof value !== 'object') return undefined;
    if (typeof segment === 'number') {
      if (!Array.isArray(value)) return undefined;
      value = value[segment];
    } else {
      if (Array.isArray(value) || !Object.hasOwn(value, segment)) return undefined;
      value = (value as Record<string, unknown>)[segment];
    }
  }
  return value;
}
