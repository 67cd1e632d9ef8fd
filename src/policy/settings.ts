/**
 * The run-time settings a statement changes: SET, RESET, SET TRANSACTION, SET SESSION
 * CHARACTERISTICS, and the SET clauses of CREATE/ALTER FUNCTION (applied whenever the function
 * runs, also while PostgreSQL compiles its body).
 */
import type { SettingChange } from './classification.js';
import type { PgNode } from './sql_parser.js';
import { constText } from './tree_walk.js';

const TRANSACTION_OPTIONS = new Set([
  'transaction_isolation',
  'transaction_read_only',
  'transaction_deferrable',
]);

/** The settings a VariableSetStmt node changes. */
export function settingsOf(node: PgNode): SettingChange[] {
  const kind = node['kind'];
  const name = String(node['name'] ?? '').toLowerCase();
  const args = (node['args'] as unknown[] | undefined) ?? [];
  if (kind === 'VAR_SET_MULTI') {
    // SET TRANSACTION ... / SET SESSION CHARACTERISTICS AS TRANSACTION ...
    const session = name === 'session characteristics';
    const out: SettingChange[] = [];
    for (const a of args) {
      const d = (a as PgNode)['DefElem'] as PgNode | undefined;
      const option = String(d?.['defname'] ?? '');
      if (!TRANSACTION_OPTIONS.has(option)) continue;
      const value = option === 'transaction_isolation' ? (constText(d?.['arg']) ?? null) : onOff(d?.['arg']);
      out.push({ name: session ? `default_${option}` : option, via: 'set', value });
    }
    return out;
  }
  if (kind === 'VAR_RESET_ALL') return [{ name: 'all', via: 'reset', value: null }];
  if (kind === 'VAR_RESET' || kind === 'VAR_SET_DEFAULT') return [{ name, via: 'reset', value: null }];
  const values = args.map((a) => constText(a));
  const value = values.length > 0 && values.every((v) => v !== undefined) ? values.join(', ') : null;
  return [{ name, via: 'set', value }];
}

/** SET clauses among CREATE FUNCTION options or ALTER FUNCTION actions. */
export function functionSettings(list: unknown): SettingChange[] {
  if (!Array.isArray(list)) return [];
  const out: SettingChange[] = [];
  for (const item of list) {
    const d = (item as PgNode)['DefElem'] as PgNode | undefined;
    const set = (d?.['defname'] === 'set' ? (d['arg'] as PgNode | undefined) : undefined)?.[
      'VariableSetStmt'
    ];
    if (set !== undefined) out.push(...settingsOf(set as PgNode));
  }
  return out;
}

function onOff(arg: unknown): string | null {
  const v = constText(arg);
  return v === undefined ? null : v === '0' ? 'off' : 'on';
}

/** BEGIN / START TRANSACTION / SET TRANSACTION options: READ WRITE is transaction_read_only = 0. */
export function readWriteOption(options: unknown): boolean {
  if (!Array.isArray(options)) return false;
  return options.some((o) => {
    const d = (o as PgNode)['DefElem'] as PgNode | undefined;
    return d?.['defname'] === 'transaction_read_only' && constText(d['arg']) === '0';
  });
}
