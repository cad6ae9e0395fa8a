import type pg from 'pg';

/**
 * A fingerprint of every table in the public schema: row count and a checksum of the rows, so a
 * test can say "this request changed nothing" without knowing which tables a route touches.
 */
export type DbSnapshot = Record<string, string>;

export async function snapshotQuery(pool: pg.Pool): Promise<string> {
  const { rows } = await pool.query<{ table_name: string }>(
    `select table_name from information_schema.tables where table_schema = 'public' and table_type = 'BASE TABLE' order by table_name`,
  );
  return rows
    .map((r) => `select '${r.table_name}' as t, count(*)::text || ':' || coalesce(md5(string_agg(md5(x::text), '' order by md5(x::text))), '') as v from public."${r.table_name}" x`)
    .join(' union all ');
}

export async function snapshot(pool: pg.Pool, query: string): Promise<DbSnapshot> {
  const { rows } = await pool.query<{ t: string; v: string }>(query);
  return Object.fromEntries(rows.map((r) => [r.t, r.v]));
}

/** Tables whose fingerprint differs. */
export function changedTables(before: DbSnapshot, after: DbSnapshot): string[] {
  return Object.keys({ ...before, ...after }).filter((t) => before[t] !== after[t]);
}
