import { PgwardError } from '../errors.js';

/** A SQL string literal (standard_conforming_strings on): quotes doubled, NUL refused. */
export function quoteLiteral(value: string): string {
  if (value.includes('\0')) throw new PgwardError('BAD_REQUEST', 'NUL is not allowed in SQL strings');
  return `'${value.replace(/'/g, "''")}'`;
}
