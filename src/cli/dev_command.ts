/** Handler of `pgward dev`. */
import { nextSteps, startDevStack } from '../dev/dev_stack.js';
import { createLogger } from '../log/logger.js';
import { shutdown, untilSignal } from './signals.js';

export async function runDev(opts: {
  dataDir: string;
  httpPort: number;
  pgPort: number;
  idpPort: number;
  logLevel: string;
}): Promise<void> {
  const log = createLogger({ level: opts.logLevel });
  const started = Date.now();
  const stack = await startDevStack({ ...opts, log });
  log.info({ ms: Date.now() - started }, 'dev stack ready');
  process.stdout.write(nextSteps(stack.info));
  const signal = await untilSignal();
  const seconds = stack.config.shutdownSeconds;
  log.info({ signal, deadlineSeconds: seconds }, 'shutting down');
  await shutdown({
    seconds,
    close: () => stack.close(),
    lastly: () => void stack.gateway.audit.spoolNow(),
    log,
  });
}
