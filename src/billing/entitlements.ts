import { MESSAGE_CHANNELS, type MessageChannelName } from '../channels/types.js';
import type { Config } from '../config.js';
import type { Queryable } from '../db/pool.js';

/**
 * The one place plans are read: "may this member use channel X / add contact N, and why".
 * The plan decides which channels and how many contacts, never whether an alert already due is
 * sent: incidents snapshot their channels when they open, and a downgrade never removes a contact.
 *
 * Safety is not a paid feature: what belongs to an incident (alerts of a missed check-in or an
 * SOS, the acknowledgement notices, the all clear) and the invitation that asks a contact's
 * consent go on every channel on every plan (`alertChannels`): a contact with only a phone number
 * is alerted by SMS on the free plan too. The plan's `channels` gate the rest: reminders to the
 * member and "checked in" notes. Consent still holds (contactChannels in contacts/repo.ts).
 *
 * Who pays: the member, or a watcher (an app user who is the member's linked, active contact).
 * A subscription covers its payer and up to N of the members the payer watches (earliest link
 * first); a member covered by several payers gets the best plan among them.
 */
export type Plan = 'free' | 'plus' | 'family';
export type Entitlements = {
  plan: Plan;
  source: 'default' | 'own' | 'watcher';
  maxContacts: number;
  /** Channels for reminders to the member and "checked in" notes: the plan's. */
  channels: MessageChannelName[];
  /** Channels for alerts, incident messages and invitations: every channel, on every plan. */
  alertChannels: MessageChannelName[];
  /** Who pays for it (the member themself for 'own'); null on the free plan. */
  payerId: string | null;
  subscriptionId: string | null;
  /** When this plan stops unless renewed (cancelled, payment failed); null while it renews. */
  until: Date | null;
};

export type PlanSettings = {
  freePlanContacts: number;
  freePlanChannels?: MessageChannelName[];
  plusPlanContacts?: number;
  familyPlanContacts?: number;
  plusPlanCoveredMembers?: number;
  familyPlanCoveredMembers?: number;
};

const PAID_CHANNELS: MessageChannelName[] = ['push', 'sms', 'email'];
/** What alerts may use whatever the plan. */
export const ALERT_CHANNELS: readonly MessageChannelName[] = MESSAGE_CHANNELS;
const RANK: Record<Plan, number> = { free: 0, plus: 1, family: 2 };

export function planSettings(config: Config): Required<PlanSettings> {
  return {
    freePlanContacts: config.FREE_PLAN_CONTACTS,
    freePlanChannels: config.FREE_PLAN_CHANNELS,
    plusPlanContacts: config.PLUS_PLAN_CONTACTS,
    familyPlanContacts: config.FAMILY_PLAN_CONTACTS,
    plusPlanCoveredMembers: config.PLUS_PLAN_COVERED_MEMBERS,
    familyPlanCoveredMembers: config.FAMILY_PLAN_COVERED_MEMBERS,
  };
}

export function planLimits(plan: Plan, s: PlanSettings): { maxContacts: number; channels: MessageChannelName[]; coveredMembers: number } {
  switch (plan) {
    case 'plus':
      return { maxContacts: s.plusPlanContacts ?? 5, channels: PAID_CHANNELS, coveredMembers: s.plusPlanCoveredMembers ?? 1 };
    case 'family':
      return { maxContacts: s.familyPlanContacts ?? 10, channels: PAID_CHANNELS, coveredMembers: s.familyPlanCoveredMembers ?? 5 };
    default:
      return { maxContacts: s.freePlanContacts, channels: s.freePlanChannels ?? ['push', 'email'], coveredMembers: 0 };
  }
}

/** The plan a Stripe price id stands for; a price we do not know grants nothing beyond free. */
export function planForPrice(priceId: string | null, prices: { plus: string[]; family: string[] }): Plan {
  if (priceId === null) return 'free';
  if (prices.family.includes(priceId)) return 'family';
  if (prices.plus.includes(priceId)) return 'plus';
  return 'free';
}

/**
 * Whether a stored subscription grants its plan at `now`, and until when. A failed payment or a
 * cancellation keeps the plan to the end of the period already started, then it lapses to free.
 */
export function inForce(s: { status: string; current_period_end: Date | null; cancel_at_period_end: boolean }, now: Date): { granted: boolean; until: Date | null } {
  const end = s.current_period_end;
  if (s.status === 'active' || s.status === 'trialing') return { granted: true, until: s.cancel_at_period_end ? end : null };
  if (s.status === 'past_due' || s.status === 'unpaid' || s.status === 'canceled') {
    return end !== null && end.getTime() > now.getTime() ? { granted: true, until: end } : { granted: false, until: null };
  }
  return { granted: false, until: null };
}

function freePlan(s: PlanSettings): Entitlements {
  const l = planLimits('free', s);
  return { plan: 'free', source: 'default', maxContacts: l.maxContacts, channels: l.channels, alertChannels: [...ALERT_CHANNELS], payerId: null, subscriptionId: null, until: null };
}

type Offer = { plan: Plan; until: Date | null; own: boolean };

/** Best plan first; then the one that lasts longer (renewing beats ending); then the member's own. */
function better(a: Offer, b: Offer): boolean {
  if (RANK[a.plan] !== RANK[b.plan]) return RANK[a.plan] > RANK[b.plan];
  const ua = a.until?.getTime() ?? Infinity;
  const ub = b.until?.getTime() ?? Infinity;
  if (ua !== ub) return ua > ub;
  return a.own && !b.own;
}

type Grant = { member_id: string; payer_id: string; own: boolean; subscription_id: string; plan: Plan; status: string; current_period_end: Date | null; cancel_at_period_end: boolean };

/**
 * Entitlements of many members in one query (the sweeper asks for a batch at a time). `now`
 * decides whether a lapsing plan still holds; without it the database's clock does.
 */
export async function entitlementsForMany(db: Queryable, memberIds: string[], settings: PlanSettings, now?: Date): Promise<Map<string, Entitlements>> {
  const out = new Map<string, Entitlements>();
  const ids = [...new Set(memberIds)];
  for (const id of ids) out.set(id, freePlan(settings));
  if (ids.length === 0) return out;
  const { rows } = await db.query<Grant & { now: Date }>(
    `with targets as (select distinct unnest($1::uuid[]) as member_id),
     payers as (
       select t.member_id, t.member_id as payer_id, true as own from targets t
       union
       -- Each target's contacts through the member's index (lateral): the join the planner may turn
       -- into a scan of every contact (the sweeper asks for 500 members at a time).
       select t.member_id, c.linked_user_id, false from targets t
        cross join lateral (select c.linked_user_id from contacts c
                             where c.member_id = t.member_id and c.status = 'active' and c.linked_user_id is not null
                               and c.linked_user_id <> c.member_id offset 0) c
     ),
     subs as (
       select s.id, s.member_id as payer_id, s.plan, s.status, s.current_period_end, s.cancel_at_period_end
         from subscriptions s
        where s.member_id in (select payer_id from payers) and s.plan <> 'free'
          and s.status in ('active', 'trialing', 'past_due', 'unpaid', 'canceled')
     ),
     watched as (
       select c.linked_user_id as payer_id, c.member_id,
              row_number() over (partition by c.linked_user_id order by min(coalesce(c.responded_at, c.created_at)), c.member_id) as rank
         from contacts c
        where c.linked_user_id in (select payer_id from subs) and c.status = 'active' and c.linked_user_id <> c.member_id
        group by c.linked_user_id, c.member_id
     )
     select p.member_id, p.payer_id, p.own, s.id as subscription_id, s.plan, s.status, s.current_period_end, s.cancel_at_period_end,
            coalesce($2::timestamptz, now()) as now
       from payers p
       join subs s on s.payer_id = p.payer_id
       left join watched w on w.payer_id = p.payer_id and w.member_id = p.member_id
      where p.own or w.rank <= case s.plan when 'family' then $3::int when 'plus' then $4::int else 0 end`,
    [ids, now ?? null, planLimits('family', settings).coveredMembers, planLimits('plus', settings).coveredMembers],
  );
  for (const g of rows) {
    const force = inForce(g, g.now);
    if (!force.granted) continue;
    const current = out.get(g.member_id)!;
    if (!better({ plan: g.plan, until: force.until, own: g.own }, { plan: current.plan, until: current.until, own: current.source === 'own' })) continue;
    const l = planLimits(g.plan, settings);
    out.set(g.member_id, {
      plan: g.plan, source: g.own ? 'own' : 'watcher', maxContacts: l.maxContacts, channels: l.channels, alertChannels: [...ALERT_CHANNELS],
      payerId: g.payer_id, subscriptionId: g.subscription_id, until: force.until,
    });
  }
  return out;
}

export async function entitlementsFor(db: Queryable, memberId: string, settings: PlanSettings, now?: Date): Promise<Entitlements> {
  return (await entitlementsForMany(db, [memberId], settings, now)).get(memberId)!;
}

export type Decision = { allowed: boolean; reason: string };

export function mayUseChannel(ent: Entitlements, channel: MessageChannelName): Decision {
  if (ent.channels.includes(channel)) return { allowed: true, reason: `the ${ent.plan} plan includes ${channel}` };
  return { allowed: false, reason: `the ${ent.plan} plan does not include ${channel}; plus and family do` };
}

/** Whether the member may add one more contact to the `current` ones they have. */
export function mayAddContact(ent: Entitlements, current: number): Decision {
  if (current < ent.maxContacts) return { allowed: true, reason: `the ${ent.plan} plan allows ${ent.maxContacts} contacts` };
  return { allowed: false, reason: `the ${ent.plan} plan allows ${ent.maxContacts} contacts` };
}
