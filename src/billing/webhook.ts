import type pg from 'pg';
import { z } from 'zod';
import { withTransaction } from '../db/pool.js';
import { claimProviderEvent } from '../delivery/feedback.js';
import { AppError, validation } from '../http/errors.js';
import { billingNotConfigured, Stripe } from './stripe.js';
import { applyCheckoutCompleted, applyInvoice, applySubscriptionEvent, type BillingContext, type EventRef, type Outcome } from './sync.js';

export type WebhookDeps = { pool: pg.Pool; ctx: BillingContext; webhookSecret: string | undefined };

const EventShape = z.object({
  id: z.string().min(1).max(255),
  type: z.string().min(1).max(255),
  created: z.number().int().nonnegative(),
  data: z.object({ object: z.looseObject({ id: z.string().min(1).max(255).optional() }) }),
});

// What each applied event's object must look like, as strictly as our columns take it: a signed
// event is Stripe's word, not proof of shape (an API version we do not expect, a test fixture, a
// leaked secret). An object we cannot read is a clear 400, never a 500 and never a half-applied row.
const StripeId = z.string().min(1).max(255);
const Ref = z.union([StripeId, z.looseObject({ id: StripeId })]);
const Seconds = z.number().int().nonnegative().max(7_258_118_400).nullish(); // before 2200
const SubscriptionObject = z.looseObject({
  object: z.literal('subscription'),
  id: StripeId,
  customer: Ref,
  status: z.enum(['incomplete', 'incomplete_expired', 'trialing', 'active', 'past_due', 'canceled', 'unpaid', 'paused']),
  cancel_at_period_end: z.boolean().nullish(),
  cancel_at: Seconds, current_period_end: Seconds, trial_end: Seconds, canceled_at: Seconds, ended_at: Seconds,
  metadata: z.record(z.string(), z.string()).nullish(),
  items: z.looseObject({ data: z.array(z.looseObject({ price: Ref.nullish(), current_period_end: Seconds })) }).nullish(),
});
const CheckoutObject = z.looseObject({
  object: z.literal('checkout.session'),
  mode: z.string().nullish(),
  client_reference_id: z.string().max(255).nullish(),
  customer: Ref.nullish(),
  subscription: Ref.nullish(),
});
const InvoiceObject = z.looseObject({
  object: z.literal('invoice'),
  customer: Ref.nullish(),
  subscription: Ref.nullish(),
  parent: z.looseObject({ subscription_details: z.looseObject({ subscription: Ref.nullish() }).nullish() }).nullish(),
});

/** Checks the object of an event we apply; others are acknowledged without reading them. */
function checkObject(type: string, object: unknown): void {
  const shape = SUBSCRIPTION_EVENTS.has(type) ? SubscriptionObject
    : type === 'checkout.session.completed' ? CheckoutObject
      : type === 'invoice.paid' || type === 'invoice.payment_failed' ? InvoiceObject : undefined;
  if (shape === undefined || (object as { object?: unknown } | null)?.object !== shape.shape.object.value) return;
  const r = shape.safeParse(object);
  if (!r.success) {
    const where = r.error.issues.slice(0, 3).map((i) => `data.object.${i.path.join('.')}: ${i.message}`).join('; ');
    throw validation(`the signed ${type} event does not have the shape Pruuf reads (${where})`);
  }
}

/** Stripe's signing clock may run a little ahead of ours; more than this is not a genuine event. */
const FUTURE_SKEW_SECONDS = 60;

const SUBSCRIPTION_EVENTS = new Set([
  'customer.subscription.created',
  'customer.subscription.updated',
  'customer.subscription.deleted',
  'customer.subscription.trial_will_end',
  'customer.subscription.paused',
  'customer.subscription.resumed',
]);

/**
 * Checks `Stripe-Signature` over the exact bytes received (within Stripe's 5-minute tolerance,
 * measured on our clock) and returns the event. Nothing unverified gets past this.
 */
export function verifyStripeEvent(secret: string | undefined, body: unknown, header: unknown, now: Date): Stripe.Event {
  if (secret === undefined) throw billingNotConfigured('Stripe webhooks are not configured on this server');
  const bad = () => new AppError(400, 'INVALID_SIGNATURE', 'the Stripe-Signature header does not match this body');
  if (typeof header !== 'string' || header === '' || !(Buffer.isBuffer(body) || typeof body === 'string')) throw bad();
  let event: Stripe.Event;
  try {
    event = Stripe.webhooks.constructEvent(body, header, secret, undefined, undefined, now.getTime());
  } catch (err) {
    if (err instanceof Stripe.errors.StripeSignatureVerificationError) throw bad();
    throw validation('the signed body is not a Stripe event');
  }
  // The SDK refuses a signature older than its tolerance, not one from the future (which would
  // stay replayable until that time had come and gone).
  const stamps = header.split(',').filter((kv) => kv.startsWith('t=')).map((kv) => Number.parseInt(kv.slice(2), 10));
  const signedAt = stamps[stamps.length - 1];
  if (signedAt === undefined || !Number.isFinite(signedAt) || signedAt > now.getTime() / 1000 + FUTURE_SKEW_SECONDS) {
    throw new AppError(400, 'INVALID_SIGNATURE', 'the Stripe-Signature timestamp is in the future');
  }
  if (!EventShape.safeParse(event).success) throw validation('the signed body is not a Stripe event');
  checkObject(event.type, event.data.object);
  return event;
}

/**
 * Applies a verified event once: its id is claimed in the same transaction that applies it, so
 * a replay is acknowledged and ignored, and a failure mid-way frees the id for Stripe's retry.
 */
export async function handleStripeEvent(deps: WebhookDeps, event: Stripe.Event, now: Date): Promise<{ duplicate: boolean; outcome: Outcome }> {
  const ev: EventRef = { id: event.id, type: event.type, created: new Date(event.created * 1000) };
  const result = await withTransaction(deps.pool, async (tx) => {
    if (!(await claimProviderEvent(tx, 'stripe', event.id, now))) return { duplicate: true, outcome: 'ignored' as Outcome };
    const object = event.data.object as unknown as Record<string, unknown>;
    let outcome: Outcome = 'ignored';
    if (SUBSCRIPTION_EVENTS.has(event.type) && object.object === 'subscription') {
      outcome = await applySubscriptionEvent(tx, deps.ctx, object as unknown as Stripe.Subscription, ev, now);
    } else if (event.type === 'checkout.session.completed' && object.object === 'checkout.session') {
      outcome = await applyCheckoutCompleted(tx, deps.ctx, object as unknown as Stripe.Checkout.Session, ev, now);
    } else if ((event.type === 'invoice.paid' || event.type === 'invoice.payment_failed') && object.object === 'invoice') {
      outcome = await applyInvoice(tx, deps.ctx, object as unknown as Stripe.Invoice, event.type === 'invoice.paid' ? 'paid' : 'failed', ev, now);
    }
    return { duplicate: false, outcome };
  });
  const log = { event_id: ev.id, type: ev.type, outcome: result.outcome, duplicate: result.duplicate };
  if (result.outcome === 'ignored' && !result.duplicate) deps.ctx.log.info(log, 'Stripe event acknowledged without action');
  else deps.ctx.log.info(log, 'Stripe event');
  return result;
}
