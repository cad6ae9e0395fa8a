import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import type pg from 'pg';
import { z } from 'zod';
import { member } from '../auth/plugin.js';
import type { Config } from '../config.js';
import { escapeHtml, page, sendHtml } from '../http/html.js';
import { rawBodyRoutes } from '../http/raw-body.js';
import { authErrors, ErrorEnvelopeSchema, iso, Timestamp } from '../http/schemas.js';
import type { Logger } from '../observability/logger.js';
import { planSettings } from './entitlements.js';
import { billingOverview, billingSettings, openPortal, startCheckout, type BillingDeps } from './service.js';
import { createStripeClient } from './stripe.js';
import { handleStripeEvent, verifyStripeEvent } from './webhook.js';

const PlanName = z.enum(['free', 'plus', 'family']);
const Channel = z.enum(['push', 'sms', 'email']);

const Billing = z
  .object({
    plan: PlanName.describe("the caller's own subscription's plan ('free' without one)"),
    status: z.string().describe("Stripe's status of the caller's subscription, or 'none'"),
    subscription_id: z.string().nullable(),
    current_period_end: Timestamp.nullable(),
    cancel_at_period_end: z.boolean(),
    trial_end: Timestamp.nullable(),
    last_payment: z.enum(['paid', 'failed']).nullable(),
    covers: z.array(z.object({ member_id: z.uuid(), name: z.string().nullable() })).describe('members the subscription covers besides the payer'),
    entitlements: z.object({
      plan: PlanName,
      source: z.enum(['default', 'own', 'watcher']).describe("where the plan in force for the caller as a member comes from"),
      payer: z.object({ id: z.uuid(), name: z.string().nullable() }).nullable(),
      channels: z.array(Channel).describe('channels for reminders to the member and "checked in" notes: the plan decides'),
      alert_channels: z.array(Channel).describe('channels for alerts and the invitation: every channel on every plan (safety is not a paid feature)'),
      max_contacts: z.number().int(),
      contacts: z.number().int(),
      until: Timestamp.nullable().describe('when this plan stops unless renewed; null while it renews'),
    }),
    notices: z.array(z.object({ code: z.string(), message: z.string(), at: Timestamp.nullable() })),
  })
  .meta({ id: 'Billing' });

const CheckoutBody = z.strictObject({ plan: z.enum(['plus', 'family']) });
const Redirect = z.object({ url: z.string() });
const billingErrors = { ...authErrors, 409: ErrorEnvelopeSchema, 503: ErrorEnvelopeSchema };

const RETURN_PAGES = {
  success: ['Thank you', 'Your subscription is being set up. You can go back to the Pruuf app; your plan shows there within a minute.'],
  cancel: ['Checkout cancelled', 'Nothing was charged. You can go back to the Pruuf app.'],
  portal: ['All done', 'You can go back to the Pruuf app.'],
} as const;

export type BillingRouteDeps = { pool: pg.Pool; config: Config };

/** Checkout, portal and the billing view for app users; Stripe's webhook on its raw bytes. */
export async function billingRoutes(app: FastifyInstance, opts: BillingRouteDeps): Promise<void> {
  const log = app.log as unknown as Logger;
  const settings = billingSettings(opts.config);
  const deps: BillingDeps = { pool: opts.pool, stripe: createStripeClient(opts.config), settings, plans: planSettings(opts.config), log };
  const r = app.withTypeProvider<ZodTypeProvider>();
  const secured = { preHandler: app.requireMember };
  const security = [{ bearerAuth: [] }];
  const tags = ['billing'];

  r.get('/v1/billing', {
    ...secured,
    schema: { tags, security, summary: "The caller's subscription and the plan in force for them, with where it comes from", response: { 200: Billing, ...authErrors } },
  }, async (req) => {
    const o = await billingOverview(deps, member(req), app.clock());
    const e = o.entitlements;
    return {
      plan: o.own?.plan ?? 'free',
      status: o.own?.status ?? 'none',
      subscription_id: o.own?.id ?? null,
      current_period_end: o.own?.current_period_end ? iso(o.own.current_period_end) : null,
      cancel_at_period_end: o.own?.cancel_at_period_end ?? false,
      trial_end: o.own?.trial_end ? iso(o.own.trial_end) : null,
      last_payment: o.own?.last_payment ?? null,
      covers: o.covers,
      entitlements: {
        plan: e.plan, source: e.source, channels: e.channels, alert_channels: e.alertChannels, max_contacts: e.maxContacts, contacts: o.contacts,
        payer: e.source === 'watcher' && e.payerId !== null ? { id: e.payerId, name: o.payerName } : null,
        until: e.until === null ? null : iso(e.until),
      },
      notices: o.notices.map((n) => ({ code: n.code, message: n.message, at: n.at === null ? null : iso(n.at) })),
    };
  });

  r.post('/v1/billing/checkout', {
    ...secured,
    schema: { tags, security, summary: 'A Stripe Checkout page for a plan', body: CheckoutBody, response: { 200: Redirect, ...billingErrors } },
  }, async (req) => startCheckout(deps, member(req), req.body.plan, app.clock()));

  r.post('/v1/billing/portal', {
    ...secured,
    schema: { tags, security, summary: "Stripe's customer portal: change plan, card, or cancel", response: { 200: Redirect, ...billingErrors } },
  }, async (req) => openPortal(deps, member(req)));

  r.get('/billing/return', {
    schema: { hide: true, querystring: z.object({ result: z.enum(['success', 'cancel', 'portal']).default('success') }) },
  }, async (req, reply) => {
    const [title, text] = RETURN_PAGES[req.query.result];
    return sendHtml(reply, 200, page(title, `<div class="card"><h1>${escapeHtml(title)}</h1><p>${escapeHtml(text)}</p></div>`));
  });

  // Without a signing secret there is no webhook at all (404, which Stripe retries for days like
  // any other non-2xx): nothing unverified can be applied, and no input can earn a 5xx.
  if (settings.webhookSecret === undefined) return;
  const webhook = { pool: opts.pool, ctx: { stripe: deps.stripe, prices: settings.prices, log }, webhookSecret: settings.webhookSecret };
  await rawBodyRoutes(app, { bodyLimit: opts.config.WEBHOOK_BODY_LIMIT_BYTES }, (scope) => {
    scope.withTypeProvider<ZodTypeProvider>().post('/webhooks/stripe', {
      schema: {
        tags: ['webhooks'],
        summary: 'Stripe events, verified by Stripe-Signature over the raw body; each applied once',
        response: { 200: z.object({ received: z.literal(true), duplicate: z.boolean() }), 400: ErrorEnvelopeSchema, 413: ErrorEnvelopeSchema, 503: ErrorEnvelopeSchema },
      },
    }, async (req) => {
      const now = app.clock();
      const event = verifyStripeEvent(webhook.webhookSecret, req.body, req.headers['stripe-signature'], now);
      const { duplicate } = await handleStripeEvent(webhook, event, now);
      return { received: true as const, duplicate };
    });
  });
}
