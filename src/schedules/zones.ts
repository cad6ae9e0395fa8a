import { z } from 'zod';
import type { Queryable } from '../db/pool.js';
import { isValidTimeZone } from './deadline.js';

/**
 * The time zones a client may give: those BOTH luxon (deadline arithmetic) and PostgreSQL (`at
 * time zone` in queries) know. luxon alone accepts names PostgreSQL dropped long ago
 * (US/Pacific-New), and one such zone stored on a member made every watcher's /v1/watching a 500.
 * Loaded once at start from the database's own list (the time_zone_names table, brought up to
 * date with pg_timezone_names first), so the API refuses exactly what the database would.
 */
export type TimeZones = {
  /** The stored spelling of a zone given in any letter case (PostgreSQL's own), or undefined if unknown. */
  canonical: (name: string) => string | undefined;
  size: number;
};

export function timeZonesFrom(names: Iterable<string>): TimeZones {
  const byLower = new Map<string, string>();
  // isValidTimeZone keeps its rules: luxon must know the name, and fixed offsets are refused.
  for (const name of names) if (isValidTimeZone(name)) byLower.set(name.toLowerCase(), name);
  return { canonical: (name) => byLower.get(name.toLowerCase()), size: byLower.size };
}

/** Reads the zones PostgreSQL knows: one refresh of time_zone_names and one read (at start only). */
export async function loadTimeZones(db: Queryable): Promise<TimeZones> {
  await db.query('select public.refresh_time_zone_names()');
  const { rows } = await db.query<{ name: string }>('select name from public.time_zone_names');
  if (rows.length === 0) throw new Error('no time zones known to the database: is migration 20261204110000_data_rules applied?');
  return timeZonesFrom(rows.map((r) => r.name));
}

/**
 * A request's time zone field: an IANA name both sides know, stored in PostgreSQL's spelling
 * ("europe/london" becomes "Europe/London", as luxon and PostgreSQL both read names without case).
 */
export function timeZoneField(zones: TimeZones) {
  return z
    .string()
    .max(64)
    .refine((s) => zones.canonical(s) !== undefined, 'must be an IANA time zone such as Europe/London (not a fixed offset, and one PostgreSQL knows)')
    .transform((s) => zones.canonical(s)!);
}

export const ZONES_RETRY_MS = 5000;

/**
 * The zones for a process that must start even while the database is unreachable (the API
 * answers 503 then, and /readyz says why): until the list is read, luxon's judgement alone
 * (isValidTimeZone), with the database's trigger refusing the rest; the read is retried every
 * ZONES_RETRY_MS in the background until it succeeds.
 */
export async function timeZonesOrLater(db: Queryable, onError: (err: Error) => void): Promise<TimeZones> {
  try {
    return await loadTimeZones(db);
  } catch (err) {
    onError(err as Error);
  }
  let loaded: TimeZones | undefined;
  const retry = setInterval(() => {
    loadTimeZones(db).then((z) => { loaded = z; clearInterval(retry); }, () => undefined);
  }, ZONES_RETRY_MS);
  retry.unref();
  return {
    canonical: (name) => (loaded !== undefined ? loaded.canonical(name) : isValidTimeZone(name) ? name : undefined),
    get size() { return loaded?.size ?? 0; },
  };
}
