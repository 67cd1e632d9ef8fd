/**
 * The one logger: pino, JSON for machines, readable lines on a terminal. Known secret-bearing
 * fields are censored as a second line of defence; code must still never log a token or password.
 */
import { type Logger, pino } from 'pino';
import pretty from 'pino-pretty';

export type { Logger };

const SECRET_FIELDS = [
  'password',
  'token',
  'accessToken',
  'refreshToken',
  'idToken',
  'secret',
  'secretKey',
  'clientSecret',
  'authorization',
  'cookie',
];

/** Creates the process logger. `pretty` defaults to whether stdout is a terminal. */
export function createLogger(
  opts: { level?: string; pretty?: boolean; destination?: NodeJS.WritableStream } = {},
): Logger {
  const options = {
    level: opts.level ?? 'info',
    base: undefined,
    redact: {
      paths: [
        ...SECRET_FIELDS,
        ...SECRET_FIELDS.map((f) => `*.${f}`),
        'req.headers.authorization',
        'req.headers.cookie',
      ],
      censor: '[redacted]',
    },
  };
  const usePretty = opts.pretty ?? Boolean(process.stdout.isTTY);
  if (usePretty) {
    return pino(
      options,
      pretty({ colorize: true, translateTime: 'HH:MM:ss', ignore: 'pid,hostname', sync: true }),
    );
  }
  return opts.destination ? pino(options, opts.destination) : pino(options);
}
