/** Entry point of the dev IdP thread (see dev_idp_thread.ts). */
import { parentPort, workerData } from 'node:worker_threads';
import { createLogger } from '../log/logger.js';
import { createPool } from '../store/store.js';
import { startDevIdp } from './dev_idp.js';
import type { DevIdpThreadOptions } from './dev_idp_thread.js';
import { storeAdapter } from './idp_store_adapter.js';

const opts = workerData as DevIdpThreadOptions;
const log = createLogger({ level: opts.logLevel });
const pool = createPool(opts.storeUrl, 4);
try {
  const idp = await startDevIdp({ ...opts, adapter: storeAdapter(pool), log });
  parentPort!.on('message', async (message) => {
    if (message !== 'close') return;
    await idp.close();
    await pool.end();
    parentPort!.close();
  });
  parentPort!.postMessage({ ready: idp.issuer });
} catch (err) {
  await pool.end();
  parentPort!.postMessage({ error: (err as Error).message });
}
