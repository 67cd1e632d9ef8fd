import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { type Cancellable, CancelMap } from '../src/proxy/cancel_map.js';

describe('the cancel key map', () => {
  const session = (): Cancellable => ({ cancelUpstream: () => undefined });

  it('mints keys of the size each protocol version takes, and finds a session only by its exact secret', () => {
    const map = new CancelMap();
    const old = session();
    const current = session();
    const k30 = map.register(old, 0);
    const k32 = map.register(current, 2);
    assert.equal(k30.secret.length, 4);
    assert.equal(k32.secret.length, 32);
    assert.equal(map.find(k30.pid, k30.secret), old);
    assert.equal(map.find(k32.pid, k32.secret), current);
    const wrong = Buffer.from(k32.secret);
    wrong[31]! ^= 1;
    assert.equal(map.find(k32.pid, wrong), undefined);
    assert.equal(map.find(k32.pid, k32.secret.subarray(0, 4)), undefined);
    assert.equal(map.find(k30.pid, k32.secret), undefined);
    map.unregister(k30);
    assert.equal(map.find(k30.pid, k30.secret), undefined);
  });

  it('never hands out the same random bytes twice, across batches of randomness', () => {
    const map = new CancelMap();
    // 32-byte secrets: 128 fit in one batch of randomness, so 1,000 keys span eight.
    const keys = Array.from({ length: 1_000 }, () => map.register(session(), 2));
    const secrets = new Set(keys.map((k) => k.secret.toString('hex')));
    assert.equal(secrets.size, keys.length);
    assert.equal(new Set(keys.map((k) => k.pid)).size, keys.length);
    for (const k of keys) {
      assert.notEqual(k.secret.toString('hex'), '00'.repeat(32), 'a secret is not the wiped batch');
    }
    // A key handed out keeps its bytes when later keys are cut from the same batch.
    const first = Buffer.from(keys[0]!.secret);
    map.register(session(), 2);
    assert.deepEqual(keys[0]!.secret, first);
  });
});
