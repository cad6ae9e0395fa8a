// What the benches run against and how they read their options.
import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import pg from 'pg';
import { migrate } from '../../src/db/migrate.js';

export const PG_ADMIN_URL = process.env.TEST_PG_ADMIN_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
export const REDIS_URL = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';

/** `--name=value` from argv, else the default. */
export function arg(name: string, def: string): string {
  const hit = process.argv.find((a) => a.startsWith(`--${name}=`));
  return hit === undefined ? def : hit.slice(name.length + 3);
}
export const flag = (name: string): boolean => process.argv.includes(`--${name}`);
export function numberArg(name: string, def: number): number {
  const v = Number(arg(name, String(def)));
  if (!Number.isFinite(v) || v <= 0) throw new Error(`--${name} must be a positive number`);
  return v;
}

export type BenchDatabase = { name: string; url: string; pool: pg.Pool; drop: () => Promise<void> };

/** A fresh, migrated database on the local PostgreSQL; drop() removes it. */
export async function createBenchDatabase(queueBackend: 'redis' | 'postgres' = 'redis', poolMax = 4): Promise<BenchDatabase> {
  const name = `pruuf_bench_${randomBytes(4).toString('hex')}`;
  const adminClient = new pg.Client({ connectionString: PG_ADMIN_URL });
  await adminClient.connect();
  await adminClient.query(`create database ${name}`);
  const url = new URL(PG_ADMIN_URL);
  url.pathname = `/${name}`;
  const pool = new pg.Pool({ connectionString: url.toString(), max: poolMax });
  pool.on('error', () => undefined); // the database is dropped at the end
  const drop = async () => {
    await pool.end().catch(() => undefined);
    await adminClient.query(`drop database if exists ${name} with (force)`);
    await adminClient.end();
  };
  try {
    await migrate(pool, { queueBackend });
  } catch (err) {
    await drop();
    throw err;
  }
  return { name, url: url.toString(), pool, drop };
}

/** PostgreSQL's and Redis's versions, for the machine description in results. */
export async function serviceVersions(pool: pg.Pool, redis?: Redis): Promise<{ postgres: string; redis?: string }> {
  const { rows } = await pool.query<{ v: string }>("select current_setting('server_version') as v");
  const info = redis === undefined ? undefined : await redis.info('server');
  const redisVersion = info === undefined ? undefined : /redis_version:(\S+)/.exec(info)?.[1];
  return { postgres: rows[0]!.v, ...(redisVersion === undefined ? {} : { redis: redisVersion }) };
}

/** Removes every key under a queue prefix (what a bench's service left in Redis). */
export async function dropRedisPrefix(redis: Redis, prefix: string): Promise<void> {
  let cursor = '0';
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}:*`, 'COUNT', 1000);
    if (keys.length > 0) await redis.del(...keys);
    cursor = next;
  } while (cursor !== '0');
}
