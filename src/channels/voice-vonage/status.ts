import type pg from 'pg';
import { withTransaction } from '../../db/pool.js';
import { countStatus, recordStatus, type StatusMetrics, type StatusOutcome } from '../../delivery/carrier-status.js';
import { recordCallOutcome, type CallOutcome } from '../../incidents/call-answers.js';
import type { Logger } from '../../observability/logger.js';
import { VONAGE_VOICE_PROVIDER } from './index.js';

/**
 * A Vonage call's events (POST to the event_url), in the words Twilio's calls use on the delivery
 * (voice-twilio/status.ts; carrier-status.ts keeps each once and never moves backwards), so a call
 * reads the same whichever provider placed it:
 *
 * | Vonage status           | provider_status   | carrier_status | carrier_error_code                 |
 * |-------------------------|-------------------|----------------|------------------------------------|
 * | started                 | initiated         | (none yet)     |                                    |
 * | ringing                 | ringing           | (none yet)     |                                    |
 * | answered                | in-progress       | (none yet)     |                                    |
 * | completed               | completed         | delivered      |                                    |
 * | machine (voicemail)     | answering_machine | undelivered    | machine                            |
 * | completed after machine | answering_machine | undelivered    | machine                            |
 * | busy                    | busy              | undelivered    | busy                               |
 * | timeout, unanswered     | no-answer         | undelivered    | timeout, unanswered                |
 * | failed, rejected        | failed            | failed         | Vonage's `detail`, else the status |
 * | cancelled               | canceled          | failed         | Vonage's `detail`, else cancelled  |
 * Other events (transfer, human, input, record…) say nothing about the call's outcome: ignored.
 *
 * A final status puts `call_outcome` on the incident timeline (with the key pressed), once: with
 * machine detection Vonage reports `machine` and then `completed`, and the second adds nothing.
 * No answer is not an acknowledgement: escalation goes on as planned.
 */
const WORDS: Record<string, { word: string; final: boolean; code?: string }> = {
  started: { word: 'initiated', final: false },
  ringing: { word: 'ringing', final: false },
  answered: { word: 'in-progress', final: false },
  completed: { word: 'completed', final: true },
  machine: { word: 'answering_machine', final: true, code: 'machine' },
  busy: { word: 'busy', final: true, code: 'busy' },
  timeout: { word: 'no-answer', final: true, code: 'timeout' },
  unanswered: { word: 'no-answer', final: true, code: 'unanswered' },
  failed: { word: 'failed', final: true },
  rejected: { word: 'failed', final: true },
  cancelled: { word: 'canceled', final: true },
};

export type VonageCallEvent = {
  deliveryId: string;
  uuid: string;
  status: string;
  /** Vonage's reason for a failed, rejected or cancelled call (invalid_number, restricted…). */
  detail: string | null;
  durationSeconds: number | null;
};

export async function applyVonageCallEvent(
  pool: pg.Pool, log: Logger, ev: VonageCallEvent, now: Date, metrics?: StatusMetrics,
): Promise<StatusOutcome | 'ignored'> {
  const status = ev.status.toLowerCase();
  const known = WORDS[status];
  if (known === undefined) return 'ignored';
  const result = await withTransaction(pool, async (tx) => {
    // The call was a voicemail: its `completed` says so too, and its outcome is already recorded.
    const machine = status === 'completed' && (await tx.query(
      'select 1 from delivery_statuses where provider = $1 and event_id = $2', [VONAGE_VOICE_PROVIDER, `${ev.uuid}:machine`],
    )).rowCount === 1;
    const word = machine ? 'answering_machine' : known.word;
    const code = machine ? 'machine' : known.code ?? (known.word === 'failed' || known.word === 'canceled' ? ev.detail ?? status : null);
    const r = await recordStatus(tx, {
      provider: VONAGE_VOICE_PROVIDER, eventId: `${ev.uuid}:${status}`, deliveryId: ev.deliveryId, providerMessageId: ev.uuid,
      status: word, errorCode: code, occurredAt: now,
    }, now);
    if (known.final && !machine && r.ref !== undefined && (r.outcome === 'applied' || r.outcome === 'stale')) {
      await recordCallOutcome(tx, r.ref, word as CallOutcome, { answered_by: status === 'machine' ? 'machine' : null, duration_seconds: ev.durationSeconds }, now);
    }
    return { ...r, word };
  });
  countStatus(metrics, VONAGE_VOICE_PROVIDER, result.ref?.channel, result.word, result.outcome);
  if (known.final && result.outcome === 'applied') {
    log.info({ delivery_id: ev.deliveryId, call_uuid: ev.uuid, outcome: result.word, incident_id: result.ref?.incident_id }, 'call ended');
  }
  return result.outcome;
}
