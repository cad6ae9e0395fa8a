import type pg from 'pg';
import { withTransaction } from '../../db/pool.js';
import { applyProviderStatus, claimProviderEvent, disableContactChannel, recordFailover } from '../../delivery/feedback.js';
import { maskAddress, type Logger } from '../../observability/logger.js';
import { statusErrorMeaning } from './errors.js';
import { TWILIO_PROVIDER } from './index.js';
import { setSmsOptOut } from './opt-out.js';

/**
 * Twilio status callbacks carry no timestamp, and they can arrive out of order (a "sent" after
 * its "delivered"). The order of a message's life decides instead: a status never replaces a
 * later one. Terminal statuses share a rank, so a late correction (undelivered after failed) still lands.
 */
const RANK: Record<string, number> = {
  accepted: 0, scheduled: 0, queued: 1, sending: 2, sent: 3,
  delivered: 4, undelivered: 4, failed: 4, canceled: 4, read: 5,
};
const FAILED = new Set(['undelivered', 'failed']);

export type StatusCallback = { messageSid: string; status: string; errorCode: string | null };

export type StatusOutcome = 'applied' | 'replay' | 'stale' | 'unknown';

export async function applyTwilioStatus(pool: pg.Pool, log: Logger, cb: StatusCallback, now: Date): Promise<StatusOutcome> {
  const status = cb.status.toLowerCase();
  return withTransaction(pool, async (tx) => {
    // Locked first so two callbacks of one message apply one after the other, each seeing the last.
    const { rows } = await tx.query<{ provider_status: string | null }>(
      'select provider_status from deliveries where provider = $1 and provider_message_id = $2 limit 1 for update',
      [TWILIO_PROVIDER, cb.messageSid],
    );
    const current = rows[0];
    // Not ours, or the row is not marked sent yet: nothing is claimed, so a later retry still applies.
    if (current === undefined) return 'unknown';
    if (!(await claimProviderEvent(tx, TWILIO_PROVIDER, `${cb.messageSid}:${status}`, now))) return 'replay';
    if (current.provider_status !== null && (RANK[status] ?? 0) < (RANK[current.provider_status] ?? 0)) return 'stale';
    const ref = await applyProviderStatus(tx, { provider: TWILIO_PROVIDER, providerMessageId: cb.messageSid, status, errorCode: cb.errorCode, at: now });
    if (ref === undefined || !FAILED.has(status)) return 'applied';

    const meaning = statusErrorMeaning(cb.errorCode);
    const fields = { delivery_id: ref.id, kind: ref.kind, status, error_code: cb.errorCode, to: maskAddress(ref.address) };
    // A callback can come long after the send: a number the member has since corrected stays on.
    if (meaning.deadAddress !== undefined && ref.contact_id !== null && ref.channel === 'sms') {
      await disableContactChannel(tx, ref.contact_id, 'sms', meaning.deadAddress, now, ref.address);
    }
    if (meaning.optedOut === true) await setSmsOptOut(tx, ref.address, true, now);
    if (ref.kind === 'alert') await recordFailover(tx, ref, `SMS ${status}: ${meaning.reason}`, now);
    if (meaning.ourProblem === true) log.error(fields, 'SMS not delivered for a reason on our side (account, sender registration or content)');
    else log.warn({ ...fields, reason: meaning.reason }, 'SMS not delivered');
    return 'applied';
  });
}
