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
  if (!EventShape.safeParse(event).success) throw validation('the signed body is not a Stripe event');
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
