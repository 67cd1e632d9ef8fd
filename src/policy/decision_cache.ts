/**
 * A bounded cache of decisions keyed by statement text and rule version, so a repeated text is
 * parsed once. LRU on a Map (insertion order; a hit moves to the end): O(1) per operation.
 * Entries and total key bytes are both capped; long texts are keyed by their SHA-256.
 */
import { createHash } from 'node:crypto';

/** Texts up to this many UTF-16 units are their own key; longer ones are hashed. */
const INLINE_KEY_CHARS = 256;

export interface DecisionCacheStats {
  hits: number;
  misses: number;
  evictions: number;
  entries: number;
  keyBytes: number;
}

export class DecisionCache<V> {
  readonly #maxEntries: number;
  readonly #maxKeyBytes: number;
  readonly #map = new Map<string, V>();
  #keyBytes = 0;
  #hits = 0;
  #misses = 0;
  #evictions = 0;

  constructor(maxEntries: number, maxKeyBytes: number) {
    if (!(maxEntries >= 1) || !(maxKeyBytes >= 1))
      throw new RangeError('DecisionCache caps must be at least 1');
    this.#maxEntries = Math.floor(maxEntries);
    this.#maxKeyBytes = Math.floor(maxKeyBytes);
  }

  /** The decision cached for this text under this rule version, if any. */
  get(text: string, version: number): V | undefined {
    const key = cacheKey(text, version);
    const value = this.#map.get(key);
    if (value === undefined) {
      this.#misses++;
      return undefined;
    }
    this.#hits++;
    this.#map.delete(key);
    this.#map.set(key, value);
    return value;
  }

  /** Caches a decision; evicts the least recently used entries past either cap. */
  set(text: string, version: number, value: V): void {
    const key = cacheKey(text, version);
    if (this.#map.delete(key)) this.#keyBytes -= keyBytes(key);
    const bytes = keyBytes(key);
    if (bytes > this.#maxKeyBytes) return;
    this.#map.set(key, value);
    this.#keyBytes += bytes;
    while (this.#map.size > this.#maxEntries || this.#keyBytes > this.#maxKeyBytes) {
      const oldest = this.#map.keys().next().value as string;
      this.#map.delete(oldest);
      this.#keyBytes -= keyBytes(oldest);
      this.#evictions++;
    }
  }

  /** Forgets everything (counters stay). */
  clear(): void {
    this.#map.clear();
    this.#keyBytes = 0;
  }

  get stats(): DecisionCacheStats {
    return {
      hits: this.#hits,
      misses: this.#misses,
      evictions: this.#evictions,
      entries: this.#map.size,
      keyBytes: this.#keyBytes,
    };
  }
}

function cacheKey(text: string, version: number): string {
  if (text.length <= INLINE_KEY_CHARS) return `${version}:=${text}`;
  return `${version}:#${createHash('sha256').update(text).digest('base64')}`;
}

/** Memory a key holds: two bytes per UTF-16 unit. */
function keyBytes(key: string): number {
  return key.length * 2;
}
