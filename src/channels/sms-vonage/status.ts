import type pg from 'pg';
import { withTransaction } from '../../db/pool.js';
import { applyHeldStatuses, countStatus, recordStatus, type StatusEffects, type StatusMetrics, type StatusOutcome } from '../../delivery/carrier-status.js';
import { maskAddress, type Logger } from '../../observability/logger.js';
import { receiptErrorMeaning } from './errors.js';
import { VONAGE_PROVIDER } from './index.js';

/**
 * Vonage delivery receipts (DLRs), already verified. Vonage's words become the words of
 * carrier-status.ts: `accepted` (the downstream carrier took the message) is recorded as `sent`,
 * because there `accepted` is Twilio's "not yet handed on"; `buffered` (the carrier keeps
 * retrying), `expired`, `rejected` and `unknown` are Vonage's own words in its table, and
 * `delivered` and `failed` mean what they mean for Twilio.
 *
 * A receipt names our delivery by client-ref (we send the delivery id), so it applies even before
 * the worker recorded the message id, and for every part of a long message (each part has its
 * own message id and receipt). Without a client-ref it is matched by message id, and held until
 * the send is recorded (every receipt at our URL is signed with our secret: it is ours).
 */

export type VonageReceipt = {
  messageId: string;
  status: string;
  /** err-code; '0' (no error) is kept as null. */
  errorCode: string | null;
  /** client-ref: our delivery id. */
  clientRef: string | null;
  /** message-timestamp (UTC, "2026-11-24 09:00:00"): when Vonage sent the receipt. */
  messageTimestamp: string | null;
};

const WORD: Record<string, string> = { accepted: 'sent' };
const FAILED = new Set(['failed', 'rejected', 'expired']);

/** When the receipt says it was sent; `now` when it does not say, cannot be read, or is ahead of us. */
function occurredAt(ts: string | null, now: Date): Date {
  const m = ts === null ? null : /^(\d{4})-(\d{2})-(\d{2})[ T](\d{2}):(\d{2}):(\d{2})$/.exec(ts.trim());
  if (m === null) return now;
  const at = new Date(Date.UTC(+m[1]!, +m[2]! - 1, +m[3]!, +m[4]!, +m[5]!, +m[6]!));
  return Number.isNaN(at.getTime()) || at > now ? now : at;
}

export async function applyVonageReceipt(
  pool: pg.Pool, log: Logger, r: VonageReceipt, now: Date, metrics?: StatusMetrics,
): Promise<StatusOutcome> {
  const vonageWord = r.status.toLowerCase();
  const status = WORD[vonageWord] ?? vonageWord;
  const meaning = FAILED.has(vonageWord) ? receiptErrorMeaning(r.errorCode) : undefined;
  const effects: StatusEffects | undefined = meaning === undefined ? undefined : {
    ...(meaning.deadAddress === undefined ? {} : { dead_address: meaning.deadAddress }),
    ...(meaning.optedOut === true ? { opted_out: true } : {}),
    failover: `SMS ${vonageWord}: ${meaning.reason}`,
  };
  const result = await withTransaction(pool, (tx) => recordStatus(tx, {
    provider: VONAGE_PROVIDER, eventId: `${r.messageId}:${vonageWord}`, providerMessageId: r.messageId,
    deliveryId: r.clientRef ?? undefined, status, errorCode: r.errorCode, occurredAt: occurredAt(r.messageTimestamp, now),
    ...(effects === undefined ? {} : { effects }), holdUnmatched: true,
  }, now));
  countStatus(metrics, VONAGE_PROVIDER, result.ref?.channel, status, result.outcome, result.receiptSeconds);

  if (meaning !== undefined && (result.outcome === 'applied' || result.outcome === 'stale' || result.outcome === 'held')) {
    const ref = result.ref;
    const fields = {
      delivery_id: ref?.id, message_id: r.messageId, kind: ref?.kind, status: vonageWord, error_code: r.errorCode,
      to: ref === undefined ? undefined : maskAddress(ref.address),
    };
    if (meaning.ourProblem === true) log.error({ ...fields, reason: meaning.reason }, 'SMS not delivered for a reason on our side (content, sender registration or account)');
    else log.warn({ ...fields, reason: meaning.reason }, 'SMS not delivered');
  }
  if (result.outcome === 'held') {
    // As for Twilio: the worker may have recorded the send while this was being held.
    const applied = await applyHeldStatuses(pool, now, { provider: VONAGE_PROVIDER, providerMessageId: r.messageId });
    for (const a of applied) countStatus(metrics, a.provider, a.channel, a.status, a.outcome);
    if (applied.length > 0) return applied[applied.length - 1]!.outcome;
  }
  return result.outcome;
}
