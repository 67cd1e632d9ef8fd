/**
 * The policy document: rules an administrator attaches to connections and groups. One schema
 * for every source (the config file's `policies:`, the API, `pgward admin create policy`,
 * `pgward policy test`), so a document is valid everywhere or nowhere. Names may be extended,
 * never renamed: scripts and the console rely on them. See docs/policies.md.
 */
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { STATEMENT_CLASSES } from './classification.js';

/** Largest document accepted, in bytes: a policy is a page of rules, not a data file. */
export const MAX_POLICY_BYTES = 64 * 1024;
const MAX_LIST = 200;

/** zod's message for a missing or mistyped field, as a person reads it. */
const required = (what: string) => ({
  error: (issue: { input: unknown }) => (issue.input === undefined ? 'is required' : `expected ${what}`),
});

const name = z
  .string(required('a name'))
  .regex(/^[a-z0-9][a-z0-9_.-]{0,62}$/, 'expected a lowercase name: a-z, 0-9, _ . - (at most 63)');
/** A function or table as SQL names it: `name` or `schema.name`, folded as PostgreSQL folds them. */
const qualifiedName = z
  .string()
  .min(1)
  .max(127)
  .regex(/^[^.\s]+(\.[^.\s]+)?$/, 'expected name or schema.name')
  .transform((s) => s.toLowerCase());
const statementClass = z.enum(STATEMENT_CLASSES);
const message = z.string().min(1).max(500).optional();

/** The named rules a `deny:` string can give besides a class. */
export const NAMED_DENIALS = ['write-without-where', 'multi-statement'] as const;

const DENY_HELP = `expected a statement class (${STATEMENT_CLASSES.join(', ')}), a list of them, ${NAMED_DENIALS.join(', ')}, { functions: [...] } or { tables: [...], access: read|write|any }`;

const functionsTarget = z.strictObject({ functions: z.array(qualifiedName).min(1).max(MAX_LIST) });
const tablesTarget = z.strictObject({
  tables: z.array(qualifiedName).min(1).max(MAX_LIST),
  access: z.enum(['read', 'write', 'any']).default('any'),
});
const namedTarget = z.enum([...STATEMENT_CLASSES, ...NAMED_DENIALS], { error: DENY_HELP });
type DenyTarget =
  | z.output<typeof namedTarget>
  | z.output<typeof statementClass>[]
  | z.output<typeof functionsTarget>
  | z.output<typeof tablesTarget>;

/**
 * Each form is told apart by its shape before it is checked, so a mistake is reported against
 * the form the author meant (a union would report every form's complaint, or the wrong one).
 */
function byShape<T>(pick: (value: unknown) => z.ZodType<T> | string) {
  return z.unknown().transform((value, ctx): T => {
    const schema = pick(value);
    if (typeof schema === 'string') {
      ctx.addIssue({ code: 'custom', message: schema });
      return z.NEVER;
    }
    const parsed = schema.safeParse(value);
    if (parsed.success) return parsed.data;
    for (const issue of parsed.error.issues) {
      ctx.addIssue({ ...issue, path: issue.path } as Parameters<typeof ctx.addIssue>[0]);
    }
    return z.NEVER;
  });
}

const has = (value: unknown, key: string) =>
  typeof value === 'object' && value !== null && !Array.isArray(value) && key in value;

const denyTarget = byShape<DenyTarget>((value) => {
  if (typeof value === 'string') return namedTarget;
  if (Array.isArray(value)) return z.array(statementClass).min(1).max(STATEMENT_CLASSES.length);
  if (has(value, 'functions')) return functionsTarget;
  if (has(value, 'tables')) return tablesTarget;
  return DENY_HELP;
});

const denyRule = z.strictObject({ deny: denyTarget, message });
const limitRule = z.strictObject({
  limit: z.strictObject({ rows: z.number().int().min(1).max(1_000_000_000) }),
  message,
});
const readOnlyRule = z.strictObject({ readOnly: z.literal(true), message });
type Rule = z.output<typeof denyRule> | z.output<typeof limitRule> | z.output<typeof readOnlyRule>;

const ruleSchema = byShape<Rule>((value) => {
  if (has(value, 'deny')) return denyRule as z.ZodType<Rule>;
  if (has(value, 'limit')) return limitRule as z.ZodType<Rule>;
  if (has(value, 'readOnly')) return readOnlyRule as z.ZodType<Rule>;
  return 'expected one of: deny, limit, readOnly (with an optional message)';
});

export const policyDocumentSchema = z.strictObject({
  name,
  description: z.string().max(500).optional(),
  connections: z.array(name, required('a list of connection names')).min(1).max(MAX_LIST),
  /** Who it applies to; absent: everyone on those connections. */
  groups: z.array(z.string().min(1).max(200)).min(1).max(MAX_LIST).optional(),
  mode: z.enum(['enforce', 'observe']).default('enforce'),
  rules: z.array(ruleSchema, required('a list of rules')).min(1).max(MAX_LIST),
});

export type PolicyDocument = z.output<typeof policyDocumentSchema>;
export type PolicyRule = PolicyDocument['rules'][number];

/** One thing wrong with a document, at the path of the field (`rules[0].deny`). */
export interface PolicyProblem {
  path: string;
  message: string;
}

/** What a document may name: checked after the shape, so typos in names are caught too. */
export interface KnownNames {
  connections: ReadonlySet<string>;
  /** Whether a group name is one pgward knows (a pgward group, or `provider:group`). */
  isGroup(name: string): boolean;
}

export type PolicyOutcome = { ok: true; document: PolicyDocument } | { ok: false; problems: PolicyProblem[] };

/** `rules[0].deny` from zod's path. */
export function pathOf(path: readonly PropertyKey[]): string {
  let out = '';
  for (const p of path) out += typeof p === 'number' ? `[${p}]` : out === '' ? String(p) : `.${String(p)}`;
  return out;
}

/** Validates a document (already read from YAML or JSON); `known` checks the names it uses. */
export function validatePolicy(input: unknown, known?: KnownNames): PolicyOutcome {
  const parsed = policyDocumentSchema.safeParse(input);
  if (!parsed.success) return { ok: false, problems: parsed.error.issues.map(problemOf) };
  const document = parsed.data;
  const problems: PolicyProblem[] = [];
  if (known) {
    document.connections.forEach((c, i) => {
      if (!known.connections.has(c))
        problems.push({ path: `connections[${i}]`, message: `no connection is named "${c}"` });
    });
    document.groups?.forEach((g, i) => {
      if (!known.isGroup(g)) problems.push({ path: `groups[${i}]`, message: `no group is named "${g}"` });
    });
  }
  const limits = document.rules.filter((r) => 'limit' in r).length;
  if (limits > 1) problems.push({ path: 'rules', message: 'at most one limit rule per policy' });
  return problems.length > 0 ? { ok: false, problems } : { ok: true, document };
}

/** A zod issue as a person reads it, at its field's path. */
function problemOf(issue: z.core.$ZodIssue): PolicyProblem {
  const path = pathOf(issue.path) || '(document)';
  if (issue.code === 'unrecognized_keys') {
    return { path, message: `unknown field${issue.keys.length > 1 ? 's' : ''} ${issue.keys.join(', ')}` };
  }
  return { path, message: issue.message };
}

/** Reads a document's text (YAML, of which JSON is a subset); problems for bad syntax too. */
export function readPolicyText(text: string, known?: KnownNames): PolicyOutcome {
  if (Buffer.byteLength(text) > MAX_POLICY_BYTES) {
    return {
      ok: false,
      problems: [{ path: '(document)', message: `longer than ${MAX_POLICY_BYTES} bytes` }],
    };
  }
  let data: unknown;
  try {
    data = parseYaml(text, { maxAliasCount: 50 });
  } catch (err) {
    return { ok: false, problems: [{ path: '(document)', message: (err as Error).message.split('\n')[0]! }] };
  }
  return validatePolicy(data, known);
}

/** A short name for a rule, as refusals, the audit and `policy test` show it. */
export function describeRule(rule: PolicyRule): string {
  if ('readOnly' in rule) return 'readOnly';
  if ('limit' in rule) return `limit rows ${rule.limit.rows}`;
  const d = rule.deny;
  if (typeof d === 'string') return `deny ${d}`;
  if (Array.isArray(d)) return `deny ${d.join(', ')}`;
  if ('functions' in d) return `deny functions ${d.functions.join(', ')}`;
  return `deny ${d.access === 'any' ? '' : `${d.access} of `}tables ${d.tables.join(', ')}`;
}
