import { z } from 'zod';
import type { StatusReport } from '../../delivery/carrier-status.js';

/**
 * SendGrid event webhook payloads: a JSON array of events. Our custom_args (delivery_id, kind,
 * incident_id) come back as top-level fields of each event.
 *
 * Delivery events update the delivery row: processed, deferred, delivered, bounce, dropped.
 * Engagement events (open, click, spamreport, unsubscribe, group_unsubscribe,
 * group_resubscribe) are ignored: tracking is off for our mail, and a word like "open" would
 * overwrite the delivery status the member and operator care about.
 */

/** A text field that SendGrid sometimes sends as a number (status codes). */
const text = z.union([z.string(), z.number()]).transform(String).optional();

export const SendGridEvent = z.looseObject({
  event: z.string().min(1).max(64),
  sg_event_id: z.string().min(1).max(200),
  /** Unix seconds. */
  timestamp: z.number().min(0).max(1e11),
  sg_message_id: z.string().max(500).optional(),
  delivery_id: z.string().max(100).optional(),
  /** The recipient: with sg_message_id, what tells apart the messages of one request (sendMany). */
  email: z.string().max(500).optional(),
  type: z.string().max(64).optional(),
  status: text,
  reason: text,
  response: text,
});
export type SendGridEvent = z.infer<typeof SendGridEvent>;

export const SendGridEventBatch = z.array(SendGridEvent).max(10_000);

export const DELIVERY_EVENTS = new Set(['processed', 'deferred', 'delivered', 'bounce', 'dropped']);

/**
 * Event timestamps are whole seconds, so "processed" and "delivered" often share one. Within a
 * second the lifecycle order decides (a few milliseconds, never across seconds), so the history
 * keeps them in order (the row itself never lets a processed replace a delivered: carrier-status.ts).
 */
const LIFECYCLE_MS: Record<string, number> = { processed: 0, deferred: 1, delivered: 2, bounce: 2, dropped: 2 };

const EMAIL_LIKE = /<?[^\s<>@]+@[^\s<>@]+>?/g;

/** Provider text fit to show a member: no address in it, one line, short. */
export function cleanReason(value: string | undefined, max = 200): string {
  return (value ?? '').replace(EMAIL_LIKE, 'the address').replace(/\s+/g, ' ').trim().slice(0, max).trim();
}

/** X-Message-Id is the part of sg_message_id before the first dot ("14c5d75ce93.filter…"). */
export function providerMessageIdOf(sgMessageId: string | undefined): string | undefined {
  const id = sgMessageId?.split('.')[0];
  return id === undefined || id === '' ? undefined : id;
}

/** Reasons for a drop that mean the address itself cannot receive mail (SendGrid's own wording). */
const DEAD_DROP_REASONS = new Set(['bounced address', 'invalid', 'invalid address']);

/**
 * The reason to turn email off for the contact, or undefined when this event says nothing about
 * the address: a hard bounce (type "bounce"; "blocked" is the receiving server refusing us for
 * now), or a drop because the address bounced before or is invalid.
 */
export function deadAddressReason(e: SendGridEvent): string | undefined {
  if (e.event === 'bounce' && (e.type === undefined || e.type === 'bounce')) {
    const reason = cleanReason(e.reason);
    const status = cleanReason(e.status, 20);
    const said = status !== '' && !reason.includes(status) ? `${status} ${reason}` : reason;
    return `bounced: ${said === '' ? 'the receiving server refused the address' : said}`.slice(0, 200).trim();
  }
  if (e.event === 'dropped' && DEAD_DROP_REASONS.has(cleanReason(e.reason).toLowerCase())) {
    return `dropped: ${cleanReason(e.reason)}`.slice(0, 200);
  }
  return undefined;
}

/**
 * The event as a status of our delivery: found by our delivery_id, else by the message id. A
 * dead address turns email off for the contact (while the address is still theirs), and an alert
 * that bounced records on the incident timeline that the contact's other channels carry it.
 */
export function toStatusReport(e: SendGridEvent, provider: string): StatusReport {
  const occurredAt = new Date(Math.floor(e.timestamp) * 1000 + (LIFECYCLE_MS[e.event] ?? 0));
  const code = e.status ?? (e.event === 'deferred' ? e.response : e.reason);
  const errorCode = e.event === 'processed' || e.event === 'delivered' ? null : cleanReason(code, 100) || null;
  const dead = deadAddressReason(e);
  return {
    provider,
    eventId: e.sg_event_id,
    deliveryId: e.delivery_id,
    providerMessageId: providerMessageIdOf(e.sg_message_id),
    status: e.event,
    errorCode,
    occurredAt,
    ...(dead === undefined ? {} : { effects: { dead_address: dead, failover: dead } }),
  };
}
