import type { ChannelName } from '../channels/types.js';
import type { NewDelivery } from '../delivery/outbox.js';
import { signLink } from '../links/tokens.js';
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
  const who = memberName ?? 'A Pruuf member';
  const link = invitationLink(s, contact);
  const out: NewDelivery[] = [];
  const base = { memberId: contact.member_id, contactId: contact.id, kind: 'invitation' as const };
  if (contact.email !== null && !contact.email_disabled && allowed.includes('email')) {
    out.push({
      ...base,
      channel: 'email',
      address: contact.email,
      subject: `${who} asked you to be their emergency contact`,
      body:
        `Hello ${contact.name},\n\n${who} uses Pruuf to check in every day. If they miss a check-in, ` +
        `Pruuf will alert you so you can make sure they are OK.\n\nPlease confirm or decline here:\n${link}\n\n` +
        `You do not need an account. If you do not know ${who}, ignore this message.`,
    });
  }
  if (contact.phone !== null && !contact.sms_opted_out && !contact.sms_disabled && allowed.includes('sms')) {
    out.push({
      ...base,
      channel: 'sms',
      address: contact.phone,
      body: `Pruuf: ${who} added you as an emergency contact. Confirm or decline: ${link} Reply STOP to opt out.`,
    });
  }
  return out;
}
