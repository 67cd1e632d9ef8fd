/**
 * `node dist/bench/classify.js`: the cost of deciding the built-in rules per statement. Prints
 * the first look in ns per statement on pgbench's statements (a new text each time, as with
 * -M simple), the full parse + classification in µs per distinct statement, and the decision
 * cache's hit rate on a workload that repeats texts (an application's statements).
 * No sockets; BENCH_STATEMENTS sets how many generated statements (default 200,000).
 */
import { protectPgward } from '../src/policy/builtin_rules.js';
import { classify } from '../src/policy/classify.js';
import { DecisionCache } from '../src/policy/decision_cache.js';
import { firstLook, needsParseForBuiltins } from '../src/policy/first_look.js';
import { loadSqlParser } from '../src/policy/sql_parser.js';

const N = Number(process.env['BENCH_STATEMENTS'] ?? 200_000);

let seed = 7;
function random(n: number): number {
  seed = (seed * 1103515245 + 12345) & 0x7fffffff;
  return seed % n;
}

/** pgbench's tpcb-like transaction (and -S's select), with fresh literals as -M simple sends. */
function pgbenchTexts(count: number): string[] {
  const out: string[] = [];
  while (out.length < count) {
    const aid = 1 + random(100_000);
    const bid = 1 + random(1);
    const tid = 1 + random(10);
    const delta = random(10_001) - 5000;
    out.push(
      'BEGIN;',
      `UPDATE pgbench_accounts SET abalance = abalance + ${delta} WHERE aid = ${aid};`,
      `SELECT abalance FROM pgbench_accounts WHERE aid = ${aid};`,
      `UPDATE pgbench_tellers SET tbalance = tbalance + ${delta} WHERE tid = ${tid};`,
      `UPDATE pgbench_branches SET bbalance = bbalance + ${delta} WHERE bid = ${bid};`,
      `INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (${tid}, ${bid}, ${aid}, ${delta}, CURRENT_TIMESTAMP);`,
      'END;',
    );
  }
  return out.slice(0, count);
}

function nsPer(count: number, fn: () => void): number {
  const start = process.hrtime.bigint();
  fn();
  return Number(process.hrtime.bigint() - start) / count;
}

await loadSqlParser();
const texts = pgbenchTexts(N);

// Warm up the JIT on a slice, then measure.
let plain = 0;
for (const t of texts.slice(0, 20_000)) if (!needsParseForBuiltins(firstLook(t))) plain++;
plain = 0;
const firstLookNs = nsPer(texts.length, () => {
  for (const t of texts) if (!needsParseForBuiltins(firstLook(t))) plain++;
});

// A bare loop over the same characters: what the machine gives right now (it is shared).
let sum = 0;
const baselineNs = nsPer(texts.length, () => {
  for (const t of texts) for (let i = 0; i < t.length; i++) sum += t.charCodeAt(i);
});

const distinct = texts.slice(0, 20_000);
for (const t of distinct.slice(0, 2000)) protectPgward(classify(t));
const parseUs =
  nsPer(distinct.length, () => {
    for (const t of distinct) protectPgward(classify(t));
  }) / 1000;

// Heavier statements: a DO body and a CTE with a join, for the parse cost of what is parsed.
const heavy = Array.from(
  { length: 5000 },
  (_, i) =>
    `DO $$ BEGIN UPDATE t SET a = ${i} WHERE id = ${i}; EXECUTE 'SELECT ${i}'; END $$; ` +
    `WITH d AS (DELETE FROM q WHERE id = ${i} RETURNING *) SELECT * FROM d JOIN u ON u.id = d.uid`,
);
const heavyUs =
  nsPer(heavy.length, () => {
    for (const t of heavy) protectPgward(classify(t));
  }) / 1000;

// An application's statements: 500 distinct texts needing a parse, Zipf-like repetition.
const app = Array.from(
  { length: 500 },
  (_, i) => `SET application_name = 'app-${i}'; SELECT * FROM t${i % 50} WHERE id = $1`,
);
const cache = new DecisionCache<ReturnType<typeof protectPgward> | null>(10_000, 4 * 1024 * 1024);
const lookups = 200_000;
const cachedNs = nsPer(lookups, () => {
  for (let i = 0; i < lookups; i++) {
    const text = app[Math.floor(app.length * Math.random() ** 3)] as string;
    if (!needsParseForBuiltins(firstLook(text))) continue;
    if (cache.get(text, 1) === undefined) cache.set(text, 1, protectPgward(classify(text)) ?? null);
  }
});
const s = cache.stats;

console.log(
  `first look, pgbench statements:          ${firstLookNs.toFixed(0)} ns per statement (${texts.length} statements, ${((plain / texts.length) * 100).toFixed(1)}% pass without a parse)`,
);
console.log(
  `  (a bare charCodeAt loop over the same texts: ${baselineNs.toFixed(0)} ns per statement${sum < 0 ? '' : ''})`,
);
console.log(`full parse + classify + rule, pgbench:   ${parseUs.toFixed(1)} µs per distinct statement`);
console.log(`full parse + classify + rule, DO + CTE:  ${heavyUs.toFixed(1)} µs per distinct text`);
console.log(
  `decision cache, 500 texts repeated:      ${((s.hits / (s.hits + s.misses)) * 100).toFixed(1)}% hits (${s.hits} hits, ${s.misses} misses), ${cachedNs.toFixed(0)} ns per statement`,
);
