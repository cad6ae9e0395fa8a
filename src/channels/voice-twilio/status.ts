import type pg from 'pg';
import { withTransaction } from '../../db/pool.js';
import { countStatus, recordStatus, type StatusMetrics, type StatusOutcome } from '../../delivery/carrier-status.js';
import { isMachine, recordCallOutcome, type CallOutcome } from '../../incidents/call-answers.js';
import type { Logger } from '../../observability/logger.js';
import { TWILIO_VOICE_PROVIDER } from './index.js';

/**
 * A call's status callbacks (CallStatus, AnsweredBy, CallDuration), on its delivery like any
 * provider status (carrier-status.ts: kept once each, never moving backwards):
 *
 * | Twilio                         | provider_status     | carrier_status | carrier_error_code          |
 * |--------------------------------|---------------------|----------------|-----------------------------|
 * | initiated, ringing, in-progress| the same            | (none yet)     |                             |
 * | completed, a person answered   | completed           | delivered      |                             |
 * | completed by a machine or fax  | answering_machine   | undelivered    | AnsweredBy (machine_start…) |
 * | busy, no-answer                | the same            | undelivered    | busy, no-answer             |
 * | failed, canceled               | the same            | failed         | Twilio's ErrorCode, or same |
 *
 * A final status also puts `call_outcome` on the incident timeline (with the key pressed). No
 * answer is not an acknowledgement: escalation goes on as planned. The callback URL names the
 * delivery (signed token), so a status never waits for the worker to record the call's sid.
 */
const FINAL = new Set(['completed', 'busy', 'no-answer', 'failed', 'canceled']);

export type CallStatusCallback = {
  deliveryId: string; callSid: string; status: string; answeredBy: string | null; durationSeconds: number | null; errorCode: string | null;
};

export async function applyCallStatus(pool: pg.Pool, log: Logger, cb: CallStatusCallback, now: Date, metrics?: StatusMetrics): Promise<StatusOutcome> {
  const status = cb.status.toLowerCase();
  const machine = status === 'completed' && cb.answeredBy !== null && isMachine(cb.answeredBy);
  const word = machine ? 'answering_machine' : status;
  const code = machine ? cb.answeredBy
    : status === 'busy' || status === 'no-answer' ? status
      : status === 'failed' || status === 'canceled' ? cb.errorCode ?? status : null;
  const result = await withTransaction(pool, async (tx) => {
    const r = await recordStatus(tx, {
      provider: TWILIO_VOICE_PROVIDER, eventId: `${cb.callSid}:${status}`, deliveryId: cb.deliveryId, providerMessageId: cb.callSid,
      status: word, errorCode: code, occurredAt: now,
    }, now);
    if (FINAL.has(status) && r.ref !== undefined && (r.outcome === 'applied' || r.outcome === 'stale')) {
      await recordCallOutcome(tx, r.ref, word as CallOutcome, { answered_by: cb.answeredBy, duration_seconds: cb.durationSeconds }, now);
    }
    return r;
  });
  countStatus(metrics, TWILIO_VOICE_PROVIDER, result.ref?.channel, word, result.outcome);
  if (FINAL.has(status) && result.outcome === 'applied') {
    log.info({ delivery_id: cb.deliveryId, call_sid: cb.callSid, outcome: word, incident_id: result.ref?.incident_id }, 'call ended');
  }
  return result.outcome;
}
