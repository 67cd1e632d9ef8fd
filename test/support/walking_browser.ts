/**
 * A stand-in for the person's browser, for `BROWSER=... pgward login --browser`: it is started
 * with the sign-in URL, walks the gateway's and the dev IdP's real pages (IdpPageWalker) as
 * PGWARD_TEST_EMAIL, and so ends at the CLI's loopback listener. Failures go to
 * PGWARD_TEST_BROWSER_LOG, since the CLI does not watch its browser's output.
 */
import { appendFileSync } from 'node:fs';
import { IdpPageWalker } from '../../src/dev/dev_login.js';

const [url] = process.argv.slice(2);
try {
  await new IdpPageWalker(process.env['PGWARD_TEST_IDP']!).walk(
    url!,
    { email: process.env['PGWARD_TEST_EMAIL']!, password: 'password' },
    () => false,
  );
} catch (err) {
  appendFileSync(process.env['PGWARD_TEST_BROWSER_LOG']!, `${(err as Error).stack}\n`);
  process.exitCode = 1;
}
