import { describe, expect, it } from '@jest/globals';
import type Stripe from 'stripe';
import { inForce, planForPrice, planLimits, planSettings } from '../../src/billing/entitlements.js';
import { stateOf, subscriptionOfInvoice } from '../../src/billing/sync.js';
import { ConfigError, loadConfig } from '../../src/config.js';
import { invoiceObject, subscriptionObject } from '../fakes/stripe.js';

// DB-less: run with PRUUF_TEST_NO_DB=1 to skip building the template database.

function problems(env: Record<string, string>): string[] {
  try {
    loadConfig(env);
  } catch (err) {
    if (err instanceof ConfigError) return err.problems;
    throw err;
  }
  return [];
}

const PRICES = { plus: ['price_plus_m', 'price_plus_y'], family: ['price_family'] };

describe('billing configuration', () => {
  it('reads price lists and plan limits, with defaults for the limits', () => {
    const c = loadConfig({ STRIPE_PRICE_PLUS: 'price_plus_m, price_plus_y', STRIPE_PRICE_FAMILY: 'price_family', FAMILY_PLAN_CONTACTS: '12' });
    expect(c.STRIPE_PRICE_PLUS).toEqual(['price_plus_m', 'price_plus_y']);
    expect(planSettings(c)).toEqual({
      freePlanContacts: 2, freePlanChannels: ['push', 'email'], plusPlanContacts: 5, familyPlanContacts: 12, plusPlanCoveredMembers: 1, familyPlanCoveredMembers: 5,
    });
    expect(loadConfig({}).STRIPE_PRICE_FAMILY).toEqual([]);
  });

  it.each([
    [{ STRIPE_PRICE_PLUS: 'price_a', STRIPE_PRICE_FAMILY: 'price_a' }, /^STRIPE_PRICE_FAMILY: a price cannot belong to two plans/],
    [{ STRIPE_PRICE_PLUS: 'price a!' }, /^STRIPE_PRICE_PLUS\.0: must be Stripe price ids.*\(got "price a!"\)/],
    [{ BILLING_SUCCESS_URL: 'not a url' }, /^BILLING_SUCCESS_URL: /],
    [{ NODE_ENV: 'production', STRIPE_SECRET_KEY: 'sk_live_x' }, /^STRIPE_WEBHOOK_SECRET: is required with STRIPE_SECRET_KEY in production/],
    [{ NODE_ENV: 'production', STRIPE_SECRET_KEY: 'sk_live_x' }, /^STRIPE_PRICE_PLUS: STRIPE_PRICE_PLUS or STRIPE_PRICE_FAMILY is required/],
  ])('names what is wrong in %o', (env, message) => {
    expect(problems(env as Record<string, string>).some((p) => message.test(p))).toBe(true);
  });
});

describe('plans and Stripe shapes', () => {
  it('maps prices to plans and grants nothing for a price it does not know', () => {
    expect(['price_plus_y', 'price_family', 'price_other', null].map((p) => planForPrice(p, PRICES))).toEqual(['plus', 'family', 'free', 'free']);
    expect(planLimits('family', { freePlanContacts: 2 })).toEqual({ maxContacts: 10, channels: ['push', 'sms', 'email'], coveredMembers: 5 });
  });

  it('reads the period from the items (basil) and from the subscription itself (older API versions)', () => {
    const basil = subscriptionObject({ id: 'sub_1', customer: 'cus_1', status: 'active', price: 'price_plus_m', periodEnd: 2_000_000_000, metadata: { member_id: 'm' } });
    expect(stateOf(basil as unknown as Stripe.Subscription, PRICES)).toMatchObject({ plan: 'plus', current_period_end: new Date(2_000_000_000_000), stripe_customer_id: 'cus_1', memberHint: 'm' });
    const items = (basil.items as { data: Record<string, unknown>[] }).data.map(({ current_period_end: _e, ...rest }) => rest);
    const legacy = { ...basil, current_period_end: 1_900_000_000, items: { data: items } };
    expect(stateOf(legacy as unknown as Stripe.Subscription, PRICES).current_period_end).toEqual(new Date(1_900_000_000_000));
  });

  it('takes the best plan among several items', () => {
    const sub = subscriptionObject({ id: 'sub_2', customer: { id: 'cus_2' } as unknown as string, status: 'active', price: 'price_other', periodEnd: 1 });
    const item = (sub.items as { data: Record<string, unknown>[] }).data[0]!;
    const two = { ...sub, items: { data: [item, { ...item, price: { id: 'price_family' } }] } };
    expect(stateOf(two as unknown as Stripe.Subscription, PRICES)).toMatchObject({ plan: 'family', price_id: 'price_family', stripe_customer_id: 'cus_2' });
  });

  it('finds the subscription of an invoice in the basil and the older shape', () => {
    expect(subscriptionOfInvoice(invoiceObject({ subscription: 'sub_3', customer: 'c', status: 'paid' }) as unknown as Stripe.Invoice)).toBe('sub_3');
    expect(subscriptionOfInvoice({ id: 'in_1', object: 'invoice', subscription: 'sub_4', parent: null } as unknown as Stripe.Invoice)).toBe('sub_4');
    expect(subscriptionOfInvoice({ id: 'in_2', object: 'invoice', parent: null } as unknown as Stripe.Invoice)).toBeNull();
  });

  it('holds a lapsing plan until the period end and no longer', () => {
    const end = new Date('2026-12-01T00:00:00Z');
    const before = new Date('2026-11-30T23:59:59Z');
    const after = new Date('2026-12-01T00:00:00Z');
    expect(inForce({ status: 'past_due', current_period_end: end, cancel_at_period_end: false }, before)).toEqual({ granted: true, until: end });
    expect(inForce({ status: 'past_due', current_period_end: end, cancel_at_period_end: false }, after).granted).toBe(false);
    expect(inForce({ status: 'active', current_period_end: end, cancel_at_period_end: false }, after)).toEqual({ granted: true, until: null });
    expect(inForce({ status: 'trialing', current_period_end: end, cancel_at_period_end: true }, before)).toEqual({ granted: true, until: end });
    expect(inForce({ status: 'incomplete', current_period_end: end, cancel_at_period_end: false }, before).granted).toBe(false);
  });
});
