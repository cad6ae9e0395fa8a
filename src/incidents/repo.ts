import type pg from 'pg';
import type { ChannelName } from '../channels/types.js';
import type { Queryable } from '../db/pool.js';
import type { Position } from './escalation.js';
import type { IncidentFacts } from './outbound.js';
import type { Plan } from './plan.js';

export type IncidentRow = IncidentFacts & Position & {
  schedule_id: string | null;
  alert_at: Date | null;
  state: 'open' | 'acknowledged' | 'resolved';
  escalation_minutes: number;
  max_rounds: number;
  ack_timeout_minutes: number;
  next_step_at: Date | null;
  acknowledged_at: Date | null;
  acknowledged_by: string | null;
  ack_expires_at: Date | null;
  resolved_at: Date | null;
  resolution: 'check_in' | 'member_resolved' | null;
  latitude: number | null;
  longitude: number | null;
};

const COLUMNS = `id, member_id, schedule_id, kind, deadline_at, alert_at, state, opened_at, delayed_by_seconds, plan,
  escalation_minutes, max_rounds, ack_timeout_minutes, step_no, round, tier_index, next_step_at, acknowledged_at,
  acknowledged_by, ack_expires_at, resolved_at, resolution, note, latitude, longitude, last_check_in_at,
  case when latitude is not null then json_build_object('lat', latitude, 'lng', longitude)
       when last_latitude is not null then json_build_object('lat', last_latitude, 'lng', last_longitude) end as last_location`;

export async function getIncident(db: Queryable, id: string, opts: { memberId?: string; lock?: boolean } = {}): Promise<IncidentRow | undefined> {
  const { rows } = await db.query<IncidentRow>(
    `select ${COLUMNS} from incidents where id = $1 and ($2::uuid is null or member_id = $2)${opts.lock === true ? ' for update' : ''}`,
    [id, opts.memberId ?? null],
  );
  return rows[0];
}

export async function claimIncidents(db: Queryable, where: string, now: Date, limit: number): Promise<IncidentRow[]> {
  const { rows } = await db.query<IncidentRow>(
    `select ${COLUMNS} from incidents where ${where} order by opened_at limit $2 for update skip locked`,
    [now, limit],
  );
  return rows;
}

export type NewIncident = {
  member_id: string; schedule_id: string | null; kind: 'missed' | 'sos'; deadline_at: Date | null; alert_at: Date | null;
  opened_at: Date; delayed_by_seconds: number; plan: Plan; escalation_minutes: number; max_rounds: number; ack_timeout_minutes: number;
  note: string | null; latitude: number | null; longitude: number | null;
};

/**
 * Inserts incidents in ONE statement, each with its member's last check-in, and returns those
 * inserted (in input order): one whose (schedule, deadline) already has an incident is skipped.
 */
export async function insertIncidents(db: Queryable, list: NewIncident[]): Promise<IncidentRow[]> {
  if (list.length === 0) return [];
  const col = <K extends keyof NewIncident>(k: K) => list.map((n) => n[k]);
  const { rows } = await db.query<{ id: string; ord: number }>(
    `insert into incidents (member_id, schedule_id, kind, deadline_at, alert_at, opened_at, delayed_by_seconds, plan,
       escalation_minutes, max_rounds, ack_timeout_minutes, note, latitude, longitude, last_check_in_at, last_latitude, last_longitude, created_at)
     select n.member_id, n.schedule_id, n.kind, n.deadline_at, n.alert_at, n.opened_at, n.delayed_by_seconds, n.plan::jsonb,
            n.escalation_minutes, n.max_rounds, n.ack_timeout_minutes, n.note, n.latitude, n.longitude,
            last.checked_in_at, last.latitude, last.longitude, n.opened_at
       from unnest($1::uuid[], $2::uuid[], $3::text[], $4::timestamptz[], $5::timestamptz[], $6::timestamptz[], $7::int[], $8::text[],
                   $9::int[], $10::int[], $11::int[], $12::text[], $13::float8[], $14::float8[])
              with ordinality as n(member_id, schedule_id, kind, deadline_at, alert_at, opened_at, delayed_by_seconds, plan,
                                   escalation_minutes, max_rounds, ack_timeout_minutes, note, latitude, longitude, ord)
       left join lateral (select checked_in_at, latitude, longitude from check_ins c where c.member_id = n.member_id
                           order by checked_in_at desc limit 1) last on true
      order by n.ord
     on conflict (schedule_id, deadline_at) where schedule_id is not null do nothing
     returning id`,
    [col('member_id'), col('schedule_id'), col('kind'), col('deadline_at'), col('alert_at'), col('opened_at'), col('delayed_by_seconds'),
      list.map((n) => JSON.stringify(n.plan)), col('escalation_minutes'), col('max_rounds'), col('ack_timeout_minutes'), col('note'),
      col('latitude'), col('longitude')],
  );
  if (rows.length === 0) return [];
  const { rows: full } = await db.query<IncidentRow>(`select ${COLUMNS} from incidents where id = any($1::uuid[])`, [rows.map((r) => r.id)]);
  // Identity inserts follow the select's order; order by (member, schedule) anyway rather than trust it.
  const key = (r: { member_id: string; schedule_id: string | null }) => `${r.member_id}|${r.schedule_id ?? ''}`;
  const rank = new Map(list.map((n, i) => [key(n), i]));
  return full.sort((a, b) => (rank.get(key(a)) ?? 0) - (rank.get(key(b)) ?? 0));
}

export type NewEvent = { incident_id: string; at: Date; type: string; step_no?: number; tier?: number; round?: number; contact_id?: string; detail?: object };

/** Timeline events in ONE statement. */
export async function addEvents(db: Queryable, events: NewEvent[]): Promise<void> {
  if (events.length === 0) return;
  await db.query(
    `insert into incident_events (incident_id, at, type, step_no, tier, round, contact_id, detail)
     select * from unnest($1::uuid[], $2::timestamptz[], $3::text[], $4::int[], $5::int[], $6::int[], $7::uuid[], $8::jsonb[])`,
    [events.map((e) => e.incident_id), events.map((e) => e.at), events.map((e) => e.type), events.map((e) => e.step_no ?? null),
      events.map((e) => e.tier ?? null), events.map((e) => e.round ?? null), events.map((e) => e.contact_id ?? null),
      events.map((e) => (e.detail === undefined ? null : JSON.stringify(e.detail)))],
  );
}

export async function addEvent(db: Queryable, incidentId: string, at: Date, type: string, e: Omit<NewEvent, 'incident_id' | 'at' | 'type'> = {}): Promise<void> {
  await addEvents(db, [{ incident_id: incidentId, at, type, ...e }]);
}

/** Contacts and channels an alert of this incident has reached (or may have: a try was made). */
export async function alertedAddresses(db: Queryable, incidentId: string): Promise<{ contact_id: string; channel: ChannelName; address: string }[]> {
  const { rows } = await db.query<{ contact_id: string; channel: ChannelName; address: string }>(
    `select distinct contact_id, channel, address from deliveries
     where incident_id = $1 and kind = 'alert' and contact_id is not null and (status = 'sent' or attempts > 0)
     order by contact_id, channel`,
    [incidentId],
  );
  return rows;
}

/** Alerts not handed to a provider yet are withdrawn: a resolved incident sends nothing more. */
export async function cancelPendingAlerts(db: Queryable, incidentId: string, now: Date): Promise<number> {
  const { rowCount } = await db.query(
    `update deliveries set status = 'cancelled', updated_at = $2 where incident_id = $1 and kind = 'alert' and status = 'pending'`,
    [incidentId, now],
  );
  return rowCount ?? 0;
}

export async function unresolvedIncidentIds(db: Queryable | pg.PoolClient, memberId: string): Promise<string[]> {
  const { rows } = await db.query<{ id: string }>(`select id from incidents where member_id = $1 and state <> 'resolved' order by opened_at`, [memberId]);
  return rows.map((r) => r.id);
}
