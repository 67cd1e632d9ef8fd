/**
 * `npm run bench`: pgbench direct to the demo target vs through pgward vs through pgbouncer (when
 * installed), in one run on this machine, so ratios compare like with like. Prints TPS, the
 * ratio to direct and pgward's CPU microseconds per transaction; writes bench/results/latest.json.
 * This machine is noisy: each scenario runs BENCH_ROUNDS times (default 3) with the targets
 * interleaved, and the median TPS of each target is reported.
 * BENCH_SECONDS sets the length of each measurement (default 5); BENCH_ONLY, a pattern, picks
 * scenarios by name; BENCH_TARGETS, a comma list (direct,pgward,pgbouncer), picks targets.
 */
import { execFile, spawn } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import { devLogin } from '../src/dev/dev_login.js';
import { startDevStack } from '../src/dev/dev_stack.js';
import { createLogger } from '../src/log/logger.js';
import { PACKAGE_ROOT } from '../src/package_root.js';
import { policyCacheStats } from '../src/proxy/policy_inspector.js';
import { guardCacheStats } from '../src/proxy/statement_guard.js';
import { freePort } from '../src/store/free_port.js';

const run = promisify(execFile);
const SECONDS = Number(process.env['BENCH_SECONDS'] ?? 5);
const ROUNDS = Number(process.env['BENCH_ROUNDS'] ?? 3);

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}
const log = createLogger({ level: 'warn', pretty: false });

interface Scenario {
  name: string;
  args: string[];
  /** Also measured as a person under the policy document of docs/policies.md. */
  policy?: boolean;
}

const SCENARIOS: Scenario[] = [
  { name: '-S -M simple -c 1', args: ['-S', '-M', 'simple', '-c', '1', '-j', '1'], policy: true },
  { name: '-S -M simple -c 8', args: ['-S', '-M', 'simple', '-c', '8', '-j', '2'], policy: true },
  { name: '-S -M extended -c 1', args: ['-S', '-M', 'extended', '-c', '1', '-j', '1'] },
  { name: '-S -M extended -c 8', args: ['-S', '-M', 'extended', '-c', '8', '-j', '2'] },
  { name: '-S -M prepared -c 1', args: ['-S', '-M', 'prepared', '-c', '1', '-j', '1'] },
  { name: '-S -M prepared -c 8', args: ['-S', '-M', 'prepared', '-c', '8', '-j', '2'], policy: true },
  { name: '-S -C -c 8 (connect per tx)', args: ['-S', '-M', 'simple', '-C', '-c', '8', '-j', '2'] },
  {
    name: '5,000-row result -c 4',
    args: ['-M', 'simple', '-c', '4', '-j', '2', '-f', 'ROWS_SCRIPT'],
    policy: true,
  },
  // A SET before each read: a statement the built-in rules parse (once: then the decision cache).
  { name: 'SET + select -c 8 (parsed)', args: ['-M', 'simple', '-c', '8', '-j', '2', '-f', 'SET_SCRIPT'] },
];

/** CPU time (user + system) of a process, in microseconds, from /proc. */
function cpuMicros(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return ((Number(fields[11]) + Number(fields[12])) / 100) * 1e6;
}

async function pgbench(url: string, args: string[], env: Record<string, string> = {}) {
  const { stdout } = await run('pgbench', ['-n', '-T', String(SECONDS), ...args, url], {
    env: { ...process.env, ...env },
    timeout: (SECONDS + 60) * 1000,
    maxBuffer: 16 * 1024 * 1024,
  });
  const tps = Number(/tps = ([\d.]+)/.exec(stdout)?.[1]);
  const tx = Number(/number of transactions actually processed: (\d+)/.exec(stdout)?.[1]);
  const failed = Number(/number of failed transactions: (\d+)/.exec(stdout)?.[1] ?? 0);
  if (!Number.isFinite(tps) || failed > 0) throw new Error(`pgbench failed:\n${stdout}`);
  return { tps, tx };
}

async function which(cmd: string): Promise<string | undefined> {
  try {
    return (await run('sh', ['-c', `command -v ${cmd}`])).stdout.trim() || undefined;
  } catch {
    return undefined;
  }
}

/** pgbouncer in session mode in front of the demo target (bench only: trust auth on loopback). */
async function startPgbouncer(dir: string, target: URL): Promise<{ url: string; stop(): void } | undefined> {
  const binary =
    (await which('pgbouncer')) ?? ((await which('/usr/sbin/pgbouncer')) ? '/usr/sbin/pgbouncer' : undefined);
  if (!binary) return undefined;
  const port = await freePort();
  const ini = path.join(dir, 'pgbouncer.ini');
  writeFileSync(path.join(dir, 'users.txt'), '"bench" ""\n');
  writeFileSync(
    ini,
    [
      '[databases]',
      `demo = host=127.0.0.1 port=${target.port} dbname=demo user=postgres password=${decodeURIComponent(target.password)}`,
      '[pgbouncer]',
      `listen_addr = 127.0.0.1`,
      `listen_port = ${port}`,
      'unix_socket_dir =',
      'auth_type = trust',
      `auth_file = ${path.join(dir, 'users.txt')}`,
      'pool_mode = session',
      'max_client_conn = 200',
      'default_pool_size = 20',
      '',
    ].join('\n'),
  );
  const args = process.getuid?.() === 0 ? ['-u', 'postgres', ini] : [ini];
  const child = spawn(binary, args, { stdio: 'ignore' });
  for (let i = 0; i < 50; i++) {
    await new Promise((resolve) => setTimeout(resolve, 100));
    const c = new pg.Client({ host: '127.0.0.1', port, user: 'bench', database: 'demo' });
    try {
      await c.connect();
      await c.end();
      return {
        url: `postgresql://bench@127.0.0.1:${port}/demo?sslmode=disable`,
        stop: () => child.kill('SIGTERM'),
      };
    } catch {
      // not up yet
    }
  }
  child.kill('SIGKILL');
  throw new Error('pgbouncer did not start');
}

async function main() {
  const dir = mkdtempSync(path.join(tmpdir(), 'pgward-bench-'));
  chmodSync(dir, 0o755);
  const stack = await startDevStack({
    dataDir: path.join(dir, 'data'),
    httpPort: await freePort(),
    pgPort: await freePort(),
    idpPort: await freePort(),
    log,
  });
  const bouncer = await startPgbouncer(dir, new URL(stack.info.target));
  try {
    const direct = stack.info.target.replace(/\?.*$/, '');
    await run('pgbench', ['-i', '-q', '-s', '10', direct], { env: process.env });
    const setup = new pg.Client({ connectionString: direct });
    await setup.connect();
    await setup.query(
      'GRANT SELECT ON pgbench_accounts, pgbench_branches, pgbench_tellers, pgbench_history TO app_readonly, app_readwrite; ANALYZE',
    );
    await setup.end();
    const rowsScript = path.join(dir, 'rows.sql');
    writeFileSync(rowsScript, 'select aid, bid, abalance, filler from pgbench_accounts where aid <= 5000;\n');
    const setScript = path.join(dir, 'set.sql');
    writeFileSync(
      setScript,
      "\\set aid random(1, 1000000)\nset statement_timeout = '5s';\nselect abalance from pgbench_accounts where aid = :aid;\n",
    );

    const token = (
      await devLogin({ issuer: stack.info.idp, email: 'viewer@example.com', password: 'password' })
    ).access_token;
    // The editor works under the policy document of docs/policies.md (row limit above 5,000).
    await stack.gateway.policies.put(
      {
        name: 'bench-editors',
        connections: ['demo'],
        groups: ['editor'],
        rules: [
          { deny: ['ddl', 'truncate'], message: 'schema changes go through migrations' },
          { deny: 'write-without-where' },
          { deny: { functions: ['pg_read_file', 'lo_import', 'dblink_exec'] } },
          { deny: { tables: ['public.sensitive_data'], access: 'write' } },
          { deny: 'multi-statement' },
          { limit: { rows: 10000 } },
          { readOnly: true },
        ],
      },
      'bench',
    );
    const editorToken = (
      await devLogin({ issuer: stack.info.idp, email: 'editor@example.com', password: 'password' })
    ).access_token;
    const viaPolicy = `postgresql://editor%40example.com@${stack.info.pg.host}:${stack.info.pg.port}/demo?sslmode=disable`;
    const viaPgward = `postgresql://viewer%40example.com@${stack.info.pg.host}:${stack.info.pg.port}/demo?sslmode=disable`;
    const targets: { name: string; url: string; env?: Record<string, string> }[] = [
      { name: 'direct', url: `${direct}?sslmode=disable` },
      { name: 'pgward', url: viaPgward, env: { PGPASSWORD: token } },
      { name: 'pgward+policy', url: viaPolicy, env: { PGPASSWORD: editorToken } },
      ...(bouncer ? [{ name: 'pgbouncer', url: bouncer.url }] : []),
    ].filter(
      (t) => t.name === 'direct' || (process.env['BENCH_TARGETS'] ?? t.name).split(',').includes(t.name),
    );

    const results: Record<string, unknown>[] = [];
    console.log(
      `pgbench ${SECONDS}s per measurement, median of ${ROUNDS} rounds, ${cpus().length} cores, audit on; pgbouncer: ${bouncer ? 'yes' : 'not installed'}\n`,
    );
    console.log(
      `${'scenario'.padEnd(30)} ${targets.map((t) => t.name.padStart(22)).join(' ')}   pgward CPU µs/tx`,
    );
    const only = new RegExp(process.env['BENCH_ONLY'] ?? '.');
    for (const scenario of SCENARIOS.filter((s) => only.test(s.name))) {
      const args = scenario.args.map((a) =>
        a === 'ROWS_SCRIPT' ? rowsScript : a === 'SET_SCRIPT' ? setScript : a,
      );
      const samples = new Map<string, number[]>(targets.map((t) => [t.name, []]));
      let pgwardCpu = 0;
      let pgwardTx = 0;
      const measured = targets.filter((t) => t.name !== 'pgward+policy' || scenario.policy);
      for (let round = 0; round < ROUNDS; round++) {
        for (const target of measured) {
          const before = cpuMicros(process.pid);
          const { tps, tx } = await pgbench(target.url, args, target.env);
          if (target.name === 'pgward') {
            pgwardCpu += cpuMicros(process.pid) - before;
            pgwardTx += tx;
          }
          samples.get(target.name)!.push(tps);
        }
      }
      const row: Record<string, { tps: number; ratio: number; samples: number[]; cpuUsPerTx?: number }> = {};
      for (const target of measured) {
        const tps = median(samples.get(target.name)!);
        row[target.name] = { tps, ratio: 0, samples: samples.get(target.name)!.map(Math.round) };
      }
      row['pgward']!.cpuUsPerTx = Math.round(pgwardCpu / pgwardTx);
      for (const t of measured)
        row[t.name]!.ratio = Math.round((row[t.name]!.tps / row['direct']!.tps) * 100) / 100;
      results.push({ scenario: scenario.name, ...row });
      console.log(
        `${scenario.name.padEnd(30)} ${targets
          .map((t) =>
            row[t.name]
              ? `${row[t.name]!.tps.toFixed(0)} tps ${`(${row[t.name]!.ratio.toFixed(2)}x)`.padStart(8)}`.padStart(
                  22,
                )
              : '-'.padStart(22),
          )
          .join(' ')}   ${row['pgward']!.cpuUsPerTx}`,
      );
    }
    const out = path.join(PACKAGE_ROOT, 'bench', 'results');
    mkdirSync(out, { recursive: true });
    writeFileSync(
      path.join(out, 'latest.json'),
      `${JSON.stringify({ date: new Date().toISOString(), seconds: SECONDS, rounds: ROUNDS, cores: cpus().length, node: process.version, results, builtinRulesCache: guardCacheStats() }, null, 2)}\n`,
    );
    const policyCache = policyCacheStats();
    const policyLookups = policyCache.hits + policyCache.misses;
    console.log(
      `\npolicies: classification cache (by number shape) hit rate ${policyLookups ? ((policyCache.hits / policyLookups) * 100).toFixed(2) : '-'}% of ${policyLookups} statements (${policyCache.misses} parsed); pgward+policy / pgward: ${results
        .filter((r) => (r as { 'pgward+policy'?: unknown })['pgward+policy'])
        .map((r) => {
          const x = r as Record<string, { tps: number }>;
          return `${r['scenario']} ${(x['pgward+policy']!.tps / x['pgward']!.tps).toFixed(2)}`;
        })
        .join(', ')}`,
    );
    const cache = guardCacheStats();
    const lookups = cache.hits + cache.misses;
    console.log(
      `\nbuilt-in rules: ${lookups} statements needed more than the first look; decision cache hit rate ${lookups ? ((cache.hits / lookups) * 100).toFixed(1) : '-'}% (${cache.misses} parsed)`,
    );
    // The rules' own costs per statement, without sockets: first look, parse per distinct text.
    const classifyBench = await run(
      process.execPath,
      [path.join(PACKAGE_ROOT, 'dist', 'bench', 'classify.js')],
      {
        env: { ...process.env, BENCH_STATEMENTS: '50000' },
      },
    );
    console.log(classifyBench.stdout.trim());
    console.log(`\nwritten to bench/results/latest.json`);
  } finally {
    bouncer?.stop();
    await stack.close();
    // Two clusters with a scale-10 pgbench database: hundreds of megabytes per run.
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
