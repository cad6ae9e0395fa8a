import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { checkoutSessionObject, eventOf, invoiceObject, subscriptionObject, type SubscriptionSpec } from '../fakes/stripe.js';
import { DAY, deliver, nowSeconds, PRICES, startBillingApp, subscriptionRow, type BillingTest } from './helpers.js';

/**
 * Stripe delivers events in any order, some more than once. Whatever the order, the stored
 * subscription must end as Stripe's latest state. Each ordering is a fresh subscription whose
 * lifecycle is replayed shuffled, with random duplicates, from a seeded generator (the seed is
 * in the failure message; set BILLING_ORDER_SEED to replay one).
 */

const SEED = Number(process.env.BILLING_ORDER_SEED ?? Date.now() % 1_000_000);

function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let x = Math.imul(a ^ (a >>> 15), 1 | a);
    x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x;
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}

type Lifecycle = { events: Record<string, unknown>[]; final: Record<string, unknown>; lastPayment: 'paid' | 'failed' };

/** Signup, upgrade, a failed and recovered payment, cancel at period end, then the end: final state canceled family. */
function toCancellation(id: string, customer: string, payer: string, t0: number): Lifecycle {
  const end1 = t0 + 30 * DAY;
  const end2 = t0 + 60 * DAY;
  const base: SubscriptionSpec = { id, customer, status: 'incomplete', price: PRICES.plus, periodEnd: end1, created: t0 };
  const s = (o: Partial<SubscriptionSpec>) => subscriptionObject({ ...base, ...o });
  const inv = (paid: boolean) => invoiceObject({ subscription: id, customer, status: paid ? 'paid' : 'open' });
  const final = s({ status: 'canceled', price: PRICES.family, periodEnd: end2, cancelAtPeriodEnd: true, canceledAt: t0 + 6, endedAt: t0 + 7 });
  return {
    final,
    lastPayment: 'paid',
    events: [
      eventOf('customer.subscription.created', s({}), t0),
      eventOf('checkout.session.completed', checkoutSessionObject({ customer, subscription: id, clientReferenceId: payer }), t0 + 1),
      eventOf('invoice.paid', inv(true), t0 + 2),
      eventOf('customer.subscription.updated', s({ status: 'active' }), t0 + 2),
      eventOf('customer.subscription.updated', s({ status: 'active', price: PRICES.family }), t0 + 3),
      eventOf('invoice.payment_failed', inv(false), t0 + 4),
      eventOf('customer.subscription.updated', s({ status: 'past_due', price: PRICES.family, periodEnd: end2 }), t0 + 4),
      eventOf('invoice.paid', inv(true), t0 + 5),
      eventOf('customer.subscription.updated', s({ status: 'active', price: PRICES.family, periodEnd: end2 }), t0 + 5),
      eventOf('customer.subscription.updated', s({ status: 'active', price: PRICES.family, periodEnd: end2, cancelAtPeriodEnd: true, canceledAt: t0 + 6 }), t0 + 6),
      eventOf('customer.subscription.deleted', final, t0 + 7),
    ],
  };
}

/** A trial that converts, a change of mind about cancelling, a failed payment, a downgrade, a recovery: final state active plus. */
function toDowngrade(id: string, customer: string, payer: string, t0: number): Lifecycle {
  const trialEnd = t0 + 14 * DAY;
  const end2 = trialEnd + 30 * DAY;
  const base: SubscriptionSpec = { id, customer, status: 'trialing', price: PRICES.family, periodEnd: trialEnd, trialEnd, created: t0, metadata: { member_id: payer } };
  const s = (o: Partial<SubscriptionSpec>) => subscriptionObject({ ...base, ...o });
  const inv = (paid: boolean) => invoiceObject({ subscription: id, customer, status: paid ? 'paid' : 'open' });
  const final = s({ status: 'active', price: PRICES.plusYearly, periodEnd: end2 + 30 * DAY });
  return {
    final,
    lastPayment: 'paid',
    events: [
      eventOf('customer.subscription.created', s({}), t0),
      eventOf('customer.subscription.trial_will_end', s({}), t0 + 1),
      eventOf('customer.subscription.updated', s({ status: 'active', periodEnd: end2 }), t0 + 2),
      eventOf('invoice.paid', inv(true), t0 + 2),
      eventOf('customer.subscription.updated', s({ status: 'active', periodEnd: end2, cancelAtPeriodEnd: true }), t0 + 3),
      eventOf('customer.subscription.updated', s({ status: 'active', periodEnd: end2 }), t0 + 4),
      eventOf('invoice.payment_failed', inv(false), t0 + 5),
      eventOf('customer.subscription.updated', s({ status: 'past_due', periodEnd: end2 }), t0 + 5),
      eventOf('customer.subscription.updated', s({ status: 'past_due', price: PRICES.plusYearly, periodEnd: end2 }), t0 + 6),
      eventOf('invoice.paid', inv(true), t0 + 7),
      eventOf('customer.subscription.updated', final, t0 + 7),
    ],
  };
}

/** Every event at least once, about a third of them again (some three times), shuffled. */
function shuffledWithDuplicates(events: Record<string, unknown>[], rand: () => number): Record<string, unknown>[] {
  const out = [...events];
  for (const e of events) {
    if (rand() < 0.35) out.push(e);
    if (rand() < 0.1) out.push(e);
  }
  for (let i = out.length - 1; i > 0; i -= 1) {
    const j = Math.floor(rand() * (i + 1));
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}

function expectedRow(final: Record<string, unknown>, payer: string, lastPayment: string) {
  const item = (final.items as { data: { price: { id: string }; current_period_end: number }[] }).data[0]!;
  const date = (s: unknown) => (typeof s === 'number' ? new Date(s * 1000) : null);
  const price = item.price.id;
  return {
    member_id: payer, status: final.status, price_id: price, plan: price === PRICES.family ? 'family' : 'plus',
    cancel_at_period_end: final.cancel_at_period_end, current_period_end: date(item.current_period_end),
    trial_end: date(final.trial_end), ended_at: date(final.ended_at), last_payment: lastPayment,
  };
}

async function runOrderings(t: BillingTest, count: number, seed: number, withApi: boolean): Promise<string[]> {
  const failures: string[] = [];
  const rand = rng(seed);
  const plans = Array.from({ length: count }, (_, i) => ({ i, order: rand() }));
  const worker = async (slice: typeof plans) => {
    for (const { i } of slice) {
      const payer = randomUUID();
      await t.db.pool.query('insert into members (id) values ($1)', [payer]);
      const id = `sub_order_${seed}_${withApi ? 'api' : 'events'}_${i}`;
      const customer = `cus_order_${seed}_${i}`;
      const life = (i % 2 === 0 ? toCancellation : toDowngrade)(id, customer, payer, nowSeconds() - 3600);
      if (withApi) t.stripe.subscriptions.set(id, life.final);
      const order = shuffledWithDuplicates(life.events, rng(seed * 1000 + i));
      const seen = new Set<unknown>();
      for (const event of order) {
        const res = await deliver(t, event);
        if (res.statusCode !== 200 || res.json().duplicate !== seen.has(event.id)) failures.push(`ordering ${i}: ${res.statusCode} ${res.body}`);
        seen.add(event.id);
      }
      const row = await subscriptionRow(t, id);
      const want = expectedRow(life.final, payer, life.lastPayment);
      const got = Object.fromEntries(Object.keys(want).map((k) => [k, row?.[k]]));
      try {
        expect(got).toEqual(want);
      } catch {
        failures.push(`ordering ${i} (seed ${seed}): ${order.map((e) => `${String(e.type)}@${Number(e.created) % 100}`).join(', ')}\n got ${JSON.stringify(got)}\n want ${JSON.stringify(want)}`);
      }
    }
  };
  // Four orderings at a time, each on its own subscription: also exercises the per-subscription lock.
  await Promise.all([0, 1, 2, 3].map((w) => worker(plans.filter((p) => p.i % 4 === w))));
  return failures;
}

describe('Stripe events in any order', () => {
  let t: BillingTest;
  beforeAll(async () => {
    t = await startBillingApp();
  });
  afterAll(() => t.shutdown());

  it('ends in Stripe\'s latest state for 200 random orderings with duplicates of two lifecycles', async () => {
    const failures = await runOrderings(t, 200, SEED, true);
    expect(failures).toEqual([]);
    // Audit rows tell the story: every one of them records a change (before differs from after).
    const { rows } = await t.db.pool.query(`select count(*)::int as n from billing_audit where before is not null and before = after`);
    expect(rows[0].n).toBe(0);
  }, 300_000);
});

describe('Stripe events in any order, without the API to re-read from', () => {
  let t: BillingTest;
  beforeAll(async () => {
    t = await startBillingApp({ withApiKey: false });
  });
  afterAll(() => t.shutdown());

  it('orders by the events\' own creation time alone for 100 random orderings with duplicates', async () => {
    const failures = await runOrderings(t, 100, SEED + 1, false);
    expect(failures).toEqual([]);
    expect(t.stripe.requests).toHaveLength(0);
  }, 300_000);
});
