import type { Queryable } from '../db/pool.js';

export type CheckInInput = {
  memberId: string;
  email: string | null;
  at: Date;
  source: 'app' | 'link' | 'sms';
  note: string | null;
  location: { lat: number; lng: number; accuracy_m?: number | undefined } | null;
  idempotencyKey: string | null;
  requestHash: string | null;
};

export type CheckInRow = {
  id: string;
  checked_in_at: Date;
  next_deadline_at: Date | null;
  resolved_incident_ids: string[];
  request_hash: string | null;
};

/**
 * Windows are the member's, not each schedule's: a check-in belongs to the first deadline after it
 * (or the one whose grace it is in). So it does not satisfy schedule s when another schedule has a
 * deadline between the check-in and s's deadline: a morning check-in leaves the evening one
 * pending, and a double tap never satisfies tomorrow. window_start_at is the deadline a schedule
 * last passed (or when it was created).
 */
const OTHER_DEADLINE_BETWEEN = `select 1 from schedules s2
  where s2.member_id = s.member_id and s2.active and s2.id <> s.id
    and ((s2.next_deadline_at > $2 and s2.next_deadline_at < s.next_deadline_at)
      or (s2.window_start_at > $2 and s2.window_start_at < s.next_deadline_at))`;

export type CheckInResult = { created: CheckInRow | null; needsRefill: string[]; unresolvedIncidents: string[] };

/**
 * The hot path, in ONE statement: make sure the member row exists, record the check-in, and
 * advance every schedule whose current window it falls in (window_start_at < now) to its
 * precomputed following deadline. With an Idempotency-Key, the check_ins unique index makes a
 * concurrent duplicate wait for the first and then insert nothing, and the schedules are only
 * advanced when the insert happened, so a retried request never advances twice.
 * Schedules whose following deadline is not computed yet are left alone and returned: the
 * caller computes them (rare: only when two check-ins come before the refill).
 */
export async function recordCheckIn(db: Queryable, c: CheckInInput): Promise<CheckInResult> {
  const { rows } = await db.query<{ created: (Omit<CheckInRow, 'checked_in_at' | 'next_deadline_at'> & { checked_in_at: string; next_deadline_at: string | null }) | null; needs_refill: string[] | null; unresolved: string[] | null }>(
    `with m as (
       insert into members (id, email) values ($1, $10) on conflict (id) do nothing
     ),
     ins as (
       insert into check_ins (member_id, checked_in_at, source, note, latitude, longitude, accuracy_m, idempotency_key, request_hash)
       values ($1, $2, $3, $4, $5, $6, $7, $8, $9)
       on conflict (member_id, idempotency_key) where idempotency_key is not null do nothing
       returning id, checked_in_at, request_hash, resolved_incident_ids
     ),
     adv as (
       update schedules s set
         window_start_at = s.next_deadline_at,
         next_deadline_at = s.following_deadline_at,
         alert_at = s.following_deadline_at + make_interval(mins => s.grace_minutes),
         following_deadline_at = null,
         updated_at = $2
       where s.member_id = $1 and s.active and s.next_deadline_at is not null
         and s.window_start_at < $2
         and (s.following_deadline_at is not null or s.kind = 'once')
         and not exists (${OTHER_DEADLINE_BETWEEN})
         and exists (select 1 from ins)
       returning s.id, s.next_deadline_at
     ),
     stale as (
       select s.id from schedules s
       where s.member_id = $1 and s.active and s.next_deadline_at is not null and s.kind = 'daily'
         and s.window_start_at < $2 and s.following_deadline_at is null
         and not exists (${OTHER_DEADLINE_BETWEEN})
         and exists (select 1 from ins)
     )
     select
       (select json_build_object(
          'id', ins.id, 'checked_in_at', ins.checked_in_at, 'request_hash', ins.request_hash,
          'resolved_incident_ids', ins.resolved_incident_ids,
          'next_deadline_at', (select min(x) from (
             select next_deadline_at as x from adv
             union all
             select s.next_deadline_at from schedules s
             where s.member_id = $1 and s.active and s.id not in (select id from adv) and s.id not in (select id from stale)
               and s.next_deadline_at > $2) t)
        ) from ins) as created,
       (select array_agg(id) from stale) as needs_refill,
       (select array_agg(i.id) from incidents i where i.member_id = $1 and i.state <> 'resolved' and exists (select 1 from ins)) as unresolved`,
    [c.memberId, c.at, c.source, c.note, c.location?.lat ?? null, c.location?.lng ?? null, c.location?.accuracy_m ?? null,
      c.idempotencyKey, c.requestHash, c.email],
  );
  const r = rows[0]!;
  return {
    created: r.created === null ? null : {
      ...r.created,
      checked_in_at: new Date(r.created.checked_in_at),
      next_deadline_at: r.created.next_deadline_at === null ? null : new Date(r.created.next_deadline_at),
    },
    needsRefill: r.needs_refill ?? [],
    unresolvedIncidents: r.unresolved ?? [],
  };
}

export async function findByIdempotencyKey(db: Queryable, memberId: string, key: string): Promise<CheckInRow | undefined> {
  const { rows } = await db.query<CheckInRow>(
    'select id, checked_in_at, next_deadline_at, resolved_incident_ids, request_hash from check_ins where member_id = $1 and idempotency_key = $2',
    [memberId, key],
  );
  return rows[0];
}

/** Records what the check-in answered, so a replay answers the same. Off the hot path. */
export async function storeOutcome(db: Queryable, id: string, nextDeadlineAt: Date | null): Promise<void> {
  await db.query('update check_ins set next_deadline_at = $2 where id = $1', [id, nextDeadlineAt]);
}

export async function storeResolved(db: Queryable, id: string, incidentIds: string[]): Promise<void> {
  await db.query('update check_ins set resolved_incident_ids = $2 where id = $1', [id, incidentIds]);
}

export type HistoryRow = { id: string; checked_in_at: Date; source: string; note: string | null; latitude: number | null; longitude: number | null; accuracy_m: number | null };

export async function history(db: Queryable, memberId: string, limit: number, before?: { at: Date; id: string }): Promise<HistoryRow[]> {
  const { rows } = await db.query<HistoryRow>(
    `select id, checked_in_at, source, note, latitude, longitude, accuracy_m from check_ins
     where member_id = $1 and ($2::timestamptz is null or (checked_in_at, id) < ($2, $3::uuid))
     order by checked_in_at desc, id desc limit $4`,
    [memberId, before?.at ?? null, before?.id ?? null, limit],
  );
  return rows;
}
