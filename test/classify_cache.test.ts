/** The decision cache: bounded by entries and key bytes, LRU, keyed by text and rule version. */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { DecisionCache } from '../src/policy/decision_cache.js';

describe('DecisionCache', () => {
  test('hits and misses are counted; the rule version is part of the key', () => {
    const c = new DecisionCache<string>(10, 10_000);
    assert.equal(c.get('SELECT 1', 1), undefined);
    c.set('SELECT 1', 1, 'allow');
    assert.equal(c.get('SELECT 1', 1), 'allow');
    assert.equal(c.get('SELECT 1', 2), undefined);
    assert.deepEqual(c.stats, { hits: 1, misses: 2, evictions: 0, entries: 1, keyBytes: c.stats.keyBytes });
  });

  test('the entry cap evicts the least recently used', () => {
    const c = new DecisionCache<number>(2, 10_000);
    c.set('a', 1, 1);
    c.set('b', 1, 2);
    c.get('a', 1);
    c.set('c', 1, 3);
    assert.equal(c.get('b', 1), undefined);
    assert.equal(c.get('a', 1), 1);
    assert.equal(c.get('c', 1), 3);
    assert.equal(c.stats.entries, 2);
    assert.equal(c.stats.evictions, 1);
  });

  test('the key-byte cap holds however many short texts arrive', () => {
    const c = new DecisionCache<number>(1_000_000, 4096);
    for (let i = 0; i < 10_000; i++) c.set(`SELECT ${i} ${'x'.repeat(100)}`, 1, i);
    assert.ok(c.stats.keyBytes <= 4096, `${c.stats.keyBytes}`);
    assert.ok(c.stats.entries > 0 && c.stats.entries < 30);
  });

  test('long texts are keyed by hash, so a 1 MiB text costs a short key', () => {
    const c = new DecisionCache<string>(10, 1000);
    const long = `SELECT 1 -- ${'x'.repeat(1024 * 1024)}`;
    c.set(long, 1, 'deny');
    assert.equal(c.get(long, 1), 'deny');
    assert.equal(c.get(`${long}y`, 1), undefined);
    assert.ok(c.stats.keyBytes < 200);
  });

  test('re-setting a key does not count its bytes twice', () => {
    const c = new DecisionCache<number>(10, 10_000);
    c.set('a', 1, 1);
    const bytes = c.stats.keyBytes;
    c.set('a', 1, 2);
    assert.equal(c.stats.keyBytes, bytes);
    assert.equal(c.get('a', 1), 2);
  });

  test('caps below 1 are refused', () => {
    assert.throws(() => new DecisionCache(0, 10), RangeError);
    assert.throws(() => new DecisionCache(10, 0), RangeError);
  });
});
