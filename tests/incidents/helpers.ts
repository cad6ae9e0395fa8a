import { randomUUID } from 'node:crypto';
import type pg from 'pg';
import { messageText, type StoredMessage } from '../../src/incidents/render-at-send.js';
import { incidentSettings } from '../../src/incidents/settings.js';
import type { SweepDeps } from '../../src/incidents/sweep.js';
import { createLogger } from '../../src/observability/logger.js';
import type { TestApp } from '../helpers/app.js';
import { TEST_LINK_SECRET } from '../helpers/tokens.js';

export type Clock = { now: Date; set: (iso: string) => void; add: (minutes: number) => void };
export function testClock(iso: string): Clock {
  const c: Clock = {
    now: new Date(iso),
    set: (v) => { c.now = new Date(v); },
    add: (m) => { c.now = new Date(c.now.getTime() + m * 60_000); },
  };
  return c;
}

export function sweepDeps(t: TestApp, clock: Clock, pool: pg.Pool = t.db.pool): SweepDeps {
  return { pool, queues: t.queues, log: createLogger('silent'), clock: () => clock.now, settings: incidentSettings(t.config, TEST_LINK_SECRET) };
}

export type Contact = { id: string; name: string; tier: number; email: string; phone: string };

/** A member with contacts in tiers, all active (as if they had confirmed), and a daily schedule. */
export async function memberWithContacts(
  t: TestApp, tiers: number[], schedule: object = { kind: 'daily', local_time: '09:30', time_zone: 'UTC', grace_minutes: 30 },
): Promise<{ sub: string; headers: { authorization: string }; contacts: Contact[]; scheduleId: string }> {
  const sub = randomUUID();
  const headers = await t.as(sub);
  await t.app.inject({ method: 'PATCH', url: '/v1/me', headers, payload: { display_name: 'Ann' } });
  const contacts: Contact[] = [];
  for (const [i, tier] of tiers.entries()) {
    const n = `${sub.slice(0, 8)}-${i}`;
    const res = await t.app.inject({ method: 'POST', url: '/v1/contacts', headers, payload: { name: `Contact ${i}`, email: `${n}@example.test`, phone: `+4477009${String(i).padStart(5, '0')}`, tier } });
    if (res.statusCode !== 201) throw new Error(`contact: ${res.body}`);
    contacts.push({ id: res.json().id, name: `Contact ${i}`, tier, email: `${n}@example.test`, phone: `+4477009${String(i).padStart(5, '0')}` });
  }
  await t.db.pool.query(`update contacts set status = 'active' where member_id = $1`, [sub]);
  const s = await t.app.inject({ method: 'POST', url: '/v1/schedules', headers, payload: schedule });
  return { sub, headers, contacts, scheduleId: s.json().id };
}

/**
 * An incident's deliveries of one kind, each with the text it sends: the stored one, or (an alert
 * the sweeper left to the worker) rendered the way the worker renders it.
 */
export async function alerts(pool: pg.Pool, incidentId: string, kind = 'alert') {
  const { rows } = await pool.query<StoredMessage & { step_no: number; status: string }>(
    `select id, kind, channel, incident_id, contact_id, subject, body, html, data, render, step_no, status
       from deliveries where incident_id = $1 and kind = $2 order by step_no, contact_id, channel`,
    [incidentId, kind],
  );
  return Promise.all(rows.map(async (r) => ({
    contact_id: r.contact_id!, channel: r.channel as string, step_no: r.step_no, status: r.status, body: (await messageText(pool, r)).body,
  })));
}

export function tokenFrom(body: string): string {
  const m = /\/a\/([\w-]+)/.exec(body);
  if (m === null) throw new Error(`no ack link in: ${body}`);
  return m[1]!;
}
