import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { sweepOnce } from '../../src/incidents/sweep.js';
import { startTestApp, type TestApp } from '../helpers/app.js';
import { alerts, memberWithContacts, sweepDeps, testClock, tokenFrom } from './helpers.js';

// Issue 17: what members and contacts read and tap. Every tap counts once; every reminder promised goes out.
const clock = testClock('2026-11-23T08:00:00Z');
const at = (iso: string, ms = 0) => { clock.now = new Date(Date.parse(iso) + ms); };

describe('reminders', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await startTestApp({ clock: () => clock.now });
  });
  afterAll(() => t.close());

  const reminders = async (memberId: string) =>
    (await t.db.pool.query<{ created_at: Date }>(`select created_at from deliveries where member_id = $1 and kind = 'reminder' and channel = 'email' order by created_at`, [memberId])).rows;

  it('sends the reminder due at the deadline although the sweep runs a few milliseconds after it', async () => {
    at('2026-11-23T08:00:00Z');
    const m = await memberWithContacts(t, []); // 09:30 UTC, grace 30, reminders [30, 0]
    at('2026-11-23T09:00:00Z', 4);
    await sweepOnce(sweepDeps(t, clock));
    expect(await reminders(m.sub)).toHaveLength(1);
    at('2026-11-23T09:30:00Z', 7); // the sweep never runs exactly on the deadline
    await sweepOnce(sweepDeps(t, clock));
    expect(await reminders(m.sub)).toHaveLength(2);
    // Each reminder once: the next sweeps find nothing more for today.
    at('2026-11-23T09:30:01Z');
    await sweepOnce(sweepDeps(t, clock));
    at('2026-11-23T09:59:59Z');
    await sweepOnce(sweepDeps(t, clock));
    expect(await reminders(m.sub)).toHaveLength(2);
  });

  it('sends a late reminder while the deadline is in its grace, and none once the alert is due', async () => {
    at('2026-11-23T08:00:00Z');
    const late = await memberWithContacts(t, []);
    // Our sweeper was down from before the 0-minute reminder until 09:45: the member can still check in before 10:00.
    at('2026-11-23T09:00:00Z', 4);
    await sweepOnce(sweepDeps(t, clock));
    at('2026-11-23T09:45:00Z');
    await sweepOnce(sweepDeps(t, clock));
    expect(await reminders(late.sub)).toHaveLength(2);

    // With no grace, the deadline is the alert: the contacts are alerted and the member is not reminded.
    at('2026-11-23T08:00:00Z');
    const none = await memberWithContacts(t, [1], { kind: 'daily', local_time: '09:30', time_zone: 'UTC', grace_minutes: 0 });
    at('2026-11-23T09:00:00Z', 4);
    await sweepOnce(sweepDeps(t, clock));
    at('2026-11-23T09:30:00Z', 7);
    await sweepOnce(sweepDeps(t, clock));
    expect(await reminders(none.sub)).toHaveLength(1);
    expect((await t.db.pool.query('select 1 from incidents where member_id = $1', [none.sub])).rowCount).toBe(1);
  });
});

describe('contact links tapped again', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await startTestApp({ clock: () => clock.now, env: { FREE_PLAN_CHANNELS: 'push,sms,email', FREE_PLAN_CONTACTS: '10' } });
  });
  afterAll(() => t.close());

  const count = async (sql: string, id: string) => (await t.db.pool.query<{ n: number }>(sql, [id])).rows[0]!.n;
  const deliveries = (incidentId: string) => count('select count(*)::int as n from deliveries where incident_id = $1', incidentId);
  const events = (incidentId: string) => count('select count(*)::int as n from incident_events where incident_id = $1', incidentId);
  const position = async (incidentId: string) =>
    (await t.db.pool.query('select state, step_no, round, tier_index, next_step_at, ack_expires_at from incidents where id = $1', [incidentId])).rows[0];

  async function missed(tiers: number[]) {
    at('2026-11-23T08:00:00Z');
    const m = await memberWithContacts(t, tiers);
    at('2026-11-23T10:00:00Z', 3);
    await sweepOnce(sweepDeps(t, clock));
    const { rows: [inc] } = await t.db.pool.query<{ id: string }>('select id from incidents where member_id = $1', [m.sub]);
    // Handed to the provider: these contacts count as alerted (notices and all clears go to them).
    await t.db.pool.query(`update deliveries set status = 'sent', attempts = 1 where incident_id = $1`, [inc!.id]);
    const linkOf = async (contactIndex: number) =>
      tokenFrom((await alerts(t.db.pool, inc!.id)).find((d) => d.contact_id === m.contacts[contactIndex]!.id && d.channel === 'email')!.body);
    return { m, incidentId: inc!.id, linkOf };
  }

  it('"I\'m on it" tapped twice by the same contact: the same answer, no second notice, the acknowledgement does not restart', async () => {
    const { incidentId, linkOf } = await missed([1, 1]);
    const link = await linkOf(0);
    clock.add(2);
    const first = await t.app.inject({ method: 'POST', url: `/a/${link}/ack` });
    expect(first.statusCode).toBe(200);
    const [sent, timeline, where] = [await deliveries(incidentId), await events(incidentId), await position(incidentId)];
    expect(await count(`select count(*)::int as n from deliveries where incident_id = $1 and kind = 'ack_notice'`, incidentId)).toBeGreaterThan(0);
    clock.add(3);
    const again = await t.app.inject({ method: 'POST', url: `/a/${link}/ack` });
    expect(again.statusCode).toBe(200);
    expect(again.json()).toEqual(first.json());
    expect(await deliveries(incidentId)).toBe(sent);
    expect(await events(incidentId)).toBe(timeline);
    expect(await position(incidentId)).toEqual(where);
    // The page (a browser posting the form again) says the same too.
    const page = await t.app.inject({ method: 'POST', url: `/a/${link}/ack`, headers: { accept: 'text/html' } });
    expect(page.statusCode).toBe(200);
    expect(page.body).toContain('Thank you, Contact 0');
    expect(await deliveries(incidentId)).toBe(sent);
  });

  it('"This needs more help" tapped twice by the same contact alerts the remaining tiers once', async () => {
    const { m, incidentId, linkOf } = await missed([1, 2, 3]);
    const link = await linkOf(0);
    clock.add(1);
    const first = await t.app.inject({ method: 'POST', url: `/a/${link}/escalate` });
    expect(first.statusCode).toBe(200);
    const step2 = (await alerts(t.db.pool, incidentId)).filter((d) => d.step_no === 2);
    expect([...new Set(step2.map((d) => m.contacts.find((c) => c.id === d.contact_id)!.tier))].sort()).toEqual([2, 3]);
    const [sent, timeline, where] = [await deliveries(incidentId), await events(incidentId), await position(incidentId)];
    for (const accept of ['application/json', 'text/html']) {
      clock.add(1);
      const again = await t.app.inject({ method: 'POST', url: `/a/${link}/escalate`, headers: { accept } });
      expect(again.statusCode).toBe(200);
      if (accept === 'application/json') expect(again.json()).toEqual(first.json());
      else expect(again.body).toContain('Everyone has been alerted');
    }
    expect(await deliveries(incidentId)).toBe(sent);
    expect(await events(incidentId)).toBe(timeline);
    expect(await position(incidentId)).toEqual(where);
  });

  it('"This needs more help" once every tier has been alerted sends no new round and spends none', async () => {
    const { incidentId, linkOf } = await missed([1, 2]);
    // Round 1 ends with tier 2 at 10:15.
    at('2026-11-23T10:15:00Z', 3);
    await sweepOnce(sweepDeps(t, clock));
    await t.db.pool.query(`update deliveries set status = 'sent', attempts = 1 where incident_id = $1`, [incidentId]);
    const where = await position(incidentId);
    expect(where).toMatchObject({ state: 'open', round: 2 });
    const sent = await deliveries(incidentId);
    clock.add(1);
    // The tier-2 contact, who never tapped before: nobody is left to alert.
    const res = await t.app.inject({ method: 'POST', url: `/a/${await linkOf(1)}/escalate` });
    expect(res.statusCode).toBe(200);
    expect(res.json()).toMatchObject({ incident_id: incidentId, state: 'open' });
    expect(await deliveries(incidentId)).toBe(sent);
    expect(await position(incidentId)).toEqual(where);
    // The timeline still says who asked for more help.
    expect(await count(`select count(*)::int as n from incident_events where incident_id = $1 and type = 'escalated_by_contact'`, incidentId)).toBe(1);
    // Escalation goes on as planned: the next round at its time.
    at('2026-11-23T10:30:00Z', 3);
    await sweepOnce(sweepDeps(t, clock));
    expect(await position(incidentId)).toMatchObject({ round: 3 });
  });

  it('"This needs more help" while someone said they are on it, once every tier has been alerted, resumes escalation at once', async () => {
    const { incidentId, linkOf } = await missed([1, 2]);
    at('2026-11-23T10:15:00Z', 3);
    await sweepOnce(sweepDeps(t, clock));
    await t.db.pool.query(`update deliveries set status = 'sent', attempts = 1 where incident_id = $1`, [incidentId]);
    clock.add(1);
    expect((await t.app.inject({ method: 'POST', url: `/a/${await linkOf(0)}/ack` })).json()).toMatchObject({ state: 'acknowledged' });
    clock.add(1);
    // The tier-2 contact is with the member and says it is not enough: nobody may go on believing it is handled.
    const res = await t.app.inject({ method: 'POST', url: `/a/${await linkOf(1)}/escalate` });
    expect(res.json()).toMatchObject({ incident_id: incidentId, state: 'open' });
    const { rows: [inc] } = await t.db.pool.query<{ state: string; next_step_at: Date }>('select state, next_step_at from incidents where id = $1', [incidentId]);
    expect(inc).toEqual({ state: 'open', next_step_at: clock.now });
    await sweepOnce(sweepDeps(t, clock));
    expect(await position(incidentId)).toMatchObject({ round: 3 });
  });
});
