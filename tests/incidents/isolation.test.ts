import { randomUUID } from 'node:crypto';
import { afterAll, afterEach, beforeAll, describe, expect, it } from '@jest/globals';
import type { Channel, Channels, OutboundMessage } from '../../src/channels/types.js';
import { processDelivery } from '../../src/delivery/deliver.js';
import { failureBackoffMs, QUARANTINE_AFTER } from '../../src/incidents/isolate.js';
import { sweepOnce, type SweepDeps } from '../../src/incidents/sweep.js';
import { createMetrics } from '../../src/observability/metrics.js';
import { runAudit, DEFAULT_AUDITOR_SETTINGS } from '../../src/ops/auditor.js';
import { refillFollowing } from '../../src/schedules/repo.js';
import { createLogger } from '../../src/observability/logger.js';
import { startTestApp, type TestApp } from '../helpers/app.js';
import { memberWithContacts, sweepDeps, testClock } from './helpers.js';

// Hostile data: one member's odd row (written by an older version, straight into the table, or
// left by a race) must never stop anyone else's alerts. Each poison below is present while an
// unrelated member's timer comes due, and that member's alert must be written within two sweeps.

const clock = testClock('2026-11-23T08:00:00Z');

describe('one member\'s bad data never stops another member\'s alerts', () => {
  let t: TestApp;
  const failures: string[] = [];
  const deps = (): SweepDeps => ({ ...sweepDeps(t, clock), failures: { itemFailure: (lane) => failures.push(lane), laneError: (lane) => failures.push(`lane:${lane}`) } });
  const sweep = () => sweepOnce(deps());
  const incidentOf = async (memberId: string) =>
    (await t.db.pool.query<{ id: string; state: string; step_no: number }>('select id, state, step_no from incidents where member_id = $1 order by opened_at', [memberId])).rows;
  const alertsOf = async (incidentId: string) =>
    (await t.db.pool.query<{ contact_id: string | null; channel: string; step_no: number; status: string }>(
      `select contact_id, channel, step_no, status from deliveries where incident_id = $1 and kind = 'alert' order by step_no, contact_id, channel`, [incidentId])).rows;
  const failureOf = async (lane: string, id: string) =>
    (await t.db.pool.query<{ failures: number; retry_at: Date; last_error: string }>('select failures, retry_at, last_error from sweep_failures where lane = $1 and item_id = $2', [lane, id])).rows[0];
  /** A fault no validation could foresee: any statement writing this member's rows of `table` fails. */
  const poisonWrites = async (table: 'incidents' | 'deliveries' | 'schedules', memberId: string) => {
    const fn = `poison_${table}_${memberId.replace(/-/g, '')}`;
    await t.db.pool.query(`create function ${fn}() returns trigger language plpgsql as $$
      begin if new.member_id = '${memberId}' then raise exception 'injected fault for member %', new.member_id; end if; return new; end $$`);
    await t.db.pool.query(`create trigger ${fn} before insert or update on ${table} for each row execute function ${fn}()`);
    return async () => { await t.db.pool.query(`drop trigger ${fn} on ${table}; drop function ${fn}()`); };
  };

  beforeAll(async () => {
    t = await startTestApp({ clock: () => clock.now, env: { FREE_PLAN_CHANNELS: 'push,sms,email', FREE_PLAN_CONTACTS: '10' } });
  });
  afterAll(() => t.close());
  // Each case's poison stays its own: what one leaves behind would fail again in the next.
  afterEach(async () => {
    await t.db.pool.query(`update incidents set state = 'resolved', next_step_at = null, ack_expires_at = null where state <> 'resolved'`);
    await t.db.pool.query('update schedules set active = false');
    await t.db.pool.query('delete from sweep_failures');
    failures.length = 0;
  });

  it('the reported case: SOS, a contact deleted mid-incident, silence: every other member\'s escalation and reminders stay on time, and the member\'s remaining contacts are escalated', async () => {
    clock.set('2026-11-23T08:00:00Z');
    const p = await memberWithContacts(t, [1, 2], { kind: 'daily', local_time: '20:00', time_zone: 'UTC' });
    const r = await memberWithContacts(t, [1, 2], { kind: 'daily', local_time: '20:00', time_zone: 'UTC' });
    // V's reminder (30 minutes before 08:40) is due at 08:10.
    const v = await memberWithContacts(t, [1], { kind: 'daily', local_time: '08:40', time_zone: 'UTC', reminder_minutes: [30] });
    expect((await t.app.inject({ method: 'POST', url: '/v1/sos', headers: p.headers })).statusCode).toBe(201);
    expect((await t.app.inject({ method: 'POST', url: '/v1/sos', headers: r.headers })).statusCode).toBe(201);
    const gone = p.contacts[1]!;
    expect((await t.app.inject({ method: 'DELETE', url: `/v1/contacts/${gone.id}`, headers: p.headers })).statusCode).toBe(204);

    clock.set('2026-11-23T08:15:00Z'); // the SOS incidents' second step (round 2) is due
    const result = await sweep();
    expect(result.failedLanes).toEqual([]);
    const [pInc] = await incidentOf(p.sub);
    const [rInc] = await incidentOf(r.sub);
    // R escalated on time: round 2 reached both of R's contacts again.
    expect((await alertsOf(rInc!.id)).filter((d) => d.step_no === 2).map((d) => d.contact_id).sort()).toEqual(
      [...new Set(r.contacts.map((c) => c.id))].sort().flatMap((id) => [id, id]));
    // P's remaining contact was escalated; the deleted one skipped, and the timeline says so.
    expect([...new Set((await alertsOf(pInc!.id)).filter((d) => d.step_no === 2).map((d) => d.contact_id))]).toEqual([p.contacts[0]!.id]);
    const { rows: skipped } = await t.db.pool.query('select contact_id, step_no, detail from incident_events where incident_id = $1 and type = $2', [pInc!.id, 'contact_skipped']);
    expect(skipped).toEqual([{ contact_id: gone.id, step_no: 2, detail: { reason: 'contact_removed', name: gone.name } }]);
    // V's reminder went out in the same sweep.
    expect((await t.db.pool.query(`select 1 from deliveries where member_id = $1 and kind = 'reminder'`, [v.sub])).rowCount).toBeGreaterThan(0);
    expect(failures).toEqual([]);
    // The auditor sees everyone on time.
    const audit = await runAudit({ pool: t.db.pool, clock: () => clock.now, log: createLogger('silent'), metrics: createMetrics(), settings: DEFAULT_AUDITOR_SETTINGS });
    expect(audit.ok).toBe(true);
  });

  it('an escalation step whose contacts were all removed reaches nobody and does not hold up the next step', async () => {
    clock.set('2026-11-23T08:00:00Z');
    const m = await memberWithContacts(t, [1, 2, 3], { kind: 'daily', local_time: '08:30', time_zone: 'UTC', grace_minutes: 0 });
    clock.set('2026-11-23T08:30:00Z');
    await sweep();
    const [inc] = await incidentOf(m.sub);
    await t.db.pool.query('delete from contacts where id = $1', [m.contacts[1]!.id]);
    clock.set('2026-11-23T08:45:00Z'); // step 2: tier 2, whose only contact is gone
    await sweep();
    const { rows: [after] } = await t.db.pool.query<{ next_step_at: Date }>('select next_step_at from incidents where id = $1', [inc!.id]);
    expect(after!.next_step_at.toISOString()).toBe('2026-11-23T08:45:00.000Z');
    await sweep(); // step 3 (tier 3) at once, not 15 minutes later
    expect([...new Set((await alertsOf(inc!.id)).filter((d) => d.step_no === 3).map((d) => d.contact_id))]).toEqual([m.contacts[2]!.id]);
  });

  it('missed deadlines: a schedule that fails is set aside with backoff while another member\'s miss alerts; it recovers by itself once fixed', async () => {
    clock.set('2026-11-23T08:00:00Z');
    const bad = await memberWithContacts(t, [1], { kind: 'daily', local_time: '09:00', time_zone: 'UTC', grace_minutes: 0 });
    const good = await memberWithContacts(t, [1], { kind: 'daily', local_time: '09:00', time_zone: 'UTC', grace_minutes: 0 });
    const heal = await poisonWrites('incidents', bad.sub);
    failures.length = 0;
    clock.set('2026-11-23T09:00:00Z');
    const first = await sweep();
    expect(first.failedLanes).toEqual([]);
    expect(await incidentOf(good.sub)).toHaveLength(1);
    expect(await alertsOf((await incidentOf(good.sub))[0]!.id)).toHaveLength(2);
    expect(await incidentOf(bad.sub)).toHaveLength(0);
    expect(failures).toEqual(['missed']);
    const f = await failureOf('missed', bad.scheduleId);
    expect(f).toMatchObject({ failures: 1 });
    expect(f!.last_error).toMatch(/injected fault/);
    expect(f!.retry_at.getTime() - clock.now.getTime()).toBe(failureBackoffMs(1));
    // Set aside: the next sweeps leave it alone until its retry time (no retry storm).
    await sweep();
    expect(failures).toEqual(['missed']);
    // Repaired: the next try after the backoff opens its incident and clears the record.
    await heal();
    clock.add(failureBackoffMs(1) / 60_000);
    await sweep();
    expect(await incidentOf(bad.sub)).toHaveLength(1);
    expect(await failureOf('missed', bad.scheduleId)).toBeUndefined();
  });

  it('missed deadlines: a schedule in a zone nobody knows alerts anyway, its deadlines in UTC, and is flagged', async () => {
    clock.set('2026-11-23T08:00:00Z');
    const odd = await memberWithContacts(t, [1], { kind: 'daily', local_time: '09:30', time_zone: 'UTC', grace_minutes: 0 });
    const good = await memberWithContacts(t, [1], { kind: 'daily', local_time: '09:30', time_zone: 'UTC', grace_minutes: 0 });
    // Written as an older version would have, bypassing every rule of today's API and database.
    const c = await t.db.pool.connect();
    try {
      await c.query('begin');
      await c.query('set local session_replication_role = replica');
      await c.query(`update schedules set time_zone = 'Mars/Olympus', following_deadline_at = null where id = $1`, [odd.scheduleId]);
      await c.query(`update members set time_zone = 'Mars/Olympus' where id = $1`, [odd.sub]);
      await c.query('commit');
    } finally {
      c.release();
    }
    clock.set('2026-11-23T09:30:00Z');
    expect((await sweep()).failedLanes).toEqual([]);
    expect(await incidentOf(good.sub)).toHaveLength(1);
    const [inc] = await incidentOf(odd.sub);
    expect(inc).toBeDefined();
    const { rows: [s] } = await t.db.pool.query<{ next_deadline_at: Date; zone_fallback_at: Date | null }>('select next_deadline_at, zone_fallback_at from schedules where id = $1', [odd.scheduleId]);
    expect(s!.next_deadline_at.toISOString()).toBe('2026-11-24T09:30:00.000Z');
    expect(s!.zone_fallback_at?.toISOString()).toBe('2026-11-23T09:30:00.000Z');
    // Its alert renders, with times in UTC.
    const sent: OutboundMessage[] = [];
    const capture: Channel = { provider: 'capture', async send(msg) { sent.push(msg); return { provider: 'capture', providerMessageId: randomUUID() }; } };
    const { rows: ds } = await t.db.pool.query<{ id: string }>(`select id from deliveries where incident_id = $1 and channel = 'sms'`, [inc!.id]);
    expect(await processDelivery({ pool: t.db.pool, channels: { push: capture, sms: capture, email: capture }, clock: () => clock.now, log: createLogger('silent') }, ds[0]!.id, 0, 8)).toBe('sent');
    expect(sent[0]!.body).toMatch(/9:30/);
  });

  it('missed deadlines: instants no version writes (\'infinity\', year 9999), written straight into the table, still alert, on the deadline the alert time implies', async () => {
    clock.set('2026-11-23T08:00:00Z');
    const endless = await memberWithContacts(t, [1], { kind: 'daily', local_time: '18:00', time_zone: 'UTC', grace_minutes: 30 });
    const far = await memberWithContacts(t, [1], { kind: 'daily', local_time: '18:00', time_zone: 'UTC', grace_minutes: 30 });
    const good = await memberWithContacts(t, [1], { kind: 'daily', local_time: '18:00', time_zone: 'UTC', grace_minutes: 30 });
    const c = await t.db.pool.connect();
    try {
      await c.query('begin');
      await c.query('set local session_replication_role = replica');
      await c.query(`update schedules set following_deadline_at = 'infinity' where id = $1`, [endless.scheduleId]);
      await c.query(`update schedules set next_deadline_at = '9999-12-31T23:59:00Z' where id = $1`, [far.scheduleId]);
      await c.query('commit');
    } finally {
      c.release();
    }
    failures.length = 0;
    clock.set('2026-11-23T18:30:00Z');
    expect((await sweep()).failedLanes).toEqual([]);
    expect(failures).not.toContain('missed');
    for (const m of [endless, far, good]) {
      const [inc] = await incidentOf(m.sub);
      expect(inc).toBeDefined();
      expect(await alertsOf(inc!.id)).toHaveLength(2);
      const { rows: [row] } = await t.db.pool.query<{ deadline_at: Date }>('select deadline_at from incidents where id = $1', [inc!.id]);
      expect(row!.deadline_at.toISOString()).toBe('2026-11-23T18:00:00.000Z');
      const { rows: [s] } = await t.db.pool.query<{ next_deadline_at: Date; following_deadline_at: Date }>(
        'select next_deadline_at, following_deadline_at from schedules where id = $1', [m.scheduleId]);
      expect(s!.next_deadline_at.toISOString()).toBe('2026-11-24T18:00:00.000Z');
      expect(s!.following_deadline_at.toISOString()).toBe('2026-11-25T18:00:00.000Z');
    }
  });

  it('the delivery job: an alert whose incident plan cannot be read is still sent, addressed without a name', async () => {
    clock.set('2026-11-23T08:00:00Z');
    const m = await memberWithContacts(t, [1], { kind: 'daily', local_time: '19:00', time_zone: 'UTC', grace_minutes: 0 });
    clock.set('2026-11-23T19:00:00Z');
    await sweep();
    const [inc] = await incidentOf(m.sub);
    await t.db.pool.query(`update incidents set plan = jsonb_set(plan, '{tiers}', '"not a list"') where id = $1`, [inc!.id]);
    const sent: OutboundMessage[] = [];
    const capture: Channel = { provider: 'capture', async send(msg) { sent.push(msg); return { provider: 'capture', providerMessageId: randomUUID() }; } };
    const { rows } = await t.db.pool.query<{ id: string }>(`select id from deliveries where incident_id = $1 and status = 'pending'`, [inc!.id]);
    expect(rows.length).toBeGreaterThan(0);
    for (const d of rows) {
      expect(await processDelivery({ pool: t.db.pool, channels: { push: capture, sms: capture, email: capture }, clock: () => clock.now, log: createLogger('silent') }, d.id, 0, 12)).toBe('sent');
    }
    expect(sent.map((x) => x.body).join('\n')).toMatch(/missed/i);
  });

  it('escalation steps: an incident whose plan cannot be read is set aside while another member\'s step goes out', async () => {
    clock.set('2026-11-23T08:00:00Z');
    const bad = await memberWithContacts(t, [1, 2], { kind: 'daily', local_time: '10:00', time_zone: 'UTC', grace_minutes: 0 });
    const good = await memberWithContacts(t, [1, 2], { kind: 'daily', local_time: '10:00', time_zone: 'UTC', grace_minutes: 0 });
    clock.set('2026-11-23T10:00:00Z');
    await sweep();
    const [badInc] = await incidentOf(bad.sub);
    const [goodInc] = await incidentOf(good.sub);
    await t.db.pool.query(`update incidents set plan = jsonb_set(plan, '{tiers}', '"not a list"') where id = $1`, [badInc!.id]);
    failures.length = 0;
    clock.set('2026-11-23T10:15:00Z');
    await sweep();
    expect((await alertsOf(goodInc!.id)).some((d) => d.step_no === 2)).toBe(true);
    expect(failures).toEqual(['steps']);
    expect(await failureOf('steps', badInc!.id)).toMatchObject({ failures: 1 });
  });

  it('escalation steps: after repeated failures an incident is quarantined, counted by the auditor and /readyz, and still retried with capped backoff', async () => {
    clock.set('2026-11-23T08:00:00Z');
    const bad = await memberWithContacts(t, [1, 2], { kind: 'daily', local_time: '11:00', time_zone: 'UTC', grace_minutes: 0 });
    clock.set('2026-11-23T11:00:00Z');
    await sweep();
    const [inc] = await incidentOf(bad.sub);
    const heal = await poisonWrites('deliveries', bad.sub);
    clock.set('2026-11-23T11:15:00Z');
    for (let i = 1; i <= QUARANTINE_AFTER; i += 1) {
      await sweep();
      expect((await failureOf('steps', inc!.id))?.failures).toBe(i);
      clock.add(failureBackoffMs(i) / 60_000);
    }
    const metrics = createMetrics();
    const audit = await runAudit({ pool: t.db.pool, clock: () => clock.now, log: createLogger('silent'), metrics, settings: DEFAULT_AUDITOR_SETTINGS });
    expect(audit.sweep_failures?.steps).toEqual({ failing: 1, quarantined: 1 });
    // A quarantined item is reported apart: it does not make every other timer look stalled.
    expect(audit.overdue.escalation_step.count).toBe(0);
    expect(await metrics.registry.getSingleMetricAsString('pruuf_sweep_quarantined_items')).toMatch(/pruuf_sweep_quarantined_items\{lane="steps"\} 1/);
    const ready = await t.app.inject({ method: 'GET', url: '/readyz' });
    expect(ready.json().alerting.quarantined.steps).toBe(1);
    await heal();
    await sweep();
    expect(await failureOf('steps', inc!.id)).toBeUndefined();
    expect((await alertsOf(inc!.id)).some((d) => d.step_no === 2)).toBe(true);
  });

  it('acknowledgement timeouts: an incident that fails is set aside while another member\'s escalation resumes', async () => {
    clock.set('2026-11-23T08:00:00Z');
    const bad = await memberWithContacts(t, [1, 2], { kind: 'daily', local_time: '12:00', time_zone: 'UTC', grace_minutes: 0 });
    const good = await memberWithContacts(t, [1, 2], { kind: 'daily', local_time: '12:00', time_zone: 'UTC', grace_minutes: 0 });
    clock.set('2026-11-23T12:00:00Z');
    await sweep();
    const [badInc] = await incidentOf(bad.sub);
    const [goodInc] = await incidentOf(good.sub);
    for (const [inc, m] of [[badInc!, bad], [goodInc!, good]] as const) {
      await t.db.pool.query(`update incidents set state = 'acknowledged', acknowledged_by = $2, acknowledged_at = $3, ack_expires_at = $3, next_step_at = null where id = $1`,
        [inc.id, m.contacts[0]!.id, clock.now]);
    }
    await t.db.pool.query(`update incidents set plan = '{"tiers": 7}' where id = $1`, [badInc!.id]);
    failures.length = 0;
    clock.add(1);
    await sweep();
    expect((await incidentOf(good.sub))[0]!.state).toBe('open');
    expect((await alertsOf(goodInc!.id)).some((d) => d.step_no === 2)).toBe(true);
    expect(failures).toEqual(['ack']);
    expect((await incidentOf(bad.sub))[0]!.state).toBe('acknowledged'); // rolled back, not half-done
  });

  it('reminders: a schedule whose reminder fails is set aside while another member\'s reminder and an unrelated alert go out', async () => {
    clock.set('2026-11-23T08:00:00Z');
    const bad = await memberWithContacts(t, [1], { kind: 'daily', local_time: '13:00', time_zone: 'UTC', reminder_minutes: [30] });
    const good = await memberWithContacts(t, [1], { kind: 'daily', local_time: '13:00', time_zone: 'UTC', reminder_minutes: [30] });
    const alerting = await memberWithContacts(t, [1], { kind: 'daily', local_time: '12:30', time_zone: 'UTC', grace_minutes: 0 });
    await t.db.pool.query(`update members set email = 'bad@example.test' where id = $1`, [bad.sub]);
    await t.db.pool.query(`update members set email = 'good@example.test' where id = $1`, [good.sub]);
    const heal = await poisonWrites('deliveries', bad.sub);
    failures.length = 0;
    clock.set('2026-11-23T12:30:00Z');
    await sweep();
    expect((await t.db.pool.query(`select 1 from deliveries where member_id = $1 and kind = 'reminder'`, [good.sub])).rowCount).toBe(1);
    expect(await incidentOf(alerting.sub)).toHaveLength(1);
    expect(failures).toEqual(['reminders']);
    expect(await failureOf('reminders', bad.scheduleId)).toMatchObject({ failures: 1 });
    await heal();
    clock.add(failureBackoffMs(1) / 60_000);
    await sweep();
    expect((await t.db.pool.query(`select 1 from deliveries where member_id = $1 and kind = 'reminder'`, [bad.sub])).rowCount).toBe(1);
  });

  it('the refill job: a schedule it cannot refill is set aside, every other schedule is refilled and still alerts', async () => {
    clock.set('2026-11-23T08:00:00Z');
    const bad = await memberWithContacts(t, [1], { kind: 'daily', local_time: '14:00', time_zone: 'UTC', grace_minutes: 0 });
    const good = await memberWithContacts(t, [1], { kind: 'daily', local_time: '14:00', time_zone: 'UTC', grace_minutes: 0 });
    await t.db.pool.query('update schedules set following_deadline_at = null where id = any($1)', [[bad.scheduleId, good.scheduleId]]);
    const heal = await poisonWrites('schedules', bad.sub);
    const refilled = await refillFollowing(t.db.pool, clock.now, { log: createLogger('silent') });
    expect(refilled).toBeGreaterThanOrEqual(2);
    const { rows } = await t.db.pool.query<{ id: string; following_deadline_at: Date | null }>('select id, following_deadline_at from schedules where id = any($1)', [[bad.scheduleId, good.scheduleId]]);
    expect(rows.find((r) => r.id === good.scheduleId)!.following_deadline_at?.toISOString()).toBe('2026-11-24T14:00:00.000Z');
    expect(await failureOf('refill', bad.scheduleId)).toMatchObject({ failures: 1 });
    await heal();
    clock.set('2026-11-23T14:00:00Z');
    await sweep();
    expect(await incidentOf(good.sub)).toHaveLength(1);
    expect(await incidentOf(bad.sub)).toHaveLength(1);
  });

  it('a sweep lane that fails as a whole does not stop the others', async () => {
    clock.set('2026-11-23T08:00:00Z');
    const m = await memberWithContacts(t, [1], { kind: 'daily', local_time: '15:00', time_zone: 'UTC', grace_minutes: 0, reminder_minutes: [30] });
    await t.db.pool.query(`update members set email = 'm@example.test' where id = $1`, [m.sub]);
    const other = await memberWithContacts(t, [1], { kind: 'daily', local_time: '14:30', time_zone: 'UTC', grace_minutes: 0 });
    // A column only the reminder lane's claim reads goes missing (a half-applied migration): that
    // whole lane fails, every statement of it; the missed-deadline lane must not care.
    await t.db.pool.query('alter table members rename column sms_opted_out to sms_opted_out_gone');
    try {
      clock.set('2026-11-23T14:30:00Z');
      failures.length = 0;
      const result = await sweep();
      expect(result.failedLanes).toEqual(['reminders']);
      expect(failures).toEqual(['lane:reminders']);
      expect(await incidentOf(other.sub)).toHaveLength(1);
    } finally {
      await t.db.pool.query('alter table members rename column sms_opted_out_gone to sms_opted_out');
    }
    await sweep();
    expect((await t.db.pool.query(`select 1 from deliveries where member_id = $1 and kind = 'reminder'`, [m.sub])).rowCount).toBe(1);
  });

  it('the delivery job: an alert whose message cannot be rendered fails at once, the contact\'s other channels and another member\'s alert still go out', async () => {
    clock.set('2026-11-23T08:00:00Z');
    const bad = await memberWithContacts(t, [1], { kind: 'daily', local_time: '16:00', time_zone: 'UTC', grace_minutes: 0 });
    const good = await memberWithContacts(t, [1], { kind: 'daily', local_time: '16:00', time_zone: 'UTC', grace_minutes: 0 });
    clock.set('2026-11-23T16:00:00Z');
    await sweep();
    const [badInc] = await incidentOf(bad.sub);
    const [goodInc] = await incidentOf(good.sub);
    const { rows: [broken] } = await t.db.pool.query<{ id: string }>(
      `update deliveries set render = jsonb_set(render, '{round}', '-1') where incident_id = $1 and channel = 'sms' returning id`, [badInc!.id]);
    const sent: OutboundMessage[] = [];
    const capture: Channel = { provider: 'capture', async send(msg) { sent.push(msg); return { provider: 'capture', providerMessageId: randomUUID() }; } };
    const channels: Channels = { push: capture, sms: capture, email: capture };
    const send = (id: string) => processDelivery({ pool: t.db.pool, channels, clock: () => clock.now, log: createLogger('silent') }, id, 0, 12);
    // The first try of twelve is its last: rendering it again would fail again.
    expect(await send(broken!.id)).toBe('failed');
    const { rows: [row] } = await t.db.pool.query('select status, error_class, attempts, last_error from deliveries where id = $1', [broken!.id]);
    expect(row).toMatchObject({ status: 'failed', error_class: 'permanent', attempts: 1 });
    expect(row.last_error).toMatch(/could not render/);
    const { rows: [failover] } = await t.db.pool.query(`select detail from incident_events where incident_id = $1 and type = 'failover'`, [badInc!.id]);
    expect(failover.detail.carried_by).toEqual(['email']);
    const others = await t.db.pool.query<{ id: string }>(
      `select id from deliveries where incident_id = any($1) and id <> $2 and status = 'pending' order by id`, [[badInc!.id, goodInc!.id], broken!.id]);
    for (const d of others.rows) expect(await send(d.id)).toBe('sent');
    expect(sent).toHaveLength(3); // the broken member's email, the other member's SMS and email
  });

  it('a check-in resolves an incident whose snapshot is too odd to render the all clear from: escalation stops, and the timeline says so', async () => {
    clock.set('2026-11-23T08:00:00Z');
    const m = await memberWithContacts(t, [1, 2], { kind: 'daily', local_time: '17:00', time_zone: 'UTC', grace_minutes: 0 });
    clock.set('2026-11-23T17:00:00Z');
    await sweep();
    const [inc] = await incidentOf(m.sub);
    await t.db.pool.query(`update deliveries set status = 'sent', attempts = 1 where incident_id = $1`, [inc!.id]);
    await t.db.pool.query(`update incidents set plan = '{"tiers": 3}' where id = $1`, [inc!.id]);
    clock.add(5);
    const res = await t.app.inject({ method: 'POST', url: '/v1/check-ins', headers: m.headers });
    expect(res.statusCode).toBe(201);
    expect(res.json().resolved_incident_ids).toEqual([inc!.id]);
    expect((await incidentOf(m.sub))[0]!.state).toBe('resolved');
    const { rows } = await t.db.pool.query(`select type from incident_events where incident_id = $1 and type = 'all_clear_failed'`, [inc!.id]);
    expect(rows).toHaveLength(1);
  });
});
