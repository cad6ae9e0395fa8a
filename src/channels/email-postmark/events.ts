import { z } from 'zod';
import type { StatusReport } from '../../delivery/carrier-status.js';
import { cleanReason } from '../email-sendgrid/events.js';

/**
 * Postmark webhook payloads: one JSON object per request, its kind in RecordType. Our Metadata
 * (delivery_id, kind, incident_id) comes back in each.
 *
 * Delivery and Bounce records update the delivery row; a SpamComplaint is recorded too (it proves
 * the mail arrived, and Postmark stops sending to the address). Open and Click (tracking is off
 * for our mail), SubscriptionChange (a suppression says nothing about this message: a later send
 * is refused with 406 and turns email off then) and anything else are ignored.
 */

/** Postmark's bounce ID can exceed 2^53 and arrives as a JSON number: kept only as part of the event id. */
const id = z.union([z.number(), z.string().max(100)]).transform(String);
const text = (max: number) => z.string().max(max).optional();

export const PostmarkEvent = z.looseObject({
  RecordType: z.string().min(1).max(64),
  MessageID: z.string().max(200).optional(),
  Metadata: z.record(z.string(), z.unknown()).nullish(),
  /** Delivery */
  DeliveredAt: text(64),
  /** Bounce, SpamComplaint */
  ID: id.optional(),
  Type: text(64),
  BouncedAt: text(64),
  Inactive: z.boolean().optional(),
  Description: text(2000),
  Details: text(10_000),
});
export type PostmarkEvent = z.infer<typeof PostmarkEvent>;

export const APPLIED_RECORD_TYPES = new Set(['Delivery', 'Bounce', 'SpamComplaint']);

/** Bounce types that are Postmark still trying (the message may yet arrive): shown as deferred. */
const DEFERRED_TYPES = new Set(['Transient', 'DnsError']);
/**
 * Bounce records that are not a failure of our message: replies and notices from the receiving
 * side (an autoresponder even proves the mail arrived). Ignored.
 */
const NOT_FAILURES = new Set([
  'AutoResponder', 'Unsubscribe', 'Subscribe', 'AddressChange', 'ChallengeVerification', 'VirusNotification',
  'OpenRelayTest', 'SpamNotification', 'InboundError',
]);
/** Bounce types that say the address itself cannot receive mail, whatever `Inactive` says. */
const DEAD_TYPES = new Set(['HardBounce', 'BadEmailAddress']);

/** Our delivery id from Metadata, when the record is about a message of ours. */
export function deliveryIdOf(e: PostmarkEvent): string | undefined {
  const v = e.Metadata?.delivery_id;
  return typeof v === 'string' && v !== '' ? v : undefined;
}

/** Whether the record moves a delivery on (else it is acknowledged and ignored). */
export function isApplied(e: PostmarkEvent): boolean {
  if (!APPLIED_RECORD_TYPES.has(e.RecordType)) return false;
  return e.RecordType !== 'Bounce' || !NOT_FAILURES.has(e.Type ?? '');
}

/** The provider's word we record: delivered, bounce, deferred or spamcomplaint (carrier-status.ts ranks them). */
export function statusWordOf(e: PostmarkEvent): string {
  if (e.RecordType === 'Delivery') return 'delivered';
  if (e.RecordType === 'SpamComplaint') return 'spamcomplaint';
  return DEFERRED_TYPES.has(e.Type ?? '') ? 'deferred' : 'bounce';
}

/**
 * The reason to turn email off for the contact, or undefined when this record says nothing about
 * the address: a hard bounce or bad address, any bounce after which Postmark deactivated the
 * address (`Inactive`: every later send would be refused), and a spam complaint.
 */
export function deadAddressReason(e: PostmarkEvent): string | undefined {
  if (e.RecordType === 'SpamComplaint') return 'spam complaint: the contact marked our email as spam, and Postmark stopped sending to the address';
  if (e.RecordType !== 'Bounce' || DEFERRED_TYPES.has(e.Type ?? '')) return undefined;
  if (!DEAD_TYPES.has(e.Type ?? '') && e.Inactive !== true) return undefined;
  const said = cleanReason(e.Details) || cleanReason(e.Description) || 'the receiving server refused the address';
  return `bounced: ${said}`.slice(0, 200).trim();
}

function timeOf(value: string | undefined, fallback: Date): Date {
  const ms = value === undefined ? Number.NaN : Date.parse(value);
  return Number.isFinite(ms) ? new Date(ms) : fallback;
}

/**
 * Postmark gives Delivery records no id of their own: a message has one recipient (ours always
 * does), so it is delivered once, and a retried webhook carries the same MessageID. Bounce and
 * SpamComplaint records have Postmark's bounce ID; the message id and type keep two records
 * apart even if a huge ID lost digits in JSON.
 */
export function eventIdOf(e: PostmarkEvent): string {
  if (e.RecordType === 'Delivery') return `delivery:${e.MessageID ?? deliveryIdOf(e) ?? ''}`;
  return `${e.RecordType.toLowerCase()}:${e.MessageID ?? ''}:${e.Type ?? ''}:${e.ID ?? ''}`;
}

/**
 * The record as a status of our delivery, found by our delivery_id. A dead address turns email
 * off for the contact (while the address is still theirs), and an alert that bounced records on
 * the incident timeline that the contact's other channels carry it (not a spam complaint: that
 * alert arrived).
 */
export function toStatusReport(e: PostmarkEvent, provider: string, receivedAt: Date): StatusReport {
  const word = statusWordOf(e);
  const occurredAt = timeOf(e.RecordType === 'Delivery' ? e.DeliveredAt : e.BouncedAt, receivedAt);
  const errorCode = e.RecordType === 'Delivery' ? null : cleanReason(e.Type ?? e.RecordType, 100) || null;
  const dead = deadAddressReason(e);
  const effects = dead === undefined ? undefined : e.RecordType === 'SpamComplaint' ? { dead_address: dead } : { dead_address: dead, failover: dead };
  return {
    provider,
    eventId: eventIdOf(e),
    deliveryId: deliveryIdOf(e),
    providerMessageId: e.MessageID,
    status: word,
    errorCode,
    occurredAt,
    ...(effects === undefined ? {} : { effects }),
  };
}
