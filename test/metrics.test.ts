import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { GCProfiler } from 'node:v8';
import { SignJWT } from 'jose';
import { loadConfig } from '../src/config/load.js';
import { redactConfig } from '../src/config/redact.js';
import { configSchema, providerSchema } from '../src/config/schema.js';
import { devLogin } from '../src/dev/dev_login.js';
import { PgwardError } from '../src/errors.js';
import { TokenVerifier } from '../src/identity/token_verifier.js';
import { Metrics, OTHER_LABEL, UNKNOWN_PROVIDER } from '../src/metrics/metrics.js';
import { PACKAGE_ROOT } from '../src/package_root.js';
import { freePort } from '../src/store/free_port.js';
import { call } from './support/api.js';
import { startTestStack, type TestStack } from './support/dev_stack.js';
import { quietLog } from './support/quiet_log.js';

/**
 * A strict reader of the Prometheus text format (0.0.4): every line is a HELP, a TYPE or a
 * sample of a declared metric, with valid names, quoted label values and a number. Returns the
 * samples keyed by `name{label="value",...}` with labels sorted.
 */
function parseExposition(text: string): Map<string, number> {
  const samples = new Map<string, number>();
  const types = new Map<string, string>();
  const name = '[a-zA-Z_:][a-zA-Z0-9_:]*';
  const sampleLine = new RegExp(`^(${name})(?:\\{(.*)\\})? (\\S+)$`);
  const labelPair = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\["\\n])*)"(,|$)/y;
  assert.ok(text.endsWith('\n'), 'the exposition ends with a newline');
  for (const line of text.split('\n')) {
    if (line === '') continue;
    const meta = new RegExp(`^# (HELP|TYPE) (${name}) (.*)$`).exec(line);
    if (meta) {
      if (meta[1] === 'TYPE') {
        assert.match(meta[3]!, /^(counter|gauge|histogram|summary|untyped)$/, line);
        assert.ok(!types.has(meta[2]!), `TYPE of ${meta[2]} given twice`);
        types.set(meta[2]!, meta[3]!);
      }
      continue;
    }
    const m = sampleLine.exec(line);
    assert.ok(m, `not a sample line: ${line}`);
    const [, metric, labelText, valueText] = m;
    const family = [metric!, metric!.replace(/_(bucket|sum|count)$/, '')].find((n) => types.has(n));
    assert.ok(family, `sample of an undeclared metric: ${line}`);
    assert.match(valueText!, /^([-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?|[-+]?Inf|NaN|Nan)$/, line);
    const labels: string[] = [];
    if (labelText) {
      labelPair.lastIndex = 0;
      while (labelPair.lastIndex < labelText.length) {
        const pair = labelPair.exec(labelText);
        assert.ok(pair, `bad labels in: ${line}`);
        labels.push(`${pair[1]}="${pair[2]}"`);
      }
    }
    const key = `${metric}{${labels.sort().join(',')}}`;
    assert.ok(!samples.has(key), `sample given twice: ${key}`);
    samples.set(key, Number(valueText!.replace(/^\+?Inf$/, 'Infinity')));
  }
  return samples;
}

/** One sample's value (0 when absent), labels given in any order. */
function sample(samples: Map<string, number>, metric: string, labels: Record<string, string> = {}): number {
  const text = Object.entries(labels)
    .map(([k, v]) => `${k}="${v}"`)
    .sort()
    .join(',');
  return samples.get(`${metric}{${text}}`) ?? 0;
}

async function poll<T>(what: string, check: () => Promise<T | undefined>, ms = 20_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

describe('Metrics (the methods the proxy calls)', () => {
  it('counts sessions by connection and outcome, and keeps the active gauge', async () => {
    const m = new Metrics({ defaultMetrics: false });
    m.sessionStarted('demo');
    m.sessionStarted('demo');
    m.sessionStarted('reports');
    m.sessionEnded('demo', 'client_terminated');
    const text = await m.registry.getSingleMetricAsString('pgward_sessions_active');
    assert.match(text, /^pgward_sessions_active\{connection="demo"\} 1$/m);
    assert.match(text, /^pgward_sessions_active\{connection="reports"\} 1$/m);
    const ended = parseExposition(
      `${await m.registry.getSingleMetricAsString('pgward_sessions_ended_total')}\n`,
    );
    assert.equal(
      sample(ended, 'pgward_sessions_ended_total', { connection: 'demo', outcome: 'client_terminated' }),
      1,
    );
    assert.equal(
      sample(ended, 'pgward_sessions_ended_total', { connection: 'demo', outcome: 'shutdown' }),
      0,
    );
    const started = await m.registry.getSingleMetricAsString('pgward_sessions_started_total');
    assert.match(started, /^pgward_sessions_started_total\{connection="demo"\} 2$/m);
  });

  it('counts statements by outcome and puts each duration in its bucket', async () => {
    const m = new Metrics({ defaultMetrics: false });
    const demo = m.connection('demo');
    m.statement('demo', 'ok', 0.0004);
    demo.statement('ok', 0.003);
    demo.statement('error', 0.2);
    demo.statement('refused', 0);
    demo.statement('ok', 100);
    // A clock step backwards or a NaN counts as 0, never as a negative sum.
    demo.statement('ok', -1);
    demo.statement('ok', Number.NaN);
    const counts = parseExposition(
      `${await m.registry.getSingleMetricAsString('pgward_statements_total')}\n`,
    );
    assert.equal(sample(counts, 'pgward_statements_total', { connection: 'demo', outcome: 'ok' }), 5);
    assert.equal(sample(counts, 'pgward_statements_total', { connection: 'demo', outcome: 'error' }), 1);
    assert.equal(sample(counts, 'pgward_statements_total', { connection: 'demo', outcome: 'refused' }), 1);
    const h = parseExposition(
      `${await m.registry.getSingleMetricAsString('pgward_statement_duration_seconds')}\n`,
    );
    const bucket = (le: string) =>
      sample(h, 'pgward_statement_duration_seconds_bucket', { connection: 'demo', le });
    assert.equal(bucket('0.0005'), 4); // 0.0004, 0, -1 and NaN
    assert.equal(bucket('0.0025'), 4);
    assert.equal(bucket('0.005'), 5);
    assert.equal(bucket('0.25'), 6);
    assert.equal(bucket('30'), 6);
    assert.equal(bucket('+Inf'), 7);
    assert.equal(sample(h, 'pgward_statement_duration_seconds_count', { connection: 'demo' }), 7);
    assert.ok(
      Math.abs(sample(h, 'pgward_statement_duration_seconds_sum', { connection: 'demo' }) - 100.2034) < 1e-9,
    );
    // The same series object every time: the proxy looks it up once per session.
    assert.equal(m.connection('demo'), demo);
  });

  it('statement() allocates nothing (prom-client labelled inc/observe cost a scavenge per ~10,000 calls)', () => {
    const m = new Metrics({ defaultMetrics: false });
    const names = ['demo', 'reports', 'billing'];
    const run = (n: number) => {
      for (let i = 0; i < n; i++) m.statement(names[i % 3]!, i % 7 === 0 ? 'error' : 'ok', (i % 1000) / 1e5);
    };
    run(100_000); // series made, code optimized
    const profiler = new GCProfiler();
    profiler.start();
    run(2_000_000);
    const collections = profiler.stop().statistics.length;
    // Allocating even 16 bytes a call would take 32 MB here, several young-generation collections.
    assert.ok(collections <= 2, `${collections} garbage collections during 2,000,000 statements`);
  });

  it('records connect latency and refused logins by error code', async () => {
    const m = new Metrics({ defaultMetrics: false });
    m.connected(0.04);
    m.connected(3);
    m.loginRefused('TOKEN_EXPIRED');
    m.loginRefused('TOKEN_EXPIRED');
    m.loginRefused('NOT_ALLOWED');
    // A code outside the error table (a caller's mistake) cannot make a new series.
    m.loginRefused('alice@example.com' as never);
    const connect = parseExposition(
      `${await m.registry.getSingleMetricAsString('pgward_connect_duration_seconds')}\n`,
    );
    assert.equal(sample(connect, 'pgward_connect_duration_seconds_bucket', { le: '0.05' }), 1);
    assert.equal(sample(connect, 'pgward_connect_duration_seconds_bucket', { le: '5' }), 2);
    assert.equal(sample(connect, 'pgward_connect_duration_seconds_count'), 2);
    const refusals = parseExposition(
      `${await m.registry.getSingleMetricAsString('pgward_login_refusals_total')}\n`,
    );
    assert.equal(sample(refusals, 'pgward_login_refusals_total', { code: 'TOKEN_EXPIRED' }), 2);
    assert.equal(sample(refusals, 'pgward_login_refusals_total', { code: 'NOT_ALLOWED' }), 1);
    assert.equal(sample(refusals, 'pgward_login_refusals_total', { code: 'INTERNAL' }), 1);
    assert.doesNotMatch(await m.text(), /alice/);
  });

  it('caps connection labels: past 500 names, new ones share one series', async () => {
    const m = new Metrics({ defaultMetrics: false });
    for (let i = 0; i < 500; i++) m.statement(`conn${i}`, 'ok', 0.001);
    m.statement('one-too-many', 'ok', 0.001);
    m.statement('and-another', 'ok', 0.001);
    const counts = parseExposition(
      `${await m.registry.getSingleMetricAsString('pgward_statements_total')}\n`,
    );
    assert.equal(sample(counts, 'pgward_statements_total', { connection: 'conn499', outcome: 'ok' }), 1);
    assert.equal(sample(counts, 'pgward_statements_total', { connection: OTHER_LABEL, outcome: 'ok' }), 2);
    assert.doesNotMatch(await m.text(), /one-too-many|and-another/);
  });

  it('keeps each gateway in its own registry, default metrics included', async () => {
    const a = new Metrics();
    const b = new Metrics();
    a.statement('demo', 'ok', 0.001);
    const textA = parseExposition(await a.text());
    const textB = parseExposition(await b.text());
    assert.equal(sample(textA, 'pgward_statements_total', { connection: 'demo', outcome: 'ok' }), 1);
    assert.equal(sample(textB, 'pgward_statements_total', { connection: 'demo', outcome: 'ok' }), 0);
    for (const s of [textA, textB]) {
      assert.ok(s.has('pgward_process_cpu_user_seconds_total{}'), 'process metrics');
      assert.ok(
        [...s.keys()].some((k) => k.startsWith('pgward_nodejs_eventloop_lag_seconds')),
        'runtime',
      );
    }
  });

  it('reads the audit, pool and provider state when scraped', async () => {
    const m = new Metrics({ defaultMetrics: false });
    let queued = 3;
    m.observeAudit(() => ({
      queued,
      spoolBytes: 4096,
      statementsWritten: 10,
      sessionStartsWritten: 2,
      sessionEndsWritten: 1,
      statementsDropped: 5,
    }));
    m.observePool(() => ({ idle: 4 }));
    m.observeProviders(() => ({ okta: { ok: true }, dex: { ok: false } }));
    m.poolCheckout('opened');
    m.poolWaited(0.02);
    let s = parseExposition(await m.text());
    assert.equal(sample(s, 'pgward_audit_queue_records'), 3);
    assert.equal(sample(s, 'pgward_audit_spool_bytes'), 4096);
    assert.equal(sample(s, 'pgward_audit_records_written_total', { kind: 'statement' }), 10);
    assert.equal(sample(s, 'pgward_audit_records_written_total', { kind: 'session_start' }), 2);
    assert.equal(sample(s, 'pgward_audit_records_written_total', { kind: 'session_end' }), 1);
    assert.equal(sample(s, 'pgward_audit_records_dropped_total'), 5);
    assert.equal(sample(s, 'pgward_upstream_pool_idle_connections'), 4);
    assert.equal(sample(s, 'pgward_upstream_pool_checkouts_total', { result: 'opened' }), 1);
    assert.equal(sample(s, 'pgward_upstream_pool_wait_seconds_count'), 1);
    assert.equal(sample(s, 'pgward_identity_provider_up', { provider: 'okta' }), 1);
    assert.equal(sample(s, 'pgward_identity_provider_up', { provider: 'dex' }), 0);
    queued = 0;
    s = parseExposition(await m.text());
    assert.equal(sample(s, 'pgward_audit_queue_records'), 0);
  });

  it('redacts the metrics bearer token in the printed configuration', () => {
    const secret = 'scrape-secret-0123456789';
    const config = configSchema.parse({ metrics: { bearerToken: secret } });
    assert.equal(config.metrics.enabled, true);
    const printed = JSON.stringify(redactConfig(config));
    assert.doesNotMatch(printed, new RegExp(secret));
    assert.match(printed, /"bearerToken":"\[redacted\]"/);
    assert.throws(() => configSchema.parse({ metrics: { bearerToken: 'short' } }), /at least 16/);
    const fromEnv = loadConfig({
      env: { PGWARD_METRICS_ENABLED: 'false', PGWARD_METRICS_BEARER_TOKEN: secret },
    });
    assert.deepEqual(fromEnv.metrics, { enabled: false, bearerToken: secret });
    // A bad value is named by its setting, never shown.
    assert.throws(
      () => loadConfig({ env: { PGWARD_METRICS_BEARER_TOKEN: 'fifteen-chars-x' } }),
      (err: Error) => {
        assert.match(
          err.message,
          /metrics\.bearerToken \(from PGWARD_METRICS_BEARER_TOKEN\): use at least 16/,
        );
        assert.doesNotMatch(err.message, /fifteen-chars-x/);
        return true;
      },
    );
  });
});

describe('JWKS fetch health', () => {
  it('counts a failed key fetch and the IDP_UNREACHABLE verification it causes', async () => {
    const port = await freePort(); // nothing listens there
    const issuer = `http://127.0.0.1:${port}/issuer`;
    const provider = providerSchema.parse({
      name: 'down',
      issuer,
      clientId: 'pgward',
      jwksUri: `http://127.0.0.1:${port}/jwks`,
      algorithms: ['RS256'],
    });
    const m = new Metrics({ defaultMetrics: false });
    const verifier = new TokenVerifier([provider], quietLog, { cacheMaxAgeMs: 1, cooldownMs: 0 }, m);
    const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const token = await new SignJWT({ sub: 'x' })
      .setProtectedHeader({ alg: 'RS256', kid: 'k1' })
      .setIssuer(issuer)
      .setAudience('pgward')
      .setExpirationTime('5m')
      .sign(privateKey);
    await assert.rejects(verifier.verify(token), (err: unknown) => {
      assert.ok(err instanceof PgwardError);
      assert.equal(err.code, 'IDP_UNREACHABLE');
      return true;
    });
    const s = parseExposition(await m.text());
    assert.equal(sample(s, 'pgward_jwks_fetch_failures_total', { provider: 'down' }), 1);
    assert.equal(sample(s, 'pgward_jwks_last_success_timestamp_seconds', { provider: 'down' }), 0);
    assert.equal(
      sample(s, 'pgward_token_verifications_total', { provider: 'down', result: 'IDP_UNREACHABLE' }),
      1,
    );
  });
});

describe('GET /metrics on the dev stack', () => {
  const BEARER = 'metrics-test-bearer-token-0123456789';
  let t: TestStack;
  let http: string;
  const scrape = async () => {
    const res = await call<string>(http, 'GET', '/metrics', { token: BEARER });
    assert.equal(res.status, 200, String(res.body));
    return { text: res.body, samples: parseExposition(res.body), headers: res.headers };
  };

  before(async () => {
    t = await startTestStack({ PGWARD_METRICS_BEARER_TOKEN: BEARER });
    http = t.stack.info.http;
  });
  after(async () => {
    await t?.close();
  });

  it('refuses a scrape without the bearer token, or with a wrong one (401)', async () => {
    const none = await call(http, 'GET', '/metrics');
    assert.equal(none.status, 401);
    assert.equal(none.body['code'], 'UNAUTHENTICATED');
    assert.match(String(none.headers.get('www-authenticate')), /^Bearer realm="pgward metrics"/);
    const wrong = await call(http, 'GET', '/metrics', { token: `${BEARER}x` });
    assert.equal(wrong.status, 401);
    const prefix = await call(http, 'GET', '/metrics', { token: BEARER.slice(0, -1) });
    assert.equal(prefix.status, 401);
    const basic = await call(http, 'GET', '/metrics', { headers: { authorization: `Basic ${BEARER}` } });
    assert.equal(basic.status, 401);
    // A person's token is not the scrape token.
    const person = await call(http, 'GET', '/metrics', { token: await t.token('admin@example.com') });
    assert.equal(person.status, 401);
    for (const answer of [none, wrong, prefix, basic, person])
      assert.doesNotMatch(JSON.stringify(answer.body), /metrics-test-bearer/);
  });

  it('answers the Prometheus text format with the bearer token', async () => {
    const { text, samples, headers } = await scrape();
    assert.equal(headers.get('content-type'), 'text/plain; version=0.0.4; charset=utf-8');
    assert.equal(headers.get('cache-control'), 'no-store');
    assert.ok(samples.has('pgward_process_cpu_user_seconds_total{}'));
    assert.ok(samples.has('pgward_audit_queue_records{}'));
    assert.ok(samples.has('pgward_upstream_pool_idle_connections{}'));
    assert.doesNotMatch(text, new RegExp(BEARER));
  });

  it('counts token verifications by provider and result, and reports the keys fetched', async () => {
    const before = (await scrape()).samples;
    // A fresh token: one the gateway has not verified (and cached) yet.
    const fresh = (
      await devLogin({ issuer: t.stack.info.idp, email: 'viewer@example.com', password: 'password' })
    ).access_token;
    assert.equal((await call(http, 'GET', '/api/v1/whoami', { token: fresh })).status, 200);
    const [head, body, signature] = fresh.split('.');
    const flipped = `${signature![0] === 'A' ? 'B' : 'A'}${signature!.slice(1)}`;
    const forged = await call(http, 'GET', '/api/v1/whoami', { token: `${head}.${body}.${flipped}` });
    assert.equal(forged.status, 401);
    assert.equal(forged.body['code'], 'TOKEN_SIGNATURE');
    assert.equal((await call(http, 'GET', '/api/v1/whoami', { token: 'not-a-token' })).status, 401);
    const now = (await scrape()).samples;
    const delta = (labels: Record<string, string>) =>
      sample(now, 'pgward_token_verifications_total', labels) -
      sample(before, 'pgward_token_verifications_total', labels);
    assert.equal(delta({ provider: 'dev', result: 'ok' }), 1);
    assert.equal(delta({ provider: 'dev', result: 'TOKEN_SIGNATURE' }), 1);
    assert.equal(delta({ provider: UNKNOWN_PROVIDER, result: 'TOKEN_MALFORMED' }), 1);
    const fetchedAt = sample(now, 'pgward_jwks_last_success_timestamp_seconds', { provider: 'dev' });
    assert.ok(fetchedAt > Date.now() / 1000 - 600 && fetchedAt <= Date.now() / 1000, String(fetchedAt));
    assert.equal(sample(now, 'pgward_jwks_fetch_failures_total', { provider: 'dev' }), 0);
    assert.equal(sample(now, 'pgward_identity_provider_up', { provider: 'dev' }), 1);
  });

  it('counts audit records written and pool checkouts from real sessions, never their SQL or emails', async () => {
    const before = (await scrape()).samples;
    const written = (s: Map<string, number>, kind: string) =>
      sample(s, 'pgward_audit_records_written_total', { kind });
    for (let round = 0; round < 2; round++) {
      const client = await t.client('viewer@example.com');
      for (let i = 0; i < 5; i++) await client.query(`select 4242 + ${i} as metrics_probe`);
      await client.end();
      // The upstream goes back to the pool (DISCARD ALL) after its client left.
      await poll('an idle upstream', async () => {
        const s = (await scrape()).samples;
        return sample(s, 'pgward_upstream_pool_idle_connections') >= 1 ? s : undefined;
      });
    }
    const { text, samples: now } = await poll('the audit records to be written', async () => {
      const s = await scrape();
      return written(s.samples, 'session_end') - written(before, 'session_end') >= 2 ? s : undefined;
    });
    assert.ok(written(now, 'statement') - written(before, 'statement') >= 10);
    assert.ok(written(now, 'session_start') - written(before, 'session_start') >= 2);
    assert.equal(sample(now, 'pgward_audit_records_dropped_total'), 0);
    assert.equal(sample(now, 'pgward_audit_queue_records'), 0);
    const checkouts = (result: string) =>
      sample(now, 'pgward_upstream_pool_checkouts_total', { result }) -
      sample(before, 'pgward_upstream_pool_checkouts_total', { result });
    assert.ok(checkouts('opened') >= 1, 'the first session opened its upstream');
    assert.ok(checkouts('reused') >= 1, 'the second session reused it');
    // Values may hold any digits: look for the statement text and the emails.
    assert.doesNotMatch(text, /metrics_probe|select|@example\.com/);
  });

  it('has a Grafana dashboard whose every series the gateway exposes', async () => {
    const { text } = await scrape();
    const declared = new Set([...text.matchAll(/^# TYPE (\S+) (\S+)$/gm)].map((m) => m[1]!));
    const dashboard = JSON.parse(
      readFileSync(path.join(PACKAGE_ROOT, 'ops', 'grafana', 'pgward-dashboard.json'), 'utf8'),
    ) as { uid: string; panels: { id: number; type: string; targets?: { expr: string }[] }[] };
    assert.equal(dashboard.uid, 'pgward-overview');
    const ids = dashboard.panels.map((p) => p.id);
    assert.equal(new Set(ids).size, ids.length, 'panel ids are unique');
    const exprs = dashboard.panels.flatMap((p) => p.targets ?? []).map((t) => t.expr);
    assert.ok(exprs.length >= 20);
    for (const expr of exprs) {
      for (const [series] of expr.matchAll(/pgward_[a-z0-9_]+/g)) {
        const family = declared.has(series) ? series : series.replace(/_(bucket|sum|count)$/, '');
        assert.ok(declared.has(family), `the dashboard queries ${series}, which /metrics does not expose`);
      }
    }
  });
});
