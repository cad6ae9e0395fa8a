import type { MessageChannelName } from '../channels/types.js';
import type { NewDelivery } from '../delivery/outbox.js';
import { signLink } from '../links/tokens.js';
import { renderAckLapsed, renderAckNotice, renderAlert, renderAllClear, type Rendered, type Where } from './messages.js';
import type { Plan, PlanContact } from './plan.js';

/** Turns rendered messages into outbox rows: one per contact and channel. */
export type LinkSettings = { publicBaseUrl: string; linkSecret: string; ackLinkTtlDays: number };

export type IncidentFacts = {
  id: string;
  member_id: string;
  kind: 'missed' | 'sos';
  deadline_at: Date | null;
  opened_at: Date;
  delayed_by_seconds: number;
  note: string | null;
  last_check_in_at: Date | null;
  last_location: Where | null;
  plan: Plan;
  /** An earlier "I'm on it" (kept on the row after it lapsed): alerts after it say who it was. */
  acknowledged_at?: Date | null;
  acknowledged_by?: string | null;
  state?: 'open' | 'acknowledged' | 'resolved';
};

export function ackUrl(s: LinkSettings, incidentId: string, contactId: string, openedAt: Date): string {
  const token = signLink(s.linkSecret, 'ack', contactId, new Date(openedAt.getTime() + s.ackLinkTtlDays * 86_400_000), incidentId);
  return `${s.publicBaseUrl}/a/${token}`;
}

function rows(
  base: Omit<NewDelivery, 'channel' | 'address' | 'subject' | 'body' | 'html' | 'data' | 'render'>,
  channels: { channel: MessageChannelName; address: string }[],
  r: Rendered,
): NewDelivery[] {
  return channels.map(({ channel, address }) => ({ ...base, channel, address, ...channelText(channel, r) }));
}

/** What an alert rendered at send time keeps in its delivery row (`render`). */
export type AlertRender = { round: number; contact_id: string; ack_url: string };

/** The alert one contact gets for one step of an incident, in every channel's form. */
export function renderAlertFor(inc: IncidentFacts, contact: Pick<PlanContact, 'name' | 'locale'>, round: number, url: string, repeat = false): Rendered {
  const acker = inc.acknowledged_at != null && inc.acknowledged_by != null ? planContact(inc.plan, inc.acknowledged_by) : undefined;
  return renderAlert({
    memberName: inc.plan.member_name,
    contactName: contact.name,
    kind: inc.kind,
    deadlineAt: inc.deadline_at,
    openedAt: inc.opened_at,
    timeZone: inc.plan.time_zone,
    lastCheckInAt: inc.last_check_in_at,
    lastLocation: inc.last_location,
    note: inc.note,
    ackUrl: url,
    delayedByMinutes: Math.round(inc.delayed_by_seconds / 60),
    round,
    incidentId: inc.id,
    memberPhone: inc.plan.member_phone ?? null,
    // Still acknowledged (the alert was queued before someone said so): who is on it. Open again: it lapsed.
    ackActive: acker !== undefined && inc.state === 'acknowledged' ? { by: acker.name, at: inc.acknowledged_at! } : null,
    ackLapsed: acker !== undefined && inc.state !== 'acknowledged' ? { by: acker.name, at: inc.acknowledged_at! } : null,
    locale: contact.locale,
    repeat,
  });
}

/** One channel's part of a rendered message, as a delivery row and a channel carry it. */
export function channelText(channel: MessageChannelName, r: Rendered): { subject: string | null; body: string; html: string | null; data: Record<string, string> | null } {
  if (channel === 'sms') return { subject: null, body: r.sms, html: null, data: null };
  if (channel === 'email') return { subject: r.email.subject, body: r.email.text, html: r.email.html, data: null };
  return { subject: r.push.title, body: r.push.body, html: null, data: r.push.data };
}

/**
 * A step's alerts: one row per contact and channel. 'now' stores the rendered text; 'at_send'
 * stores only what the worker renders it from (the sweeper's bulk path: see render-at-send.ts).
 */
export function alertDeliveries(
  s: LinkSettings, inc: IncidentFacts, stepNo: number, round: number, contacts: PlanContact[], when: 'now' | 'at_send',
): NewDelivery[] {
  return contacts.flatMap((c) => {
    const base = { memberId: inc.member_id, contactId: c.id, kind: 'alert' as const, incidentId: inc.id, stepNo };
    const url = ackUrl(s, inc.id, c.id, inc.opened_at);
    if (when === 'at_send') {
      const render: AlertRender = { round, contact_id: c.id, ack_url: url };
      return c.channels.map(({ channel, address }) => ({ ...base, channel, address, subject: null, body: null, html: null, render }));
    }
    return rows(base, c.channels, renderAlertFor(inc, c, round, url));
  });
}

/** The plan's contact with this id, or undefined. */
/**
 * The contact a plan snapshot names, or undefined. The snapshot is a stored row like any other (an
 * older version, a hand in psql): a part of it that is not the shape written today names nobody,
 * and the message still goes out, addressed without a name, rather than not at all.
 */
export function planContact(plan: Plan, contactId: string): PlanContact | undefined {
  const tiers: unknown = (plan as { tiers?: unknown } | null)?.tiers;
  if (!Array.isArray(tiers)) return undefined;
  for (const t of tiers as { contacts?: unknown }[]) {
    const found = Array.isArray(t?.contacts) ? (t.contacts as PlanContact[]).find((c) => c?.id === contactId) : undefined;
    if (found !== undefined) return found;
  }
  return undefined;
}

export function allClearDeliveries(
  inc: IncidentFacts, stepNo: number, alerted: { contact_id: string; channel: MessageChannelName; address: string }[], resolvedAt: Date, how: 'check_in' | 'member_resolved',
): NewDelivery[] {
  return alerted.flatMap((a) => {
    const who = planContact(inc.plan, a.contact_id);
    const r = renderAllClear({ memberName: inc.plan.member_name, contactName: who?.name ?? '', resolvedAt, timeZone: inc.plan.time_zone, how, incidentId: inc.id, locale: who?.locale });
    return rows({ memberId: inc.member_id, contactId: a.contact_id, kind: 'all_clear', incidentId: inc.id, stepNo }, [a], r);
  });
}

export function ackNoticeDeliveries(
  inc: IncidentFacts, stepNo: number, alerted: { contact_id: string; channel: MessageChannelName; address: string }[], ackedBy: PlanContact, ackedAt: Date,
): NewDelivery[] {
  return alerted
    .filter((a) => a.contact_id !== ackedBy.id)
    .flatMap((a) => {
      const who = planContact(inc.plan, a.contact_id);
      const r = renderAckNotice({ memberName: inc.plan.member_name, contactName: who?.name ?? '', ackedByName: ackedBy.name, ackedAt, timeZone: inc.plan.time_zone, incidentId: inc.id, locale: who?.locale });
      return rows({ memberId: inc.member_id, contactId: a.contact_id, kind: 'ack_notice', incidentId: inc.id, stepNo }, [a], r);
    });
}

/**
 * An "I'm on it" lapsed: every address in `told` (contacts told someone was on it, and the one who
 * said it) hears so, each with their own alert link; the one who acknowledged is asked whether they
 * reached the member.
 */
export function ackLapsedDeliveries(
  s: LinkSettings, inc: IncidentFacts, stepNo: number, told: { contact_id: string; channel: MessageChannelName; address: string }[], ackedBy: PlanContact, ackedAt: Date,
  resumes = true,
): NewDelivery[] {
  return told.flatMap((a) => {
    const who = planContact(inc.plan, a.contact_id);
    const r = renderAckLapsed({
      memberName: inc.plan.member_name, contactName: who?.name ?? '', ackedByName: ackedBy.name, ackedAt, timeZone: inc.plan.time_zone,
      incidentId: inc.id, memberPhone: inc.plan.member_phone ?? null, toAcker: a.contact_id === ackedBy.id,
      ackUrl: ackUrl(s, inc.id, a.contact_id, inc.opened_at), locale: who?.locale, resumes,
    });
    return rows({ memberId: inc.member_id, contactId: a.contact_id, kind: 'ack_lapsed', incidentId: inc.id, stepNo }, [a], r);
  });
}
