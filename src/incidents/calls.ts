import type { Queryable } from '../db/pool.js';
import type { NewDelivery } from '../delivery/outbox.js';
import type { Step } from './escalation.js';
import { strings, type Strings } from './locales/index.js';
import { fmt } from './message-format.js';
import { ackUrl, planContact, type AlertRender, type IncidentFacts, type LinkSettings } from './outbound.js';
import type { PlanContact } from './plan.js';
import type { NewEvent } from './repo.js';
import { oneLine, truncate } from './sms.js';

/**
 * Phone calls as an escalation action (issue 18). A call is an outbox row like any alert (kind
 * 'alert', channel 'voice', one per contact and step), written in the transaction of the step
 * that decides it, and placed by the delivery worker through the voice channel (Twilio). It is
 * not one of a step's messages: notices and the all clear never go by phone
 * (repo.alertedAddresses leaves calls out), and a contact is called only:
 *  - on a missed check-in still open (nobody said "I'm on it") when escalation step
 *    `callAfterSteps + 1` comes due on time (the sweep, or after an acknowledgement lapsed):
 *    every tier-1 contact, whatever tier that step alerts. Not when a contact's "needs more
 *    help" brought that step forward: someone is already on the phone about it;
 *  - on SOS, at once, every contact of every tier (`sos`).
 * Whom: an active contact with a phone (the plan's `voice`); consent is the invitation's, and
 * texting STOP is about texts, so it does not stop calls.
 * What it says is rendered when it is placed (and again for each TwiML fetch), from the plan
 * snapshot, like an alert the sweeper leaves to the worker (render-at-send.ts).
 */
export type VoiceSettings = { callAfterSteps: number; sos: boolean };

/** The number to call: the snapshot's `voice`, or in a snapshot older than calls its SMS address (SMS implies an active contact). */
export function voiceAddress(c: PlanContact): string | undefined {
  if (typeof c.voice === 'string') return c.voice;
  return c.channels.find((ch) => ch.channel === 'sms')?.address;
}

/** Tier-1 contacts a timed step of a missed check-in calls (before removed contacts are left out). */
export function stepCallees(
  s: VoiceSettings, inc: Pick<IncidentFacts, 'kind' | 'plan' | 'acknowledged_by'>, step: Pick<Step, 'step_no'>, reason: string,
): PlanContact[] {
  if (inc.kind !== 'missed' || s.callAfterSteps === 0 || step.step_no !== s.callAfterSteps + 1) return [];
  if (reason !== 'escalation' && reason !== 'ack_timeout') return [];
  const tier1 = inc.plan.tiers[0]?.contacts ?? [];
  // After a lapsed "I'm on it", the one who said it is asked by message whether they reached the member.
  return tier1.filter((c) => voiceAddress(c) !== undefined && !(reason === 'ack_timeout' && c.id === inc.acknowledged_by));
}

/** Outbox rows (texts rendered when placed) and timeline events for calls to these contacts. */
export function callDeliveries(
  links: LinkSettings, inc: Pick<IncidentFacts, 'id' | 'member_id' | 'opened_at'>, stepNo: number, round: number, contacts: PlanContact[], now: Date, reason: string,
): { rows: NewDelivery[]; events: NewEvent[] } {
  const rows: NewDelivery[] = [];
  const events: NewEvent[] = [];
  for (const c of contacts) {
    const to = voiceAddress(c);
    if (to === undefined) continue;
    const render: AlertRender = { round, contact_id: c.id, ack_url: ackUrl(links, inc.id, c.id, inc.opened_at) };
    rows.push({ memberId: inc.member_id, contactId: c.id, kind: 'alert', channel: 'voice', address: to, subject: null, body: null, html: null, incidentId: inc.id, stepNo, render });
    events.push({ incident_id: inc.id, at: now, type: 'call_started', step_no: stepNo, contact_id: c.id, detail: { reason } });
  }
  return { rows, events };
}

/** Calls not placed yet are withdrawn: someone said "I'm on it" (a ringing call says so when answered). */
export async function cancelPendingCalls(db: Queryable, incidentId: string, now: Date): Promise<number> {
  const { rowCount } = await db.query(
    `update deliveries set status = 'cancelled', last_error = 'not placed: someone said they are on it', updated_at = $2
      where incident_id = $1 and channel = 'voice' and status = 'pending'`,
    [incidentId, now],
  );
  return rowCount ?? 0;
}

const NAME_MAX = 60;
const NOTE_MAX = 300;
const spokenName = (raw: string, t: Strings) => truncate(oneLine(raw), NAME_MAX) || t.aMember;

/** What the call says before asking for a key, in the contact's language: who, what, when, and the keys. */
export function callScript(inc: IncidentFacts, contact: Pick<PlanContact, 'locale'> | undefined): { language: string; text: string } {
  const t = strings(contact?.locale);
  const c = t.call;
  const tz = inc.plan.time_zone;
  const sos = inc.kind === 'sos';
  const member = spokenName(inc.plan.member_name, t);
  const at = sos ? inc.opened_at : inc.deadline_at ?? inc.opened_at;
  const parts = [c.alert(member, sos, fmt(at, tz, 'long', t))];
  if (inc.note) parts.push(c.note(sos, truncate(oneLine(inc.note), NOTE_MAX)));
  if (inc.last_check_in_at) parts.push(c.lastCheckIn(fmt(inc.last_check_in_at, tz, 'long', t)));
  else if (!sos) parts.push(t.alert.noEarlier);
  parts.push(c.keys);
  return { language: c.language, text: parts.join(' ') };
}

/** The contact's name in a plan, for "X is already on it". */
export function spokenContact(inc: IncidentFacts, contactId: string | null, t: Strings): string {
  const who = contactId === null ? undefined : planContact(inc.plan, contactId);
  return who === undefined ? t.anotherContact : spokenName(who.name, t);
}

export { spokenName };
