import type pg from 'pg';
import { withTransaction } from '../../db/pool.js';
import { applyHeldStatuses, countStatus, recordStatus, type StatusEffects, type StatusMetrics, type StatusOutcome } from '../../delivery/carrier-status.js';
import { maskAddress, type Logger } from '../../observability/logger.js';
import { statusErrorMeaning } from './errors.js';
import { TWILIO_PROVIDER } from './index.js';

/**
 * Twilio status callbacks. They carry no timestamp and can arrive out of order (a "sent" after
 * its "delivered"): the order of a message's life decides instead (carrier-status.ts), and the
 * time we heard it stands for when it happened. Every callback is ours (Twilio calls the URL we
 * gave with the message), so one that matches no delivery yet came before our worker recorded
 * the send: it is held and applied once the row has the message sid.
 */
const FAILED = new Set(['undelivered', 'failed']);

export type StatusCallback = { messageSid: string; status: string; errorCode: string | null };

export type { StatusOutcome };

export async function applyTwilioStatus(
  pool: pg.Pool, log: Logger, cb: StatusCallback, now: Date, metrics?: StatusMetrics,
): Promise<StatusOutcome> {
  const status = cb.status.toLowerCase();
  const meaning = FAILED.has(status) ? statusErrorMeaning(cb.errorCode) : undefined;
  const effects: StatusEffects | undefined = meaning === undefined ? undefined : {
    ...(meaning.deadAddress === undefined ? {} : { dead_address: meaning.deadAddress }),
    ...(meaning.optedOut === true ? { opted_out: true } : {}),
    failover: `SMS ${status}: ${meaning.reason}`,
  };
  const result = await withTransaction(pool, (tx) => recordStatus(tx, {
    provider: TWILIO_PROVIDER, eventId: `${cb.messageSid}:${status}`, providerMessageId: cb.messageSid,
    status, errorCode: cb.errorCode, occurredAt: now, effects, holdUnmatched: true,
  }, now));
  countStatus(metrics, TWILIO_PROVIDER, result.ref?.channel, status, result.outcome, result.receiptSeconds);

  if (meaning !== undefined && (result.outcome === 'applied' || result.outcome === 'stale' || result.outcome === 'held')) {
    const ref = result.ref;
    const fields = { delivery_id: ref?.id, message_sid: cb.messageSid, kind: ref?.kind, status, error_code: cb.errorCode, to: ref === undefined ? undefined : maskAddress(ref.address) };
    if (meaning.ourProblem === true) log.error(fields, 'SMS not delivered for a reason on our side (account, sender registration or content)');
    else log.warn({ ...fields, reason: meaning.reason }, 'SMS not delivered');
  }
  if (result.outcome === 'held') {
    // Committed: if the worker recorded the send meanwhile, it may have looked before this was
    // there. Looking again now means one of us sees the other (carrier-status.ts).
    const applied = await applyHeldStatuses(pool, now, { provider: TWILIO_PROVIDER, providerMessageId: cb.messageSid });
    for (const a of applied) countStatus(metrics, a.provider, a.channel, a.status, a.outcome);
    if (applied.length > 0) return applied[applied.length - 1]!.outcome;
  }
  return result.outcome;
}
