import { randomBytes, randomUUID } from 'node:crypto';
import { startTestApp, type TestApp, type TestAppOptions } from '../helpers/app.js';
import { eventOf, signedDelivery, startStripeFake, subscriptionObject, type StripeFake, type SubscriptionSpec } from '../fakes/stripe.js';

export const PRICES = { plus: 'price_plus_monthly', plusYearly: 'price_plus_yearly', family: 'price_family_monthly' };
export const DAY = 86_400;

export type BillingTest = TestApp & { stripe: StripeFake; webhookSecret: string; shutdown: () => Promise<void> };

/** The real app on a fresh database, with Stripe's API faked locally and a webhook secret. */
export async function startBillingApp(opts: TestAppOptions & { withApiKey?: boolean; withWebhookSecret?: boolean } = {}): Promise<BillingTest> {
  const stripe = await startStripeFake();
  const webhookSecret = `whsec_${randomBytes(16).toString('hex')}`;
  const t = await startTestApp({
    ...opts,
    env: {
      ...(opts.withApiKey === false ? {} : { STRIPE_SECRET_KEY: stripe.apiKey }),
      ...(opts.withWebhookSecret === false ? {} : { STRIPE_WEBHOOK_SECRET: webhookSecret }),
      STRIPE_API_BASE: stripe.base,
      STRIPE_PRICE_PLUS: `${PRICES.plus},${PRICES.plusYearly}`,
      STRIPE_PRICE_FAMILY: PRICES.family,
      RATE_LIMIT_IP_PER_MINUTE: '1000000',
      RATE_LIMIT_MEMBER_PER_MINUTE: '1000000',
      ...opts.env,
    },
  });
  return { ...t, stripe, webhookSecret, shutdown: async () => { await t.close(); await stripe.close(); } };
}

export const nowSeconds = () => Math.floor(Date.now() / 1000);

/** POSTs an event to /webhooks/stripe as Stripe would, signed now (or as told). */
export async function deliver(t: BillingTest, event: Record<string, unknown>, opts: { secret?: string; timestamp?: number } = {}) {
  const { payload, headers } = signedDelivery(event, opts.secret ?? t.webhookSecret, opts.timestamp ?? Math.floor(t.app.clock().getTime() / 1000));
  return t.app.inject({ method: 'POST', url: '/webhooks/stripe', headers, payload });
}

export async function subscriptionRow(t: TestApp, id: string) {
  const { rows } = await t.db.pool.query('select * from subscriptions where id = $1', [id]);
  return rows[0];
}

/** A payer who went through checkout: member row and Stripe customer exist. */
export async function payerWithCustomer(t: BillingTest, plan: 'plus' | 'family' = 'plus'): Promise<{ sub: string; customer: string }> {
  const sub = randomUUID();
  const res = await t.app.inject({ method: 'POST', url: '/v1/billing/checkout', headers: await t.as(sub), payload: { plan } });
  if (res.statusCode !== 200) throw new Error(`checkout: ${res.body}`);
  const { rows } = await t.db.pool.query('select stripe_customer_id from billing_customers where member_id = $1', [sub]);
  return { sub, customer: rows[0].stripe_customer_id };
}

/** Stripe tells us (by webhook) that `payer` has a subscription in this state; the API agrees. */
export async function subscribe(
  t: BillingTest, payer: { sub: string; customer: string }, spec: Partial<SubscriptionSpec> & { price: string }, created = nowSeconds(),
): Promise<string> {
  const id = spec.id ?? `sub_${randomBytes(8).toString('hex')}`;
  const object = subscriptionObject({ id, customer: payer.customer, status: 'active', periodEnd: nowSeconds() + 30 * DAY, metadata: { member_id: payer.sub }, ...spec });
  t.stripe.subscriptions.set(id, object);
  const res = await deliver(t, eventOf('customer.subscription.created', object, created));
  if (res.statusCode !== 200) throw new Error(`webhook: ${res.body}`);
  return id;
}

/** Changes the subscription at Stripe and delivers the matching event. */
export async function changeSubscription(t: BillingTest, id: string, change: Record<string, unknown>, type = 'customer.subscription.updated', created = nowSeconds()) {
  const object = { ...t.stripe.subscriptions.get(id)!, ...change };
  t.stripe.subscriptions.set(id, object);
  const res = await deliver(t, eventOf(type, object, created));
  if (res.statusCode !== 200) throw new Error(`webhook: ${res.body}`);
  return object;
}

/** A member with a contact that the app user `watcher` accepted with a bearer token (linked, active). */
export async function watchedMember(t: TestApp, watcher: string, opts: { phone?: string; contactName?: string } = {}): Promise<{ sub: string; headers: { authorization: string }; contactId: string }> {
  const sub = randomUUID();
  const headers = await t.as(sub);
  await t.app.inject({ method: 'PATCH', url: '/v1/me', headers, payload: { display_name: `Member ${sub.slice(0, 4)}` } });
  const res = await t.app.inject({
    method: 'POST', url: '/v1/contacts', headers,
    payload: { name: opts.contactName ?? 'Watcher', email: `${randomUUID().slice(0, 8)}@example.test`, ...(opts.phone === undefined ? {} : { phone: opts.phone }) },
  });
  if (res.statusCode !== 201) throw new Error(`contact: ${res.body}`);
  const contactId = res.json().id as string;
  const { rows } = await t.db.pool.query(`select body from deliveries where contact_id = $1 and kind = 'invitation' and channel = 'email'`, [contactId]);
  const token = /\/i\/([\w-]+)/.exec(rows[0].body)![1]!;
  const accept = await t.app.inject({ method: 'POST', url: `/i/${token}/accept`, headers: await t.as(watcher) });
  if (accept.statusCode !== 200 || accept.json().linked !== true) throw new Error(`accept: ${accept.body}`);
  return { sub, headers, contactId };
}

export async function billingOf(t: TestApp, sub: string) {
  const res = await t.app.inject({ method: 'GET', url: '/v1/billing', headers: await t.as(sub) });
  if (res.statusCode !== 200) throw new Error(`billing: ${res.body}`);
  return res.json();
}
