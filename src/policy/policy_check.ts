/**
 * Policies tried on statements without a gateway: `pgward policy test`, the API's
 * /policies/test and the console's policy editor. Each statement of a SQL text is judged as if a
 * person with the given groups sent it alone, with the same rules the relay runs (built-in rules
 * first, then every policy that applies); `-- expect: allow|deny|observe` on the lines before a
 * statement says what it should get.
 */
import { protectPgward } from './builtin_rules.js';
import { classify } from './classify.js';
import type { PolicyDocument } from './policy_document.js';
import { compilePolicy, decide, type PolicySet } from './policy_rules.js';
import { parseSql } from './sql_parser.js';
import { SqlPrepares } from './sql_prepares.js';

export type Verdict = 'allow' | 'deny' | 'observe';

export interface CheckResult {
  /** 1-based line of the statement's first character. */
  line: number;
  statement: string;
  decision: Verdict;
  policy?: string;
  rule?: string;
  message?: string;
  expect?: Verdict;
  /** False when an expectation is given and the decision differs. */
  ok: boolean;
}

export interface CheckReport {
  results: CheckResult[];
  /** What the check cannot show offline (row limits, read-only at the target). */
  notes: string[];
  /** The SQL text did not parse: nothing was judged. */
  syntaxError?: { message: string; line: number };
}

const EXPECT = /--\s*expect:\s*(allow|deny|observe)\b/gi;

/**
 * Judges each statement of `sql` under `documents`. `groups`: the person's groups (undefined:
 * every policy applies, whatever groups it names). Connections are not considered: every
 * document applies as if on one of its connections.
 */
export function checkStatements(
  documents: readonly PolicyDocument[],
  sql: string,
  groups?: readonly string[],
): CheckReport {
  const policies = documents
    .map(compilePolicy)
    .filter((p) => groups === undefined || p.groups === null || groups.some((g) => p.groups!.has(g)));
  const set: PolicySet = {
    policies,
    readOnly: policies.some((p) => p.mode === 'enforce' && p.readOnly !== undefined),
    rowLimit: undefined,
    observedRowLimits: [],
  };
  const notes = policies
    .filter((p) => p.rowLimit)
    .map(
      (p) =>
        `policy "${p.name}" limits results to ${p.rowLimit!.rows} rows: that is checked on results, not here`,
    );
  const bytes = Buffer.from(sql, 'utf8');
  const parsed = parseSql(sql, bytes.length);
  if (!parsed.ok) {
    // The error position counts characters already.
    const at = parsed.error.position > 0 ? parsed.error.position - 1 : 0;
    return { results: [], notes, syntaxError: { message: parsed.error.message, line: lineAt(sql, at) } };
  }
  const prepares = new SqlPrepares();
  const results: CheckResult[] = [];
  let previousEnd = 0;
  for (const raw of parsed.statements) {
    const from = previousEnd;
    previousEnd = raw.end + 1;
    const region = bytes.subarray(from, raw.end).toString('utf8');
    const body = stripComments(region);
    const leading = region.slice(0, region.length - body.length);
    const statement = body.trim();
    if (statement === '') continue;
    const startChar = charIndex(bytes, from) + leading.length + (body.length - body.trimStart().length);
    const expect = lastExpect(leading);
    const c = classify(statement);
    const builtin = protectPgward(c);
    let result: CheckResult;
    if (builtin) {
      result = {
        line: 0,
        statement,
        decision: 'deny',
        policy: 'builtin',
        rule: builtin.rule,
        message: builtin.message,
        ok: true,
      };
    } else {
      const d = decide(set, c.statements, prepares);
      if (!d.refusal) prepares.track(c.statements);
      const first = d.outcomes.find((o) => o.outcome === 'refused') ?? d.outcomes[0];
      result = first
        ? {
            line: 0,
            statement,
            decision: first.outcome === 'refused' ? 'deny' : 'observe',
            policy: first.policy,
            rule: first.rule,
            message: first.message,
            ok: true,
          }
        : { line: 0, statement, decision: 'allow', ok: true };
    }
    result.line = lineAt(sql, startChar);
    if (expect) {
      result.expect = expect;
      result.ok = expect === result.decision;
    }
    results.push(result);
  }
  return { results, notes };
}

function lastExpect(text: string): Verdict | undefined {
  let found: Verdict | undefined;
  for (const m of text.matchAll(EXPECT)) found = m[1]!.toLowerCase() as Verdict;
  return found;
}

/** The statement without its leading comment lines (the parser's range includes them). */
function stripComments(text: string): string {
  return text.replace(/^(\s*--[^\n]*\n)+/, '');
}

/** The UTF-16 index of a byte offset. */
function charIndex(bytes: Buffer, byte: number): number {
  return bytes.subarray(0, Math.min(byte, bytes.length)).toString('utf8').length;
}

function lineAt(text: string, index: number): number {
  let line = 1;
  for (let i = 0; i < index && i < text.length; i++) if (text.charCodeAt(i) === 10) line++;
  return line;
}
