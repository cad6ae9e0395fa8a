import type pg from 'pg';
import type { MessageChannelName } from '../channels/types.js';
import { prepared, type Queryable } from '../db/pool.js';
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

/** Several incidents in one read (the deliveries of a batch render their alerts from them). */
export async function getIncidents(db: Queryable, ids: readonly string[]): Promise<IncidentRow[]> {
  if (ids.length === 0) return [];
  const { rows } = await db.query<IncidentRow>(prepared('incidents.by-ids', `select ${COLUMNS} from incidents where id = any($1::uuid[])`, [ids]));
  return rows;
}

export async function claimIncidents(db: Queryable, where: string, now: Date, limit: number, hadFailed = 'false'): Promise<(IncidentRow & { had_failed: boolean })[]> {
  const { rows } = await db.query<IncidentRow & { had_failed: boolean }>(
    `select ${COLUMNS}, ${hadFailed} as had_failed from incidents where ${where} order by opened_at limit $2 for update skip locked`,
    [now, limit],
  );
  return rows;
}

export type NewIncident = {
  id: string; member_id: string; schedule_id: string | null; kind: 'missed' | 'sos'; deadline_at: Date | null; alert_at: Date | null;
  opened_at: Date; delayed_by_seconds: number; plan: Plan; escalation_minutes: number; max_rounds: number; ack_timeout_minutes: number;
  note: string | null; latitude: number | null; longitude: number | null;
  /** Where escalation stands once the first step is written, and when the next is due. */
  step_no: number; round: number; tier_index: number; next_step_at: Date | null;
};

export type InsertedIncident = { id: string; last_check_in_at: Date | null; last_latitude: number | null; last_longitude: number | null };

/**
 * Inserts incidents (ids chosen by the caller) in ONE statement, each with its member's last
 * check-in, and returns those inserted with that check-in: one whose (schedule, deadline) already
 * has an incident is skipped.
 */
export async function insertIncidents(db: Queryable, list: NewIncident[]): Promise<InsertedIncident[]> {
  if (list.length === 0) return [];
  // Typed arrays for the scalar columns and ONE jsonb document for the plans: PostgreSQL decodes a
  // JSON record set column by column through text (every plan parsed twice, as json then jsonb),
  // which cost 48 us per incident at 500 a batch; arrays and the plans parsed once, 22 us. The
  // uuids, numbers and instants go in as array literals built here (nothing in them to escape);
  // text that may hold anything (the note) and the coordinates go through the driver's arrays.
  const { rows } = await db.query<InsertedIncident>(
    `insert into incidents (id, member_id, schedule_id, kind, deadline_at, alert_at, opened_at, delayed_by_seconds, plan,
       escalation_minutes, max_rounds, ack_timeout_minutes, note, latitude, longitude, step_no, round, tier_index, next_step_at,
       last_check_in_at, last_latitude, last_longitude, created_at)
     select n.id, n.member_id, n.schedule_id, n.kind, n.deadline_at, n.alert_at, n.opened_at, n.delayed_by_seconds, p.plan,
            n.escalation_minutes, n.max_rounds, n.ack_timeout_minutes, n.note, n.latitude, n.longitude, n.step_no, n.round, n.tier_index, n.next_step_at,
            last.checked_in_at, last.latitude, last.longitude, n.opened_at
       from unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::text[], $5::timestamptz[], $6::timestamptz[], $7::timestamptz[], $8::int[],
                   $9::int[], $10::int[], $11::int[], $12::text[], $13::float8[], $14::float8[], $15::int[], $16::int[], $17::int[], $18::timestamptz[])
              with ordinality as n(id, member_id, schedule_id, kind, deadline_at, alert_at, opened_at, delayed_by_seconds,
                                   escalation_minutes, max_rounds, ack_timeout_minutes, note, latitude, longitude, step_no, round, tier_index, next_step_at, i)
       join jsonb_array_elements($19::jsonb) with ordinality as p(plan, i) on p.i = n.i
       left join lateral (select checked_in_at, latitude, longitude from check_ins c where c.member_id = n.member_id
                           order by checked_in_at desc limit 1) last on true
     on conflict (schedule_id, deadline_at) where schedule_id is not null do nothing
     returning id, last_check_in_at, last_latitude, last_longitude`,
    [
      literal(list.map((n) => n.id)), literal(list.map((n) => n.member_id)), literal(list.map((n) => n.schedule_id)),
      literal(list.map((n) => n.kind)), literal(list.map((n) => instant(n.deadline_at))), literal(list.map((n) => instant(n.alert_at))),
      literal(list.map((n) => instant(n.opened_at))), literal(list.map((n) => integer(n.delayed_by_seconds))),
      literal(list.map((n) => integer(n.escalation_minutes))), literal(list.map((n) => integer(n.max_rounds))), literal(list.map((n) => integer(n.ack_timeout_minutes))),
      list.map((n) => n.note), list.map((n) => n.latitude), list.map((n) => n.longitude),
      literal(list.map((n) => integer(n.step_no))), literal(list.map((n) => integer(n.round))), literal(list.map((n) => integer(n.tier_index))),
      literal(list.map((n) => instant(n.next_step_at))),
      JSON.stringify(list.map((n) => n.plan)),
    ],
  );
  return rows;
}

/** A uuid, a kind or an instant: characters an array literal needs no quoting for (anything else is refused). */
const PLAIN = /^[0-9A-Za-z:.+_-]+$/;

/** An array literal of values that need no escaping (uuids, integers, ISO instants, plain words); null as NULL. */
function literal(values: (string | null)[]): string {
  return `{${values.map((v) => {
    if (v === null) return 'NULL';
    if (!PLAIN.test(v) || v.toUpperCase() === 'NULL') throw new Error(`not a plain array element: ${JSON.stringify(v.slice(0, 40))}`);
    return v;
  }).join(',')}}`;
}

/** As JSON.stringify wrote it before: an invalid date is null. */
const instant = (d: Date | null): string | null => (d === null || Number.isNaN(d.getTime()) ? null : d.toISOString());
const integer = (n: number): string => {
  if (!Number.isSafeInteger(n)) throw new Error(`not an integer: ${n}`);
  return String(n);
};

export type NewEvent = { incident_id: string; at: Date; type: string; step_no?: number; tier?: number; round?: number; contact_id?: string; detail?: object };

/** Timeline events in ONE statement. */
export async function addEvents(db: Queryable, events: NewEvent[]): Promise<void> {
  if (events.length === 0) return;
  await db.query(
    `insert into incident_events (incident_id, at, type, step_no, tier, round, contact_id, detail)
     select incident_id, at, type, step_no, tier, round, contact_id, detail
       from json_to_recordset($1::json) as e(incident_id uuid, at timestamptz, type text, step_no int, tier int, round int, contact_id uuid, detail jsonb)`,
    [JSON.stringify(events)],
  );
}

export async function addEvent(db: Queryable, incidentId: string, at: Date, type: string, e: Omit<NewEvent, 'incident_id' | 'at' | 'type'> = {}): Promise<void> {
  await addEvents(db, [{ incident_id: incidentId, at, type, ...e }]);
}

/** Whether the incident's timeline has an event of this type by this contact. */
export async function hasEvent(db: Queryable, incidentId: string, type: string, contactId: string): Promise<boolean> {
  const { rowCount } = await db.query('select 1 from incident_events where incident_id = $1 and type = $2 and contact_id = $3 limit 1', [incidentId, type, contactId]);
  return (rowCount ?? 0) > 0;
}

/**
 * Contacts and channels an alert of this incident has reached (or may have: a try was made), where
 * the messages that follow it go (notices, the all clear). Never by phone: calls are left out.
 */
export async function alertedAddresses(db: Queryable, incidentId: string): Promise<{ contact_id: string; channel: MessageChannelName; address: string }[]> {
  const { rows } = await db.query<{ contact_id: string; channel: MessageChannelName; address: string }>(
    `select distinct contact_id, channel, address from deliveries
     where incident_id = $1 and kind = 'alert' and channel <> 'voice' and contact_id is not null and (status = 'sent' or attempts > 0)
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

/**
 * Which of these contacts still exist, locked against deletion (KEY SHARE) until the caller
 * commits: the outbox rows about to reference them cannot lose them in between.
 */
export async function presentContacts(db: Queryable, ids: string[]): Promise<Set<string>> {
  if (ids.length === 0) return new Set();
  const { rows } = await db.query<{ id: string }>('select id from contacts where id = any($1::uuid[]) for key share', [ids]);
  return new Set(rows.map((r) => r.id));
}

export async function unresolvedIncidentIds(db: Queryable | pg.PoolClient, memberId: string): Promise<string[]> {
  const { rows } = await db.query<{ id: string }>(`select id from incidents where member_id = $1 and state <> 'resolved' order by opened_at`, [memberId]);
  return rows.map((r) => r.id);
}
