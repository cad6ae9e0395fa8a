import { createHash } from 'node:crypto';
import { readFile, readdir } from 'node:fs/promises';
import path from 'node:path';
import type pg from 'pg';
import { runMigrations as runQueueMigrations } from 'bullmq';
import type { Logger } from '../observability/logger.js';
import { projectRoot } from './project-root.js';

/**
 * Applies supabase/migrations/<timestamp>_<name>.sql in order, each once, recorded in a ledger.
 * A session advisory lock serialises processes that start at the same moment; a migration and
 * its ledger row commit together.
 */

const LOCK_KEY = 7_301_117_001; // arbitrary, fixed: "pruuf migrations"
const FILE_PATTERN = /^(\d{14})_([a-z0-9_]+)\.sql$/;

export type Migration = { version: string; name: string; sql: string; checksum: string };

export function migrationsDir(): string {
  return path.join(projectRoot(), 'supabase', 'migrations');
}

export async function loadMigrations(dir = migrationsDir()): Promise<Migration[]> {
  const files = (await readdir(dir)).filter((f) => f.endsWith('.sql')).sort();
  return Promise.all(
    files.map(async (file) => {
      const match = FILE_PATTERN.exec(file);
      if (match === null) throw new Error(`migration file name must be <14-digit timestamp>_<snake_name>.sql: ${file}`);
      const sql = await readFile(path.join(dir, file), 'utf8');
      return { version: match[1]!, name: match[2]!, sql, checksum: createHash('sha256').update(sql).digest('hex') };
    }),
  );
}

export type MigrateOptions = { queueBackend?: 'redis' | 'postgres'; log?: Logger; dir?: string };

export async function migrate(pool: pg.Pool, opts: MigrateOptions = {}): Promise<{ applied: string[] }> {
  const migrations = await loadMigrations(opts.dir);
  const shim = await readFile(path.join(projectRoot(), 'src', 'db', 'supabase-shim.sql'), 'utf8');
  const client = await pool.connect();
  const applied: string[] = [];
  try {
    await client.query('select pg_advisory_lock($1)', [LOCK_KEY]);
    try {
      await client.query(shim);
      await client.query(`create table if not exists public.pruuf_migrations (
        version text primary key,
        name text not null,
        checksum text not null,
        applied_at timestamptz not null default now()
      )`);
      // On Supabase every public table is reachable through PostgREST: the ledger too gets RLS (no policies: no access).
      await client.query('alter table public.pruuf_migrations enable row level security');
      const { rows } = await client.query<{ version: string; checksum: string }>('select version, checksum from public.pruuf_migrations');
      const done = new Map(rows.map((r) => [r.version, r.checksum]));
      for (const m of migrations) {
        const prior = done.get(m.version);
        if (prior !== undefined) {
          if (prior !== m.checksum) {
            throw new Error(`migration ${m.version}_${m.name} was changed after it was applied; add a new migration instead`);
          }
          continue;
        }
        await client.query('begin');
        try {
          await client.query(m.sql);
          await client.query('insert into public.pruuf_migrations (version, name, checksum) values ($1, $2, $3)', [m.version, m.name, m.checksum]);
          await client.query('commit');
        } catch (err) {
          await client.query('rollback');
          throw new Error(`migration ${m.version}_${m.name} failed: ${(err as Error).message}`, { cause: err });
        }
        applied.push(`${m.version}_${m.name}`);
        opts.log?.info({ migration: `${m.version}_${m.name}` }, 'migration applied');
      }
    } finally {
      await client.query('select pg_advisory_unlock($1)', [LOCK_KEY]).catch(() => undefined);
    }
    if (opts.queueBackend === 'postgres') {
      // BullMQ's own schema for its PostgreSQL backend: explicit, idempotent, advisory-locked.
      await runQueueMigrations(client);
    }
  } finally {
    client.release();
  }
  return { applied };
}

/** For readiness: every migration file is recorded in the ledger. */
export async function pendingMigrations(pool: pg.Pool, migrations: Migration[]): Promise<string[]> {
  const { rows } = await pool.query<{ version: string }>(
    `select version from public.pruuf_migrations where version = any($1::text[])`,
    [migrations.map((m) => m.version)],
  );
  const done = new Set(rows.map((r) => r.version));
  return migrations.filter((m) => !done.has(m.version)).map((m) => `${m.version}_${m.name}`);
}
