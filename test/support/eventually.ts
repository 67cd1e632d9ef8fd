/** Polling with a deadline, instead of sleeping a fixed time and hoping. */
import assert from 'node:assert/strict';

export interface PollOptions {
  /** How often to ask (default 100 ms). */
  everyMs?: number;
  /**
   * A probe that throws is asked again (a server still starting, a store still down); the last
   * error is named if the deadline passes. By default a throw fails at once.
   */
  retryErrors?: boolean;
}

/** Calls `probe` every 100 ms until it returns a value; fails the test after `ms`. */
export async function eventually<T>(
  probe: () => Promise<T | undefined> | T | undefined,
  what: string,
  ms = 10_000,
  opts: PollOptions = {},
): Promise<T> {
  const deadline = Date.now() + ms;
  let last: unknown;
  for (;;) {
    try {
      const value = await probe();
      if (value !== undefined) return value;
    } catch (err) {
      if (!opts.retryErrors) throw err;
      last = err;
    }
    if (Date.now() > deadline) {
      assert.fail(
        `timed out waiting for ${what} (${ms} ms)${last ? `; last error: ${(last as Error).message}` : ''}`,
      );
    }
    await new Promise((resolve) => setTimeout(resolve, opts.everyMs ?? 100));
  }
}

/** Runs `check` until it passes (an assertion that holds within moments), naming its last failure. */
export async function passesSoon(check: () => Promise<unknown>, what: string, ms = 10_000): Promise<void> {
  await eventually(
    async () => {
      await check();
      return true;
    },
    what,
    ms,
    { retryErrors: true },
  );
}
