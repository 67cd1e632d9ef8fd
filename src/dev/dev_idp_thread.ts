/**
 * Runs the dev IdP in a worker thread of the dev stack's process. oidc-provider turns on
 * AsyncLocalStorage, whose async hooks then tax every socket write and promise of the thread
 * they run in; kept in its own thread, the gateway's hot path pays nothing for the dev IdP and
 * measures as it would in production.
 */
import { Worker } from 'node:worker_threads';
import type { DevIdp } from './dev_idp.js';

export interface DevIdpThreadOptions {
  dir: string;
  host: string;
  port: number;
  redirectUris: string[];
  /** The store, for the IdP's sessions and grants. */
  storeUrl: string;
  logLevel: string;
}

/** Starts the dev IdP in a worker thread; resolves once it listens. */
export function startDevIdpThread(opts: DevIdpThreadOptions): Promise<DevIdp> {
  const worker = new Worker(new URL('./dev_idp_worker.js', import.meta.url), { workerData: opts });
  return new Promise((resolve, reject) => {
    worker.once('error', reject);
    worker.once('exit', (code) => reject(new Error(`the dev IdP thread exited (${code})`)));
    worker.once('message', (message: { ready?: string; error?: string }) => {
      if (message.error !== undefined) {
        reject(new Error(message.error));
        return;
      }
      worker.removeAllListeners('exit');
      // Closing twice (a test stops the IdP, then the whole stack) waits for the same exit.
      let closed: Promise<void> | undefined;
      resolve({
        issuer: message.ready!,
        close: () => {
          closed ??= new Promise<void>((done) => {
            worker.once('exit', () => done());
            worker.postMessage('close');
          });
          return closed;
        },
      });
    });
  });
}
