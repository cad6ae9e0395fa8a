import { randomUUID } from 'node:crypto';
import type pg from 'pg';
import { entitlementsForMany, type PlanSettings } from '../billing/entitlements.js';
import { insertDeliveries, type NewDelivery } from '../delivery/outbox.js';
import { callDeliveries, cancelPendingCalls, stepCallees, type VoiceSettings } from './calls.js';
import { remainingStep, stepAt, type Position, type Step } from './escalation.js';
import { ackLapsedDeliveries, ackNoticeDeliveries, alertDeliveries, allClearDeliveries, planContact, type IncidentFacts, type LinkSettings } from './outbound.js';
import { buildPlans } from './plan.js';
import * as repo from './repo.js';

/**
 * Incident state changes. Each runs inside the caller's transaction, on a row the caller locked,
 * and returns the ids of the outbox rows it created (to enqueue after commit).
 */
export type IncidentSettings = {
  escalationMinutes: number;
  maxRounds: number;
  ackTimeoutMinutes: number;
  links: LinkSettings;
  plans: PlanSettings;
  /** Phone calls: at which step a missed check-in calls tier 1, and whether SOS calls (calls.ts). */
  voice: VoiceSettings;
};

const MINUTE = 60_000;

/** Where an alert's text is made: in the transaction that writes it ('now'), or by the worker that sends it ('at_send'). */
export type Render = 'now' | 'at_send';

/**
 * Sends a step: outbox rows for its contacts, the incident's position, the next step's time.
 * `render`: see openIncidents (the sweeper leaves the text to the worker; a request renders it now).
 */
async function applyStep(tx: pg.PoolClient, s: IncidentSettings, inc: repo.IncidentRow, step: Step, now: Date, reason: string, render: Render): Promise<string[]> {
  // The plan is a snapshot: a contact removed since then is skipped (and said so), the rest are alerted.
  const callees = stepCallees(s.voice, inc, step, reason);
  const present = await repo.presentContacts(tx, [...step.contacts, ...callees].map((c) => c.id));
  const gone = step.contacts.filter((c) => !present.has(c.id));
  const contacts = gone.length === 0 ? step.contacts : step.contacts.filter((c) => present.has(c.id));
  const calls = callDeliveries(s.links, inc, step.step_no, step.round, callees.filter((c) => present.has(c.id)), now, 'unacknowledged');
  const ids = await insertDeliveries(tx, [...alertDeliveries(s.links, inc, step.step_no, step.round, contacts, render), ...calls.rows]);
  // A step that reached nobody (all its contacts removed) does not hold up the next one.
  const wait = contacts.length === 0 ? 0 : inc.escalation_minutes * MINUTE;
  await moveIncidents(tx, [{ id: inc.id, step, nextAt: step.more ? new Date(now.getTime() + wait) : null }]);
  await repo.addEvents(tx, [
    ...gone.map((c): repo.NewEvent => ({ incident_id: inc.id, at: now, type: 'contact_skipped', step_no: step.step_no, contact_id: c.id, detail: { reason: 'contact_removed', name: c.name } })),
    ...stepEvents(inc.id, { ...step, contacts }, now, reason, Math.max(0, ids.length - calls.rows.length)),
    ...calls.events,
  ]);
  return ids;
}

function stepEvents(incidentId: string, step: Step, now: Date, reason: string, deliveries: number): repo.NewEvent[] {
  const out: repo.NewEvent[] = [{ incident_id: incidentId, at: now, type: 'step', step_no: step.step_no, round: step.round, detail: { reason, tiers: step.tiers, contacts: step.contacts.length, deliveries } }];
  if (!step.more) out.push({ incident_id: incidentId, at: now, type: 'last_step', step_no: step.step_no });
  return out;
}

/** Each incident's position after its step, and when its next step is due: ONE statement. */
async function moveIncidents(tx: pg.PoolClient, moves: { id: string; step: Step; nextAt: Date | null }[]): Promise<void> {
  if (moves.length === 0) return;
  await tx.query(
    `update incidents i set step_no = u.step_no, round = u.round, tier_index = u.tier_index, next_step_at = u.next_at
       from unnest($1::uuid[], $2::int[], $3::int[], $4::int[], $5::timestamptz[]) as u(id, step_no, round, tier_index, next_at)
      where i.id = u.id`,
    [moves.map((m) => m.id), moves.map((m) => m.step.step_no), moves.map((m) => m.step.next.round), moves.map((m) => m.step.next.tier_index), moves.map((m) => m.nextAt)],
  );
}

export type OpenIncident = { member_id: string; schedule_id: string | null; kind: 'missed' | 'sos'; deadline_at: Date | null; alert_at: Date | null; note?: string | null; latitude?: number | null; longitude?: number | null };

/** Opens an incident with a snapshot of the plan and sends its first step (an SOS: every tier at once), rendered now. */
export async function openIncident(tx: pg.PoolClient, s: IncidentSettings, o: OpenIncident, now: Date): Promise<{ incidentId: string | undefined; deliveryIds: string[] }> {
  const opened = await openIncidents(tx, s, [o], now);
  return { incidentId: opened.incidentIds[0], deliveryIds: opened.deliveryIds };
}

/**
 * Opens many incidents in a fixed number of statements, whatever their number: plans, incidents
 * (with their first step's position already in them), timeline and outbox rows each go in one
 * statement. An incident that already exists for its (schedule, deadline) is skipped, with its
 * messages and events. `render`: 'now' stores the alerts' text, 'at_send' leaves it to the worker
 * (the sweeper's bulk path). Returns the ids of the incidents opened and of their outbox rows.
 */
export async function openIncidents(
  tx: pg.PoolClient, s: IncidentSettings, list: OpenIncident[], now: Date, render: Render = 'now',
): Promise<{ incidentIds: string[]; deliveryIds: string[] }> {
  if (list.length === 0) return { incidentIds: [], deliveryIds: [] };
  const memberIds = [...new Set(list.map((o) => o.member_id))];
  const entitlements = await entitlementsForMany(tx, memberIds, s.plans, now);
  // Alerts go on every channel on every plan (safety is not a paid feature); consent still holds.
  const plans = await buildPlans(tx, memberIds, (id) => entitlements.get(id)!.alertChannels);
  const start: Position = { step_no: 0, round: 1, tier_index: 0 };
  const prepared = list.map((o) => {
    const plan = plans.get(o.member_id)!;
    const step = o.kind === 'sos' ? remainingStep(plan, start, s.maxRounds) : stepAt(plan, start, s.maxRounds);
    const delayed = o.alert_at === null ? 0 : Math.max(0, Math.floor((now.getTime() - o.alert_at.getTime()) / 1000));
    const incident: repo.NewIncident = {
      id: randomUUID(), member_id: o.member_id, schedule_id: o.schedule_id, kind: o.kind, deadline_at: o.deadline_at, alert_at: o.alert_at,
      opened_at: now, delayed_by_seconds: delayed > 60 ? delayed : 0, plan,
      escalation_minutes: s.escalationMinutes, max_rounds: s.maxRounds, ack_timeout_minutes: s.ackTimeoutMinutes,
      note: o.note ?? null, latitude: o.latitude ?? null, longitude: o.longitude ?? null,
      // The first step goes out in this transaction: the row starts where it leaves escalation.
      step_no: step === null ? start.step_no : step.step_no, round: step === null ? start.round : step.next.round,
      tier_index: step === null ? start.tier_index : step.next.tier_index,
      next_step_at: step?.more === true ? new Date(now.getTime() + s.escalationMinutes * MINUTE) : null,
    };
    return { incident, step };
  });
  const inserted = new Map((await repo.insertIncidents(tx, prepared.map((p) => p.incident))).map((r) => [r.id, r]));
  const events: repo.NewEvent[] = [];
  const deliveries: NewDelivery[] = [];
  for (const { incident: inc, step } of prepared) {
    const row = inserted.get(inc.id);
    if (row === undefined) continue; // this deadline already has its incident
    const contacts = inc.plan.tiers.reduce((n, t) => n + t.contacts.length, 0);
    events.push({ incident_id: inc.id, at: now, type: 'opened', detail: { kind: inc.kind, deadline_at: inc.deadline_at, delayed_by_seconds: inc.delayed_by_seconds, contacts } });
    if (step === null) {
      events.push({ incident_id: inc.id, at: now, type: 'no_contacts' });
      continue;
    }
    const facts: IncidentFacts = {
      ...inc, last_check_in_at: row.last_check_in_at,
      // As repo's last_location: the SOS's own location, else the one shared with the last check-in.
      last_location: inc.latitude !== null ? { lat: inc.latitude, lng: inc.longitude! }
        : row.last_latitude !== null ? { lat: row.last_latitude, lng: row.last_longitude! } : null,
    };
    const rows = alertDeliveries(s.links, facts, step.step_no, step.round, step.contacts, render);
    deliveries.push(...rows);
    events.push(...stepEvents(inc.id, step, now, inc.kind === 'sos' ? 'sos' : 'deadline', rows.length));
    // SOS also calls every contact of every tier at once.
    if (inc.kind === 'sos' && s.voice.sos) {
      const calls = callDeliveries(s.links, inc, step.step_no, step.round, step.contacts, now, 'sos');
      deliveries.push(...calls.rows);
      events.push(...calls.events);
    }
  }
  const deliveryIds = await insertDeliveries(tx, deliveries, { fresh: true });
  await repo.addEvents(tx, events);
  return { incidentIds: prepared.map((p) => p.incident.id).filter((id) => inserted.has(id)), deliveryIds };
}

/** The next escalation step of an open incident whose next_step_at has come. */
export async function escalate(tx: pg.PoolClient, s: IncidentSettings, inc: repo.IncidentRow, now: Date, reason = 'escalation', render: Render = 'now'): Promise<string[]> {
  const step = stepAt(inc.plan, inc, inc.max_rounds);
  if (step === null) {
    await tx.query('update incidents set next_step_at = null where id = $1', [inc.id]);
    return [];
  }
  return applyStep(tx, s, inc, step, now, reason, render);
}

/**
 * An acknowledgement that was not followed by a resolution in time: escalation resumes now, and
 * nobody is left believing someone is on it. The contacts who were told so hear it lapsed (unless
 * this very step alerts them: that alert says it), and the one who acknowledged is asked whether
 * they reached the member instead of being alerted as if they had never answered.
 */
export async function ackTimedOut(tx: pg.PoolClient, s: IncidentSettings, inc: repo.IncidentRow, now: Date, render: Render = 'now'): Promise<string[]> {
  await tx.query(`update incidents set state = 'open', ack_expires_at = null where id = $1`, [inc.id]);
  await repo.addEvent(tx, inc.id, now, 'ack_timed_out', { contact_id: inc.acknowledged_by ?? undefined });
  const open = { ...inc, state: 'open' as const };
  const acker = inc.acknowledged_by === null ? undefined : planContact(inc.plan, inc.acknowledged_by);
  if (acker === undefined || inc.acknowledged_at === null) return escalate(tx, s, open, now, 'ack_timeout', render);
  const step = stepAt(inc.plan, inc, inc.max_rounds);
  const stepContacts = new Set((step?.contacts ?? []).filter((c) => c.id !== acker.id).map((c) => c.id));
  const alerted = await repo.alertedAddresses(tx, inc.id);
  const present = await repo.presentContacts(tx, alerted.map((a) => a.contact_id));
  const told = alerted.filter((a) => present.has(a.contact_id) && !stepContacts.has(a.contact_id));
  // Lapse notices number their own steps from 1000 (one per lapse), so a second lapse at the same
  // escalation position is not mistaken for the first and dropped.
  const lapses = await tx.query<{ n: number }>(`select count(*)::int as n from incident_events where incident_id = $1 and type = 'ack_timed_out'`, [inc.id]);
  const ids = await insertDeliveries(tx, ackLapsedDeliveries(s.links, inc, 1000 + lapses.rows[0]!.n, told, acker, inc.acknowledged_at, step !== null));
  if (step === null) {
    await tx.query('update incidents set next_step_at = null where id = $1', [inc.id]);
    return ids;
  }
  const withoutAcker = { ...step, contacts: step.contacts.filter((c) => c.id !== acker.id) };
  return [...ids, ...(await applyStep(tx, s, open, withoutAcker, now, 'ack_timeout', render))];
}

/**
 * "I'm on it": escalation stops; the other alerted contacts are told who is on it. Tapped again by
 * the contact already on it, nothing changes: no second notice, and the acknowledgement's timeout
 * does not start over (a tap after it timed out is a new acknowledgement).
 */
export async function acknowledge(tx: pg.PoolClient, inc: repo.IncidentRow, contactId: string, now: Date): Promise<string[]> {
  if (inc.state === 'acknowledged' && inc.acknowledged_by === contactId) return [];
  const by = planContact(inc.plan, contactId);
  await tx.query(
    `update incidents set state = 'acknowledged', acknowledged_at = $2, acknowledged_by = $3, ack_expires_at = $4, next_step_at = null where id = $1`,
    [inc.id, now, contactId, new Date(now.getTime() + inc.ack_timeout_minutes * MINUTE)],
  );
  await repo.addEvent(tx, inc.id, now, 'acknowledged', { contact_id: contactId });
  await cancelPendingCalls(tx, inc.id, now);
  if (by === undefined) return [];
  return insertDeliveries(tx, ackNoticeDeliveries(inc, inc.step_no, await repo.alertedAddresses(tx, inc.id), by, now));
}

/**
 * "This needs more help": every tier not alerted yet is alerted now. Once per contact and incident
 * (the same link tapped again changes nothing), and only while a tier is left: once round 1 has
 * reached every tier, the asking is recorded in the timeline and escalation goes on as planned,
 * without an extra round (it would only repeat to everyone what they were told, and spend a round).
 */
export async function escalateByContact(tx: pg.PoolClient, s: IncidentSettings, inc: repo.IncidentRow, contactId: string, now: Date): Promise<string[]> {
  if (await repo.hasEvent(tx, inc.id, 'escalated_by_contact', contactId)) return [];
  await repo.addEvent(tx, inc.id, now, 'escalated_by_contact', { contact_id: contactId });
  const step = inc.round === 1 ? remainingStep(inc.plan, inc, inc.max_rounds) : null;
  if (step === null) {
    // Every tier has the alert already. If someone said they were on it, a contact now asking for
    // more help means that is not enough: escalation resumes at once instead of waiting out the ack.
    if (inc.state === 'acknowledged') {
      await tx.query(`update incidents set state = 'open', ack_expires_at = null, next_step_at = $2 where id = $1`, [inc.id, now]);
    }
    return [];
  }
  if (inc.state === 'acknowledged') await tx.query(`update incidents set state = 'open', ack_expires_at = null where id = $1`, [inc.id]);
  return applyStep(tx, s, { ...inc, state: 'open' }, step, now, 'escalated_by_contact', 'now');
}

/** Resolves: pending alerts are withdrawn and every contact already alerted gets the all clear. */
export async function resolve(tx: pg.PoolClient, inc: repo.IncidentRow, how: 'check_in' | 'member_resolved', now: Date, checkInId: string | null): Promise<string[]> {
  await tx.query(
    `update incidents set state = 'resolved', resolved_at = $2, resolution = $3, resolved_by_check_in = $4, next_step_at = null, ack_expires_at = null where id = $1`,
    [inc.id, now, how, checkInId],
  );
  const cancelled = await repo.cancelPendingAlerts(tx, inc.id, now);
  await repo.addEvent(tx, inc.id, now, 'resolved', { detail: { how, cancelled_deliveries: cancelled } });
  const alerted = await repo.alertedAddresses(tx, inc.id);
  let rows: NewDelivery[];
  try {
    rows = allClearDeliveries(inc, inc.step_no, alerted, now, how);
  } catch (err) {
    // A snapshot too odd to render from must not keep the incident open (escalation would go on
    // after the member turned up): it resolves, and the timeline says the all clear could not be made.
    await repo.addEvent(tx, inc.id, now, 'all_clear_failed', { detail: { error: String((err as Error).message ?? err).slice(0, 200), contacts: alerted.length } });
    return [];
  }
  return insertDeliveries(tx, rows);
}

/** A check-in resolves every unresolved incident of the member. */
export async function resolveMemberIncidents(pool: pg.Pool, memberId: string, checkInId: string, now: Date): Promise<{ resolved: string[]; deliveryIds: string[] }> {
  const client = await pool.connect();
  try {
    await client.query('begin');
    const { rows } = await client.query<{ id: string }>(`select id from incidents where member_id = $1 and state <> 'resolved' for update`, [memberId]);
    const deliveryIds: string[] = [];
    for (const { id } of rows) {
      const inc = (await repo.getIncident(client, id))!;
      deliveryIds.push(...(await resolve(client, inc, 'check_in', now, checkInId)));
    }
    await client.query('commit');
    return { resolved: rows.map((r) => r.id), deliveryIds };
  } catch (err) {
    await client.query('rollback').catch(() => undefined);
    throw err;
  } finally {
    client.release();
  }
}
