import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import type pg from 'pg';
import { errorOf, startTestApp, type TestApp } from '../helpers/app.js';

// Zones luxon accepts that PostgreSQL dropped long ago (`at time zone` refuses them).
const LUXON_ONLY_ZONES = ['US/Pacific-New', 'Canada/East-Saskatchewan'];
const TODAY = new Date('2026-11-23T08:00:00Z'); // a Monday
let now = TODAY;

/** Writes as the old rows were written: around the database's rules (triggers off for this transaction). */
async function bypassingRules(pool: pg.Pool, sql: string, params: unknown[]): Promise<void> {
  const c = await pool.connect();
  try {
    await c.query('begin');
    await c.query('set local session_replication_role = replica');
    await c.query(sql, params);
    await c.query('commit');
  } finally {
    c.release();
  }
}

describe('validation at every door, equal to PostgreSQL', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await startTestApp({ clock: () => now });
  });
  afterAll(() => t.close());

  const count = async (table: string, memberId: string) =>
    (await t.db.pool.query<{ n: number }>(`select count(*)::int as n from ${table} where member_id = $1`, [memberId])).rows[0]!.n;

  async function expect400(res: { statusCode: number; body: string }, field: string) {
    expect(res.statusCode).toBe(400);
    const e = errorOf(res.body);
    expect(e.code).toBe('VALIDATION_ERROR');
    expect(e.message).toContain(field);
  }

  describe('time zones', () => {
    it.each(LUXON_ONLY_ZONES)('PATCH /v1/me refuses %s (luxon knows it, PostgreSQL does not) and keeps the zone', async (zone) => {
      const sub = randomUUID();
      const headers = await t.asNamed(sub);
      await t.app.inject({ method: 'PATCH', url: '/v1/me', headers, payload: { time_zone: 'Europe/Paris' } });
      await expect400(await t.app.inject({ method: 'PATCH', url: '/v1/me', headers, payload: { time_zone: zone } }), 'body.time_zone');
      expect((await t.app.inject({ method: 'GET', url: '/v1/me', headers })).json().time_zone).toBe('Europe/Paris');
    });

    it.each(LUXON_ONLY_ZONES)('a schedule refuses %s on create and on change, and writes nothing', async (zone) => {
      const sub = randomUUID();
      const headers = await t.asNamed(sub);
      await expect400(await t.app.inject({ method: 'POST', url: '/v1/schedules', headers, payload: { kind: 'daily', local_time: '09:00', time_zone: zone } }), 'body.time_zone');
      expect(await count('schedules', sub)).toBe(0);
      const s = (await t.app.inject({ method: 'POST', url: '/v1/schedules', headers, payload: { kind: 'daily', local_time: '09:00', time_zone: 'UTC' } })).json();
      await expect400(await t.app.inject({ method: 'PATCH', url: `/v1/schedules/${s.id}`, headers, payload: { time_zone: zone } }), 'body.time_zone');
      expect((await t.app.inject({ method: 'GET', url: `/v1/schedules/${s.id}`, headers })).json()).toMatchObject({ time_zone: 'UTC', updated_at: s.updated_at });
    });

    it('stores a zone given in another letter case in the spelling PostgreSQL lists', async () => {
      const headers = await t.asNamed(randomUUID());
      expect((await t.app.inject({ method: 'PATCH', url: '/v1/me', headers, payload: { time_zone: 'europe/london' } })).json().time_zone).toBe('Europe/London');
      const s = await t.app.inject({ method: 'POST', url: '/v1/schedules', headers, payload: { kind: 'daily', local_time: '09:00', time_zone: 'asia/KOLKATA' } });
      expect(s.json()).toMatchObject({ time_zone: 'Asia/Kolkata', next_deadline_at: '2026-11-24T03:30:00.000Z' });
    });

    it('still refuses fixed offsets', async () => {
      await expect400(await t.app.inject({ method: 'PATCH', url: '/v1/me', headers: await t.asNamed(randomUUID()), payload: { time_zone: 'GMT+0' } }), 'body.time_zone');
    });
  });

  describe('instants', () => {
    it('refuses a once deadline in year 9999 with 400 and commits nothing (it used to answer 500 after committing the row)', async () => {
      const sub = randomUUID();
      const headers = await t.asNamed(sub);
      await expect400(await t.app.inject({ method: 'POST', url: '/v1/schedules', headers, payload: { kind: 'once', due_at: '9999-12-31T23:59:00Z' } }), 'body.due_at');
      expect(await count('schedules', sub)).toBe(0);
      const list = await t.app.inject({ method: 'GET', url: '/v1/schedules', headers });
      expect(list.statusCode).toBe(200);
      expect(list.json().data).toEqual([]);
    });

    it.each([
      ['at 2200 itself', '2200-01-01T00:00:00Z'],
      ['so late its alert after the longest grace would pass 2200', '2199-12-31T12:00:00Z'],
      ['in 2200 written with an offset', '2200-01-01T01:00:00+00:30'],
    ])('refuses a once deadline %s', async (_name, due) => {
      const sub = randomUUID();
      await expect400(await t.app.inject({ method: 'POST', url: '/v1/schedules', headers: await t.asNamed(sub), payload: { kind: 'once', due_at: due } }), 'body.due_at');
      expect(await count('schedules', sub)).toBe(0);
    });

    it('takes the last once deadline allowed, with its alert before 2200 even after 12 h of grace', async () => {
      const res = await t.app.inject({ method: 'POST', url: '/v1/schedules', headers: await t.asNamed(randomUUID()), payload: { kind: 'once', due_at: '2199-12-31T11:59:00Z', grace_minutes: 720 } });
      expect(res.statusCode).toBe(201);
      expect(res.json()).toMatchObject({ next_deadline_at: '2199-12-31T11:59:00.000Z', alert_at: '2199-12-31T23:59:00.000Z' });
    });

    it('refuses moving a once deadline to year 9999 and keeps the schedule as it was', async () => {
      const headers = await t.asNamed(randomUUID());
      const s = (await t.app.inject({ method: 'POST', url: '/v1/schedules', headers, payload: { kind: 'once', due_at: '2026-12-01T10:00:00Z' } })).json();
      await expect400(await t.app.inject({ method: 'PATCH', url: `/v1/schedules/${s.id}`, headers, payload: { due_at: '9999-12-31T23:59:00Z' } }), 'body.due_at');
      expect((await t.app.inject({ method: 'GET', url: `/v1/schedules/${s.id}`, headers })).json()).toEqual(s);
    });

    it('refuses a pause that ends in 2200 or later, or starts before 1970, and writes nothing', async () => {
      const sub = randomUUID();
      const headers = await t.asNamed(sub);
      await expect400(await t.app.inject({ method: 'POST', url: '/v1/pauses', headers, payload: { from: '2199-06-01T00:00:00Z', until: '2200-03-01T00:00:00Z' } }), 'body.until');
      await expect400(await t.app.inject({ method: 'POST', url: '/v1/pauses', headers, payload: { from: '9998-12-31T00:00:00Z', until: '9999-06-01T00:00:00Z' } }), 'body.from');
      await expect400(await t.app.inject({ method: 'POST', url: '/v1/pauses', headers, payload: { from: '1969-12-31T00:00:00Z', until: '2026-12-01T00:00:00Z' } }), 'body.from');
      expect(await count('pauses', sub)).toBe(0);
    });

    it('gives a daily schedule no deadline rather than one past the horizon when a pause runs to the end of 2199', async () => {
      now = new Date('2199-01-01T00:00:00Z');
      try {
        const headers = await t.asNamed(randomUUID());
        const s = (await t.app.inject({ method: 'POST', url: '/v1/schedules', headers, payload: { kind: 'daily', local_time: '23:00', time_zone: 'UTC' } })).json();
        expect(s.next_deadline_at).toBe('2199-01-01T23:00:00.000Z');
        // The deadline after this pause would be 2200-01-01T23:00, and its alert later still.
        const pause = await t.app.inject({ method: 'POST', url: '/v1/pauses', headers, payload: { until: '2199-12-31T23:30:00Z' } });
        expect(pause.statusCode).toBe(201);
        expect((await t.app.inject({ method: 'GET', url: `/v1/schedules/${s.id}`, headers })).json()).toMatchObject({ next_deadline_at: null, alert_at: null });
      } finally {
        now = TODAY;
      }
    });
  });

  describe('reads of rows written around the rules', () => {
    it.each(LUXON_ONLY_ZONES)("GET /v1/watching answers 200 when a watched member's stored zone is %s, counting today in UTC", async (zone) => {
      const watcher = randomUUID();
      const watched = randomUUID();
      const ok = randomUUID();
      const watcherHeaders = await t.asNamed(watcher);
      for (const id of [watched, ok]) {
        await t.app.inject({ method: 'GET', url: '/v1/me', headers: await t.asNamed(id) });
        await t.db.pool.query(`insert into contacts (member_id, name, email, status, linked_user_id) values ($1, 'W', $2, 'active', $3)`, [id, `${randomUUID()}@example.test`, watcher]);
      }
      await bypassingRules(t.db.pool, 'update members set time_zone = $2 where id = $1', [watched, zone]);
      await t.db.pool.query(`insert into check_ins (member_id, checked_in_at) values ($1, $2)`, [watched, new Date(now.getTime() - 3_600_000)]);
      const res = await t.app.inject({ method: 'GET', url: '/v1/watching', headers: watcherHeaders });
      expect(res.statusCode).toBe(200);
      const rows = res.json().data as { member_id: string; today: string }[];
      expect(rows.map((r) => r.member_id).sort()).toEqual([watched, ok].sort());
      expect(rows.find((r) => r.member_id === watched)!.today).toBe('checked_in');
    });

    it('GET /v1/schedules and /v1/schedules/:id answer 200 for a deadline past year 9999 and an infinite one', async () => {
      const sub = randomUUID();
      const headers = await t.asNamed(sub);
      await t.app.inject({ method: 'GET', url: '/v1/me', headers });
      await bypassingRules(t.db.pool,
        `insert into schedules (member_id, kind, due_at, next_deadline_at, alert_at, window_start_at) values ($1, 'once', '9999-12-31T23:59:00Z', '9999-12-31T23:59:00Z', '10000-01-01T00:29:00Z', now())`, [sub]);
      await bypassingRules(t.db.pool,
        `insert into schedules (member_id, kind, local_time, time_zone, next_deadline_at, alert_at, window_start_at) values ($1, 'daily', '09:00', 'US/Pacific-New', 'infinity', 'infinity', '-infinity')`, [sub]);
      const list = await t.app.inject({ method: 'GET', url: '/v1/schedules', headers });
      expect(list.statusCode).toBe(200);
      const data = list.json().data as { id: string; kind: string; alert_at: string; next_deadline_at: string }[];
      expect(data).toHaveLength(2);
      expect(data.find((s) => s.kind === 'once')).toMatchObject({ due_at: '9999-12-31T23:59:00.000Z', alert_at: '9999-12-31T23:59:59.999Z' });
      expect(data.find((s) => s.kind === 'daily')).toMatchObject({ time_zone: 'US/Pacific-New', next_deadline_at: '9999-12-31T23:59:59.999Z' });
      for (const s of data) expect((await t.app.inject({ method: 'GET', url: `/v1/schedules/${s.id}`, headers })).statusCode).toBe(200);
    });

    it('GET /v1/me, /v1/pauses and /v1/check-ins answer 200 for instants past year 9999 or infinite', async () => {
      const sub = randomUUID();
      const headers = await t.asNamed(sub);
      await t.app.inject({ method: 'GET', url: '/v1/me', headers });
      await bypassingRules(t.db.pool, `update members set time_zone = 'Mars/Olympus', updated_at = 'infinity', created_at = '-infinity' where id = $1`, [sub]);
      await bypassingRules(t.db.pool, `insert into pauses (member_id, starts_at, ends_at) values ($1, now(), '12000-01-01T00:00:00Z')`, [sub]);
      await bypassingRules(t.db.pool, `insert into check_ins (member_id, checked_in_at) values ($1, 'infinity'), ($1, '10000-06-01T00:00:00Z')`, [sub]);
      const me = await t.app.inject({ method: 'GET', url: '/v1/me', headers });
      expect(me.statusCode).toBe(200);
      expect(me.json()).toMatchObject({ time_zone: 'Mars/Olympus', created_at: '0000-01-01T00:00:00.000Z', updated_at: '9999-12-31T23:59:59.999Z' });
      const pauses = await t.app.inject({ method: 'GET', url: '/v1/pauses', headers });
      expect(pauses.statusCode).toBe(200);
      expect(pauses.json().data[0].until).toBe('9999-12-31T23:59:59.999Z');
      const history = await t.app.inject({ method: 'GET', url: '/v1/check-ins?limit=1', headers });
      expect(history.statusCode).toBe(200);
      const next = history.json().pagination.next_cursor as string;
      expect((await t.app.inject({ method: 'GET', url: `/v1/check-ins?limit=1&cursor=${next}`, headers })).statusCode).toBe(200);
    });

    it('computes deadlines in UTC for a member whose stored zone luxon does not know, instead of failing their edits', async () => {
      const sub = randomUUID();
      const headers = await t.asNamed(sub);
      await t.app.inject({ method: 'GET', url: '/v1/me', headers });
      await bypassingRules(t.db.pool, `update members set time_zone = 'Mars/Olympus' where id = $1`, [sub]);
      const res = await t.app.inject({ method: 'POST', url: '/v1/schedules', headers, payload: { kind: 'daily', local_time: '09:00' } });
      expect(res.statusCode).toBe(201);
      expect(res.json()).toMatchObject({ time_zone: 'Mars/Olympus', next_deadline_at: '2026-11-23T09:00:00.000Z' });
      const fixed = await t.app.inject({ method: 'PATCH', url: '/v1/me', headers, payload: { time_zone: 'Asia/Kolkata' } });
      expect(fixed.statusCode).toBe(200);
    });
  });
});
