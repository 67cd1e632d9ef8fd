/** How the CLI prints rows: aligned text tables for people, JSON or CSV for scripts. */

export type Format = 'table' | 'json' | 'csv';

function text(value: unknown): string {
  if (value === null || value === undefined) return '';
  if (value instanceof Date) return value.toISOString();
  if (typeof value === 'object') return JSON.stringify(value);
  return String(value);
}

function csvField(value: unknown): string {
  const s = text(value);
  return /[",\r\n]/.test(s) ? `"${s.replaceAll('"', '""')}"` : s;
}

/** Renders rows with the given columns (default: the keys of the first row). */
export function render(rows: Record<string, unknown>[], format: Format, columns?: string[]): string {
  if (format === 'json') return `${JSON.stringify(rows, null, 2)}\n`;
  const cols = columns ?? Object.keys(rows[0] ?? {});
  if (format === 'csv') {
    return `${[cols.map(csvField).join(','), ...rows.map((r) => cols.map((c) => csvField(r[c])).join(','))].join('\n')}\n`;
  }
  const cells = rows.map((r) => cols.map((c) => text(r[c]).replace(/\s+/g, ' ')));
  const widths = cols.map((c, i) => Math.max(c.length, ...cells.map((row) => row[i]!.length)));
  const line = (values: string[]) =>
    values
      .map((v, i) => v.padEnd(widths[i]!))
      .join('  ')
      .trimEnd();
  return `${[line(cols), line(widths.map((w) => '-'.repeat(w))), ...cells.map(line)].join('\n')}\n(${rows.length} row${rows.length === 1 ? '' : 's'})\n`;
}
