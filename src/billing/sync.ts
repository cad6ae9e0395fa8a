import type Stripe from 'stripe';
import type { Queryable } from '../db/pool.js';
import type { Logger } from '../observability/logger.js';
import { planForPrice, type Plan } from './entitlements.js';
import * as repo from './repo.js';
import { isResourceMissing, stripeFailure } from './stripe.js';

/**
 * Keeps our copy of each subscription equal to Stripe's latest state, whatever order Stripe's
 * events arrive in (it promises none) and however often each arrives:
 * - an event older than the stored state (by Stripe's `created`) is stale and changes nothing;
 * - a newer one replaces the state with its payload;
 * - one from the same second with other content is a tie Stripe's clock cannot break, so the
 *   subscription is re-read from the API; so are events that carry no subscription (checkout,
 *   invoices) when they are not older than what we have;
 * - `canceled` and `incomplete_expired` are final in Stripe: nothing brings such a row back.
 * Every change writes an audit row. Runs in the webhook's transaction: a failure leaves nothing.
 */

export type BillingContext = {
  stripe: Stripe | undefined;
  prices: { plus: string[]; family: string[] };
  log: Logger;
};

export type EventRef = { id: string; type: string; created: Date };
export type Outcome = 'applied' | 'unchanged' | 'stale' | 'final' | 'unknown_subscription' | 'ignored';

const FINAL = new Set(['canceled', 'incomplete_expired']);
const RANK: Record<Plan, number> = { free: 0, plus: 1, family: 2 };

const at = (seconds: number | null | undefined): Date | null => (typeof seconds === 'number' ? new Date(seconds * 1000) : null);
const idOf = (v: string | { id: string } | null | undefined): string | null => (v === null || v === undefined ? null : typeof v === 'string' ? v : v.id);

/** Our columns from a Stripe subscription (period fields on items since the 2025 "basil" API, on the subscription before). */
export function stateOf(sub: Stripe.Subscription, prices: BillingContext['prices']): repo.SubscriptionState & { memberHint: string | null } {
  const items = sub.items?.data ?? [];
  let priceId: string | null = null;
  let plan: Plan = 'free';
  let periodEnd: number | null = null;
  for (const item of items) {
    const p = idOf(item.price);
    const itemPlan = planForPrice(p, prices);
    if (priceId === null || RANK[itemPlan] > RANK[plan]) {
      priceId = p;
      plan = itemPlan;
    }
    if (typeof item.current_period_end === 'number') periodEnd = Math.max(periodEnd ?? 0, item.current_period_end);
  }
  const legacyEnd = (sub as unknown as { current_period_end?: number }).current_period_end;
  return {
    stripe_customer_id: idOf(sub.customer) ?? '',
    price_id: priceId,
    plan,
    status: sub.status,
    cancel_at_period_end: sub.cancel_at_period_end === true,
    cancel_at: at(sub.cancel_at),
    current_period_end: at(periodEnd ?? legacyEnd),
    trial_end: at(sub.trial_end),
    canceled_at: at(sub.canceled_at),
    ended_at: at(sub.ended_at),
    memberHint: typeof sub.metadata?.member_id === 'string' ? sub.metadata.member_id : null,
  };
}

const time = (d: Date | null) => (d === null ? null : d.getTime());

export function sameState(a: repo.SubscriptionState, b: repo.SubscriptionState): boolean {
  return a.status === b.status && a.plan === b.plan && a.price_id === b.price_id && a.cancel_at_period_end === b.cancel_at_period_end &&
    time(a.cancel_at) === time(b.cancel_at) && time(a.current_period_end) === time(b.current_period_end) &&
    time(a.trial_end) === time(b.trial_end) && time(a.ended_at) === time(b.ended_at) && a.stripe_customer_id === b.stripe_customer_id;
}

/** What the audit trail shows of a subscription. */
export function auditView(r: repo.SubscriptionRow): Record<string, unknown> {
  return {
    member_id: r.member_id, status: r.status, plan: r.plan, price_id: r.price_id, cancel_at_period_end: r.cancel_at_period_end,
    current_period_end: r.current_period_end?.toISOString() ?? null, last_payment: r.last_payment,
  };
}

async function retrieve(ctx: BillingContext, id: string): Promise<Stripe.Subscription | undefined> {
  if (ctx.stripe === undefined) return undefined;
  try {
    return await ctx.stripe.subscriptions.retrieve(id);
  } catch (err) {
    if (isResourceMissing(err)) {
      ctx.log.warn({ subscription: id }, 'Stripe does not know this subscription; keeping what the events said');
      return undefined;
    }
    // Thrown out of the transaction: nothing is stored and Stripe delivers the event again.
    throw stripeFailure(err);
  }
}

async function payerFor(tx: Queryable, cur: repo.SubscriptionRow | undefined, hints: (string | null | undefined)[], customerId: string): Promise<string | null> {
  if (cur?.member_id) return cur.member_id;
  for (const h of hints) {
    const m = await repo.existingMember(tx, h);
    if (m !== null) return m;
  }
  return customerId === '' ? null : ((await repo.memberOfCustomer(tx, customerId)) ?? null);
}

async function write(
  tx: Queryable, id: string, cur: repo.SubscriptionRow | undefined, state: ReturnType<typeof stateOf>,
  hint: string | null, ev: EventRef, synced: Date | null, now: Date,
): Promise<{ row: repo.SubscriptionRow; outcome: Outcome }> {
  const payer = await payerFor(tx, cur, [hint, state.memberHint], state.stripe_customer_id);
  if (cur !== undefined && sameState(cur, state) && cur.member_id === payer) {
    if (ev.created > cur.state_at || synced !== null) await repo.saveSubscription(tx, id, payer, state, ev.created, synced, now);
    return { row: cur, outcome: 'unchanged' };
  }
  const row = await repo.saveSubscription(tx, id, payer, state, ev.created, synced, now);
  await repo.audit(tx, {
    at: now, memberId: row.member_id, subscriptionId: id, actor: 'stripe', action: ev.type, eventId: ev.id,
    before: cur === undefined ? null : auditView(cur), after: auditView(row),
  });
  return { row, outcome: 'applied' };
}

/** A `customer.subscription.*` event: its payload is the subscription as it was at `created`. */
export async function applySubscriptionEvent(tx: Queryable, ctx: BillingContext, sub: Stripe.Subscription, ev: EventRef, now: Date): Promise<Outcome> {
  await repo.lockSubscription(tx, sub.id);
  const cur = await repo.getSubscription(tx, sub.id);
  let state = stateOf(sub, ctx.prices);
  let synced: Date | null = null;
  if (cur !== undefined) {
    let skip: Outcome | undefined;
    if (FINAL.has(cur.status) && !FINAL.has(state.status)) skip = 'final';
    else if (ev.created < cur.state_at) skip = 'stale';
    else if (ev.created.getTime() === cur.state_at.getTime() && !sameState(cur, state)) {
      const fresh = await retrieve(ctx, sub.id);
      if (fresh !== undefined) {
        state = stateOf(fresh, ctx.prices);
        synced = now;
      } else if (FINAL.has(cur.status)) {
        skip = 'final';
      }
    }
    if (skip !== undefined) {
      // An old event still says whose subscription it is, if we did not know yet.
      if (cur.member_id === null) await attachPayer(tx, cur, await payerFor(tx, cur, [state.memberHint], state.stripe_customer_id), ev, now);
      return skip;
    }
  }
  return (await write(tx, sub.id, cur, state, null, ev, synced, now)).outcome;
}

async function attachPayer(tx: Queryable, row: repo.SubscriptionRow, payer: string | null, ev: EventRef, now: Date): Promise<repo.SubscriptionRow | undefined> {
  if (payer === null || row.member_id !== null) return undefined;
  const updated = await repo.setPayer(tx, row.id, payer, now);
  if (updated !== undefined) {
    await repo.audit(tx, { at: now, memberId: payer, subscriptionId: row.id, actor: 'stripe', action: ev.type, eventId: ev.id, before: auditView(row), after: auditView(updated) });
  }
  return updated;
}

/**
 * An event that names a subscription without carrying it (checkout, invoices): re-read it from
 * the API unless what we store is already newer, and learn its payer when the event tells us.
 */
export async function refreshSubscription(
  tx: Queryable, ctx: BillingContext, id: string, ev: EventRef, now: Date, payerHint: string | null = null,
): Promise<{ row: repo.SubscriptionRow | undefined; outcome: Outcome }> {
  await repo.lockSubscription(tx, id);
  const cur = await repo.getSubscription(tx, id);
  let row = cur;
  let outcome: Outcome = cur === undefined ? 'unknown_subscription' : 'unchanged';
  if (cur === undefined || ev.created >= cur.state_at) {
    const fresh = await retrieve(ctx, id);
    if (fresh !== undefined) ({ row, outcome } = await write(tx, id, cur, stateOf(fresh, ctx.prices), payerHint, ev, now, now));
  }
  if (row !== undefined && row.member_id === null && payerHint !== null) {
    const updated = await attachPayer(tx, row, await repo.existingMember(tx, payerHint), ev, now);
    if (updated !== undefined) {
      row = updated;
      outcome = 'applied';
    }
  }
  return { row, outcome };
}

/** `checkout.session.completed`: whose customer and subscription this is (client_reference_id = member id). */
export async function applyCheckoutCompleted(tx: Queryable, ctx: BillingContext, session: Stripe.Checkout.Session, ev: EventRef, now: Date): Promise<Outcome> {
  if (session.mode !== 'subscription') return 'ignored';
  const member = await repo.existingMember(tx, session.client_reference_id);
  const customer = idOf(session.customer);
  if (member !== null && customer !== null) {
    const stored = await repo.saveCustomer(tx, member, customer);
    if (stored !== customer) ctx.log.warn({ member, customer: stored }, 'checkout completed with another customer than the one stored for the member');
  }
  const subId = idOf(session.subscription);
  if (subId === null) return 'ignored';
  return (await refreshSubscription(tx, ctx, subId, ev, now, member)).outcome;
}

/** The subscription an invoice belongs to (basil: parent.subscription_details; before: invoice.subscription). */
export function subscriptionOfInvoice(invoice: Stripe.Invoice): string | null {
  const fromParent = idOf(invoice.parent?.subscription_details?.subscription);
  if (fromParent !== null) return fromParent;
  return idOf((invoice as unknown as { subscription?: string | { id: string } | null }).subscription);
}

/** `invoice.paid` / `invoice.payment_failed`: the payment outcome, and the subscription as it is now. */
export async function applyInvoice(tx: Queryable, ctx: BillingContext, invoice: Stripe.Invoice, outcome: 'paid' | 'failed', ev: EventRef, now: Date): Promise<Outcome> {
  const id = subscriptionOfInvoice(invoice);
  if (id === null) return 'ignored';
  const refreshed = await refreshSubscription(tx, ctx, id, ev, now);
  let row = refreshed.row;
  const customer = idOf(invoice.customer);
  if (row === undefined && ctx.stripe === undefined && customer !== null) {
    // Without the API the payment outcome would be lost if its invoice came before any subscription event.
    row = await repo.placeholderSubscription(tx, id, customer, (await repo.memberOfCustomer(tx, customer)) ?? null, now);
  }
  if (row === undefined) return 'unknown_subscription';
  const updated = await repo.recordPayment(tx, id, outcome, ev.created, now);
  if (updated === undefined) return refreshed.outcome;
  await repo.audit(tx, { at: now, memberId: updated.member_id, subscriptionId: id, actor: 'stripe', action: ev.type, eventId: ev.id, before: auditView(row), after: auditView(updated) });
  return 'applied';
}
