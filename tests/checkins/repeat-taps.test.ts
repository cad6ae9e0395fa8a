import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { checkInsSettled } from '../../src/checkins/service.js';
import { sweepOnce } from '../../src/incidents/sweep.js';
import { startTestApp, type TestApp } from '../helpers/app.js';
import { memberWithContacts, sweepDeps, testClock } from '../incidents/helpers.js';

// Issue 17: every tap counts once. A reminder's link, tapped again, checks in once; contacts hear
// "checked in" once a day and never beside an all clear; a late check-in answers the deadline it missed.
const clock = testClock('2026-11-23T08:00:00Z');
const at = (iso: string, ms = 0) => { clock.now = new Date(Date.parse(iso) + ms); };

let t: TestApp;
beforeAll(async () => {
  t = await startTestApp({ clock: () => clock.now });
});
afterAll(() => t.close());

const count = async (sql: string, id: string) => (await t.db.pool.query<{ n: number }>(sql, [id])).rows[0]!.n;
const checkIns = (memberId: string) => count('select count(*)::int as n from check_ins where member_id = $1', memberId);
const notes = (memberId: string) => count(`select count(*)::int as n from deliveries where member_id = $1 and kind = 'check_in_note'`, memberId);
const checkIn = (headers: Record<string, string>) => t.app.inject({ method: 'POST', url: '/v1/check-ins', headers });
const schedule = async (headers: Record<string, string>, id: string) => (await t.app.inject({ method: 'GET', url: `/v1/schedules/${id}`, headers })).json();

/** A member (09:30 UTC, grace 30, reminders [30, 0]) whose first contact wants "checked in" notes. */
async function member(tiers = [1], s?: object) {
  const m = await memberWithContacts(t, tiers, s);
  const res = await t.app.inject({ method: 'PATCH', url: `/v1/contacts/${m.contacts[0]!.id}`, headers: m.headers, payload: { notify_on_check_in: true } });
  expect(res.statusCode).toBe(200);
  await t.db.pool.query(`update contacts set status = 'active' where member_id = $1`, [m.sub]);
  return m;
}

/** The check-in link of the member's latest reminder. */
async function reminderLink(memberId: string): Promise<string> {
  const { rows } = await t.db.pool.query<{ body: string }>(`select body from deliveries where member_id = $1 and kind = 'reminder' and channel = 'email' order by created_at desc limit 1`, [memberId]);
  const m = /\/c\/([\w-]+)/.exec(rows[0]?.body ?? '');
  if (m === null) throw new Error('no reminder with a check-in link');
  return m[1]!;
}

describe('a reminder link tapped again', () => {
  it('checks in once: the same answer, one check-in, one note', async () => {
    at('2026-11-23T08:00:00Z');
    const m = await member();
    at('2026-11-23T09:00:00Z', 4);
    await sweepOnce(sweepDeps(t, clock));
    const link = await reminderLink(m.sub);
    at('2026-11-23T09:10:00Z');
    const first = await t.app.inject({ method: 'POST', url: `/c/${link}` });
    expect(first.statusCode).toBe(201);
    expect(first.json()).toMatchObject({ checked_in_at: '2026-11-23T09:10:00.000Z', next_deadline_at: '2026-11-24T09:30:00.000Z' });
    await checkInsSettled(t.db.pool);
    expect(await notes(m.sub)).toBe(1);
    at('2026-11-23T09:12:00Z');
    const again = await t.app.inject({ method: 'POST', url: `/c/${link}` });
    expect(again.statusCode).toBe(201);
    expect(again.json()).toEqual(first.json());
    // A browser posting the form again gets the same page.
    const page = await t.app.inject({ method: 'POST', url: `/c/${link}`, headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'text/html' }, payload: '' });
    expect(page.statusCode).toBe(201);
    expect(page.body).toContain('you are checked in');
    await checkInsSettled(t.db.pool);
    expect(await checkIns(m.sub)).toBe(1);
    expect(await notes(m.sub)).toBe(1);
    expect((await schedule(m.headers, m.scheduleId)).next_deadline_at).toBe('2026-11-24T09:30:00.000Z');
  });

  it('records one check-in when taps arrive together', async () => {
    at('2026-11-23T08:00:00Z');
    const m = await member();
    at('2026-11-23T09:00:00Z', 4);
    await sweepOnce(sweepDeps(t, clock));
    const link = await reminderLink(m.sub);
    at('2026-11-23T09:10:00Z');
    const answers = await Promise.all(Array.from({ length: 4 }, () => t.app.inject({ method: 'POST', url: `/c/${link}` })));
    expect(answers.map((a) => a.statusCode)).toEqual([201, 201, 201, 201]);
    expect(new Set(answers.map((a) => a.json().id)).size).toBe(1);
    await checkInsSettled(t.db.pool);
    expect(await checkIns(m.sub)).toBe(1);
    expect(await notes(m.sub)).toBe(1);
  });

  it('records nothing when a check-in in the app already covered its deadline, and answers with that check-in', async () => {
    at('2026-11-23T08:00:00Z');
    const m = await member();
    at('2026-11-23T09:00:00Z', 4);
    await sweepOnce(sweepDeps(t, clock));
    const link = await reminderLink(m.sub);
    at('2026-11-23T09:05:00Z');
    const app = (await checkIn(m.headers)).json();
    // Later that day, after the deadline's grace: a new check-in here would count for tomorrow.
    at('2026-11-23T11:00:00Z');
    const tap = await t.app.inject({ method: 'POST', url: `/c/${link}` });
    expect(tap.statusCode).toBe(201);
    expect(tap.json()).toMatchObject({ id: app.id, checked_in_at: '2026-11-23T09:05:00.000Z' });
    expect(await checkIns(m.sub)).toBe(1);
    expect((await schedule(m.headers, m.scheduleId)).next_deadline_at).toBe('2026-11-24T09:30:00.000Z');
  });

  it('checks in when its deadline was missed (resolving the incident), and not twice', async () => {
    at('2026-11-23T08:00:00Z');
    const m = await member();
    at('2026-11-23T09:00:00Z', 4);
    await sweepOnce(sweepDeps(t, clock));
    const link = await reminderLink(m.sub);
    at('2026-11-23T10:00:00Z', 3);
    await sweepOnce(sweepDeps(t, clock));
    const { rows: [inc] } = await t.db.pool.query<{ id: string }>('select id from incidents where member_id = $1', [m.sub]);
    await t.db.pool.query(`update deliveries set status = 'sent', attempts = 1 where incident_id = $1`, [inc!.id]);
    at('2026-11-23T10:05:00Z');
    const first = await t.app.inject({ method: 'POST', url: `/c/${link}` });
    expect(first.json()).toMatchObject({ resolved_incident_ids: [inc!.id], next_deadline_at: '2026-11-24T09:30:00.000Z' });
    const clears = await count(`select count(*)::int as n from deliveries where incident_id = $1 and kind = 'all_clear'`, inc!.id);
    expect(clears).toBeGreaterThan(0);
    at('2026-11-23T10:06:00Z');
    const again = await t.app.inject({ method: 'POST', url: `/c/${link}` });
    expect(again.json()).toEqual(first.json());
    await checkInsSettled(t.db.pool);
    expect(await checkIns(m.sub)).toBe(1);
    expect(await count(`select count(*)::int as n from deliveries where incident_id = $1 and kind = 'all_clear'`, inc!.id)).toBe(clears);
    expect((await schedule(m.headers, m.scheduleId)).next_deadline_at).toBe('2026-11-24T09:30:00.000Z');
  });
});

describe('"checked in" notes', () => {
  it('go out once per member per day, the day being the member\'s own', async () => {
    at('2026-11-23T08:00:00Z');
    const m = await member([1], { kind: 'daily', local_time: '09:30', grace_minutes: 30 });
    expect((await t.app.inject({ method: 'PATCH', url: '/v1/me', headers: m.headers, payload: { time_zone: 'America/New_York' } })).statusCode).toBe(200);
    // 09:00, 15:00 and 23:30 on Monday 23 November in New York: one note.
    for (const when of ['2026-11-23T14:00:00Z', '2026-11-23T20:00:00Z', '2026-11-24T04:30:00Z']) {
      at(when);
      expect((await checkIn(m.headers)).statusCode).toBe(201);
      await checkInsSettled(t.db.pool);
    }
    expect(await notes(m.sub)).toBe(1);
    // 00:30 on Tuesday in New York (05:30 UTC): a new day, a new note.
    at('2026-11-24T05:30:00Z');
    await checkIn(m.headers);
    await checkInsSettled(t.db.pool);
    expect(await notes(m.sub)).toBe(2);
  });

  it('never go out with an all clear: a check-in that resolves an incident sends the all clear to the alerted, and no note to anyone', async () => {
    at('2026-11-23T08:00:00Z');
    const m = await member([1, 2]);
    await t.app.inject({ method: 'PATCH', url: `/v1/contacts/${m.contacts[1]!.id}`, headers: m.headers, payload: { notify_on_check_in: true } });
    await t.db.pool.query(`update contacts set status = 'active' where member_id = $1`, [m.sub]);
    at('2026-11-23T10:00:00Z', 3);
    await sweepOnce(sweepDeps(t, clock));
    const { rows: [inc] } = await t.db.pool.query<{ id: string }>('select id from incidents where member_id = $1', [m.sub]);
    await t.db.pool.query(`update deliveries set status = 'sent', attempts = 1 where incident_id = $1`, [inc!.id]);
    at('2026-11-23T10:05:00Z');
    expect((await checkIn(m.headers)).json().resolved_incident_ids).toEqual([inc!.id]);
    await checkInsSettled(t.db.pool);
    const clear = (await t.db.pool.query<{ contact_id: string }>(`select distinct contact_id from deliveries where incident_id = $1 and kind = 'all_clear'`, [inc!.id])).rows;
    expect(clear).toEqual([{ contact_id: m.contacts[0]!.id }]);
    expect(await notes(m.sub)).toBe(0);
    // The day's first check-in was that one: no note later that day either.
    at('2026-11-23T15:00:00Z');
    await checkIn(m.headers);
    await checkInsSettled(t.db.pool);
    expect(await notes(m.sub)).toBe(0);
    at('2026-11-24T09:00:00Z');
    await checkIn(m.headers);
    await checkInsSettled(t.db.pool);
    expect(await notes(m.sub)).toBe(2); // both contacts who asked, the next day
  });
});

describe('a late check-in', () => {
  it('on a weekly schedule answers the Friday it missed, and next Friday stays due', async () => {
    at('2026-11-23T08:00:00Z'); // a Monday
    const m = await member([1], { kind: 'daily', local_time: '09:00', days: [5], time_zone: 'UTC', grace_minutes: 30 });
    expect((await schedule(m.headers, m.scheduleId)).next_deadline_at).toBe('2026-11-27T09:00:00.000Z');
    at('2026-11-27T09:30:00Z', 3);
    await sweepOnce(sweepDeps(t, clock));
    const { rows: [inc] } = await t.db.pool.query<{ id: string }>('select id from incidents where member_id = $1', [m.sub]);
    at('2026-11-27T09:30:02Z'); // missed by 2 s, checked in at once
    const res = (await checkIn(m.headers)).json();
    expect(res).toMatchObject({ resolved_incident_ids: [inc!.id], next_deadline_at: '2026-12-04T09:00:00.000Z' });
    await checkInsSettled(t.db.pool);
    expect((await schedule(m.headers, m.scheduleId)).next_deadline_at).toBe('2026-12-04T09:00:00.000Z');
    // An edit now (the resolving check-in is not counted again) keeps next Friday.
    at('2026-11-27T09:31:00Z');
    await t.app.inject({ method: 'PATCH', url: `/v1/schedules/${m.scheduleId}`, headers: m.headers, payload: { grace_minutes: 20 } });
    expect((await schedule(m.headers, m.scheduleId)).next_deadline_at).toBe('2026-12-04T09:00:00.000Z');
    // A check-in in next Friday's own window (after this one answered the miss) satisfies it.
    at('2026-12-02T12:00:00Z');
    expect((await checkIn(m.headers)).json().next_deadline_at).toBe('2026-12-11T09:00:00.000Z');
  });

  it('on a daily schedule resolves today\'s incident and leaves tomorrow due', async () => {
    at('2026-11-23T08:00:00Z');
    const m = await member([1], { kind: 'daily', local_time: '09:00', time_zone: 'UTC', grace_minutes: 0 });
    at('2026-11-23T09:00:00Z', 3);
    await sweepOnce(sweepDeps(t, clock));
    at('2026-11-23T09:00:02Z');
    const res = (await checkIn(m.headers)).json();
    expect(res.resolved_incident_ids).toHaveLength(1);
    expect(res.next_deadline_at).toBe('2026-11-24T09:00:00.000Z');
    await checkInsSettled(t.db.pool);
    expect((await schedule(m.headers, m.scheduleId)).next_deadline_at).toBe('2026-11-24T09:00:00.000Z');
  });

  it('that resolves an incident still satisfies another schedule whose window it falls in', async () => {
    at('2026-11-23T08:00:00Z');
    const m = await member([1], { kind: 'daily', local_time: '09:00', time_zone: 'UTC', grace_minutes: 30 });
    const evening = (await t.app.inject({ method: 'POST', url: '/v1/schedules', headers: m.headers, payload: { kind: 'once', due_at: '2026-11-23T18:00:00Z' } })).json();
    at('2026-11-23T09:30:00Z', 3);
    await sweepOnce(sweepDeps(t, clock));
    at('2026-11-23T17:00:00Z');
    const res = (await checkIn(m.headers)).json();
    expect(res.resolved_incident_ids).toHaveLength(1);
    expect((await schedule(m.headers, evening.id)).next_deadline_at).toBeNull();
    expect((await schedule(m.headers, m.scheduleId)).next_deadline_at).toBe('2026-11-24T09:00:00.000Z');
  });

  it('within grace, tapped again, never satisfies tomorrow', async () => {
    at('2026-11-23T08:00:00Z');
    const m = await member([1], { kind: 'daily', local_time: '09:30', time_zone: 'UTC', grace_minutes: 60 });
    for (const when of ['2026-11-23T10:00:00Z', '2026-11-23T10:00:01Z']) {
      at(when);
      expect((await checkIn(m.headers)).json().next_deadline_at).toBe('2026-11-24T09:30:00.000Z');
    }
    await checkInsSettled(t.db.pool);
    at('2026-11-23T10:05:00Z');
    expect((await checkIn(m.headers)).json().next_deadline_at).toBe('2026-11-24T09:30:00.000Z');
    expect((await schedule(m.headers, m.scheduleId)).next_deadline_at).toBe('2026-11-24T09:30:00.000Z');
  });
});
