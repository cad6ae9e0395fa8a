import type { ChannelName } from '../channels/types.js';
import type { NewDelivery } from '../delivery/outbox.js';
import { signLink } from '../links/tokens.js';
import { renderAckNotice, renderAlert, renderAllClear, type Rendered, type Where } from './messages.js';
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
};

export function ackUrl(s: LinkSettings, incidentId: string, contactId: string, openedAt: Date): string {
  const token = signLink(s.linkSecret, 'ack', contactId, new Date(openedAt.getTime() + s.ackLinkTtlDays * 86_400_000), incidentId);
  return `${s.publicBaseUrl}/a/${token}`;
}

function rows(
  base: Omit<NewDelivery, 'channel' | 'address' | 'subject' | 'body' | 'html'>,
  channels: { channel: ChannelName; address: string }[],
  r: Rendered,
): NewDelivery[] {
  return channels.map(({ channel, address }) => {
    if (channel === 'sms') return { ...base, channel, address, subject: null, body: r.sms, html: null };
    if (channel === 'email') return { ...base, channel, address, subject: r.email.subject, body: r.email.text, html: r.email.html };
    return { ...base, channel, address, subject: r.push.title, body: r.push.body, html: null, data: r.push.data };
  });
}

export function alertDeliveries(s: LinkSettings, inc: IncidentFacts, stepNo: number, round: number, contacts: PlanContact[]): NewDelivery[] {
  return contacts.flatMap((c) =>
    rows(
      { memberId: inc.member_id, contactId: c.id, kind: 'alert', incidentId: inc.id, stepNo },
      c.channels,
      renderAlert({
        memberName: inc.plan.member_name,
        contactName: c.name,
        kind: inc.kind,
        deadlineAt: inc.deadline_at,
        openedAt: inc.opened_at,
        timeZone: inc.plan.time_zone,
        lastCheckInAt: inc.last_check_in_at,
        lastLocation: inc.last_location,
        note: inc.note,
        ackUrl: ackUrl(s, inc.id, c.id, inc.opened_at),
        delayedByMinutes: Math.round(inc.delayed_by_seconds / 60),
        round,
        incidentId: inc.id,
      }),
    ),
  );
}

/** The plan's contact with this id, or undefined. */
export function planContact(plan: Plan, contactId: string): PlanContact | undefined {
  return plan.tiers.flatMap((t) => t.contacts).find((c) => c.id === contactId);
}

export function allClearDeliveries(
  inc: IncidentFacts, stepNo: number, alerted: { contact_id: string; channel: ChannelName; address: string }[], resolvedAt: Date, how: 'check_in' | 'member_resolved',
): NewDelivery[] {
  return alerted.flatMap((a) => {
    const name = planContact(inc.plan, a.contact_id)?.name ?? 'there';
    const r = renderAllClear({ memberName: inc.plan.member_name, contactName: name, resolvedAt, timeZone: inc.plan.time_zone, how, incidentId: inc.id });
    return rows({ memberId: inc.member_id, contactId: a.contact_id, kind: 'all_clear', incidentId: inc.id, stepNo }, [a], r);
  });
}

export function ackNoticeDeliveries(
  inc: IncidentFacts, stepNo: number, alerted: { contact_id: string; channel: ChannelName; address: string }[], ackedBy: PlanContact, ackedAt: Date,
): NewDelivery[] {
  return alerted
    .filter((a) => a.contact_id !== ackedBy.id)
    .flatMap((a) => {
      const name = planContact(inc.plan, a.contact_id)?.name ?? 'there';
      const r = renderAckNotice({ memberName: inc.plan.member_name, contactName: name, ackedByName: ackedBy.name, ackedAt, timeZone: inc.plan.time_zone, incidentId: inc.id });
      return rows({ memberId: inc.member_id, contactId: a.contact_id, kind: 'ack_notice', incidentId: inc.id, stepNo }, [a], r);
    });
}
