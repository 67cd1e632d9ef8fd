import type { Config } from './schema.js';

const REDACTED = '[redacted]';

/** Removes the password from a connection URL, keeping the rest readable. */
export function redactUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password) parsed.password = REDACTED;
    return parsed.toString();
  } catch {
    return REDACTED;
  }
}

/** The effective configuration with every secret replaced, safe to print or log. */
export function redactConfig(config: Config): unknown {
  return {
    ...config,
    databaseUrl: config.databaseUrl === undefined ? undefined : redactUrl(config.databaseUrl),
    secretKey: config.secretKey === undefined ? undefined : REDACTED,
    metrics: {
      ...config.metrics,
      bearerToken: config.metrics.bearerToken === undefined ? undefined : REDACTED,
    },
    providers: config.providers.map((p) => ({
      ...p,
      clientSecret: p.clientSecret === undefined ? undefined : REDACTED,
    })),
  };
}
