/** Polling with a deadline, instead of sleeping a fixed time and hoping. */
import assert from 'node:assert/strict';

/** Calls `probe` every 100 ms until it returns a value; fails the test after `ms`. */
export async function eventually<T>(
  probe: () => Promise<T | undefined>,
  what: string,
  ms = 10_000,
): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}
