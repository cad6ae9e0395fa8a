import type { ChannelName } from '../channels/types.js';
import type { Queryable } from '../db/pool.js';

/**
 * The one place plans are read: "may this member use channel X / add contact N, and why".
 * Until billing (issue 6) feeds subscriptions in, every member is on the free plan.
 * The plan decides which channels and how many contacts, never whether an alert already due is sent.
 */
export type Plan = 'free' | 'plus' | 'family';
export type Entitlements = {
  plan: Plan;
  source: 'default' | 'own' | 'watcher';
  maxContacts: number;
  channels: ChannelName[];
};

export type PlanSettings = { freePlanContacts: number; freePlanChannels?: ChannelName[] };

export async function entitlementsFor(_db: Queryable, _memberId: string, settings: PlanSettings): Promise<Entitlements> {
  return { plan: 'free', source: 'default', maxContacts: settings.freePlanContacts, channels: settings.freePlanChannels ?? ['push', 'email'] };
}
