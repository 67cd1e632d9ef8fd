/** Handler of `pgward serve`: the production gateway. */
import { loadConfig } from '../config/load.js';
import { redactConfig } from '../config/redact.js';
import { startGateway } from '../gateway.js';
import { createLogger } from '../log/logger.js';
import { shutdown, untilSignal } from './signals.js';

export async function runServe(opts: { config?: string }): Promise<void> {
  const config = loadConfig({ file: opts.config });
  const log = createLogger({ level: config.log.level });
  log.info({ config: redactConfig(config) }, 'configuration');
  if (config.providers.length === 0) log.warn('no identity provider is configured: nobody can sign in');
  const gateway = await startGateway({ config, log });
  const signal = await untilSignal();
  log.info({ signal, deadlineSeconds: config.shutdownSeconds }, 'shutting down');
  await shutdown({
    seconds: config.shutdownSeconds,
    close: () => gateway.close(),
    lastly: () => void gateway.audit.spoolNow(),
    log,
  });
}
