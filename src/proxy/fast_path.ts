/**
 * The fast-path FunctionCall message (protocol section "Function Call") names a function by OID
 * and runs it outside SQL, so no statement text shows what it does. pgward lets through only
 * the large-object functions that drivers call this way (pgjdbc's LargeObject API, libpq's
 * lo_* functions), each recorded by name; any other OID is refused with a message that says
 * to call the function in a query, where it is parsed and judged like any statement.
 * OIDs are PostgreSQL's fixed catalog OIDs (pg_proc.dat), the same on every version since 9.x.
 */

export interface FastPathFunction {
  name: string;
  /** Changes data (a read-only session may not call it). */
  writes: boolean;
}

const FUNCTIONS: ReadonlyMap<number, FastPathFunction> = new Map([
  [715, { name: 'lo_create', writes: true }],
  [952, { name: 'lo_open', writes: false }],
  [953, { name: 'lo_close', writes: false }],
  [954, { name: 'loread', writes: false }],
  [955, { name: 'lowrite', writes: true }],
  [956, { name: 'lo_lseek', writes: false }],
  [957, { name: 'lo_creat', writes: true }],
  [958, { name: 'lo_tell', writes: false }],
  [964, { name: 'lo_unlink', writes: true }],
  [1004, { name: 'lo_truncate', writes: true }],
  [3170, { name: 'lo_lseek64', writes: false }],
  [3171, { name: 'lo_tell64', writes: false }],
  [3172, { name: 'lo_truncate64', writes: true }],
]);

/** The function a FunctionCall may run, or undefined when pgward refuses it. */
export function fastPathFunction(oid: number): FastPathFunction | undefined {
  return FUNCTIONS.get(oid);
}

/** How a FunctionCall is recorded: the function's name (when known) and OID, never its arguments. */
export function fastPathText(oid: number): string {
  const known = FUNCTIONS.get(oid);
  return known ? `FunctionCall ${known.name} (OID ${oid})` : `FunctionCall of OID ${oid}`;
}
