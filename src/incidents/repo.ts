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

/** Inserts the incident with the member's last check-in; undefined when one exists for this deadline already. */
export async function insertIncident(db: Queryable, n: NewIncident): Promise<IncidentRow | undefined> {
  const { rows } = await db.query<{ id: string }>(
    `insert into incidents (member_id, schedule_id, kind, deadline_at, alert_at, opened_at, delayed_by_seconds, plan,
       escalation_minutes, max_rounds, ack_timeout_minutes, note, latitude, longitude, last_check_in_at, last_latitude, last_longitude, created_at)
     select $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, last.checked_in_at, last.latitude, last.longitude, $6
     from (select 1) one
     left join lateral (select checked_in_at, latitude, longitude from check_ins where member_id = $1 order by checked_in_at desc limit 1) last on true
     on conflict (schedule_id, deadline_at) where schedule_id is not null do nothing
     returning id`,
    [n.member_id, n.schedule_id, n.kind, n.deadline_at, n.alert_at, n.opened_at, n.delayed_by_seconds, JSON.stringify(n.plan),
      n.escalation_minutes, n.max_rounds, n.ack_timeout_minutes, n.note, n.latitude, n.longitude],
  );
  return rows[0] === undefined ? undefined : getIncident(db, rows[0].id);
}

export async function addEvent(
  db: Queryable, incidentId: string, at: Date, type: string, e: { step_no?: number; tier?: number; round?: number; contact_id?: string; detail?: object } = {},
): Promise<void> {
  await db.query(
    'insert into incident_events (incident_id, at, type, step_no, tier, round, contact_id, detail) values ($1, $2, $3, $4, $5, $6, $7, $8)',
    [incidentId, at, type, e.step_no ?? null, e.tier ?? null, e.round ?? null, e.contact_id ?? null, e.detail === undefined ? null : JSON.stringify(e.detail)],
  );
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
