/** Child process of the migration race test: migrates the store at argv[2], prints what it applied. */
import { migrate } from '../../src/store/migrate.js';
import { createPool } from '../../src/store/store.js';
import { quietLog } from './quiet_log.js';

const pool = createPool(process.argv[2]!);
try {
  const applied = await migrate(pool, quietLog);
  process.stdout.write(JSON.stringify(applied));
} finally {
  await pool.end();
}
