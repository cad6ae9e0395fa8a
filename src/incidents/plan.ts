import type { ChannelName } from '../channels/types.js';
import { contactChannels, type ContactRow } from '../contacts/repo.js';
import type { Queryable } from '../db/pool.js';

/**
 * The escalation plan snapshotted when an incident opens: who is in which tier, on which
 * channels and addresses. Later edits of contacts never change an alert in flight.
 */
export type PlanContact = { id: string; name: string; channels: { channel: ChannelName; address: string }[] };
export type PlanTier = { tier: number; contacts: PlanContact[] };
export type Plan = { member_name: string; time_zone: string; tiers: PlanTier[] };

/** Push goes to every device of the linked app user: the address names the user, the push channel finds the devices. */
export const pushAddress = (userId: string) => `user:${userId}`;

export async function buildPlan(db: Queryable, memberId: string, allowed: ChannelName[]): Promise<Plan> {
  return (await buildPlans(db, [memberId], () => allowed)).get(memberId)!;
}

type PlanRow = Pick<ContactRow, 'id' | 'name' | 'email' | 'phone' | 'tier' | 'status' | 'sms_opted_out' | 'sms_disabled' | 'email_disabled' | 'linked_user_id' | 'has_devices'>
  & { member: string; member_name: string | null; time_zone: string };

/** The plans of many members in ONE query; `allowed` gives each member's channels (entitlements). */
export async function buildPlans(db: Queryable, memberIds: string[], allowed: (memberId: string) => ChannelName[]): Promise<Map<string, Plan>> {
  // Only what a plan needs: a burst of misses reads thousands of contacts, and every column costs.
  const { rows } = await db.query<PlanRow>(
    `select c.id, c.name, c.email, c.phone, c.tier, c.status, c.sms_opted_out, c.sms_disabled, c.email_disabled, c.linked_user_id,
       m.id as member, m.display_name as member_name, m.time_zone,
       exists (select 1 from devices d where c.linked_user_id is not null and d.member_id = c.linked_user_id) as has_devices
     from members m left join contacts c on c.member_id = m.id
     where m.id = any($1::uuid[])
     order by m.id, c.tier, c.created_at, c.id`,
    [memberIds],
  );
  const plans = new Map<string, Plan>();
  for (const id of memberIds) plans.set(id, { member_name: 'A Pruuf member', time_zone: 'UTC', tiers: [] });
  for (const c of rows) {
    const plan = plans.get(c.member)!;
    plan.member_name = c.member_name ?? plan.member_name;
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
    tier.contacts.push({ id: c.id, name: c.name, channels });
  }
  for (const plan of plans.values()) plan.tiers.sort((a, b) => a.tier - b.tier);
  return plans;
}
