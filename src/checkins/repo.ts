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
 * pending, and a double tap never satisfies tomorrow. window_start_at is where the window of the
 * pending deadline starts: the end of the grace of the deadline a check-in satisfied (a check-in
 * in that grace belongs to it), the deadline the sweep found missed, or the previous deadline when
 * the schedule was made. `at` is the check-in's instant.
 */
const otherDeadlineBetween = (at: string) => `select 1 from schedules s2
  where s2.member_id = s.member_id and s2.active and s2.id <> s.id
    and ((s2.next_deadline_at > ${at} and s2.next_deadline_at < s.next_deadline_at)
      or (s2.window_start_at > ${at} and s2.window_start_at < s.next_deadline_at))`;

/**
 * A check-in made while an incident for a missed deadline of schedule s is unresolved answers that
 * deadline (it resolves the incident) and does not also satisfy s's next one: a weekly schedule
 * missed by a few seconds would otherwise skip a week. Later check-ins count as usual.
 * (incidents_unresolved_idx serves it.)
 */
const answersMissed = (at: string) => `select 1 from incidents i
  where i.member_id = s.member_id and i.state <> 'resolved' and i.schedule_id = s.id and i.deadline_at < ${at}`;

export type CheckInResult = { created: CheckInRow | null; needsRefill: string[]; unresolvedIncidents: string[] };

/**
 * The hot path, in ONE statement for any number of check-ins of DISTINCT members (concurrent
 * requests share it: one round trip and one commit for all of them). Per check-in: make sure the
 * member row exists, record the check-in, and advance every schedule whose current window it
 * falls in (window_start_at < its instant) to its precomputed following deadline. With an
 * Idempotency-Key, the check_ins unique index makes a concurrent duplicate wait for the first and
 * then insert nothing, and schedules are only advanced for check-ins actually inserted, so a
 * retried request never advances twice.
 * Schedules whose following deadline is not computed yet are left alone and returned: the
 * caller computes them (rare: only when two check-ins come before the refill).
 * Results are in the order of `inputs`.
 */
export async function recordCheckIns(db: Queryable, inputs: CheckInInput[]): Promise<CheckInResult[]> {
  const { rows } = await db.query<{
    id: string | null; checked_in_at: Date | null; request_hash: string | null; resolved_incident_ids: string[] | null; next_deadline_at: Date | null;
    needs_refill: string[] | null; unresolved: string[] | null;
  }>(
    `with input as (
       select * from unnest($1::uuid[], $2::timestamptz[], $3::text[], $4::text[], $5::float8[], $6::float8[], $7::real[], $8::text[], $9::text[], $10::text[])
         with ordinality as x(member_id, at, source, note, latitude, longitude, accuracy_m, idempotency_key, request_hash, email, k)
     ),
     m as (
       insert into members (id, email) select member_id, email from input on conflict (id) do nothing
     ),
     ins as (
       insert into check_ins (member_id, checked_in_at, source, note, latitude, longitude, accuracy_m, idempotency_key, request_hash)
       select member_id, at, source, note, latitude, longitude, accuracy_m, idempotency_key, request_hash from input order by k
       on conflict (member_id, idempotency_key) where idempotency_key is not null do nothing
       returning id, member_id, checked_in_at, request_hash, resolved_incident_ids
     ),
     done as (
       select ins.*, x.at, x.k from ins join input x on x.member_id = ins.member_id
     ),
     adv as (
       update schedules s set
         window_start_at = s.next_deadline_at + make_interval(mins => s.grace_minutes),
         next_deadline_at = s.following_deadline_at,
         alert_at = s.following_deadline_at + make_interval(mins => s.grace_minutes),
         following_deadline_at = null,
         updated_at = d.at
       from done d
       where s.member_id = d.member_id and s.active and s.next_deadline_at is not null
         and s.window_start_at < d.at
         and (s.following_deadline_at is not null or s.kind = 'once')
         and not exists (${otherDeadlineBetween('d.at')})
         and not exists (${answersMissed('d.at')})
       returning s.id, s.member_id, s.next_deadline_at
     ),
     stale as (
       select s.id, s.member_id from schedules s join done d on d.member_id = s.member_id
       where s.active and s.next_deadline_at is not null and s.kind = 'daily'
         and s.window_start_at < d.at and s.following_deadline_at is null
         and not exists (${otherDeadlineBetween('d.at')})
         and not exists (${answersMissed('d.at')})
     )
     -- Joins, not a subquery per check-in: the answer stays linear in the batch size.
     select d.id, d.checked_in_at, d.request_hash, d.resolved_incident_ids,
       least(a.next_deadline_at, u.next_deadline_at) as next_deadline_at, st.ids as needs_refill, inc.ids as unresolved
     from input x
     left join done d on d.k = x.k
     left join (select member_id, min(next_deadline_at) as next_deadline_at from adv group by member_id) a on a.member_id = x.member_id
     left join (
       select s.member_id, min(s.next_deadline_at) as next_deadline_at from schedules s join done d on d.member_id = s.member_id
       where s.active and s.next_deadline_at > d.at and s.id not in (select id from adv) and s.id not in (select id from stale)
       group by s.member_id
     ) u on u.member_id = x.member_id
     left join (select member_id, array_agg(id) as ids from stale group by member_id) st on st.member_id = x.member_id
     left join (
       select i.member_id, array_agg(i.id) as ids from incidents i join done d on d.member_id = i.member_id
       where i.state <> 'resolved' group by i.member_id
     ) inc on inc.member_id = x.member_id
     order by x.k`,
    [
      inputs.map((c) => c.memberId), inputs.map((c) => c.at.toISOString()), inputs.map((c) => c.source), inputs.map((c) => c.note),
      inputs.map((c) => c.location?.lat ?? null), inputs.map((c) => c.location?.lng ?? null), inputs.map((c) => c.location?.accuracy_m ?? null),
      inputs.map((c) => c.idempotencyKey), inputs.map((c) => c.requestHash), inputs.map((c) => c.email),
    ],
  );
  return rows.map((r) => ({
    created: r.id === null ? null : {
      id: r.id, checked_in_at: r.checked_in_at!, request_hash: r.request_hash, resolved_incident_ids: r.resolved_incident_ids!, next_deadline_at: r.next_deadline_at,
    },
    needsRefill: r.needs_refill ?? [],
    unresolvedIncidents: r.unresolved ?? [],
  }));
}

export async function recordCheckIn(db: Queryable, c: CheckInInput): Promise<CheckInResult> {
  return (await recordCheckIns(db, [c]))[0]!;
}

export async function findByIdempotencyKey(db: Queryable, memberId: string, key: string): Promise<CheckInRow | undefined> {
  const { rows } = await db.query<CheckInRow>(
    'select id, checked_in_at, next_deadline_at, resolved_incident_ids, request_hash from check_ins where member_id = $1 and idempotency_key = $2',
    [memberId, key],
  );
  return rows[0];
}

/**
 * The check-in that already answered a reminder's deadline, if one did: none while that deadline
 * (or an earlier one) is still pending or an incident of the member is unresolved; else the
 * member's latest check-in since the first instant a reminder for it can go out (a reminder is at
 * most 1440 minutes before its deadline, and is only sent while the deadline is pending).
 */
export async function checkInCovering(db: Queryable, memberId: string, deadline: Date): Promise<CheckInRow | undefined> {
  const { rows } = await db.query<CheckInRow>(
    `select c.id, c.checked_in_at, c.next_deadline_at, c.resolved_incident_ids, c.request_hash from check_ins c
      where c.member_id = $1 and c.checked_in_at >= $2::timestamptz - interval '1440 minutes'
        and not exists (select 1 from schedules s where s.member_id = $1 and s.active and s.next_deadline_at <= $2)
        and not exists (select 1 from incidents i where i.member_id = $1 and i.state <> 'resolved')
      order by c.checked_in_at desc, c.id desc limit 1`,
    [memberId, deadline],
  );
  return rows[0];
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
