import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { errorOf } from '../helpers/app.js';
import { eventOf, subscriptionObject } from '../fakes/stripe.js';
import { billingOf, DAY, deliver, nowSeconds, payerWithCustomer, PRICES, startBillingApp, subscribe, type BillingTest } from './helpers.js';

describe('billing routes with Stripe configured', () => {
  let t: BillingTest;
  beforeAll(async () => {
    t = await startBillingApp();
  });
  afterAll(() => t.shutdown());

  it('creates the Stripe customer once and reuses it for every checkout of that member', async () => {
    const sub = randomUUID();
    const headers = await t.as(sub);
    const first = await t.app.inject({ method: 'POST', url: '/v1/billing/checkout', headers, payload: { plan: 'plus' } });
    const second = await t.app.inject({ method: 'POST', url: '/v1/billing/checkout', headers, payload: { plan: 'family' } });
    expect(first.statusCode).toBe(200);
    expect(first.json().url).toMatch(/^https:\/\/checkout\.stripe\.test\/c\/pay\/cs_test_/);
    expect(second.statusCode).toBe(200);
    const creates = t.stripe.calls('POST', '/v1/customers').filter((r) => (r.params.metadata as Record<string, string>).member_id === sub);
    expect(creates).toHaveLength(1);
    expect(creates[0]!.idempotencyKey).toBe(`pruuf-customer-${sub}`);
    const sessions = t.stripe.calls('POST', '/v1/checkout/sessions').filter((r) => r.params.client_reference_id === sub);
    expect(sessions).toHaveLength(2);
    const { rows } = await t.db.pool.query('select stripe_customer_id from billing_customers where member_id = $1', [sub]);
    expect(rows).toHaveLength(1);
    expect(sessions.map((s) => s.params.customer)).toEqual([rows[0].stripe_customer_id, rows[0].stripe_customer_id]);
  });

  it('asks Stripe for a subscription checkout of the plan price, with the member as client reference and our return pages', async () => {
    const sub = randomUUID();
    await t.app.inject({ method: 'POST', url: '/v1/billing/checkout', headers: await t.as(sub), payload: { plan: 'family' } });
    const session = t.stripe.calls('POST', '/v1/checkout/sessions').find((r) => r.params.client_reference_id === sub)!;
    expect(session.params).toMatchObject({
      mode: 'subscription',
      line_items: [{ price: PRICES.family, quantity: '1' }],
      success_url: 'http://pruuf.test/billing/return?result=success',
      cancel_url: 'http://pruuf.test/billing/return?result=cancel',
      subscription_data: { metadata: { member_id: sub, plan: 'family' } },
    });
    expect(session.stripeVersion).toMatch(/^\d{4}-\d{2}-\d{2}\./);
    const { rows } = await t.db.pool.query(`select actor, action, after from billing_audit where member_id = $1`, [sub]);
    expect(rows).toEqual([{ actor: 'member', action: 'checkout_started', after: expect.objectContaining({ plan: 'family', price_id: PRICES.family }) }]);
  });

  it('gives concurrent first checkouts of one member the same customer', async () => {
    const sub = randomUUID();
    const headers = await t.as(sub);
    const answers = await Promise.all([1, 2, 3].map(() => t.app.inject({ method: 'POST', url: '/v1/billing/checkout', headers, payload: { plan: 'plus' } })));
    expect(answers.map((a) => a.statusCode)).toEqual([200, 200, 200]);
    const customers = new Set(t.stripe.calls('POST', '/v1/checkout/sessions').filter((r) => r.params.client_reference_id === sub).map((r) => r.params.customer));
    expect(customers.size).toBe(1);
  });

  it('refuses a second subscription while one is in force and points to the portal', async () => {
    const payer = await payerWithCustomer(t);
    await subscribe(t, payer, { price: PRICES.plus });
    const res = await t.app.inject({ method: 'POST', url: '/v1/billing/checkout', headers: await t.as(payer.sub), payload: { plan: 'family' } });
    expect(res.statusCode).toBe(409);
    expect(errorOf(res.body)).toMatchObject({ code: 'CONFLICT', details: { plan: 'plus' } });
  });

  it.each([[{ plan: 'gold' }], [{}], [{ plan: 'plus', price: 'price_free' }], [{ plan: 'free' }]])('rejects the checkout body %o with a validation error', async (payload) => {
    const res = await t.app.inject({ method: 'POST', url: '/v1/billing/checkout', headers: await t.as(randomUUID()), payload });
    expect(res.statusCode).toBe(400);
    expect(errorOf(res.body).code).toBe('VALIDATION_ERROR');
  });

  it('needs a bearer token for every billing route', async () => {
    for (const [method, url] of [['GET', '/v1/billing'], ['POST', '/v1/billing/checkout'], ['POST', '/v1/billing/portal']] as const) {
      const res = await t.app.inject({ method, url, payload: method === 'POST' ? { plan: 'plus' } : undefined });
      expect(res.statusCode).toBe(401);
    }
  });

  it('opens the portal for a member with a customer, returning to our page', async () => {
    const payer = await payerWithCustomer(t);
    const res = await t.app.inject({ method: 'POST', url: '/v1/billing/portal', headers: await t.as(payer.sub) });
    expect(res.statusCode).toBe(200);
    expect(res.json().url).toMatch(/^https:\/\/billing\.stripe\.test\/p\/session\//);
    const call = t.stripe.calls('POST', '/v1/billing_portal/sessions').find((r) => r.params.customer === payer.customer)!;
    expect(call.params.return_url).toBe('http://pruuf.test/billing/return?result=portal');
  });

  it('answers 404 for the portal before any checkout', async () => {
    const res = await t.app.inject({ method: 'POST', url: '/v1/billing/portal', headers: await t.as(randomUUID()) });
    expect(res.statusCode).toBe(404);
    expect(errorOf(res.body).code).toBe('NOT_FOUND');
  });

  it('retries a failing Stripe and then answers 503 with Retry-After, never a 500', async () => {
    const payer = await payerWithCustomer(t);
    const before = t.stripe.calls('POST', '/v1/billing_portal').length;
    t.stripe.failNext('/v1/billing_portal/sessions', 500, 3);
    const res = await t.app.inject({ method: 'POST', url: '/v1/billing/portal', headers: await t.as(payer.sub) });
    expect(res.statusCode).toBe(503);
    expect(res.headers['retry-after']).toBe('5');
    expect(errorOf(res.body).code).toBe('SERVICE_UNAVAILABLE');
    expect(t.stripe.calls('POST', '/v1/billing_portal').length - before).toBe(3);
  });

  it('succeeds when a retry gets through a brief Stripe outage', async () => {
    const payer = await payerWithCustomer(t);
    t.stripe.failNext('/v1/billing_portal/sessions', 503, 1);
    const res = await t.app.inject({ method: 'POST', url: '/v1/billing/portal', headers: await t.as(payer.sub) });
    expect(res.statusCode).toBe(200);
  });

  it('shows a member without a subscription the free plan and its limits', async () => {
    const b = await billingOf(t, randomUUID());
    expect(b).toEqual({
      plan: 'free', status: 'none', subscription_id: null, current_period_end: null, cancel_at_period_end: false, trial_end: null, last_payment: null, covers: [],
      entitlements: { plan: 'free', source: 'default', payer: null, channels: ['push', 'email'], alert_channels: ['push', 'sms', 'email'], max_contacts: 2, contacts: 0, until: null },
      notices: [],
    });
  });

  it("shows the payer's subscription: plan, status, period end, cancel at period end", async () => {
    const payer = await payerWithCustomer(t);
    const end = nowSeconds() + 20 * DAY;
    const id = await subscribe(t, payer, { price: PRICES.plusYearly, periodEnd: end, cancelAtPeriodEnd: true });
    const b = await billingOf(t, payer.sub);
    expect(b).toMatchObject({
      plan: 'plus', status: 'active', subscription_id: id, current_period_end: new Date(end * 1000).toISOString(), cancel_at_period_end: true,
      entitlements: { plan: 'plus', source: 'own', channels: ['push', 'sms', 'email'], max_contacts: 5, until: new Date(end * 1000).toISOString() },
    });
    expect(b.notices.map((n: { code: string }) => n.code)).toEqual(['plan_ending']);
  });

  it('shows a friendly page where Stripe sends the payer back', async () => {
    const res = await t.app.inject({ method: 'GET', url: '/billing/return?result=cancel' });
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toContain('text/html');
    expect(res.body).toContain('Checkout cancelled');
  });

  it('documents the billing routes in the OpenAPI document', async () => {
    const doc = (await t.app.inject({ method: 'GET', url: '/openapi.json' })).json();
    for (const path of ['/v1/billing', '/v1/billing/checkout', '/v1/billing/portal', '/webhooks/stripe']) expect(doc.paths[path]).toBeDefined();
  });
});

describe('billing routes without Stripe keys', () => {
  let t: BillingTest;
  beforeAll(async () => {
    t = await startBillingApp({ withApiKey: false, withWebhookSecret: false });
  });
  afterAll(() => t.shutdown());

  it('answers checkout and portal with 503 BILLING_NOT_CONFIGURED and calls nobody', async () => {
    const headers = await t.as(randomUUID());
    for (const url of ['/v1/billing/checkout', '/v1/billing/portal']) {
      const res = await t.app.inject({ method: 'POST', url, headers, payload: { plan: 'plus' } });
      expect(res.statusCode).toBe(503);
      expect(errorOf(res.body).code).toBe('BILLING_NOT_CONFIGURED');
    }
    expect(t.stripe.requests).toHaveLength(0);
  });

  it('still shows everyone the free plan', async () => {
    expect((await billingOf(t, randomUUID())).entitlements).toMatchObject({ plan: 'free', source: 'default' });
  });

  it('has no webhook route without a signing secret, so nothing unverified is applied', async () => {
    const object = subscriptionObject({ id: 'sub_unconfigured', customer: 'cus_x', status: 'active', price: PRICES.plus, periodEnd: nowSeconds() + DAY });
    const res = await deliver(t, eventOf('customer.subscription.created', object, nowSeconds()));
    expect(res.statusCode).toBe(404);
    expect(errorOf(res.body).code).toBe('NOT_FOUND');
    expect((await t.db.pool.query('select 1 from subscriptions')).rowCount).toBe(0);
    expect((await t.db.pool.query(`select 1 from provider_events where provider = 'stripe'`)).rowCount).toBe(0);
  });
});
