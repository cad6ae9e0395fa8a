import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { signLink } from '../../src/links/tokens.js';
import { errorOf, startTestApp, type TestApp } from '../helpers/app.js';
import { TEST_LINK_SECRET } from '../helpers/tokens.js';

let now = new Date('2026-11-23T08:00:00Z');
const at = (iso: string) => {
  now = new Date(iso);
};

describe('check-ins', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await startTestApp({ clock: () => now });
  });
  afterAll(() => t.close());

  async function member(schedules: object[]) {
    const sub = randomUUID();
    const headers = await t.asNamed(sub);
    const ids: string[] = [];
    for (const s of schedules) ids.push((await t.app.inject({ method: 'POST', url: '/v1/schedules', headers, payload: s })).json().id);
    return { sub, headers, ids };
  }
  const checkIn = (headers: Record<string, string>, payload: object = {}, extra: Record<string, string> = {}) =>
    t.app.inject({ method: 'POST', url: '/v1/check-ins', headers: { ...headers, ...extra }, payload });
  const schedule = async (headers: Record<string, string>, id: string) => (await t.app.inject({ method: 'GET', url: `/v1/schedules/${id}`, headers })).json();

  it('satisfies the pending deadline and answers with the next one', async () => {
    at('2026-11-23T08:00:00Z');
    const { headers, ids } = await member([{ kind: 'daily', local_time: '09:30', time_zone: 'UTC' }]);
    at('2026-11-23T09:10:00Z');
    const res = await checkIn(headers, { note: 'all good', location: { lat: 51.5, lng: -0.12, accuracy_m: 20 } });
    expect(res.statusCode).toBe(201);
    expect(res.json()).toMatchObject({ checked_in_at: '2026-11-23T09:10:00.000Z', next_deadline_at: '2026-11-24T09:30:00.000Z', resolved_incident_ids: [] });
    expect((await schedule(headers, ids[0]!)).next_deadline_at).toBe('2026-11-24T09:30:00.000Z');
  });

  it('counts a late check-in within grace, and a second check-in in the same window advances nothing more', async () => {
    at('2026-11-23T08:00:00Z');
    const { headers, ids } = await member([{ kind: 'daily', local_time: '09:30', time_zone: 'UTC', grace_minutes: 60 }]);
    at('2026-11-23T10:00:00Z');
    expect((await checkIn(headers)).json().next_deadline_at).toBe('2026-11-24T09:30:00.000Z');
    // Before the following deadline has been precomputed or after: never skips a day.
    for (const when of ['2026-11-23T10:00:01Z', '2026-11-23T10:05:00Z']) {
      at(when);
      await new Promise((r) => setTimeout(r, 50));
      await checkIn(headers);
    }
    const s = await schedule(headers, ids[0]!);
    expect(s.next_deadline_at).not.toBe('2026-11-26T09:30:00.000Z');
  });

  it('belongs to the first deadline after it, so a twice-a-day member checks in twice', async () => {
    at('2026-11-23T08:00:00Z');
    const { headers, ids } = await member([
      { kind: 'daily', local_time: '09:30', time_zone: 'UTC' },
      { kind: 'daily', local_time: '21:00', time_zone: 'UTC' },
      { kind: 'once', due_at: '2026-11-23T12:00:00Z' },
    ]);
    at('2026-11-23T09:00:00Z');
    const res = (await checkIn(headers)).json();
    // The morning deadline is the first after 09:00: only it is satisfied.
    expect(res.next_deadline_at).toBe('2026-11-23T12:00:00.000Z');
    let [a, b, c] = await Promise.all(ids.map((id) => schedule(headers, id)));
    expect([a.next_deadline_at, b.next_deadline_at, c.next_deadline_at]).toEqual(['2026-11-24T09:30:00.000Z', '2026-11-23T21:00:00.000Z', '2026-11-23T12:00:00.000Z']);
    // A double tap satisfies nothing more.
    at('2026-11-23T09:01:00Z');
    expect((await checkIn(headers)).json().next_deadline_at).toBe('2026-11-23T12:00:00.000Z');
    // After the morning deadline, a check-in belongs to the next deadline (12:00), not the evening one.
    at('2026-11-23T11:00:00Z');
    expect((await checkIn(headers)).json().next_deadline_at).toBe('2026-11-23T21:00:00.000Z');
    [a, b, c] = await Promise.all(ids.map((id) => schedule(headers, id)));
    expect(c).toMatchObject({ next_deadline_at: null, alert_at: null });
    at('2026-11-23T20:00:00Z');
    expect((await checkIn(headers)).json().next_deadline_at).toBe('2026-11-24T09:30:00.000Z');
    b = await schedule(headers, ids[1]!);
    expect(b.next_deadline_at).toBe('2026-11-24T21:00:00.000Z');
  });

  it('replays the same answer for the same Idempotency-Key and body, and refuses another body with 409', async () => {
    at('2026-11-23T08:00:00Z');
    const { sub, headers } = await member([{ kind: 'daily', local_time: '09:30', time_zone: 'UTC' }]);
    at('2026-11-23T09:00:00Z');
    const key = { 'idempotency-key': `k-${randomUUID()}` };
    const first = await checkIn(headers, { note: 'hi' }, key);
    at('2026-11-23T09:05:00Z');
    const again = await checkIn(headers, { note: 'hi' }, key);
    expect(again.statusCode).toBe(201);
    expect(again.json()).toEqual(first.json());
    const other = await checkIn(headers, { note: 'different' }, key);
    expect(other.statusCode).toBe(409);
    expect(errorOf(other.body).code).toBe('CONFLICT');
    const { rows } = await t.db.pool.query('select count(*)::int as n from check_ins where member_id = $1', [sub]);
    expect(rows[0].n).toBe(1);
  });

  it('advances once when the same key arrives concurrently (a client retrying a slow request)', async () => {
    at('2026-11-23T08:00:00Z');
    const { sub, headers, ids } = await member([{ kind: 'daily', local_time: '09:30', time_zone: 'UTC', grace_minutes: 60 }]);
    at('2026-11-23T10:00:00Z');
    const key = { 'idempotency-key': `k-${randomUUID()}` };
    const answers = await Promise.all(Array.from({ length: 5 }, () => checkIn(headers, {}, key)));
    expect(new Set(answers.map((a) => a.json().id)).size).toBe(1);
    const { rows } = await t.db.pool.query('select count(*)::int as n from check_ins where member_id = $1', [sub]);
    expect(rows[0].n).toBe(1);
    expect((await schedule(headers, ids[0]!)).next_deadline_at).toBe('2026-11-24T09:30:00.000Z');
  });

  it.each([
    ['a latitude out of range', { location: { lat: 91, lng: 0 } }],
    ['a longitude out of range', { location: { lat: 0, lng: 181 } }],
    ['a negative accuracy', { location: { lat: 0, lng: 0, accuracy_m: -1 } }],
    ['a note too long', { note: 'x'.repeat(501) }],
    ['an unknown field', { mood: 'great' }],
  ])('rejects %s with 400 and records nothing', async (_name, payload) => {
    const { sub, headers } = await member([]);
    const res = await checkIn(headers, payload);
    expect(res.statusCode).toBe(400);
    const { rows } = await t.db.pool.query('select count(*)::int as n from check_ins where member_id = $1', [sub]);
    expect(rows[0].n).toBe(0);
  });

  it('accepts a check-in with no body at all', async () => {
    const { headers } = await member([]);
    const res = await t.app.inject({ method: 'POST', url: '/v1/check-ins', headers });
    expect(res.statusCode).toBe(201);
    expect(res.json().next_deadline_at).toBeNull();
  });

  it('lists history newest first with a cursor, only the owner', async () => {
    const { headers } = await member([]);
    for (let i = 0; i < 5; i += 1) {
      at(`2026-11-2${i}T10:00:00Z`);
      await checkIn(headers, { note: `n${i}` });
    }
    const p1 = (await t.app.inject({ method: 'GET', url: '/v1/check-ins?limit=2', headers })).json();
    expect(p1.data.map((c: { note: string }) => c.note)).toEqual(['n4', 'n3']);
    expect(p1.pagination.has_more).toBe(true);
    const p2 = (await t.app.inject({ method: 'GET', url: `/v1/check-ins?limit=2&cursor=${p1.pagination.next_cursor}`, headers })).json();
    expect(p2.data.map((c: { note: string }) => c.note)).toEqual(['n2', 'n1']);
    const p3 = (await t.app.inject({ method: 'GET', url: `/v1/check-ins?limit=2&cursor=${p2.pagination.next_cursor}`, headers })).json();
    expect(p3).toMatchObject({ pagination: { has_more: false, next_cursor: null } });
    expect(p3.data.map((c: { note: string }) => c.note)).toEqual(['n0']);
    expect((await t.app.inject({ method: 'GET', url: '/v1/check-ins', headers: await t.as(randomUUID()) })).json().data).toEqual([]);
    expect((await t.app.inject({ method: 'GET', url: '/v1/check-ins?cursor=garbage', headers })).statusCode).toBe(400);
    expect((await t.app.inject({ method: 'GET', url: '/v1/check-ins?limit=0', headers })).statusCode).toBe(400);
  });

  it('checks in through a signed reminder link, page and button without JavaScript', async () => {
    at('2026-11-23T08:00:00Z');
    const { sub, headers, ids } = await member([{ kind: 'daily', local_time: '09:30', time_zone: 'UTC' }]);
    const token = signLink(TEST_LINK_SECRET, 'checkin', sub, new Date('2026-11-24T00:00:00Z'));
    const page = await t.app.inject({ method: 'GET', url: `/c/${token}`, headers: { accept: 'text/html,application/xhtml+xml' } });
    expect(page.statusCode).toBe(200);
    expect(page.body).toContain(`<form method="post" action="/c/${token}">`);
    const res = await t.app.inject({ method: 'POST', url: `/c/${token}`, headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'text/html,application/xhtml+xml' }, payload: '' });
    expect(res.statusCode).toBe(201);
    expect(res.body).toContain('checked in');
    expect((await schedule(headers, ids[0]!)).next_deadline_at).toBe('2026-11-24T09:30:00.000Z');
    const { rows } = await t.db.pool.query('select source from check_ins where member_id = $1', [sub]);
    expect(rows).toEqual([{ source: 'link' }]);
    at('2026-11-24T00:00:01Z');
    expect((await t.app.inject({ method: 'POST', url: `/c/${token}`, headers: {} })).statusCode).toBe(410);
  });
});

describe('the deadline after next', () => {
  it('is refilled after a check-in advanced a schedule, by the request itself or by the worker job', async () => {
    now = new Date('2026-11-23T08:00:00Z');
    const t = await startTestApp({ clock: () => now });
    try {
      const sub = randomUUID();
      const headers = await t.asNamed(sub);
      const s = (await t.app.inject({ method: 'POST', url: '/v1/schedules', headers, payload: { kind: 'daily', local_time: '09:30', time_zone: 'UTC' } })).json();
      const { rows: before } = await t.db.pool.query('select following_deadline_at from schedules where id = $1', [s.id]);
      expect(before[0].following_deadline_at.toISOString()).toBe('2026-11-24T09:30:00.000Z');
      await t.db.pool.query('update schedules set following_deadline_at = null where id = $1', [s.id]);
      const { refillFollowing } = await import('../../src/schedules/repo.js');
      expect(await refillFollowing(t.db.pool, now)).toBe(1);
      const { rows: after } = await t.db.pool.query('select following_deadline_at from schedules where id = $1', [s.id]);
      expect(after[0].following_deadline_at.toISOString()).toBe('2026-11-24T09:30:00.000Z');
      expect(await refillFollowing(t.db.pool, now)).toBe(0);
    } finally {
      await t.close();
    }
  });
});
