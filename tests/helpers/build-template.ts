import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import pg from 'pg';
import { Redis } from 'ioredis';
import { loadMigrations, migrate } from '../../src/db/migrate.js';
import { projectRoot } from '../../src/db/project-root.js';
import { databaseUrl, TEMPLATE_ENV, TEST_PG_ADMIN_URL, TEST_REDIS_URL } from './env.js';

/**
 * Builds one migrated template database (named by a hash of the migrations, so reruns reuse it)
 * that every test file clones into a fresh database of its own. Run by global-setup.mjs through
 * tsx (Jest's global setup cannot load our ESM TypeScript); prints the template's name.
 */
async function buildTemplate(): Promise<string> {
  const redis = new Redis(TEST_REDIS_URL, { lazyConnect: true, maxRetriesPerRequest: 1, retryStrategy: () => null });
  try {
    await redis.connect();
    await redis.ping();
  } catch (err) {
    throw new Error(`tests need Redis at ${TEST_REDIS_URL} (set TEST_REDIS_URL): ${(err as Error).message}`);
  } finally {
    redis.disconnect();
  }

  const migrations = await loadMigrations();
  const shim = await readFile(`${projectRoot()}/src/db/supabase-shim.sql`, 'utf8');
  const hash = createHash('sha256').update(shim).update(migrations.map((m) => m.checksum).join()).digest('hex').slice(0, 12);
  const template = `pruuf_tpl_${hash}`;

  const admin = new pg.Client({ connectionString: TEST_PG_ADMIN_URL });
  try {
    await admin.connect();
  } catch (err) {
    throw new Error(`tests need PostgreSQL at ${TEST_PG_ADMIN_URL} (set TEST_PG_ADMIN_URL): ${(err as Error).message}`);
  }
  try {
    const exists = await admin.query('select 1 from pg_database where datname = $1', [template]);
    if (exists.rowCount === 1) return template;
    const building = `${template}_build_${process.pid}`;
    await admin.query(`drop database if exists ${building}`);
    await admin.query(`create database ${building}`);
    const pool = new pg.Pool({ connectionString: databaseUrl(building), max: 2 });
    try {
      await migrate(pool, { queueBackend: 'postgres' });
    } finally {
      await pool.end();
    }
    try {
      await admin.query(`alter database ${building} rename to ${template}`);
    } catch {
      // Another run built the same template meanwhile.
      await admin.query(`drop database if exists ${building}`);
    }
    return template;
  } finally {
    await admin.end();
  }
}

process.stdout.write(`${TEMPLATE_ENV}=${await buildTemplate()}\n`);
