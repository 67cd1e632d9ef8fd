/**
 * Export of a whole result, streamed: the statement runs again on its own session through the
 * gateway (audited like any other), inside a READ ONLY transaction so that exporting can never
 * write twice, and its rows are read through a portal a page at a time and written out as they
 * come, with the response's backpressure. Nothing of the result is held beyond one page.
 */
import { Readable } from 'node:stream';
import type pg from 'pg';
import Cursor from 'pg-cursor';
import { type SqlError, sqlError } from './query_bridge.js';

export type ExportFormat = 'csv' | 'json';

const PAGE_ROWS = 2_000;
const TEXT_TYPES = { getTypeParser: () => (value: string) => value };

/** RFC 4180: quoted when it holds a comma, quote, CR or LF; NULL is an empty field. */
export function csvField(value: string | null): string {
  if (value === null) return '';
  return /[",\r\n]/.test(value) ? `"${value.replaceAll('"', '""')}"` : value;
}

/**
 * Starts the export on `client` (a fresh session, which this ends) and answers the first page's
 * error, if any, before a byte is sent; else a stream of the whole result.
 */
export async function exportResult(
  client: pg.Client,
  sql: string,
  format: ExportFormat,
  timeoutSeconds: number,
): Promise<Readable | { error: SqlError }> {
  const end = () => client.end().catch(() => undefined);
  let cursor: Cursor<(string | null)[]>;
  let first: (string | null)[][];
  let names: string[];
  try {
    await client.query('BEGIN READ ONLY');
    await client.query(`SET LOCAL statement_timeout = ${Math.trunc(timeoutSeconds) * 1000}`);
    cursor = client.query(
      new Cursor<(string | null)[]>(sql, undefined, { rowMode: 'array', types: TEXT_TYPES }),
    );
    first = await cursor.read(PAGE_ROWS);
    const fields = (cursor as unknown as { _result: pg.QueryResult })._result.fields ?? [];
    names = fields.map((f) => f.name);
  } catch (err) {
    await end();
    return { error: sqlError(err) };
  }
  async function* lines(): AsyncGenerator<string> {
    try {
      if (format === 'csv') yield `${names.map(csvField).join(',')}\r\n`;
      else yield '[';
      let rows = first;
      let n = 0;
      for (;;) {
        if (rows.length > 0) {
          const out: string[] = [];
          for (const row of rows) {
            if (format === 'csv') out.push(`${row.map(csvField).join(',')}\r\n`);
            else {
              const obj: Record<string, string | null> = {};
              names.forEach((name, i) => {
                obj[name] = row[i] ?? null;
              });
              out.push(`${n++ === 0 ? '' : ','}\n${JSON.stringify(obj)}`);
            }
          }
          yield out.join('');
        }
        if (rows.length < PAGE_ROWS) break;
        rows = await cursor.read(PAGE_ROWS);
      }
      if (format === 'json') yield '\n]\n';
      await cursor.close().catch(() => undefined);
      await client.query('ROLLBACK').catch(() => undefined);
    } finally {
      // Also when the browser goes away mid-way: the session ends, the target stops.
      await end();
    }
  }
  return Readable.from(lines());
}
