import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { errorOf } from '../helpers/app.js';
import { checkoutSessionObject, eventOf, invoiceObject, signedDelivery, subscriptionObject } from '../fakes/stripe.js';
import {
  billingOf, changeSubscription, DAY, deliver, nowSeconds, payerWithCustomer, PRICES, startBillingApp, subscribe, subscriptionRow, type BillingTest,
} from './helpers.js';

const subId = () => `sub_${randomBytes(8).toString('hex')}`;

describe('Stripe webhook', () => {
  let t: BillingTest;
  beforeAll(async () => {
    t = await startBillingApp({ env: { WEBHOOK_BODY_LIMIT_BYTES: '8192' } });
  });
  afterAll(() => t.shutdown());

  const auditOf = async (id: string) =>
    (await t.db.pool.query('select actor, action, event_id, before, after from billing_audit where subscription_id = $1 order by id', [id])).rows;
  const claimed = async (eventId: string) => (await t.db.pool.query(`select 1 from provider_events where provider = 'stripe' and event_id = $1`, [eventId])).rowCount;

  describe('signatures', () => {
    it.each([
      ['signed with another secret', { secret: `whsec_${'x'.repeat(32)}` }],
      ['signed ten minutes ago', { timestamp: nowSeconds() - 600 }],
      ['signed ten minutes in the future', { timestamp: nowSeconds() + 600 }],
    ])('refuses an event %s with 400 and leaves the state as it was', async (_name, opts) => {
      const payer = await payerWithCustomer(t);
      const id = await subscribe(t, payer, { price: PRICES.plus });
      const auditBefore = await auditOf(id);
      const forged = eventOf('customer.subscription.deleted', subscriptionObject({ id, customer: payer.customer, status: 'canceled', price: PRICES.plus, periodEnd: nowSeconds() - 1 }), nowSeconds() + 5);
      const res = await deliver(t, forged, opts);
      expect(res.statusCode).toBe(400);
      expect(errorOf(res.body).code).toBe('INVALID_SIGNATURE');
      expect((await subscriptionRow(t, id)).status).toBe('active');
      expect(await auditOf(id)).toEqual(auditBefore);
      expect(await claimed(forged.id as string)).toBe(0);
    });

    it('accepts a signature a little ahead of our clock (Stripe\'s clock may run ahead)', async () => {
      const payer = await payerWithCustomer(t);
      const object = subscriptionObject({ id: subId(), customer: payer.customer, status: 'active', price: PRICES.plus, periodEnd: nowSeconds() + DAY, metadata: { member_id: payer.sub } });
      t.stripe.subscriptions.set(object.id as string, object);
      expect((await deliver(t, eventOf('customer.subscription.created', object, nowSeconds()), { timestamp: nowSeconds() + 30 })).statusCode).toBe(200);
    });

    it.each([
      ['status null', { status: null }],
      ['an unknown status', { status: 'exploded' }],
      ['no customer', { customer: null }],
      ['a period end that is text', { cancel_at: 'tomorrow' }],
      ['items that are not a list', { items: { data: 'none' } }],
    ])('answers a correctly signed subscription event with %s with a 400 naming the field, and stores nothing', async (_name, change) => {
      const payer = await payerWithCustomer(t);
      const id = await subscribe(t, payer, { price: PRICES.plus });
      const odd = { ...subscriptionObject({ id, customer: payer.customer, status: 'active', price: PRICES.plus, periodEnd: nowSeconds() + DAY }), ...change };
      const ev = eventOf('customer.subscription.updated', odd, nowSeconds() + 5);
      const res = await deliver(t, ev);
      expect(res.statusCode).toBe(400);
      expect(errorOf(res.body)).toMatchObject({ code: 'VALIDATION_ERROR', message: expect.stringContaining('data.object.') });
      expect((await subscriptionRow(t, id)).status).toBe('active');
      expect(await claimed(ev.id as string)).toBe(0);
    });

    it('refuses a body changed after signing, and a missing or garbled header', async () => {
      const object = subscriptionObject({ id: subId(), customer: 'cus_x', status: 'active', price: PRICES.family, periodEnd: nowSeconds() + DAY });
      const { payload, headers } = signedDelivery(eventOf('customer.subscription.created', object, nowSeconds()), t.webhookSecret, nowSeconds());
      const tampered = await t.app.inject({ method: 'POST', url: '/webhooks/stripe', headers, payload: payload.replace(PRICES.family, PRICES.plus) });
      const missing = await t.app.inject({ method: 'POST', url: '/webhooks/stripe', headers: { 'content-type': 'application/json' }, payload });
      const garbled = await t.app.inject({ method: 'POST', url: '/webhooks/stripe', headers: { ...headers, 'stripe-signature': 'nonsense' }, payload });
      for (const res of [tampered, missing, garbled]) {
        expect(res.statusCode).toBe(400);
        expect(errorOf(res.body).code).toBe('INVALID_SIGNATURE');
      }
      expect(await subscriptionRow(t, object.id as string)).toBeUndefined();
    });

    it('answers a signed body that is not an event with 400, and an oversized one with 413', async () => {
      const notJson = 'not json at all';
      const { headers } = signedDelivery({}, t.webhookSecret, nowSeconds());
      const sig = (await import('stripe')).default.webhooks.generateTestHeaderString({ payload: notJson, secret: t.webhookSecret });
      const a = await t.app.inject({ method: 'POST', url: '/webhooks/stripe', headers: { ...headers, 'stripe-signature': sig }, payload: notJson });
      expect(a.statusCode).toBe(400);
      const noId = signedDelivery({ object: 'event', type: 'invoice.paid' }, t.webhookSecret, nowSeconds());
      const b = await t.app.inject({ method: 'POST', url: '/webhooks/stripe', headers: noId.headers, payload: noId.payload });
      expect(b.statusCode).toBe(400);
      expect(errorOf(b.body).code).toBe('VALIDATION_ERROR');
      const big = signedDelivery(eventOf('customer.updated', { id: 'cus_big', object: 'customer', description: 'x'.repeat(9000) }, nowSeconds()), t.webhookSecret, nowSeconds());
      const c = await t.app.inject({ method: 'POST', url: '/webhooks/stripe', headers: big.headers, payload: big.payload });
      expect(c.statusCode).toBe(413);
    });
  });

  it('applies each event id once: a replay is acknowledged and ignored', async () => {
    const payer = await payerWithCustomer(t);
    const id = subId();
    const object = subscriptionObject({ id, customer: payer.customer, status: 'active', price: PRICES.plus, periodEnd: nowSeconds() + 30 * DAY, metadata: { member_id: payer.sub } });
    const event = eventOf('customer.subscription.created', object, nowSeconds());
    const first = await deliver(t, event);
    const again = await deliver(t, event);
    expect(first.json()).toEqual({ received: true, duplicate: false });
    expect(again.statusCode).toBe(200);
    expect(again.json()).toEqual({ received: true, duplicate: true });
    expect(await auditOf(id)).toHaveLength(1);
  });

  it('customer.subscription.created stores the subscription, its payer, plan and period from the items', async () => {
    const payer = await payerWithCustomer(t);
    const end = nowSeconds() + 30 * DAY;
    const id = await subscribe(t, payer, { price: PRICES.plusYearly, periodEnd: end });
    expect(await subscriptionRow(t, id)).toMatchObject({
      member_id: payer.sub, stripe_customer_id: payer.customer, price_id: PRICES.plusYearly, plan: 'plus', status: 'active',
      cancel_at_period_end: false, current_period_end: new Date(end * 1000),
    });
    expect(await auditOf(id)).toEqual([expect.objectContaining({ actor: 'stripe', action: 'customer.subscription.created', before: null, after: expect.objectContaining({ plan: 'plus', status: 'active', member_id: payer.sub }) })]);
  });

  it('customer.subscription.updated changes the plan and audits before and after', async () => {
    const payer = await payerWithCustomer(t);
    const id = await subscribe(t, payer, { price: PRICES.plus }, nowSeconds() - 10);
    const object = await changeSubscription(t, id, { items: (subscriptionObject({ id, customer: payer.customer, status: 'active', price: PRICES.family, periodEnd: nowSeconds() + 30 * DAY }) as { items: unknown }).items });
    expect(object.status).toBe('active');
    expect((await subscriptionRow(t, id)).plan).toBe('family');
    const trail = await auditOf(id);
    expect(trail).toHaveLength(2);
    expect(trail[1]).toMatchObject({ action: 'customer.subscription.updated', before: { plan: 'plus' }, after: { plan: 'family' } });
    expect((await billingOf(t, payer.sub)).entitlements).toMatchObject({ plan: 'family', max_contacts: 10 });
  });

  it('customer.subscription.deleted keeps the paid period, then the member is on free', async () => {
    const payer = await payerWithCustomer(t);
    const end = nowSeconds() + 5 * DAY;
    const id = await subscribe(t, payer, { price: PRICES.plus, periodEnd: end }, nowSeconds() - 10);
    await changeSubscription(t, id, { status: 'canceled', canceled_at: nowSeconds(), ended_at: nowSeconds() }, 'customer.subscription.deleted');
    expect((await subscriptionRow(t, id)).status).toBe('canceled');
    let b = await billingOf(t, payer.sub);
    expect(b.entitlements).toMatchObject({ plan: 'plus', until: new Date(end * 1000).toISOString() });
    expect(b.notices.map((n: { code: string }) => n.code)).toEqual(['plan_ending']);
    await t.db.pool.query(`update subscriptions set current_period_end = now() - interval '1 second' where id = $1`, [id]);
    b = await billingOf(t, payer.sub);
    expect(b.entitlements).toMatchObject({ plan: 'free', source: 'default', channels: ['push', 'email'] });
    expect(b.notices.map((n: { code: string }) => n.code)).toEqual(['plan_ended']);
  });

  it('customer.subscription.trial_will_end records the trial and the member is told when it ends', async () => {
    const payer = await payerWithCustomer(t);
    const trialEnd = nowSeconds() + 3 * DAY;
    const id = await subscribe(t, payer, { price: PRICES.family, status: 'trialing', trialEnd, periodEnd: trialEnd }, nowSeconds() - 10);
    await changeSubscription(t, id, {}, 'customer.subscription.trial_will_end');
    expect((await subscriptionRow(t, id)).trial_end).toEqual(new Date(trialEnd * 1000));
    const b = await billingOf(t, payer.sub);
    expect(b).toMatchObject({ status: 'trialing', trial_end: new Date(trialEnd * 1000).toISOString(), entitlements: { plan: 'family' } });
    expect(b.notices).toContainEqual(expect.objectContaining({ code: 'trial_ending', at: new Date(trialEnd * 1000).toISOString() }));
  });

  it('invoice.payment_failed re-reads the subscription: past due keeps the plan to period end, and says so', async () => {
    const payer = await payerWithCustomer(t);
    const id = await subscribe(t, payer, { price: PRICES.plus }, nowSeconds() - 10);
    t.stripe.subscriptions.set(id, { ...t.stripe.subscriptions.get(id)!, status: 'past_due' });
    const res = await deliver(t, eventOf('invoice.payment_failed', invoiceObject({ subscription: id, customer: payer.customer, status: 'open' }), nowSeconds()));
    expect(res.statusCode).toBe(200);
    expect(await subscriptionRow(t, id)).toMatchObject({ status: 'past_due', last_payment: 'failed' });
    const b = await billingOf(t, payer.sub);
    expect(b).toMatchObject({ status: 'past_due', last_payment: 'failed', entitlements: { plan: 'plus' } });
    expect(b.notices.map((n: { code: string }) => n.code)).toEqual(['payment_failed']);
    expect(t.stripe.calls('GET', `/v1/subscriptions/${id}`)).toHaveLength(1);
  });

  it('invoice.paid re-reads the subscription and records the payment', async () => {
    const payer = await payerWithCustomer(t);
    const id = await subscribe(t, payer, { price: PRICES.plus, status: 'past_due' }, nowSeconds() - 10);
    t.stripe.subscriptions.set(id, { ...t.stripe.subscriptions.get(id)!, status: 'active' });
    await deliver(t, eventOf('invoice.paid', invoiceObject({ subscription: id, customer: payer.customer, status: 'paid' }), nowSeconds()));
    expect(await subscriptionRow(t, id)).toMatchObject({ status: 'active', last_payment: 'paid' });
    expect((await auditOf(id)).map((a) => a.action)).toEqual(['customer.subscription.created', 'invoice.paid', 'invoice.paid']);
  });

  it('checkout.session.completed names the payer of a subscription whose events came first', async () => {
    const payer = await payerWithCustomer(t);
    await t.db.pool.query('delete from billing_customers where member_id = $1', [payer.sub]);
    const id = subId();
    const object = subscriptionObject({ id, customer: 'cus_unknown_yet', status: 'active', price: PRICES.family, periodEnd: nowSeconds() + 30 * DAY });
    t.stripe.subscriptions.set(id, object);
    await deliver(t, eventOf('customer.subscription.created', object, nowSeconds() - 5));
    expect((await subscriptionRow(t, id)).member_id).toBeNull();
    const res = await deliver(t, eventOf('checkout.session.completed', checkoutSessionObject({ customer: 'cus_unknown_yet', subscription: id, clientReferenceId: payer.sub }), nowSeconds() - 5));
    expect(res.statusCode).toBe(200);
    expect((await subscriptionRow(t, id)).member_id).toBe(payer.sub);
    const { rows } = await t.db.pool.query('select stripe_customer_id from billing_customers where member_id = $1', [payer.sub]);
    expect(rows).toEqual([{ stripe_customer_id: 'cus_unknown_yet' }]);
    expect((await billingOf(t, payer.sub)).entitlements).toMatchObject({ plan: 'family', source: 'own' });
  });

  it('acknowledges and logs event types it does not handle', async () => {
    const event = eventOf('charge.succeeded', { id: 'ch_1', object: 'charge' }, nowSeconds());
    const res = await deliver(t, event);
    expect(res.statusCode).toBe(200);
    expect(res.json()).toEqual({ received: true, duplicate: false });
    expect(await claimed(event.id as string)).toBe(1);
  });

  it('rolls everything back and answers 5xx when Stripe fails mid-way, then applies the retry', async () => {
    const payer = await payerWithCustomer(t);
    const id = subId();
    t.stripe.subscriptions.set(id, subscriptionObject({ id, customer: payer.customer, status: 'active', price: PRICES.plus, periodEnd: nowSeconds() + 30 * DAY, metadata: { member_id: payer.sub } }));
    const event = eventOf('invoice.paid', invoiceObject({ subscription: id, customer: payer.customer, status: 'paid' }), nowSeconds());
    t.stripe.failNext(`/v1/subscriptions/${id}`, 500, 3);
    const failed = await deliver(t, event);
    expect(failed.statusCode).toBeGreaterThanOrEqual(500);
    expect(await subscriptionRow(t, id)).toBeUndefined();
    expect(await auditOf(id)).toEqual([]);
    expect(await claimed(event.id as string)).toBe(0);
    const retried = await deliver(t, event);
    expect(retried.json()).toEqual({ received: true, duplicate: false });
    expect(await subscriptionRow(t, id)).toMatchObject({ status: 'active', last_payment: 'paid', member_id: payer.sub });
  });

  it('ignores an event older than the state it has', async () => {
    const payer = await payerWithCustomer(t);
    const id = await subscribe(t, payer, { price: PRICES.family }, nowSeconds());
    const older = subscriptionObject({ id, customer: payer.customer, status: 'incomplete', price: PRICES.plus, periodEnd: nowSeconds() + DAY, metadata: { member_id: payer.sub } });
    await deliver(t, eventOf('customer.subscription.updated', older, nowSeconds() - 60));
    expect(await subscriptionRow(t, id)).toMatchObject({ status: 'active', plan: 'family' });
    expect(await auditOf(id)).toHaveLength(1);
  });

  it('re-reads the subscription when two events of the same second disagree', async () => {
    const payer = await payerWithCustomer(t);
    const second = nowSeconds();
    const id = await subscribe(t, payer, { price: PRICES.plus }, second);
    t.stripe.subscriptions.set(id, { ...t.stripe.subscriptions.get(id)!, cancel_at_period_end: true });
    const stale = subscriptionObject({ id, customer: payer.customer, status: 'incomplete', price: PRICES.plus, periodEnd: nowSeconds() + DAY });
    await deliver(t, eventOf('customer.subscription.updated', stale, second));
    expect(await subscriptionRow(t, id)).toMatchObject({ status: 'active', cancel_at_period_end: true });
    expect(t.stripe.calls('GET', `/v1/subscriptions/${id}`)).toHaveLength(1);
  });

  it('never brings a cancelled subscription back', async () => {
    const payer = await payerWithCustomer(t);
    const id = await subscribe(t, payer, { price: PRICES.plus }, nowSeconds() - 20);
    await changeSubscription(t, id, { status: 'canceled', ended_at: nowSeconds() - 10 }, 'customer.subscription.deleted', nowSeconds() - 10);
    const revived = subscriptionObject({ id, customer: payer.customer, status: 'active', price: PRICES.family, periodEnd: nowSeconds() + DAY });
    await deliver(t, eventOf('customer.subscription.updated', revived, nowSeconds()));
    expect(await subscriptionRow(t, id)).toMatchObject({ status: 'canceled', plan: 'plus' });
  });

  it('grants nothing beyond free for a price that is not one of our plans', async () => {
    const payer = await payerWithCustomer(t);
    const id = await subscribe(t, payer, { price: 'price_somebody_elses' });
    expect(await subscriptionRow(t, id)).toMatchObject({ plan: 'free', price_id: 'price_somebody_elses' });
    expect((await billingOf(t, payer.sub)).entitlements.plan).toBe('free');
  });

  it('acknowledges an invoice for a subscription Stripe does not know, storing nothing', async () => {
    const id = subId();
    const res = await deliver(t, eventOf('invoice.paid', invoiceObject({ subscription: id, customer: 'cus_gone', status: 'paid' }), nowSeconds()));
    expect(res.statusCode).toBe(200);
    expect(await subscriptionRow(t, id)).toBeUndefined();
  });
});
