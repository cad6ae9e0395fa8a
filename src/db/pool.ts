import pg from 'pg';
import type { Logger } from '../observability/logger.js';

export type Pool = pg.Pool;
export type PoolClient = pg.PoolClient;
export type Queryable = Pick<pg.Pool, 'query'> | pg.PoolClient;

// timestamptz, bigint and numeric come back as Date / string by default; keep bigint counts as numbers.
pg.types.setTypeParser(pg.types.builtins.INT8, (v) => Number(v));

/**
 * A hot statement (issue 19: the deliveries' reads and records, run thousands of times a minute in
 * a burst) as a named prepared statement: each connection has the server parse and plan it once,
 * instead of every time (PostgreSQL CPU per `markSentMany`: 250 → 95 µs). The text must be fixed
 * for its name. Needs session-level connections, as the advisory locks and LISTEN here already do
 * (not a transaction-mode pooler).
 */
export function prepared(name: string, text: string, values: unknown[]): pg.QueryConfig {
  return { name, text, values };
}

export function createPool(connectionString: string, max: number, log?: Logger): pg.Pool {
  const pool = new pg.Pool({
    connectionString,
    max,
    // Fail fast when the database is unreachable so the API answers 503 instead of hanging.
    connectionTimeoutMillis: 5000,
    idleTimeoutMillis: 30000,
    keepAlive: true,
    application_name: 'pruuf',
  });
  survivesRestarts(pool, log, 'database');
  return pool;
}

/**
 * A database restart must not crash the process. The pool listens for errors on its idle
 * clients only; a client checked out but between two queries (inside a transaction while the
 * code awaits something else, holding an advisory lock, LISTENing) gets the server's "terminating
 * connection" as an 'error' event with no listener, which kills the process. Every client gets a
 * listener when it connects; its next query then fails like any other, and the pool discards it
 * on release because it is no longer queryable.
 */
export function survivesRestarts(pool: pg.Pool, log: Logger | undefined, what: string): void {
  pool.on('error', (err) => log?.warn({ err: { message: err.message } }, `idle ${what} client error`));
  pool.on('connect', (client) => {
    client.on('error', (err) => log?.warn({ err: { message: err.message } }, `${what} connection lost while checked out`));
  });
}

export async function withTransaction<T>(pool: pg.Pool, fn: (client: pg.PoolClient) => Promise<T>): Promise<T> {
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    const result = await fn(client);
    await client.query('COMMIT');
    return result;
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw err;
  } finally {
    client.release();
  }
}

const CONNECTION_ERROR_CODES = new Set([
  'ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'ENOTFOUND', 'EAI_AGAIN',
  '57P01', // admin_shutdown
  '57P02', // crash_shutdown
  '57P03', // cannot_connect_now
  '08000', '08003', '08006', '08001', '08004',
]);

/** True when the error means "the database is unreachable right now", not "the query is wrong". */
export function isDatabaseUnavailable(err: unknown): boolean {
  if (typeof err !== 'object' || err === null) return false;
  const e = err as { code?: string; message?: string };
  if (e.code !== undefined && CONNECTION_ERROR_CODES.has(e.code)) return true;
  const m = e.message ?? '';
  return /timeout exceeded when trying to connect|Connection terminated|connect ECONNREFUSED|Client has encountered a connection error/i.test(m);
}
