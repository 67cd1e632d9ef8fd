/** Health endpoints: what anyone sees, what administrators see, and readiness. */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startTestStack, type TestStack } from './support/dev_stack.js';

describe('health endpoints', () => {
  let t: TestStack;
  let base: string;
  before(async () => {
    t = await startTestStack();
    base = t.stack.info.http;
  });
  after(async () => {
    await t?.close();
  });

  it('/livez and /readyz answer 200 with no details', async () => {
    const live = await fetch(`${base}/livez`);
    assert.equal(live.status, 200);
    assert.deepEqual(await live.json(), { status: 'ok' });
    const ready = await fetch(`${base}/readyz`);
    assert.equal(ready.status, 200);
    assert.deepEqual(await ready.json(), { status: 'ready' });
  });

  it('/healthz shows no host, port or count to anyone but an administrator', async () => {
    const variants: Record<string, string>[] = [
      {},
      { authorization: `Bearer ${await t.token('viewer@example.com')}` },
      { authorization: 'Bearer not-a-token' },
      { authorization: 'Basic YWRtaW46cGFzc3dvcmQ=' },
    ];
    for (const headers of variants) {
      const res = await fetch(`${base}/healthz`, { headers });
      assert.equal(res.status, 200);
      assert.deepEqual(await res.json(), { status: 'ok' }, JSON.stringify(headers));
    }
  });

  it("/healthz shows an administrator each component's state, the audit's backlog and spool among them", async () => {
    const res = await fetch(`${base}/healthz`, {
      headers: { authorization: `Bearer ${await t.token('admin@example.com')}` },
    });
    assert.equal(res.status, 200);
    const body = (await res.json()) as {
      status: string;
      components: Record<string, { ok: boolean; detail?: string; data?: Record<string, unknown> }>;
    };
    assert.equal(body.status, 'ok');
    assert.deepEqual(Object.keys(body.components).sort(), [
      'audit',
      'demo_target',
      'dev_idp',
      'identity_providers',
      'postgres_endpoint',
      'store',
    ]);
    const audit = body.components['audit']!;
    assert.equal(audit.ok, true);
    assert.deepEqual(Object.keys(audit.data ?? {}).sort(), [
      'accepting',
      'backlog',
      'dropped',
      'onStoreDown',
      'spoolBytes',
      'spoolFull',
      'spoolMaxBytes',
      'spoolRecords',
      'spoolSkippedFrames',
      'spoolUsable',
      'storeReachable',
    ]);
    assert.equal(audit.data?.['spoolUsable'], true);
    assert.equal(audit.data?.['dropped'], 0);
    assert.match(body.components['postgres_endpoint']!.detail ?? '', /sessions/);
  });
});
