import type { ChannelName } from '../channels/types.js';
import type { NewDelivery } from '../delivery/outbox.js';
import { signLink } from '../links/tokens.js';
import { renderInvitation } from '../incidents/messages.js';
import type { ContactRow } from './repo.js';

export type LinkSettings = { publicBaseUrl: string; linkSecret: string; invitationTtlDays: number };

export function invitationLink(s: LinkSettings, contact: Pick<ContactRow, 'id' | 'invited_at'>): string {
  const expires = new Date(contact.invited_at.getTime() + s.invitationTtlDays * 86_400_000);
  const token = signLink(s.linkSecret, 'invite', contact.id, expires, String(contact.invited_at.getTime()));
  return `${s.publicBaseUrl}/i/${token}`;
}

/**
 * The invitation asks for consent, so it goes to every address the contact has (that the plan
 * allows); push is impossible before the contact accepts in the app.
 */
export function invitationDeliveries(
  s: LinkSettings, contact: ContactRow, memberName: string | null, allowed: ChannelName[],
): NewDelivery[] {
  const link = invitationLink(s, contact);
  const text = renderInvitation({ memberName: memberName ?? '', contactName: contact.name, link, locale: contact.locale });
  const out: NewDelivery[] = [];
  const base = { memberId: contact.member_id, contactId: contact.id, kind: 'invitation' as const };
  if (contact.email !== null && !contact.email_disabled && allowed.includes('email')) {
    out.push({ ...base, channel: 'email', address: contact.email, subject: text.email.subject, body: text.email.text });
  }
  if (contact.phone !== null && !contact.sms_opted_out && !contact.sms_disabled && allowed.includes('sms')) {
    out.push({ ...base, channel: 'sms', address: contact.phone, body: text.sms });
  }
  return out;
}
