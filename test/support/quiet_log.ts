import { createLogger } from '../../src/log/logger.js';

/** A logger for tests: silent unless PGWARD_TEST_LOG names a level. */
export const quietLog = createLogger({ level: process.env['PGWARD_TEST_LOG'] ?? 'silent', pretty: false });
