import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { sweepOnce } from '../../src/incidents/sweep.js';
import { errorOf } from '../helpers/app.js';
import { eventOf, invoiceObject } from '../fakes/stripe.js';
import { alerts, sweepDeps, testClock } from '../incidents/helpers.js';
import { billingOf, changeSubscription, deliver, payerWithCustomer, PRICES, startBillingApp, subscribe, type BillingTest } from './helpers.js';

/**
 * The safety rule: the plan decides reminder channels and contact counts, never whether an alert
 * is sent: alerts go on every channel on every plan (issue 17 #9). A failed payment or a
 * cancellation downgrades at period end; it does not silence an incident in flight, and contacts
 * beyond the free limit stay and keep getting alerts, SMS included, and the member is told.
 */

const start = new Date(Math.floor(Date.now() / 60_000) * 60_000);
const clock = testClock(start.toISOString());
const at = (minutes: number) => new Date(start.getTime() + minutes * 60_000).toISOString();

describe('downgrades never silence alerts', () => {
  let t: BillingTest;
  beforeAll(async () => {
    t = await startBillingApp({ clock: () => clock.now });
  });
  afterAll(() => t.shutdown());

  it('keeps an incident in flight on its channels, keeps every contact, and tells the member', async () => {
    const payer = await payerWithCustomer(t);
    const id = await subscribe(t, payer, { price: PRICES.plus }, Math.floor(start.getTime() / 1000) - 60);
    const headers = await t.asNamed(payer.sub);
    const contacts: { id: string; tier: number }[] = [];
    for (const [i, tier] of [1, 1, 2, 2].entries()) {
      const res = await t.app.inject({
        method: 'POST', url: '/v1/contacts', headers,
        payload: { name: `Contact ${i}`, email: `${randomUUID().slice(0, 8)}@example.test`, phone: `+4477009001${String(i).padStart(2, '0')}`, tier },
      });
      expect(res.statusCode).toBe(201);
      contacts.push({ id: res.json().id, tier });
    }
    await t.db.pool.query(`update contacts set status = 'active' where member_id = $1`, [payer.sub]);
    const schedule = await t.app.inject({ method: 'POST', url: '/v1/schedules', headers, payload: { kind: 'once', due_at: at(10), grace_minutes: 5 } });
    expect(schedule.statusCode).toBe(201);

    // The deadline is missed while on plus: tier 1 is alerted by SMS and email.
    clock.set(at(15));
    await sweepOnce(sweepDeps(t, clock));
    const { rows: [inc] } = await t.db.pool.query('select id, plan from incidents where member_id = $1', [payer.sub]);
    const tier = (n: number) => contacts.filter((c) => c.tier === n).map((c) => c.id);
    const sent = async () => (await alerts(t.db.pool, inc.id)).map((d) => `${d.step_no}:${d.contact_id}:${d.channel}`).sort();
    expect(await sent()).toEqual(tier(1).flatMap((c) => [`1:${c}:email`, `1:${c}:sms`]).sort());

    // The payment fails: the plan holds to the end of the period, and the member is told.
    t.stripe.subscriptions.set(id, { ...t.stripe.subscriptions.get(id)!, status: 'past_due' });
    await deliver(t, eventOf('invoice.payment_failed', invoiceObject({ subscription: id, customer: payer.customer, status: 'open' }), Math.floor(clock.now.getTime() / 1000)));
    let b = await billingOf(t, payer.sub);
    expect(b.entitlements.plan).toBe('plus');
    expect(b.notices.map((n: { code: string }) => n.code)).toEqual(['payment_failed']);

    // Then the subscription is cancelled and its period is over: the member is on free now.
    const ended = Math.floor(start.getTime() / 1000) - 30;
    const item = (t.stripe.subscriptions.get(id)!.items as { data: Record<string, unknown>[] }).data[0]!;
    await changeSubscription(t, id, { status: 'canceled', ended_at: ended, items: { object: 'list', data: [{ ...item, current_period_end: ended }] } }, 'customer.subscription.deleted', Math.floor(clock.now.getTime() / 1000));
    b = await billingOf(t, payer.sub);
    expect(b.entitlements).toMatchObject({ plan: 'free', channels: ['push', 'email'], alert_channels: ['push', 'sms', 'email'], max_contacts: 2, contacts: 4 });
    const notices = b.notices.map((n: { code: string }) => n.code);
    expect(notices).toEqual(['plan_ended', 'over_contact_limit']);
    expect(b.notices[0].message).toContain('reminders now go by push and email only (alerts still reach your contacts on every channel, SMS included)');
    expect(b.notices[1].message).toContain('None were removed: all 4 still get alerts');

    // The incident already in flight escalates to tier 2 on the channels it opened with, SMS included.
    clock.set(at(30));
    await sweepOnce(sweepDeps(t, clock));
    expect((await sent()).filter((s) => s.startsWith('2:') && !s.endsWith(':voice'))).toEqual(tier(2).flatMap((c) => [`2:${c}:email`, `2:${c}:sms`]).sort());
    // Still unacknowledged at step 2: tier 1 is called, whatever the plan.
    expect((await sent()).filter((s) => s.endsWith(':voice'))).toEqual(tier(1).map((c) => `2:${c}:voice`).sort());

    // The all clear reaches everyone alerted, by every channel they were alerted on.
    await t.db.pool.query(`update deliveries set status = 'sent' where incident_id = $1`, [inc.id]);
    const checkIn = await t.app.inject({ method: 'POST', url: '/v1/check-ins', headers, payload: {} });
    expect(checkIn.statusCode).toBe(201);
    const allClear = (await alerts(t.db.pool, inc.id, 'all_clear')).map((d) => d.channel);
    expect(allClear.filter((c) => c === 'sms')).toHaveLength(4);

    // Every contact stays, reachable by SMS and email as before: alerts are not a paid feature.
    const list = (await t.app.inject({ method: 'GET', url: '/v1/contacts', headers })).json().data;
    const byId = (a: unknown[], b: unknown[]) => String(a[0]).localeCompare(String(b[0]));
    const everyoneBySmsAndEmail = contacts.map((c) => [c.id, ['sms', 'email']]).sort(byId);
    expect(list.map((c: { id: string; channels: string[] }) => [c.id, c.channels]).sort(byId)).toEqual(everyoneBySmsAndEmail);
    expect(list.every((c: { reachable: boolean; unreachable_reason: unknown }) => c.reachable && c.unreachable_reason === null)).toBe(true);

    // The next missed deadline alerts every tier's contacts too, on the free plan by SMS as well.
    const next = await t.app.inject({ method: 'POST', url: '/v1/schedules', headers, payload: { kind: 'once', due_at: at(40), grace_minutes: 0 } });
    expect(next.statusCode).toBe(201);
    clock.set(at(40));
    await sweepOnce(sweepDeps(t, clock));
    const { rows: [second] } = await t.db.pool.query(`select id, plan from incidents where member_id = $1 and id <> $2`, [payer.sub, inc.id]);
    const planned = second.plan.tiers.flatMap((tr: { contacts: { id: string; channels: { channel: string }[] }[] }) => tr.contacts.map((c) => [c.id, c.channels.map((x) => x.channel)]));
    expect(planned.sort(byId)).toEqual(everyoneBySmsAndEmail);
    expect((await alerts(t.db.pool, second.id)).map((d) => d.channel).sort()).toEqual(['email', 'email', 'sms', 'sms']);

    // Adding a fifth is refused by the free plan's limit; nothing was taken away to get there.
    const fifth = await t.app.inject({ method: 'POST', url: '/v1/contacts', headers, payload: { name: 'Five', email: 'five@example.test' } });
    expect(fifth.statusCode).toBe(402);
    expect(errorOf(fifth.body)).toMatchObject({ code: 'PLAN_LIMIT', details: { plan: 'free', max_contacts: 2 } });
    expect((await t.db.pool.query('select count(*)::int as n from contacts where member_id = $1', [payer.sub])).rows[0].n).toBe(4);
  });
});
