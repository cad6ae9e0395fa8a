import type { MessageChannelName } from '../channels/types.js';
import { contactChannels, type ContactRow } from './repo.js';

/**
 * Whether an alert would reach this contact now, and if not, why, in words the member can act on.
 * Alerts go on every channel on every plan (`alertChannels`), so what is left is consent and dead
 * addresses: an invited contact gets alerts by email only until they accept, a declined one gets
 * nothing, STOP and permanent failures turn a channel off. Adding or changing such a contact still
 * succeeds: the member is told here rather than refused.
 */
export type UnreachableCode =
  | 'declined'
  | 'awaiting_consent_no_email'
  | 'awaiting_consent_email_disabled'
  | 'sms_opted_out_no_email'
  | 'addresses_disabled'
  | 'no_channel';

export type Reach = { reachable: boolean; channels: MessageChannelName[]; unreachable_reason: { code: UnreachableCode; message: string } | null };

type ReachFields = Pick<ContactRow, 'status' | 'email' | 'phone' | 'sms_opted_out' | 'sms_disabled' | 'email_disabled' | 'linked_user_id' | 'has_devices'>;

const MESSAGES: Record<UnreachableCode, string> = {
  declined: 'they declined to be your emergency contact, so they get no alerts; change their email or phone to invite them again',
  awaiting_consent_no_email:
    'they have only a phone number and have not accepted the invitation yet; until they do, alerts go by email only, so they would get none (ask them to accept, or add an email)',
  awaiting_consent_email_disabled:
    'they have not accepted the invitation yet, and until they do alerts go by email only, but their email cannot receive mail (it bounced); ask them to accept, or fix the email',
  sms_opted_out_no_email: 'they texted STOP and have no email, so they get no alerts; they can text START to the Pruuf number, or add an email',
  addresses_disabled: 'none of their addresses can be used now (a bounced email, a number that cannot get SMS, or STOP); fix their email or phone',
  no_channel: 'they have no address an alert could use; add an email or a phone',
};

export function reachOf(c: ReachFields, alertChannels: readonly MessageChannelName[]): Reach {
  const channels = contactChannels(c).filter((ch) => alertChannels.includes(ch));
  if (channels.length > 0) return { reachable: true, channels, unreachable_reason: null };
  const code = unreachableCode(c);
  return { reachable: false, channels, unreachable_reason: { code, message: MESSAGES[code] } };
}

function unreachableCode(c: ReachFields): UnreachableCode {
  if (c.status === 'declined') return 'declined';
  if (c.status === 'invited') return c.email === null ? 'awaiting_consent_no_email' : 'awaiting_consent_email_disabled';
  if (c.phone !== null && c.sms_opted_out && c.email === null) return 'sms_opted_out_no_email';
  if ((c.phone !== null && (c.sms_opted_out || c.sms_disabled)) || (c.email !== null && c.email_disabled)) return 'addresses_disabled';
  return 'no_channel';
}
