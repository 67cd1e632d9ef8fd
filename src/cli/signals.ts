/** Shutdown on a signal: orderly first, with a deadline, and at once on a second signal. */
import type { Logger } from '../log/logger.js';

/** The handler of a second signal that untilSignal() installs and shutdown() replaces. */
let second: ((signal: NodeJS.Signals) => void) | undefined;

/** Resolves on the first SIGINT or SIGTERM (the next one is shutdown()'s). */
export function untilSignal(): Promise<NodeJS.Signals> {
  return new Promise((resolve) => {
    const onSignal = (signal: NodeJS.Signals) => {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
      // Until shutdown() takes over, a second signal still ends the process.
      second = (again: NodeJS.Signals) => process.exit(again === 'SIGINT' ? 130 : 143);
      process.once('SIGINT', second);
      process.once('SIGTERM', second);
      resolve(signal);
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
  });
}

/**
 * Runs the orderly `close` within `seconds`. When the deadline passes, or a second SIGINT or
 * SIGTERM arrives, `lastly` runs (synchronously: it spools the audit) and the process exits at
 * once, whatever the store, the targets or the IdP are doing: an orchestrator's kill after its
 * grace period would lose more. Exit codes: 0 after an orderly close, 1 after the deadline, 130
 * or 143 after a second signal.
 */
export async function shutdown(opts: {
  seconds: number;
  close: () => Promise<void>;
  lastly: () => void;
  log: Logger;
}): Promise<void> {
  const { log } = opts;
  const now = (code: number, why: string) => {
    log.error({ seconds: opts.seconds }, why);
    try {
      opts.lastly();
    } finally {
      process.exit(code);
    }
  };
  if (second) for (const signal of ['SIGINT', 'SIGTERM'] as const) process.off(signal, second);
  process.once('SIGINT', () => now(130, 'second signal: exiting now'));
  process.once('SIGTERM', () => now(143, 'second signal: exiting now'));
  const deadline = setTimeout(
    () => now(1, 'shutdown did not finish within shutdownSeconds: exiting now'),
    opts.seconds * 1000,
  );
  try {
    await opts.close();
  } finally {
    clearTimeout(deadline);
  }
  log.info('stopped');
  // Whatever handle is left (a stalled socket, a timer) does not keep the process up.
  setTimeout(() => process.exit(), 1_000).unref();
}
