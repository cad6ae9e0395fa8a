import type pg from 'pg';
import type { Config } from './config.js';
import { startEmbeddedPostgres } from './db/embedded.js';
import { loadMigrations, migrate, type Migration } from './db/migrate.js';
import { createPool } from './db/pool.js';
import type { Logger } from './observability/logger.js';
import { QueueSystem } from './queue/index.js';

/** What both process roles share: the database (embedded when no DATABASE_URL), migrations, queues. */
export type Runtime = {
  databaseUrl: string;
  pool: pg.Pool;
  queues: QueueSystem;
  migrations: Migration[];
  close: () => Promise<void>;
};

export async function openRuntime(config: Config, log: Logger): Promise<Runtime> {
  let stopEmbedded: (() => Promise<void>) | undefined;
  let databaseUrl = config.DATABASE_URL;
  if (databaseUrl === undefined) {
    const embedded = await startEmbeddedPostgres(config.DATA_DIR, config.EMBEDDED_PG_PORT, log);
    databaseUrl = embedded.url;
    stopEmbedded = embedded.stop;
  }
  const pool = createPool(databaseUrl, config.DATABASE_POOL_MAX, log);
  try {
    const { applied } = await migrate(pool, { queueBackend: config.queueBackend, log });
    log.info({ applied: applied.length, queue_backend: config.queueBackend }, 'database migrated');
  } catch (err) {
    await pool.end();
    await stopEmbedded?.();
    throw err;
  }
  const queues = new QueueSystem(
    { backend: config.queueBackend, redisUrl: config.REDIS_URL, databaseUrl, prefix: config.QUEUE_PREFIX },
    log,
  );
  return {
    databaseUrl,
    pool,
    queues,
    migrations: await loadMigrations(),
    close: async () => {
      await queues.close();
      await pool.end();
      await stopEmbedded?.();
    },
  };
}
