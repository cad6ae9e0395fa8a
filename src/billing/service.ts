import type pg from 'pg';
import type { Principal } from '../auth/jwt.js';
import type { ChannelName } from '../channels/types.js';
import type { Config } from '../config.js';
import { AppError, conflict } from '../http/errors.js';
import { ensureMember } from '../members/repo.js';
import type { Logger } from '../observability/logger.js';
import { entitlementsFor, inForce, planLimits, type Entitlements, type Plan, type PlanSettings } from './entitlements.js';
import * as repo from './repo.js';
import { billingNotConfigured, stripeFailure, type Stripe } from './stripe.js';

export type BillingSettings = {
  prices: { plus: string[]; family: string[] };
  successUrl: string;
  cancelUrl: string;
  portalReturnUrl: string;
  webhookSecret: string | undefined;
};

export type BillingDeps = { pool: pg.Pool; stripe: Stripe | undefined; settings: BillingSettings; plans: PlanSettings; log: Logger };

export function billingSettings(config: Config): BillingSettings {
  const back = (result: string) => `${config.publicBaseUrl}/billing/return?result=${result}`;
  return {
    prices: { plus: config.STRIPE_PRICE_PLUS, family: config.STRIPE_PRICE_FAMILY },
    successUrl: config.BILLING_SUCCESS_URL ?? back('success'),
    cancelUrl: config.BILLING_CANCEL_URL ?? back('cancel'),
    portalReturnUrl: config.BILLING_PORTAL_RETURN_URL ?? back('portal'),
    webhookSecret: config.STRIPE_WEBHOOK_SECRET,
  };
}

function client(deps: BillingDeps): Stripe {
  if (deps.stripe === undefined) throw billingNotConfigured();
  return deps.stripe;
}

/**
 * The member's Stripe customer, created at most once: the idempotency key makes concurrent
 * first checkouts get the same customer from Stripe, and the first one stored wins.
 */
async function customerFor(deps: BillingDeps, stripe: Stripe, who: Principal): Promise<string> {
  const known = await repo.customerOf(deps.pool, who.id);
  if (known !== undefined) return known;
  let created: Stripe.Customer;
  try {
    created = await stripe.customers.create(
      { ...(who.email === undefined ? {} : { email: who.email }), metadata: { member_id: who.id } },
      { idempotencyKey: `pruuf-customer-${who.id}` },
    );
  } catch (err) {
    throw stripeFailure(err);
  }
  return repo.saveCustomer(deps.pool, who.id, created.id);
}

/** A Checkout session for a plan. One subscription per payer: changing plans is the portal's job (Stripe prorates). */
export async function startCheckout(deps: BillingDeps, who: Principal, plan: Exclude<Plan, 'free'>, now: Date): Promise<{ url: string }> {
  const stripe = client(deps);
  const price = deps.settings.prices[plan][0];
  if (price === undefined) throw billingNotConfigured(`the ${plan} plan is not offered on this server`);
  await ensureMember(deps.pool, who);
  const current = (await repo.subscriptionsOf(deps.pool, who.id)).find((s) => s.plan !== 'free' && inForce(s, now).granted);
  if (current !== undefined) {
    throw conflict('you already have a subscription; change or cancel it in the billing portal', { subscription_id: current.id, plan: current.plan });
  }
  const customer = await customerFor(deps, stripe, who);
  let session: Stripe.Checkout.Session;
  try {
    session = await stripe.checkout.sessions.create({
      mode: 'subscription',
      customer,
      client_reference_id: who.id,
      line_items: [{ price, quantity: 1 }],
      success_url: deps.settings.successUrl,
      cancel_url: deps.settings.cancelUrl,
      metadata: { member_id: who.id, plan },
      subscription_data: { metadata: { member_id: who.id, plan } },
    });
  } catch (err) {
    throw stripeFailure(err);
  }
  if (session.url === null) throw new AppError(503, 'SERVICE_UNAVAILABLE', 'the payment provider returned no checkout page; retry shortly');
  await repo.audit(deps.pool, { at: now, memberId: who.id, subscriptionId: null, actor: 'member', action: 'checkout_started', eventId: null, before: null, after: { plan, price_id: price, checkout_session: session.id } });
  return { url: session.url };
}

export async function openPortal(deps: BillingDeps, who: Principal): Promise<{ url: string }> {
  const stripe = client(deps);
  const customer = await repo.customerOf(deps.pool, who.id);
  if (customer === undefined) throw new AppError(404, 'NOT_FOUND', 'no billing account yet: start with POST /v1/billing/checkout');
  try {
    const session = await stripe.billingPortal.sessions.create({ customer, return_url: deps.settings.portalReturnUrl });
    return { url: session.url };
  } catch (err) {
    throw stripeFailure(err);
  }
}

export type Notice = { code: string; message: string; at: Date | null };

export type Overview = {
  own: repo.SubscriptionRow | undefined;
  covers: { member_id: string; name: string | null }[];
  entitlements: Entitlements;
  payerName: string | null;
  contacts: number;
  notices: Notice[];
};

const day = (d: Date) => d.toISOString().slice(0, 10);
const list = (channels: ChannelName[]) => (channels.length < 2 ? channels.join('') : `${channels.slice(0, -1).join(', ')} and ${channels.at(-1)!}`);

/** The subscription that matters to its payer: the best one in force, else the latest. */
function mainSubscription(subs: repo.SubscriptionRow[], now: Date): repo.SubscriptionRow | undefined {
  const rank: Record<Plan, number> = { free: 0, plus: 1, family: 2 };
  const live = subs.filter((s) => inForce(s, now).granted).sort((a, b) => rank[b.plan] - rank[a.plan]);
  return live[0] ?? subs[0];
}

/** GET /v1/billing: the caller's own subscription, what is in force for them as a member, and what they should know. */
export async function billingOverview(deps: BillingDeps, who: Principal, now: Date): Promise<Overview> {
  const [subs, ent, contacts] = await Promise.all([
    repo.subscriptionsOf(deps.pool, who.id),
    entitlementsFor(deps.pool, who.id, deps.plans, now),
    repo.contactCount(deps.pool, who.id),
  ]);
  const own = mainSubscription(subs, now);
  const ownForce = own === undefined ? { granted: false, until: null } : inForce(own, now);
  const covers = own !== undefined && ownForce.granted
    ? (await repo.watchedBy(deps.pool, who.id)).slice(0, planLimits(own.plan, deps.plans).coveredMembers).map((m) => ({ member_id: m.member_id, name: m.display_name }))
    : [];
  const payerName = ent.source === 'watcher' && ent.payerId !== null ? await repo.contactNameOf(deps.pool, who.id, ent.payerId) : null;
  const free = planLimits('free', deps.plans).channels;
  const notices: Notice[] = [];
  if (own !== undefined && own.plan !== 'free') {
    const end = own.current_period_end;
    if (ownForce.granted && (own.status === 'past_due' || own.status === 'unpaid')) {
      notices.push({ code: 'payment_failed', at: end, message: `Your last payment failed. Your ${own.plan} plan stays until ${end === null ? 'the end of this period' : day(end)}; after that reminders go by ${list(free)} only (alerts still reach your contacts on every channel, SMS included). Update your card in the billing portal.` });
    } else if (ownForce.granted && ownForce.until !== null) {
      notices.push({ code: 'plan_ending', at: ownForce.until, message: `Your ${own.plan} plan ends on ${day(ownForce.until)}; after that reminders go by ${list(free)} only (alerts still reach your contacts on every channel, SMS included).` });
    }
    if (own.status === 'trialing' && own.trial_end !== null && own.trial_end > now) {
      notices.push({ code: 'trial_ending', at: own.trial_end, message: `Your free trial ends on ${day(own.trial_end)}.` });
    }
    if (!ownForce.granted && ent.plan === 'free' && (own.status === 'canceled' || own.status === 'unpaid' || own.status === 'past_due')) {
      notices.push({ code: 'plan_ended', at: end, message: `Your ${own.plan} plan has ended: reminders now go by ${list(ent.channels)} only (alerts still reach your contacts on every channel, SMS included).` });
    }
  }
  if (ent.source === 'watcher' && ent.until !== null) {
    notices.push({ code: 'coverage_ending', at: ent.until, message: `The ${ent.plan} plan ${payerName ?? 'your contact'} pays for ends on ${day(ent.until)}.` });
  }
  if (contacts > ent.maxContacts) {
    notices.push({
      code: 'over_contact_limit', at: null,
      message: `You have ${contacts} contacts and the ${ent.plan} plan includes ${ent.maxContacts}. None were removed: all ${contacts} still get alerts, by ${list(ent.alertChannels)} as each can receive them. To add another, remove one or upgrade.`,
    });
  }
  return { own, covers, entitlements: ent, payerName, contacts, notices };
}
