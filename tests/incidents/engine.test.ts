import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { sweepOnce } from '../../src/incidents/sweep.js';
import { startTestApp, type TestApp } from '../helpers/app.js';
import { setVerifiedPhone } from '../helpers/phone.js';
import { alerts, memberWithContacts, sweepDeps, testClock, tokenFrom } from './helpers.js';

const clock = testClock('2026-11-23T08:00:00Z');

describe('missed deadlines and escalation', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await startTestApp({ clock: () => clock.now, env: { FREE_PLAN_CHANNELS: 'push,sms,email', FREE_PLAN_CONTACTS: '10' } });
  });
  afterAll(() => t.close());

  it('alerts every tier-1 contact on all their channels, once, when grace runs out, and nobody before', async () => {
    clock.set('2026-11-23T08:00:00Z');
    const m = await memberWithContacts(t, [1, 1, 2]);
    clock.set('2026-11-23T09:59:59Z');
    await sweepOnce(sweepDeps(t, clock));
    expect((await t.db.pool.query('select 1 from incidents where member_id = $1', [m.sub])).rowCount).toBe(0);
    clock.set('2026-11-23T10:00:00Z');
    await sweepOnce(sweepDeps(t, clock));
    const { rows: [inc] } = await t.db.pool.query('select * from incidents where member_id = $1', [m.sub]);
    expect(inc).toMatchObject({ kind: 'missed', state: 'open', step_no: 1 });
    expect(inc.deadline_at.toISOString()).toBe('2026-11-23T09:30:00.000Z');
    expect(inc.next_step_at.toISOString()).toBe('2026-11-23T10:15:00.000Z');
    const sent = await alerts(t.db.pool, inc.id);
    const tier1 = m.contacts.filter((c) => c.tier === 1).map((c) => c.id).sort();
    expect(sent.map((d) => `${d.contact_id}:${d.channel}`).sort()).toEqual(tier1.flatMap((id) => [`${id}:email`, `${id}:sms`]).sort());
    // A second sweep (or a second sweeper) finds nothing more to do.
    await sweepOnce(sweepDeps(t, clock));
    expect((await t.db.pool.query('select 1 from incidents where member_id = $1', [m.sub])).rowCount).toBe(1);
    expect(await alerts(t.db.pool, inc.id)).toHaveLength(4);
    // The schedule moved on to tomorrow.
    const s = (await t.app.inject({ method: 'GET', url: `/v1/schedules/${m.scheduleId}`, headers: m.headers })).json();
    expect(s.next_deadline_at).toBe('2026-11-24T09:30:00.000Z');
  });

  it('escalates tier by tier, then repeats all tiers, up to the bound, following the clock', async () => {
    clock.set('2026-11-23T08:00:00Z');
    const m = await memberWithContacts(t, [1, 2, 3]);
    clock.set('2026-11-23T10:00:00Z');
    await sweepOnce(sweepDeps(t, clock));
    const { rows: [inc] } = await t.db.pool.query('select id from incidents where member_id = $1', [m.sub]);
    const tiersAt = async () => [...new Set((await alerts(t.db.pool, inc.id)).map((d) => m.contacts.find((c) => c.id === d.contact_id)!.tier))];
    expect(await tiersAt()).toEqual([1]);
    clock.add(14);
    await sweepOnce(sweepDeps(t, clock));
    expect(await tiersAt()).toEqual([1]);
    clock.add(1);
    await sweepOnce(sweepDeps(t, clock));
    expect(await tiersAt()).toEqual([1, 2]);
    clock.add(15);
    await sweepOnce(sweepDeps(t, clock));
    expect(await tiersAt()).toEqual([1, 2, 3]);
    for (let i = 0; i < 5; i += 1) {
      clock.add(15);
      await sweepOnce(sweepDeps(t, clock));
    }
    // Round 1: three steps of one tier; rounds 2 and 3: every tier at once; then it stops.
    const all = await alerts(t.db.pool, inc.id);
    const steps = all.filter((d) => d.channel !== 'voice').reduce<Record<number, number>>((acc, d) => ({ ...acc, [d.step_no]: (acc[d.step_no] ?? 0) + 1 }), {});
    expect(steps).toEqual({ 1: 2, 2: 2, 3: 2, 4: 6, 5: 6 });
    // Still open when step 2 came due: tier 1 was called then, once (VOICE_CALL_AFTER_STEPS = 1).
    expect(all.filter((d) => d.channel === 'voice').map((d) => `${d.step_no}:${d.contact_id}`)).toEqual([`2:${m.contacts[0]!.id}`]);
  });

  it('stops escalating on "I\'m on it", tells the others, and resumes when the acknowledgement times out', async () => {
    clock.set('2026-11-23T08:00:00Z');
    const m = await memberWithContacts(t, [1, 1, 2]);
    clock.set('2026-11-23T10:00:00Z');
    await sweepOnce(sweepDeps(t, clock));
    const { rows: [inc] } = await t.db.pool.query('select id from incidents where member_id = $1', [m.sub]);
    const first = (await alerts(t.db.pool, inc.id)).find((d) => d.contact_id === m.contacts[0]!.id && d.channel === 'email')!;
    clock.add(5);
    const ack = await t.app.inject({ method: 'POST', url: `/a/${tokenFrom(first.body)}/ack` });
    expect(ack.statusCode).toBe(200);
    expect(ack.json()).toMatchObject({ state: 'acknowledged', acknowledged_by: 'Contact 0' });
    // The other alerted contact hears who is on it (once the first alert reached them).
    await t.db.pool.query(`update deliveries set status = 'sent' where incident_id = $1`, [inc.id]);
    // Nothing escalates while acknowledged.
    clock.add(30);
    await sweepOnce(sweepDeps(t, clock));
    expect(new Set((await alerts(t.db.pool, inc.id)).map((d) => d.step_no))).toEqual(new Set([1]));
    clock.add(31); // 66 minutes after the acknowledgement
    const r = await sweepOnce(sweepDeps(t, clock));
    expect(r.ackTimeouts).toBeGreaterThanOrEqual(1);
    const tier2 = m.contacts.find((c) => c.tier === 2)!.id;
    const step2 = (await alerts(t.db.pool, inc.id)).filter((d) => d.step_no === 2);
    expect(step2.filter((d) => d.channel !== 'voice').map((d) => d.contact_id)).toEqual([tier2, tier2]);
    // Tier 1 is called at step 2, except the one whose "I'm on it" lapsed (asked by message instead).
    expect(step2.filter((d) => d.channel === 'voice').map((d) => d.contact_id)).toEqual([m.contacts[1]!.id]);
    const { rows: [after] } = await t.db.pool.query('select state from incidents where id = $1', [inc.id]);
    expect(after.state).toBe('open');
  });

  it('tells the other alerted contacts who is on it', async () => {
    clock.set('2026-11-23T08:00:00Z');
    const m = await memberWithContacts(t, [1, 1]);
    clock.set('2026-11-23T10:00:00Z');
    await sweepOnce(sweepDeps(t, clock));
    const { rows: [inc] } = await t.db.pool.query('select id from incidents where member_id = $1', [m.sub]);
    await t.db.pool.query(`update deliveries set status = 'sent' where incident_id = $1`, [inc.id]);
    const mine = (await alerts(t.db.pool, inc.id)).find((d) => d.contact_id === m.contacts[1]!.id && d.channel === 'sms')!;
    await t.app.inject({ method: 'POST', url: `/a/${tokenFrom(mine.body)}/ack` });
    const notices = await alerts(t.db.pool, inc.id, 'ack_notice');
    expect(notices.map((d) => `${d.contact_id}:${d.channel}`).sort()).toEqual([`${m.contacts[0]!.id}:email`, `${m.contacts[0]!.id}:sms`]);
    expect(notices[0]!.body).toContain('Contact 1');
  });

  it('"This needs more help" alerts every remaining tier now', async () => {
    clock.set('2026-11-23T08:00:00Z');
    const m = await memberWithContacts(t, [1, 2, 3]);
    clock.set('2026-11-23T10:00:00Z');
    await sweepOnce(sweepDeps(t, clock));
    const { rows: [inc] } = await t.db.pool.query('select id from incidents where member_id = $1', [m.sub]);
    const mine = (await alerts(t.db.pool, inc.id))[0]!;
    const res = await t.app.inject({ method: 'POST', url: `/a/${tokenFrom(mine.body)}/escalate` });
    expect(res.statusCode).toBe(200);
    const step2 = (await alerts(t.db.pool, inc.id)).filter((d) => d.step_no === 2).map((d) => m.contacts.find((c) => c.id === d.contact_id)!.tier);
    expect([...new Set(step2)].sort()).toEqual([2, 3]);
  });

  it('on a check-in mid-escalation: resolves, withdraws pending alerts, and sends the all clear only to contacts already alerted', async () => {
    clock.set('2026-11-23T08:00:00Z');
    const m = await memberWithContacts(t, [1, 2]);
    clock.set('2026-11-23T10:00:00Z');
    await sweepOnce(sweepDeps(t, clock));
    const { rows: [inc] } = await t.db.pool.query('select id from incidents where member_id = $1', [m.sub]);
    await t.db.pool.query(`update deliveries set status = 'sent', attempts = 1 where incident_id = $1`, [inc.id]);
    clock.add(15);
    await sweepOnce(sweepDeps(t, clock)); // tier 2's alert is written but not handed to a provider yet
    clock.add(1);
    const res = await t.app.inject({ method: 'POST', url: '/v1/check-ins', headers: m.headers });
    expect(res.json().resolved_incident_ids).toEqual([inc.id]);
    const all = await alerts(t.db.pool, inc.id);
    expect(all.filter((d) => d.step_no === 2).every((d) => d.status === 'cancelled')).toBe(true);
    const clear = await alerts(t.db.pool, inc.id, 'all_clear');
    expect([...new Set(clear.map((d) => d.contact_id))]).toEqual([m.contacts[0]!.id]);
    const timeline = (await t.app.inject({ method: 'GET', url: `/v1/incidents/${inc.id}`, headers: m.headers })).json();
    expect(timeline).toMatchObject({ state: 'resolved', resolution: 'check_in' });
    // Step 2 also wrote a call to tier 1 (withdrawn with the rest: step 2 is all cancelled).
    expect(timeline.events.map((e: { type: string }) => e.type)).toEqual(['opened', 'step', 'step', 'call_started', 'resolved']);
    // A resolved incident sends nothing more, and its links say so.
    clock.add(60);
    const before = (await alerts(t.db.pool, inc.id)).length;
    await sweepOnce(sweepDeps(t, clock));
    expect(await alerts(t.db.pool, inc.id)).toHaveLength(before);
    const late = await t.app.inject({ method: 'POST', url: `/a/${tokenFrom(all[0]!.body)}/ack` });
    expect(late.statusCode).toBe(409);
  });

  it('does not alert for a deadline the member checked in for after grace but before the sweep', async () => {
    clock.set('2026-11-23T08:00:00Z');
    const m = await memberWithContacts(t, [1]);
    clock.set('2026-11-23T10:05:00Z'); // our sweeper was down: past alert_at
    await t.app.inject({ method: 'POST', url: '/v1/check-ins', headers: m.headers });
    await sweepOnce(sweepDeps(t, clock));
    const { rows } = await t.db.pool.query('select count(*)::int as n from incidents where member_id = $1', [m.sub]);
    expect(rows[0].n).toBe(0);
  });

  it('after an outage of our own, alerts each deadline that was really missed, and says it is late', async () => {
    clock.set('2026-11-23T08:00:00Z');
    const m = await memberWithContacts(t, [1]);
    clock.set('2026-11-25T11:00:00Z'); // down for two days
    await sweepOnce(sweepDeps(t, clock));
    const { rows } = await t.db.pool.query('select deadline_at, delayed_by_seconds from incidents where member_id = $1 order by deadline_at', [m.sub]);
    expect(rows.map((x) => x.deadline_at.toISOString())).toEqual(['2026-11-23T09:30:00.000Z', '2026-11-24T09:30:00.000Z', '2026-11-25T09:30:00.000Z']);
    expect(rows.every((x) => x.delayed_by_seconds > 0)).toBe(true);
  });

  it('opens no incident for a deadline inside a pause created after it was set', async () => {
    clock.set('2026-11-23T08:00:00Z');
    const m = await memberWithContacts(t, [1]);
    clock.set('2026-11-23T09:45:00Z'); // late, then goes on holiday
    await t.db.pool.query(`insert into pauses (member_id, starts_at, ends_at) values ($1, '2026-11-23T09:00:00Z', '2026-11-25T00:00:00Z')`, [m.sub]);
    clock.set('2026-11-23T10:00:00Z');
    const r = await sweepOnce(sweepDeps(t, clock));
    expect(r.skippedPaused).toBe(1);
    const { rows } = await t.db.pool.query('select count(*)::int as n from incidents where member_id = $1', [m.sub]);
    expect(rows[0].n).toBe(0);
    const s = (await t.app.inject({ method: 'GET', url: `/v1/schedules/${m.scheduleId}`, headers: m.headers })).json();
    expect(s.next_deadline_at).toBe('2026-11-25T09:30:00.000Z');
  });

  it('SOS alerts every tier at once, with the location', async () => {
    clock.set('2026-11-23T08:00:00Z');
    const m = await memberWithContacts(t, [1, 2, 3]);
    const res = await t.app.inject({ method: 'POST', url: '/v1/sos', headers: m.headers, payload: { note: 'fell in the kitchen', location: { lat: 51.5, lng: -0.12 } } });
    expect(res.statusCode).toBe(201);
    expect(res.json()).toMatchObject({ kind: 'sos', state: 'open' });
    const sent = await alerts(t.db.pool, res.json().id);
    expect(new Set(sent.map((d) => d.contact_id)).size).toBe(3);
    expect(sent.find((d) => d.channel === 'email')!.body).toContain('51.5');
    const resolved = await t.app.inject({ method: 'POST', url: `/v1/incidents/${res.json().id}/resolve`, headers: m.headers });
    expect(resolved.json()).toMatchObject({ state: 'resolved', resolution: 'member_resolved' });
    expect((await t.app.inject({ method: 'POST', url: `/v1/incidents/${res.json().id}/resolve`, headers: m.headers })).statusCode).toBe(409);
    expect((await t.app.inject({ method: 'GET', url: `/v1/incidents/${res.json().id}`, headers: await t.as('00000000-0000-4000-8000-00000000beef') })).statusCode).toBe(404);
  });
});

describe('reminders and check-in notes', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await startTestApp({ clock: () => clock.now });
  });
  afterAll(() => t.close());

  it('reminds the member 30 minutes and 0 minutes before the deadline, with a check-in link, and not after a check-in', async () => {
    clock.set('2026-11-23T08:00:00Z');
    const m = await memberWithContacts(t, []);
    const kinds = async () => (await t.db.pool.query(`select body from deliveries where member_id = $1 and kind = 'reminder' order by created_at`, [m.sub])).rows;
    clock.set('2026-11-23T08:59:00Z');
    await sweepOnce(sweepDeps(t, clock));
    expect(await kinds()).toHaveLength(0);
    clock.set('2026-11-23T09:00:00Z');
    await sweepOnce(sweepDeps(t, clock));
    const first = await kinds();
    expect(first).toHaveLength(1);
    expect(first[0].body).toMatch(/\/c\/[\w-]+/);
    await sweepOnce(sweepDeps(t, clock));
    expect(await kinds()).toHaveLength(1);
    clock.set('2026-11-23T09:30:00Z');
    await sweepOnce(sweepDeps(t, clock));
    expect(await kinds()).toHaveLength(2);
    // Checked in: tomorrow's reminders are armed, nothing more today.
    clock.set('2026-11-23T09:31:00Z');
    await t.app.inject({ method: 'POST', url: '/v1/check-ins', headers: m.headers });
    clock.set('2026-11-23T09:40:00Z');
    await sweepOnce(sweepDeps(t, clock));
    expect(await kinds()).toHaveLength(2);
    const { rows } = await t.db.pool.query('select next_reminder_at from schedules where id = $1', [m.scheduleId]);
    expect(rows[0].next_reminder_at.toISOString()).toBe('2026-11-24T09:00:00.000Z');
  });

  it('reminds a member with a phone by SMS, with "Reply OK", only on a plan with SMS', async () => {
    clock.set('2026-11-23T08:00:00Z');
    const free = await memberWithContacts(t, []);
    await setVerifiedPhone(t.db.pool, free.sub, '+447700900301');
    clock.set('2026-11-23T09:00:00Z');
    await sweepOnce(sweepDeps(t, clock));
    const sent = async (memberId: string) =>
      (await t.db.pool.query<{ channel: string; address: string; body: string }>(`select channel, address, body from deliveries where member_id = $1 and kind = 'reminder' order by channel`, [memberId])).rows;
    expect((await sent(free.sub)).map((d) => d.channel)).not.toContain('sms');

    const plus = { ...sweepDeps(t, clock) };
    plus.settings = { ...plus.settings, plans: { ...plus.settings.plans, freePlanChannels: ['push', 'sms', 'email'] } };
    clock.set('2026-11-23T08:00:00Z');
    const paid = await memberWithContacts(t, []);
    await setVerifiedPhone(t.db.pool, paid.sub, '+447700900302');
    clock.set('2026-11-23T09:00:00Z');
    await sweepOnce(plus);
    const sms = (await sent(paid.sub)).filter((d) => d.channel === 'sms');
    expect(sms).toHaveLength(1);
    expect(sms[0]).toMatchObject({ address: '+447700900302' });
    expect(sms[0]!.body).toContain('Reply OK');
  });

  it('sends a short "checked in" note to contacts who asked, never by SMS', async () => {
    clock.set('2026-11-23T08:00:00Z');
    const m = await memberWithContacts(t, [1, 1]);
    await t.app.inject({ method: 'PATCH', url: `/v1/contacts/${m.contacts[0]!.id}`, headers: m.headers, payload: { notify_on_check_in: true } });
    await t.db.pool.query(`update contacts set status = 'active' where member_id = $1`, [m.sub]);
    await t.app.inject({ method: 'POST', url: '/v1/check-ins', headers: m.headers });
    let notes: { contact_id: string; channel: string }[] = [];
    for (let i = 0; i < 50 && notes.length === 0; i += 1) {
      notes = (await t.db.pool.query(`select contact_id, channel from deliveries where member_id = $1 and kind = 'check_in_note'`, [m.sub])).rows;
      await new Promise((r) => setTimeout(r, 20));
    }
    expect(notes).toEqual([{ contact_id: m.contacts[0]!.id, channel: 'email' }]);
  });
});
