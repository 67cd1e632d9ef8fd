/**
 * `pgward policy test FILE.yaml STATEMENTS.sql`: policies checked offline, as code in a
 * repository is checked in CI. Prints the decision for each statement; returns 1 where an
 * expectation (`-- expect: allow|deny|observe`) disagrees, or when the SQL does not parse.
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { parseAllDocuments } from 'yaml';
import { PgwardError } from '../errors.js';
import { PolicyInvalid } from '../policy/policy_catalog.js';
import { checkStatements } from '../policy/policy_check.js';
import { MAX_POLICY_BYTES, type PolicyDocument, validatePolicy } from '../policy/policy_document.js';
import { loadSqlParser } from '../policy/sql_parser.js';

const MAX_SQL_BYTES = 16 * 1024 * 1024;

/** The documents of a policy file: one, a YAML stream of several, or a list. */
async function readDocuments(file: string): Promise<PolicyDocument[]> {
  const text = await readText(file, MAX_POLICY_BYTES * 16);
  const values: unknown[] = [];
  for (const doc of parseAllDocuments(text)) {
    if (doc.errors.length > 0) throw new PgwardError('POLICY_INVALID', `${file}: ${doc.errors[0]!.message}`);
    const value = doc.toJS({ maxAliasCount: 50 }) as unknown;
    if (Array.isArray(value)) values.push(...value);
    else if (value !== null && value !== undefined) values.push(value);
  }
  if (values.length === 0) throw new PgwardError('POLICY_INVALID', `${file} holds no policy document`);
  return values.map((value, i) => {
    // A document kept in a file is often named by the file (as `admin create policy NAME --file`).
    const named =
      typeof value === 'object' && value !== null && !('name' in value)
        ? {
            ...value,
            name: path
              .basename(file)
              .replace(/\.[^.]*$/, '')
              .toLowerCase()
              .replace(/[^a-z0-9_.-]/g, '-'),
          }
        : value;
    const checked = validatePolicy(named);
    if (!checked.ok) {
      const where = values.length > 1 ? `document ${i + 1}: ` : '';
      throw new PolicyInvalid(checked.problems.map((p) => ({ ...p, path: `${where}${p.path}` })));
    }
    return checked.document;
  });
}

async function readText(file: string, max: number): Promise<string> {
  const bytes = await readFile(file).catch((err: NodeJS.ErrnoException) => {
    throw new PgwardError('BAD_REQUEST', `cannot read ${file}: ${err.code ?? err.message}`);
  });
  if (bytes.length > max) throw new PgwardError('BAD_REQUEST', `${file} is larger than ${max} bytes`);
  return bytes.toString('utf8');
}

const LABEL = { allow: 'ALLOW  ', deny: 'DENY   ', observe: 'OBSERVE' } as const;

/** Runs the check; the exit code is 0 when every expectation holds. */
export async function runPolicyTest(
  policyFile: string,
  statementsFile: string,
  opts: { as?: string[]; json?: boolean },
): Promise<number> {
  const documents = await readDocuments(policyFile);
  const sql = await readText(statementsFile, MAX_SQL_BYTES);
  await loadSqlParser();
  const report = checkStatements(documents, sql, opts.as);
  const failed = report.results.filter((r) => !r.ok).length;
  if (opts.json) {
    process.stdout.write(`${JSON.stringify({ ...report, failed }, null, 2)}\n`);
    return failed > 0 || report.syntaxError ? 1 : 0;
  }
  if (report.syntaxError) {
    process.stderr.write(
      `${statementsFile}:${report.syntaxError.line}: syntax error: ${report.syntaxError.message}\n`,
    );
    return 1;
  }
  const out: string[] = [];
  for (const r of report.results) {
    const oneLine = r.statement.replace(/\s+/g, ' ');
    const text = oneLine.length > 72 ? `${oneLine.slice(0, 69)}...` : oneLine;
    let line = `${r.ok ? '' : 'FAIL '}${LABEL[r.decision]} ${statementsFile}:${r.line}  ${text}`;
    if (r.policy) line += `\n         ${r.policy} ${r.rule}: ${r.message}`;
    if (!r.ok) line += `\n         expected ${r.expect}`;
    out.push(line);
  }
  for (const note of report.notes) out.push(`note: ${note}`);
  const expected = report.results.filter((r) => r.expect !== undefined).length;
  out.push(`${report.results.length} statements, ${expected} with expectations, ${failed} failed`);
  process.stdout.write(`${out.join('\n')}\n`);
  return failed > 0 ? 1 : 0;
}
