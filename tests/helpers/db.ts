import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { databaseUrl, TEMPLATE_ENV, TEST_PG_ADMIN_URL } from './env.js';

export type TestDatabase = { name: string; url: string; pool: pg.Pool; drop: () => Promise<void> };

async function admin<T>(fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const c = new pg.Client({ connectionString: TEST_PG_ADMIN_URL });
  await c.connect();
  try {
    return await fn(c);
  } finally {
    await c.end();
  }
}

/** A fresh database for one test file: cloned from the migrated template, or empty when asked. */
export async function createTestDatabase(opts: { empty?: boolean } = {}): Promise<TestDatabase> {
  const template = process.env[TEMPLATE_ENV];
  if (template === undefined && opts.empty !== true) throw new Error('global setup did not build a template database');
  const name = `pruuf_t_${randomBytes(6).toString('hex')}`;
  await admin((c) => c.query(opts.empty === true ? `create database ${name}` : `create database ${name} template ${template}`));
  const url = databaseUrl(name);
  const pool = new pg.Pool({ connectionString: url, max: 5 });
  pool.on('error', () => undefined);
  return {
    name,
    url,
    pool,
    drop: async () => {
      await pool.end().catch(() => undefined);
      await admin((c) => c.query(`drop database if exists ${name} with (force)`));
    },
  };
}

/**
 * Runs `fn` as one of Supabase's client roles (`anon`, `authenticated`) with the given user's claims
 * (none when `sub` is null), then rolls back.
 */
export async function asRole<T>(pool: pg.Pool, role: 'anon' | 'authenticated', sub: string | null, fn: (c: pg.PoolClient) => Promise<T>): Promise<T> {
  const c = await pool.connect();
  try {
    await c.query('begin');
    await c.query(`set local role ${role}`);
    const claims = sub === null ? { role } : { sub, role };
    await c.query(`select set_config('request.jwt.claims', $1, true)`, [JSON.stringify(claims)]);
    return await fn(c);
  } finally {
    await c.query('rollback');
    c.release();
  }
}

/** Runs `fn` as Supabase's `authenticated` role with the given user's claims, then rolls back. */
export async function asUser<T>(pool: pg.Pool, sub: string, fn: (c: pg.PoolClient) => Promise<T>): Promise<T> {
  return asRole(pool, 'authenticated', sub, fn);
}
