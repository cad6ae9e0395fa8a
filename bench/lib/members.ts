// Bench members as the app would have them: a daily check-in deadline in their own time zone
// (eight zones, four quarter-hours a few hours away, so a check-in now is inside its window and
// advances it), two active emergency contacts, and a signed Supabase-style access token each.
import { createHmac } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import type pg from 'pg';
import { benchMemberId } from './scenarios.js';

const ZONES = ['UTC', 'Europe/London', 'America/New_York', 'Asia/Tokyo', 'Australia/Sydney', 'Europe/Berlin', 'America/Los_Angeles', 'Asia/Kolkata'];

/** Inserts n members (ids benchMemberId(0..n-1)) with one daily schedule and two contacts each. */
export async function seedMembers(pool: pg.Pool, n: number): Promise<string[]> {
  const ids = Array.from({ length: n }, (_, i) => benchMemberId(i));
  const chunk = 20_000;
  for (let from = 0; from < n; from += chunk) {
    await pool.query(
      `with m as (
         insert into members (id, email, display_name, time_zone)
         select id, 'member' || (i + $2) || '@bench.test', 'Member ' || (i + $2), ($3::text[])[1 + (i + $2) % cardinality($3::text[])]
         from unnest($1::uuid[]) with ordinality as t(id, i)
         returning id, time_zone
       ),
       s as (
         insert into schedules (member_id, kind, local_time, grace_minutes, reminder_minutes, next_deadline_at, alert_at, window_start_at, following_deadline_at)
         select m.id, 'daily', to_char(d.local_deadline, 'HH24:MI'), 30, '{30,0}',
           d.local_deadline at time zone m.time_zone,
           (d.local_deadline at time zone m.time_zone) + interval '30 minutes',
           (d.local_deadline - interval '1 day') at time zone m.time_zone,
           (d.local_deadline + interval '1 day') at time zone m.time_zone
         from m, lateral (select date_trunc('hour', (now() at time zone m.time_zone) + interval '3 hours')
           + make_interval(mins => 15 * (abs(hashtext(m.id::text)) % 4)) as local_deadline) d
       )
       insert into contacts (member_id, name, email, phone, tier, status, responded_at)
       select m.id, c.name, lower(c.name) || '.' || replace(m.id::text, '-', '') || '@bench.test', '+1555' || lpad((abs(hashtext(m.id::text || c.name)) % 10000000)::text, 7, '0'), c.tier, 'active', now()
       from m, (values ('Alice', 1), ('Bob', 2)) c(name, tier)`,
      [ids.slice(from, from + chunk), from, ZONES],
    );
  }
  // The state every phase starts from: reset() puts the schedules back to it.
  await pool.query(`create table bench_seed as select id, window_start_at, next_deadline_at, alert_at, following_deadline_at from schedules`);
  await pool.query('vacuum analyze');
  return ids;
}

/**
 * Puts every schedule back to its seeded state so each phase does the same work (the first
 * check-in of each member advances its deadline), then vacuums and checkpoints so no phase
 * pays for the previous one's dead rows or dirty pages.
 */
export async function resetMembers(pool: pg.Pool): Promise<void> {
  // The service may still be finishing its bookkeeping on the same rows: a deadlock with it is retried.
  for (let attempt = 1; ; attempt++) {
    try {
      await resetSchedules(pool);
      break;
    } catch (err) {
      if ((err as { code?: string }).code !== '40P01' || attempt === 5) throw err;
      await new Promise((r) => setTimeout(r, 200 * attempt));
    }
  }
  await pool.query('vacuum analyze schedules, check_ins, members');
  await pool.query('checkpoint');
}

async function resetSchedules(pool: pg.Pool): Promise<void> {
  await pool.query(
    `update schedules s set window_start_at = b.window_start_at, next_deadline_at = b.next_deadline_at, alert_at = b.alert_at,
       following_deadline_at = b.following_deadline_at, updated_at = now()
     from bench_seed b
     where b.id = s.id and (s.window_start_at, s.next_deadline_at, s.following_deadline_at) is distinct from (b.window_start_at, b.next_deadline_at, b.following_deadline_at)`,
  );
}

/**
 * Writes "<member id> <HS256 access token>" per line, shaped as Supabase Auth issues them
 * (aud "authenticated", sub the user id, email, role). Signed with node:crypto directly:
 * tens of thousands of tokens in well under a second.
 */
export function writeTokens(file: string, ids: string[], secret: string): void {
  const b64 = (o: object) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const header = b64({ alg: 'HS256', typ: 'JWT' });
  const iat = Math.floor(Date.now() / 1000);
  const lines = ids.map((id, i) => {
    const unsigned = `${header}.${b64({ sub: id, aud: 'authenticated', role: 'authenticated', email: `member${i}@bench.test`, iat, exp: iat + 7200 })}`;
    return `${id} ${unsigned}.${createHmac('sha256', secret).update(unsigned).digest('base64url')}`;
  });
  writeFileSync(file, `${lines.join('\n')}\n`);
}

export type Effects = { checkIns: number; advancedOnce: number; advancedMore: number };

/** What check-ins have durably done so far: rows written, schedules advanced once and more than once since the seed. */
export async function effects(pool: pg.Pool): Promise<Effects> {
  const { rows } = await pool.query<Effects>(
    `select (select count(*) from check_ins)::int as "checkIns",
       count(*) filter (where s.next_deadline_at = b.following_deadline_at)::int as "advancedOnce",
       count(*) filter (where s.next_deadline_at > b.following_deadline_at)::int as "advancedMore"
     from schedules s join bench_seed b on b.id = s.id`,
  );
  return rows[0]!;
}
