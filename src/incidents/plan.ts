import type { MessageChannelName } from '../channels/types.js';
import { contactChannels, type ContactRow } from '../contacts/repo.js';
import type { Queryable } from '../db/pool.js';
import { localeOf, type Locale } from './locales/index.js';

/**
 * The escalation plan snapshotted when an incident opens: who is in which tier, on which
 * channels and addresses. Later edits of contacts never change an alert in flight.
 */
/**
 * `locale`: the language the contact reads; `time_zone`: theirs when known (the app user a linked
 * contact is), for the pages they open. Both absent in snapshots older than them: English, member's zone.
 * `voice`: the number a call goes to (an active contact with a phone; SMS STOP does not stop calls).
 * Absent in snapshots older than calls: their SMS address stands in (src/incidents/calls.ts).
 */
export type PlanContact = {
  id: string; name: string; channels: { channel: MessageChannelName; address: string }[]; locale?: Locale; time_zone?: string | null; voice?: string;
};
export type PlanTier = { tier: number; contacts: PlanContact[] };
/** `member_phone`: how contacts reach the member (absent in older snapshots). */
export type Plan = { member_name: string; member_phone?: string | null; time_zone: string; tiers: PlanTier[] };

/**
 * Who the member is to their contacts: the display name, else the email address they signed up
 * with (the identity their invitations carried too), never an anonymous "a member" when either exists.
 */
export const memberLabel = (m: { display_name: string | null; email: string | null }): string | null =>
  m.display_name?.trim() || m.email?.trim() || null;

/** Push goes to every device of the linked app user: the address names the user, the push channel finds the devices. */
export const pushAddress = (userId: string) => `user:${userId}`;

export async function buildPlan(db: Queryable, memberId: string, allowed: MessageChannelName[]): Promise<Plan> {
  return (await buildPlans(db, [memberId], () => allowed)).get(memberId)!;
}

type PlanRow = Pick<ContactRow, 'id' | 'name' | 'email' | 'phone' | 'tier' | 'status' | 'sms_opted_out' | 'sms_disabled' | 'email_disabled' | 'linked_user_id' | 'has_devices'>
  & { member: string; member_name: string | null; member_email: string | null; member_phone: string | null; time_zone: string; locale: string | null; contact_time_zone: string | null };

/** The plans of many members in ONE query; `allowed` gives each member's channels (entitlements). */
export async function buildPlans(db: Queryable, memberIds: string[], allowed: (memberId: string) => MessageChannelName[]): Promise<Map<string, Plan>> {
  // Only what a plan needs: a burst of misses reads thousands of contacts, and every column costs.
  // Each member's contacts through its index (lateral), and a linked contact's zone by its key: joins
  // the planner may turn into a scan of every contact or member, per batch (a claim of 500 among
  // 200,000 contacts: 40 ms of the 60 it took; with stale statistics, 300 ms and a JIT compile).
  const { rows } = await db.query<PlanRow>(
    `select c.id, c.name, c.email, c.phone, c.tier, c.status, c.sms_opted_out, c.sms_disabled, c.email_disabled, c.linked_user_id,
       m.id as member, m.display_name as member_name, m.email as member_email, case when m.phone_verified_at is not null then m.phone end as member_phone, m.time_zone,
       c.locale, (select lm.time_zone from members lm where lm.id = c.linked_user_id) as contact_time_zone,
       exists (select 1 from devices d where c.linked_user_id is not null and d.member_id = c.linked_user_id) as has_devices
     from members m
     left join lateral (select c.id, c.name, c.email, c.phone, c.tier, c.status, c.sms_opted_out, c.sms_disabled, c.email_disabled, c.linked_user_id, c.locale, c.created_at
                          from contacts c where c.member_id = m.id offset 0) c on true
     where m.id = any($1::uuid[])
     order by m.id, c.tier, c.created_at, c.id`,
    [memberIds],
  );
  const plans = new Map<string, Plan>();
  for (const id of memberIds) plans.set(id, { member_name: 'A Pruuf member', time_zone: 'UTC', tiers: [] });
  for (const c of rows) {
    const plan = plans.get(c.member)!;
    plan.member_name = memberLabel({ display_name: c.member_name, email: c.member_email }) ?? plan.member_name;
    plan.member_phone = c.member_phone;
    plan.time_zone = c.time_zone;
    if (c.id === null) continue; // the member has no contacts (left join)
    const ok = allowed(c.member);
    const channels = contactChannels(c)
      .filter((ch) => ok.includes(ch))
      .map((channel) => ({ channel, address: channel === 'push' ? pushAddress(c.linked_user_id!) : channel === 'sms' ? c.phone! : c.email! }));
    if (channels.length === 0) continue;
    let tier = plan.tiers.find((t) => t.tier === c.tier);
    if (tier === undefined) {
      tier = { tier: c.tier, contacts: [] };
      plan.tiers.push(tier);
    }
    // Calls need consent like SMS (an active contact), but not SMS itself: a landline can take a call.
    const voice = c.status === 'active' && c.phone !== null ? { voice: c.phone } : {};
    tier.contacts.push({ id: c.id, name: c.name, channels, locale: localeOf(c.locale), time_zone: c.contact_time_zone, ...voice });
  }
  for (const plan of plans.values()) plan.tiers.sort((a, b) => a.tier - b.tier);
  return plans;
}
