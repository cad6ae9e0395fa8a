// `npm run migrate`: apply pending migrations (the services also do this at start, under a lock).
import { loadConfig } from '../config.js';
import { migrate } from '../db/migrate.js';
import { createPool } from '../db/pool.js';
import { createLogger } from '../observability/logger.js';

const config = loadConfig();
if (config.DATABASE_URL === undefined) {
  process.stderr.write('DATABASE_URL is not set (the embedded database is migrated by npm start itself).\n');
  process.exit(1);
}
const log = createLogger(config.LOG_LEVEL);
const pool = createPool(config.DATABASE_URL, 2, log);
try {
  const { applied } = await migrate(pool, { queueBackend: config.queueBackend, log });
  process.stdout.write(applied.length === 0 ? 'up to date\n' : `applied: ${applied.join(', ')}\n`);
} finally {
  await pool.end();
}
