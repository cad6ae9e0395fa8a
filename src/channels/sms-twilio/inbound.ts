import { DateTime } from 'luxon';
import { checkIn, requestHash, type CheckInDeps } from '../../checkins/service.js';
import type { Clock } from '../../clock.js';
import { maskAddress } from '../../observability/logger.js';
import { setSmsOptOut } from './opt-out.js';

/**
 * Text messages sent to our number. Consent keywords first (they are the carrier's and Twilio's
 * rules, whoever sends them), then a member's "I'm OK" reply. Anything else changes nothing and
 * gets a short pointer. Twilio answers STOP and START itself (and blocks our own reply to a
 * number that just opted out), so those get no reply of ours.
 */

// Twilio's default opt-out and opt-in keywords (Advanced Opt-Out), matched on the whole message.
const OPT_OUT = new Set(['STOP', 'STOPALL', 'UNSUBSCRIBE', 'CANCEL', 'END', 'QUIT', 'OPTOUT', 'REVOKE']);
const OPT_IN = new Set(['START', 'UNSTOP', 'YES']);
const HELP = new Set(['HELP', 'INFO']);
const CHECK_IN = new Set(['OK', 'OKAY', 'YES', '1']);

export const HELP_TEXT = 'Pruuf safety check-ins. Members: reply OK to check in. Contacts: open the link in the alert to respond. Reply STOP to stop texts, START to resume.';
const MEMBER_HINT = 'Pruuf: to check in, reply OK. Reply HELP for help.';
const STRANGER_HINT = 'Pruuf: this number cannot read replies. To answer an alert, open the link in it. Reply HELP for help.';

/** "  ok! " → "OK", "o k" → "OK": the whole message, case, spaces and end punctuation aside. */
export function keywordOf(body: string): string {
  return body.normalize('NFKC').toUpperCase().replace(/\s+/g, '').replace(/^[.!?,;:'"()-]+|[.!?,;:'"()-]+$/g, '');
}

export type InboundSms = { from: string; body: string; messageSid: string };

export type InboundAction = 'opted_out' | 'opted_in' | 'help' | 'checked_in' | 'member_other' | 'unknown';

export type InboundResult = { action: InboundAction; reply: string | null };

export type InboundDeps = CheckInDeps & { clock: Clock };

type MemberByPhone = { id: string; time_zone: string };

function checkedInReply(next: string | null, resolved: number, timeZone: string): string {
  const parts = ['Pruuf: thank you, you are checked in.'];
  if (resolved > 0) parts.push('Your contacts are being told you are OK.');
  if (next !== null) parts.push(`Next check-in due ${DateTime.fromISO(next).setZone(timeZone).toFormat('ccc d LLL HH:mm')}.`);
  return parts.join(' ');
}

export async function handleInboundSms(deps: InboundDeps, sms: InboundSms): Promise<InboundResult> {
  const now = deps.clock();
  const word = keywordOf(sms.body);
  const log = deps.log.child({ from: maskAddress(sms.from), message_sid: sms.messageSid });

  if (OPT_OUT.has(word)) {
    const changed = await setSmsOptOut(deps.pool, sms.from, true, now);
    log.info({ ...changed }, 'inbound SMS: opted out of SMS');
    return { action: 'opted_out', reply: null };
  }
  if (HELP.has(word)) {
    log.info('inbound SMS: help');
    return { action: 'help', reply: HELP_TEXT };
  }

  // Only a verified phone speaks for a member: anyone can type any number into their profile, and a
  // reply from a number its member never proved to hold checks nobody in (it is a stranger's).
  const { rows } = await deps.pool.query<MemberByPhone>('select id, time_zone from members where phone = $1 and phone_verified_at is not null', [sms.from]);
  const member = rows[0];
  // YES is Twilio's opt-in keyword as well as an "I'm OK": a member's YES does both.
  if (OPT_IN.has(word) && !(member !== undefined && CHECK_IN.has(word))) {
    const changed = await setSmsOptOut(deps.pool, sms.from, false, now);
    log.info({ ...changed }, 'inbound SMS: opted back in to SMS');
    return { action: 'opted_in', reply: null };
  }
  if (member === undefined) {
    log.info('inbound SMS from an unknown sender or a contact; nothing changed');
    return { action: 'unknown', reply: STRANGER_HINT };
  }
  if (!CHECK_IN.has(word)) {
    log.info({ member_id: member.id }, 'inbound SMS from a member that is not a check-in; nothing changed');
    return { action: 'member_other', reply: MEMBER_HINT };
  }

  if (OPT_IN.has(word)) await setSmsOptOut(deps.pool, sms.from, false, now);
  // The message sid is the idempotency key: Twilio retrying the webhook checks in once.
  const answer = await checkIn(deps, {
    memberId: member.id,
    email: null,
    at: now,
    source: 'sms',
    note: null,
    location: null,
    idempotencyKey: `twilio-sms:${sms.messageSid}`,
    requestHash: requestHash({ twilio_message_sid: sms.messageSid }),
  });
  log.info({ member_id: member.id, check_in_id: answer.id }, 'inbound SMS: member checked in');
  return { action: 'checked_in', reply: checkedInReply(answer.next_deadline_at, answer.resolved_incident_ids.length, member.time_zone) };
}
