import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { signLink } from '../../src/links/tokens.js';
import { errorOf, nameMember, startTestApp, type TestApp } from '../helpers/app.js';
import { TEST_LINK_SECRET } from '../helpers/tokens.js';

/**
 * Issue 17 #1: an alert must say who missed the check-in. A schedule is armed only for a member
 * with a display name; the name cannot be cleared while one is armed. An SOS and a check-in are
 * never refused for want of one.
 */
const now = new Date('2026-11-23T08:00:00Z');

describe('a display name before a schedule is armed', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await startTestApp({ clock: () => now });
  });
  afterAll(() => t.close());

  const daily = { kind: 'daily', local_time: '09:30', time_zone: 'UTC' };
  const schedules = async (sub: string) => (await t.db.pool.query('select active from schedules where member_id = $1', [sub])).rows;

  it('refuses to create an active schedule without a display name, and says how to fix it', async () => {
    const sub = randomUUID();
    const headers = await t.as(sub);
    for (const payload of [daily, { kind: 'once', due_at: '2026-11-24T10:00:00Z', active: true }]) {
      const res = await t.app.inject({ method: 'POST', url: '/v1/schedules', headers, payload });
      expect(res.statusCode).toBe(400);
      const err = errorOf(res.body);
      expect(err).toMatchObject({ code: 'DISPLAY_NAME_REQUIRED', details: { field: 'display_name' } });
      expect(err.message).toContain('PATCH /v1/me');
    }
    expect(await schedules(sub)).toEqual([]);

    await nameMember(t.app, headers, 'Ann');
    const res = await t.app.inject({ method: 'POST', url: '/v1/schedules', headers, payload: daily });
    expect(res.statusCode).toBe(201);
    expect(res.json()).toMatchObject({ active: true, next_deadline_at: '2026-11-23T09:30:00.000Z' });
  });

  it('lets an inactive schedule be made without a name, but not armed', async () => {
    const sub = randomUUID();
    const headers = await t.as(sub);
    const created = await t.app.inject({ method: 'POST', url: '/v1/schedules', headers, payload: { ...daily, active: false } });
    expect(created.statusCode).toBe(201);
    const id = created.json().id as string;

    const armed = await t.app.inject({ method: 'PATCH', url: `/v1/schedules/${id}`, headers, payload: { active: true } });
    expect(armed.statusCode).toBe(400);
    expect(errorOf(armed.body)).toMatchObject({ code: 'DISPLAY_NAME_REQUIRED', details: { field: 'display_name' } });
    expect(await schedules(sub)).toEqual([{ active: false }]);
    // Changing a schedule that stays inactive is fine.
    expect((await t.app.inject({ method: 'PATCH', url: `/v1/schedules/${id}`, headers, payload: { grace_minutes: 10 } })).statusCode).toBe(200);

    await nameMember(t.app, headers, 'Bo');
    const ok = await t.app.inject({ method: 'PATCH', url: `/v1/schedules/${id}`, headers, payload: { active: true } });
    expect(ok.statusCode).toBe(200);
    expect(ok.json()).toMatchObject({ active: true, next_deadline_at: '2026-11-23T09:30:00.000Z' });
  });

  it('refuses to re-arm an active schedule of a member who has no name (stored before the rule), and always lets it be disarmed', async () => {
    const sub = randomUUID();
    const headers = await t.asNamed(sub);
    const id = (await t.app.inject({ method: 'POST', url: '/v1/schedules', headers, payload: daily })).json().id as string;
    await t.db.pool.query('update members set display_name = null where id = $1', [sub]);

    const changed = await t.app.inject({ method: 'PATCH', url: `/v1/schedules/${id}`, headers, payload: { local_time: '10:00' } });
    expect(changed.statusCode).toBe(400);
    expect(errorOf(changed.body).code).toBe('DISPLAY_NAME_REQUIRED');
    const off = await t.app.inject({ method: 'PATCH', url: `/v1/schedules/${id}`, headers, payload: { active: false } });
    expect(off.statusCode).toBe(200);
    expect(off.json()).toMatchObject({ active: false, next_deadline_at: null });
  });

  it('keeps the name while a schedule is armed: clearing it is a 409 that says why, and nothing changes', async () => {
    const sub = randomUUID();
    const headers = await t.asNamed(sub, 'Cleo');
    const id = (await t.app.inject({ method: 'POST', url: '/v1/schedules', headers, payload: daily })).json().id as string;

    const cleared = await t.app.inject({ method: 'PATCH', url: '/v1/me', headers, payload: { display_name: null, time_zone: 'Europe/Paris' } });
    expect(cleared.statusCode).toBe(409);
    expect(errorOf(cleared.body)).toMatchObject({ code: 'DISPLAY_NAME_REQUIRED', details: { field: 'display_name', active_schedules: 1 } });
    expect((await t.app.inject({ method: 'GET', url: '/v1/me', headers })).json()).toMatchObject({ display_name: 'Cleo', time_zone: 'UTC' });

    // Renaming is fine; with the schedule disarmed the name can go.
    expect((await t.app.inject({ method: 'PATCH', url: '/v1/me', headers, payload: { display_name: 'Cleo B' } })).statusCode).toBe(200);
    expect((await t.app.inject({ method: 'PATCH', url: `/v1/schedules/${id}`, headers, payload: { active: false } })).statusCode).toBe(200);
    const now2 = await t.app.inject({ method: 'PATCH', url: '/v1/me', headers, payload: { display_name: null } });
    expect(now2.statusCode).toBe(200);
    expect(now2.json().display_name).toBeNull();
  });

  it('never refuses an SOS for want of a name: the alert goes out', async () => {
    const sub = randomUUID();
    const headers = await t.as(sub);
    const contact = (await t.app.inject({ method: 'POST', url: '/v1/contacts', headers, payload: { name: 'Dee', email: `${sub.slice(0, 8)}@example.test` } })).json();
    await t.db.pool.query(`update contacts set status = 'active' where id = $1`, [contact.id]);
    const sos = await t.app.inject({ method: 'POST', url: '/v1/sos', headers, payload: { note: 'fell' } });
    expect(sos.statusCode).toBe(201);
    const { rows } = await t.db.pool.query(`select channel from deliveries where contact_id = $1 and kind = 'alert'`, [contact.id]);
    expect(rows).toEqual([{ channel: 'email' }]);
  });

  it('never refuses a check-in for want of a name, in the app or through a reminder link', async () => {
    const sub = randomUUID();
    const headers = await t.asNamed(sub);
    const id = (await t.app.inject({ method: 'POST', url: '/v1/schedules', headers, payload: daily })).json().id as string;
    await t.db.pool.query('update members set display_name = null where id = $1', [sub]);

    expect((await t.app.inject({ method: 'POST', url: '/v1/check-ins', headers, payload: {} })).statusCode).toBe(201);
    const token = signLink(TEST_LINK_SECRET, 'checkin', sub, new Date('2026-11-24T00:00:00Z'));
    const link = await t.app.inject({ method: 'POST', url: `/c/${token}`, headers: { 'content-type': 'application/x-www-form-urlencoded' }, payload: '' });
    expect(link.statusCode).toBe(201);
    expect((await t.db.pool.query('select count(*)::int as n from check_ins where member_id = $1', [sub])).rows[0].n).toBe(2);
    expect((await t.app.inject({ method: 'GET', url: `/v1/schedules/${id}`, headers })).json().next_deadline_at).toBe('2026-11-24T09:30:00.000Z');
  });
});
