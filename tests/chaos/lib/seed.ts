// The chaos run's members, contacts and deadlines, written straight into the tables, and the
// provider fakes' record of what they accepted.
import { randomUUID } from 'node:crypto';
import type pg from 'pg';
import type { startFakeFcm } from '../../fakes/fcm.js';
import type { startFakeSendGrid } from '../../fakes/sendgrid.js';
import type { startFakeTwilio } from '../../fakes/twilio.js';

export type Fakes = { fcm: Awaited<ReturnType<typeof startFakeFcm>>; sendgrid: Awaited<ReturnType<typeof startFakeSendGrid>>; twilio: Awaited<ReturnType<typeof startFakeTwilio>> };

/** channel:address → acceptance times (ms) of every message the providers accepted. */
export function acceptances(f: Fakes): Map<string, number[]> {
  const m = new Map<string, number[]>();
  const add = (key: string, at: number) => m.set(key, [...(m.get(key) ?? []), at]);
  for (const a of f.fcm.accepted) add(`push:${a.token}`, a.at);
  for (const a of f.sendgrid.accepted) for (const to of a.to) add(`email:${to}`, a.receivedAt.getTime());
  for (const a of f.twilio.accepted) add(`sms:${a.to}`, a.receivedAt);
  return m;
}

export const email = (who: string, n: number) => `${who}-${n}@chaos.test`;
export const phone = (n: number) => `+1555${String(n).padStart(7, '0')}`;
export const token = (n: number) => `chaos-device-${n}`;

/** A member who misses the deadline: their id and the five alerts their two contacts expect. */
export type Missing = { id: string; n: number; keys: { ann: string[]; bob: string[] } };
export type Seeded = { missing: Missing[]; expected: Set<string>; silent: Set<string>; early: string[] };

/** The five alerts of member n: Ann on push, email and SMS; Bob on email and SMS. */
export const keysOf = (n: number) => ({
  ann: [`push:${token(n)}`, `email:${email('ann', n)}`, `sms:${phone(2 * n)}`],
  bob: [`email:${email('bob', n)}`, `sms:${phone(2 * n + 1)}`],
});

/**
 * Members from+1..from+members miss the deadline (alert at `alertAt`); the next `early` check
 * in before it (their contacts must hear nothing). Each has two tier-1 contacts: Ann, linked to a
 * watcher with a device (push, email, SMS), and Bob (email, SMS).
 */
export async function seed(pool: pg.Pool, alertAt: Date, { from = 0, members, early }: { from?: number; members: number; early: number }): Promise<Seeded> {
  const total = members + early;
  const ids = Array.from({ length: total }, () => randomUUID());
  const watchers = Array.from({ length: total }, () => randomUUID());
  const n = Array.from({ length: total }, (_, i) => from + i + 1);
  await pool.query(`insert into members (id, display_name, time_zone) select unnest($1::uuid[]), 'Member ' || unnest($2::int[]), 'UTC'`, [ids, n]);
  await pool.query(`insert into members (id, display_name) select unnest($1::uuid[]), 'Watcher ' || unnest($2::int[])`, [watchers, n]);
  await pool.query(`insert into devices (member_id, token, platform) select unnest($1::uuid[]), unnest($2::text[]), 'android'`, [watchers, n.map(token)]);
  await pool.query(
    `insert into contacts (member_id, name, email, phone, tier, status, linked_user_id, responded_at)
     select m, 'Ann', e, p, 1, 'active', w, now() from unnest($1::uuid[], $2::text[], $3::text[], $4::uuid[]) as t(m, e, p, w)
     union all
     select m, 'Bob', e, p, 1, 'active', null, now() from unnest($1::uuid[], $5::text[], $6::text[]) as t(m, e, p)`,
    [ids, n.map((i) => email('ann', i)), n.map((i) => phone(2 * i)), watchers, n.map((i) => email('bob', i)), n.map((i) => phone(2 * i + 1))],
  );
  const deadline = new Date(alertAt.getTime() - 30 * 60_000);
  await pool.query(
    `insert into schedules (member_id, kind, local_time, time_zone, grace_minutes, next_deadline_at, alert_at, window_start_at, following_deadline_at)
     select unnest($1::uuid[]), 'daily', '09:00', 'UTC', 30, $2, $3, $2::timestamptz - interval '1 day', $2::timestamptz + interval '1 day'`,
    [ids, deadline, alertAt],
  );
  const all = (i: number) => { const k = keysOf(i); return [...k.ann, ...k.bob]; };
  const missing = n.slice(0, members).map((i, j) => ({ id: ids[j]!, n: i, keys: keysOf(i) }));
  return {
    missing,
    expected: new Set(missing.flatMap((m) => all(m.n))),
    silent: new Set(n.slice(members).flatMap(all)),
    early: ids.slice(members),
  };
}
