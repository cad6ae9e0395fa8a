import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { errorOf, startTestApp, type TestApp } from '../helpers/app.js';

let now = new Date('2026-11-23T08:00:00Z'); // a Monday

describe('schedules', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await startTestApp({ clock: () => now });
  });
  afterAll(() => t.close());

  async function create(headers: Record<string, string>, payload: object) {
    return t.app.inject({ method: 'POST', url: '/v1/schedules', headers, payload });
  }

  it('stores a daily deadline in the schedule zone as a UTC instant with alert_at = deadline + grace', async () => {
    now = new Date('2026-11-23T08:00:00Z');
    const res = await create(await t.asNamed(randomUUID()), { kind: 'daily', local_time: '09:30', time_zone: 'America/New_York', grace_minutes: 45 });
    expect(res.statusCode).toBe(201);
    expect(res.json()).toMatchObject({
      kind: 'daily', local_time: '09:30', days: [1, 2, 3, 4, 5, 6, 7], time_zone: 'America/New_York', follows_member_time_zone: false,
      grace_minutes: 45, reminder_minutes: [30, 0], active: true,
      next_deadline_at: '2026-11-23T14:30:00.000Z', alert_at: '2026-11-23T15:15:00.000Z',
    });
  });

  it("follows the member's time zone, and moves when the member changes it", async () => {
    now = new Date('2026-11-23T08:00:00Z');
    const headers = await t.asNamed(randomUUID());
    await t.app.inject({ method: 'PATCH', url: '/v1/me', headers, payload: { time_zone: 'Asia/Kolkata' } });
    const s = (await create(headers, { kind: 'daily', local_time: '09:30' })).json();
    expect(s).toMatchObject({ time_zone: 'Asia/Kolkata', follows_member_time_zone: true, next_deadline_at: '2026-11-24T04:00:00.000Z' });
    await t.app.inject({ method: 'PATCH', url: '/v1/me', headers, payload: { time_zone: 'America/Los_Angeles' } });
    const moved = (await t.app.inject({ method: 'GET', url: `/v1/schedules/${s.id}`, headers })).json();
    expect(moved).toMatchObject({ time_zone: 'America/Los_Angeles', next_deadline_at: '2026-11-23T17:30:00.000Z' });
  });

  it('keeps to the weekdays given', async () => {
    now = new Date('2026-11-23T08:00:00Z'); // Monday
    const s = (await create(await t.asNamed(randomUUID()), { kind: 'daily', local_time: '07:00', time_zone: 'UTC', days: [6, 7] })).json();
    expect(s.next_deadline_at).toBe('2026-11-28T07:00:00.000Z');
  });

  it('creates a once schedule and refuses one in the past', async () => {
    now = new Date('2026-11-23T08:00:00Z');
    const headers = await t.asNamed(randomUUID());
    const once = (await create(headers, { kind: 'once', due_at: '2026-11-23T18:00:00+01:00', grace_minutes: 0 })).json();
    expect(once).toMatchObject({ kind: 'once', due_at: '2026-11-23T17:00:00.000Z', next_deadline_at: '2026-11-23T17:00:00.000Z', alert_at: '2026-11-23T17:00:00.000Z' });
    const past = await create(headers, { kind: 'once', due_at: '2026-11-23T07:00:00Z' });
    expect(past.statusCode).toBe(400);
  });

  it.each([
    ['a bad local time', { kind: 'daily', local_time: '24:00' }],
    ['a time without minutes', { kind: 'daily', local_time: '9' }],
    ['an empty weekday list', { kind: 'daily', local_time: '09:00', days: [] }],
    ['weekday 8', { kind: 'daily', local_time: '09:00', days: [8] }],
    ['grace over 12 hours', { kind: 'daily', local_time: '09:00', grace_minutes: 721 }],
    ['an unknown zone', { kind: 'daily', local_time: '09:00', time_zone: 'Europe/Atlantis' }],
    ['an unknown kind', { kind: 'weekly', local_time: '09:00' }],
    ['a daily with due_at', { kind: 'daily', local_time: '09:00', due_at: '2026-12-01T00:00:00Z' }],
    ['a due_at without offset', { kind: 'once', due_at: '2026-12-01T10:00:00' }],
  ])('rejects %s with 400 and creates nothing', async (_name, payload) => {
    const sub = randomUUID();
    const res = await create(await t.asNamed(sub), payload);
    expect(res.statusCode).toBe(400);
    expect(errorOf(res.body).code).toBe('VALIDATION_ERROR');
    const { rows } = await t.db.pool.query('select count(*)::int as n from schedules where member_id = $1', [sub]);
    expect(rows[0].n).toBe(0);
  });

  it("answers 404 for another member's schedule", async () => {
    const s = (await create(await t.asNamed(randomUUID()), { kind: 'daily', local_time: '09:00' })).json();
    const other = await t.asNamed(randomUUID());
    for (const method of ['GET', 'PATCH', 'DELETE'] as const) {
      const res = await t.app.inject({ method, url: `/v1/schedules/${s.id}`, headers: other, payload: method === 'PATCH' ? { grace_minutes: 5 } : undefined });
      expect(res.statusCode).toBe(404);
    }
  });

  it('never alerts retroactively when edited after its deadline passed', async () => {
    now = new Date('2026-11-23T08:00:00Z');
    const headers = await t.asNamed(randomUUID());
    const s = (await create(headers, { kind: 'daily', local_time: '09:30', time_zone: 'UTC', grace_minutes: 60 })).json();
    now = new Date('2026-11-23T09:45:00Z'); // late, within grace
    const res = await t.app.inject({ method: 'PATCH', url: `/v1/schedules/${s.id}`, headers, payload: { local_time: '09:00' } });
    expect(res.json()).toMatchObject({ local_time: '09:00', next_deadline_at: '2026-11-24T09:00:00.000Z' });
    const deactivated = await t.app.inject({ method: 'PATCH', url: `/v1/schedules/${s.id}`, headers, payload: { active: false } });
    expect(deactivated.json()).toMatchObject({ active: false, next_deadline_at: null, alert_at: null });
  });

  it('skips deadlines inside a pause, merges overlapping pauses, and restores deadlines when a pause ends early', async () => {
    now = new Date('2026-11-23T08:00:00Z');
    const headers = await t.asNamed(randomUUID());
    const s = (await create(headers, { kind: 'daily', local_time: '09:30', time_zone: 'UTC' })).json();
    const p1 = await t.app.inject({ method: 'POST', url: '/v1/pauses', headers, payload: { from: '2026-11-23T09:00:00Z', until: '2026-11-24T12:00:00Z', reason: 'trip' } });
    expect(p1.statusCode).toBe(201);
    expect((await t.app.inject({ method: 'GET', url: `/v1/schedules/${s.id}`, headers })).json().next_deadline_at).toBe('2026-11-25T09:30:00.000Z');
    const p2 = await t.app.inject({ method: 'POST', url: '/v1/pauses', headers, payload: { from: '2026-11-24T10:00:00Z', until: '2026-11-26T00:00:00Z' } });
    expect(p2.json()).toMatchObject({ from: '2026-11-23T09:00:00.000Z', until: '2026-11-26T00:00:00.000Z', reason: 'trip' });
    const list = (await t.app.inject({ method: 'GET', url: '/v1/pauses', headers })).json().data;
    expect(list).toHaveLength(1);
    expect((await t.app.inject({ method: 'GET', url: `/v1/schedules/${s.id}`, headers })).json().next_deadline_at).toBe('2026-11-26T09:30:00.000Z');
    const del = await t.app.inject({ method: 'DELETE', url: `/v1/pauses/${list[0].id}`, headers });
    expect(del.statusCode).toBe(204);
    expect((await t.app.inject({ method: 'GET', url: `/v1/schedules/${s.id}`, headers })).json().next_deadline_at).toBe('2026-11-23T09:30:00.000Z');
  });

  it.each([
    ['until before from', { from: '2026-11-25T00:00:00Z', until: '2026-11-24T00:00:00Z' }],
    ['until in the past', { until: '2026-11-01T00:00:00Z' }],
    ['longer than a year', { until: '2028-01-01T00:00:00Z' }],
  ])('rejects a pause with %s', async (_name, payload) => {
    now = new Date('2026-11-23T08:00:00Z');
    const res = await t.app.inject({ method: 'POST', url: '/v1/pauses', headers: await t.asNamed(randomUUID()), payload });
    expect(res.statusCode).toBe(400);
    expect(errorOf(res.body).code).toBe('VALIDATION_ERROR');
  });
});
