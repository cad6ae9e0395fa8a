import { mkdtemp, readdir, copyFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from '@jest/globals';
import { loadMigrations, migrate, migrationsDir } from '../../src/db/migrate.js';
import { createTestDatabase, type TestDatabase } from '../helpers/db.js';

describe('the migration runner', () => {
  let db: TestDatabase | undefined;
  afterEach(async () => {
    await db?.drop();
    db = undefined;
  });

  it('applies every migration once, in order, and nothing on a second run', async () => {
    db = await createTestDatabase({ empty: true });
    const files = await loadMigrations();
    const first = await migrate(db.pool);
    expect(first.applied).toEqual(files.map((m) => `${m.version}_${m.name}`));
    const second = await migrate(db.pool);
    expect(second.applied).toEqual([]);
    const { rows } = await db.pool.query('select version from pruuf_migrations order by version');
    expect(rows.map((r) => r.version)).toEqual(files.map((m) => m.version));
  });

  it('is safe when several processes start at once', async () => {
    db = await createTestDatabase({ empty: true });
    const results = await Promise.all(Array.from({ length: 5 }, () => migrate(db!.pool)));
    const applied = results.flatMap((r) => r.applied);
    const files = await loadMigrations();
    expect(applied.sort()).toEqual(files.map((m) => `${m.version}_${m.name}`).sort());
    const { rows } = await db.pool.query('select count(*)::int as n from pruuf_migrations');
    expect(rows[0].n).toBe(files.length);
  });

  it('provides the Supabase auth schema and roles only where missing, keeping an existing auth.uid()', async () => {
    db = await createTestDatabase({ empty: true });
    await db.pool.query(`create schema auth; create function auth.uid() returns uuid language sql stable as $$ select '22222222-2222-4222-8222-222222222222'::uuid $$`);
    await migrate(db.pool);
    const { rows } = await db.pool.query('select auth.uid()::text as uid');
    expect(rows[0].uid).toBe('22222222-2222-4222-8222-222222222222');
    const roles = await db.pool.query(`select rolname from pg_roles where rolname in ('anon', 'authenticated', 'service_role') order by 1`);
    expect(roles.rows.map((r) => r.rolname)).toEqual(['anon', 'authenticated', 'service_role']);
  });

  it('refuses to run when an applied migration was edited afterwards', async () => {
    db = await createTestDatabase({ empty: true });
    const dir = await mkdtemp(path.join(tmpdir(), 'pruuf-mig-'));
    for (const f of await readdir(migrationsDir())) await copyFile(path.join(migrationsDir(), f), path.join(dir, f));
    await migrate(db.pool, { dir });
    const [first] = (await readdir(dir)).sort();
    await writeFile(path.join(dir, first!), '-- edited\nselect 1;\n', { flag: 'a' });
    await expect(migrate(db.pool, { dir })).rejects.toThrow(/was changed after it was applied/);
  });

  it('rolls a failing migration back entirely and records nothing for it', async () => {
    db = await createTestDatabase({ empty: true });
    const dir = await mkdtemp(path.join(tmpdir(), 'pruuf-mig-'));
    for (const f of await readdir(migrationsDir())) await copyFile(path.join(migrationsDir(), f), path.join(dir, f));
    await writeFile(path.join(dir, '29991231000000_broken.sql'), 'create table half_done (id int);\nselect * from no_such_table;\n');
    await expect(migrate(db.pool, { dir })).rejects.toThrow(/29991231000000_broken failed/);
    const { rows } = await db.pool.query(`select to_regclass('public.half_done') as t, (select count(*)::int from pruuf_migrations where version = '29991231000000') as n`);
    expect(rows[0]).toEqual({ t: null, n: 0 });
  });

  it('creates the BullMQ schema when the queue runs on PostgreSQL', async () => {
    db = await createTestDatabase({ empty: true });
    await migrate(db.pool, { queueBackend: 'postgres' });
    const { rows } = await db.pool.query(`select count(*)::int as n from information_schema.tables where table_schema = 'bullmq'`);
    expect(rows[0].n).toBeGreaterThan(0);
  });
});
