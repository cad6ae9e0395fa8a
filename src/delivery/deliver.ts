import { DelayedError, UnrecoverableError, type Job } from 'bullmq';
import type pg from 'pg';
import { ChannelError, providersOf, ThrottledError, type ChannelName, type Channels, type ErrorClass, type OutboundMessage, type SendResult } from '../channels/types.js';
import type { Clock } from '../clock.js';
import { maskAddress, type Logger } from '../observability/logger.js';
import type { Metrics } from '../observability/metrics.js';
import { isDatabaseUnavailable, prepared } from '../db/pool.js';
import type { AlertRender } from '../incidents/outbound.js';
import { markRepeat } from '../incidents/messages.js';
import { messageText, type MessageText } from '../incidents/render-at-send.js';
import { verificationText } from '../members/phone-verification.js';
import { circuitDownForMs, circuitRetryAfterMs } from './breaker.js';
import { recordSendOutcome } from './carrier-status.js';
import { disableContactChannel, recordFailover } from './feedback.js';
import { batcherPer, Limiter } from '../batcher.js';
import { HUNG_AFTER_MS, type QueueSystem } from '../queue/index.js';
import { getIncidents, type IncidentRow } from '../incidents/repo.js';
import { LEASE_MS, leaseFree, Leases } from './lease.js';
import {
  DELIVERY_BATCH_JOB_NAME, DELIVERY_JOB_NAME, deliveryBackoffMs, deliveryBatchJobId, deliveryJobId, deliveryJobOptions,
  type DeliveryBatchJobData, type DeliveryJobData,
} from './outbox.js';
import { PRIORITY_SQL, type DeliveryPriority } from './priority.js';
import { providersFor, recordProviderFailover } from './providers.js';

/**
 * The delivery job: re-read the row, hand it to the channel, record the outcome.
 *
 * No transaction is held across the provider call. The row's status is the guard: only a
 * `pending` row is sent, and every write after the call is a compare-and-set on
 * `status = 'pending'`, so a row cancelled meanwhile, or finished by a duplicate job, stays as
 * it is. BullMQ runs one job per deterministic id at a time; what remains is at-least-once (a
 * crash between the provider accepting and the row being marked sent resends on retry), which
 * is the right side to err on for an alert.
 *
 * A try that fails while the provider's circuit breaker is open (failing fast, or the failure
 * that opened it) is an outage, not this delivery's fault: it is recorded, never counted as
 * the last try, and the job waits until the breaker lets a trial call through.
 */

export type DeliveryMetrics = Pick<Metrics, 'deliveries' | 'deliveryLatency' | 'providerCalls' | 'providerCallSeconds'> & Partial<Pick<Metrics, 'deliveryStatuses' | 'providerFailovers'>>;

export type DeliveryDeps = {
  pool: pg.Pool;
  channels: Channels;
  clock: Clock;
  log: Logger;
  /** Per provider call (the job's lock is renewed meanwhile: DELIVERY_LOCK in worker.ts). */
  sendTimeoutMs?: number;
  /** Optional: pruuf_deliveries_total and pruuf_delivery_latency_seconds. */
  metrics?: DeliveryMetrics;
  /** A provider circuit open this long: the incident timeline records the channel as down (PROVIDER_FAILOVER_MINUTES). */
  failoverAfterMs?: number;
  /** RECEIPT_TIMEOUT_SECONDS in ms: an SMS or email alert with no receipt this long after it was accepted is repeated (0/undefined: never). */
  receiptTimeoutMs?: number;
  /** LINK_SIGNING_SECRET: opens the sealed code of a phone verification SMS (src/members/phone-verification.ts). */
  linkSecret?: string;
  /** Where a batch's row that must be tried again goes, as a job of its own (batch jobs need it). */
  queues?: QueueSystem;
  /** Deliveries in hand at once in this worker, batch rows and single jobs alike (DELIVERY_CONCURRENCY). */
  concurrency?: number;
  /** BATCH_TURN_WITHIN_MS (tests shorten it). */
  batchTurnWithinMs?: number;
};

export const FAILOVER_AFTER_MS = 5 * 60_000;

export const SEND_TIMEOUT_MS = 15_000;

/** Deliveries in hand at once per worker when DeliveryDeps.concurrency is not given (DELIVERY_CONCURRENCY's default). */
export const DEFAULT_CONCURRENCY = 20;

export type DeliveryOutcome = 'sent' | 'skipped' | 'failed';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/**
 * The provider has accepted: sending again would be a duplicate, so our record of it outlives a
 * database restart (tried again for this long while the database is unreachable; the job's
 * 10 s lock keeps being renewed meanwhile on the Redis backend).
 */
export const RECORD_RETRY_MS = 30_000;
/**
 * A throttle (ThrottledError: our own per-sender budget) asking to wait at most this long is waited
 * for where the delivery stands, up to THROTTLE_WAIT_IN_PLACE_TOTAL_MS in all; a longer wait gives
 * the delivery's place back (deferred, or set aside from its batch) so the rest are not held up.
 */
export const THROTTLE_WAIT_IN_PLACE_MS = 250;
export const THROTTLE_WAIT_IN_PLACE_TOTAL_MS = 1000;
/** A job that finds the database unreachable comes back after this, without spending an attempt. */
export const DATABASE_DOWN_DEFER_MS = 2000;
/** A job handed out again while it still runs in this worker comes back after this. */
export const IN_HAND_RETRY_MS = 1000;
/** A queue call inside the job (moving it to delayed) that takes longer has hung. */
export const QUEUE_CALL_TIMEOUT_MS = 5000;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function whileDatabaseDown<T>(write: () => Promise<T>, log: Logger, fields: object, forMs = RECORD_RETRY_MS): Promise<T> {
  const until = Date.now() + forMs;
  // Short steps: once the database is back the record must land before anything else retries the job.
  for (let wait = 100; ; wait = Math.min(wait * 2, 500)) {
    try {
      return await write();
    } catch (err) {
      if (!isDatabaseUnavailable(err) || Date.now() + wait > until) throw err;
      log.warn({ ...fields, retry_in_ms: wait }, 'database unreachable while recording an accepted delivery; trying again');
      await sleep(wait);
    }
  }
}

/**
 * The provider's breaker is open: retry after `retryAfterMs` without spending one of the job's
 * attempts (deliveryProcessor moves the job to delayed). The try is already recorded.
 */
export class DeliveryDeferredError extends Error {
  constructor(message: string, readonly retryAfterMs: number) {
    super(message);
    this.name = 'DeliveryDeferredError';
  }
}

/** Floor and jitter of a deferral, so deferred jobs neither spin nor arrive all at once. */
export const MIN_DEFER_MS = 50;
export const DEFER_JITTER = 0.25;

export function deferDelayMs(retryAfterMs: number, random: () => number = Math.random): number {
  return Math.round(Math.max(MIN_DEFER_MS, retryAfterMs) * (1 + DEFER_JITTER * random()));
}

type DeliveryRow = {
  id: string;
  channel: ChannelName;
  address: string;
  subject: string | null;
  /** null: an alert rendered now, from its incident and `render` (src/incidents/render-at-send.ts). */
  body: string | null;
  html: string | null;
  render: AlertRender | null;
  kind: string;
  incident_id: string | null;
  contact_id: string | null;
  data: Record<string, string> | null;
  status: 'pending' | 'sent' | 'failed' | 'cancelled';
  created_at: Date;
  /** A copy sent again after no receipt came: the original's id. */
  repeat_of: string | null;
  /** The contact's language (a repeat's marker is written in it). */
  locale: string | null;
  /** The batch whose job sends it (outbox.ts); null once it has a job of its own. */
  job_key: string | null;
};

const ROW_COLUMNS = `d.id, d.channel, d.address, d.subject, d.body, d.html, d.data, d.render, d.kind, d.incident_id, d.contact_id, d.status,
  d.created_at, d.repeat_of, d.job_key, (select c.locale from contacts c where c.id = d.contact_id) as locale`;

const MAX_ERROR_LENGTH = 500;

/** Provider messages often quote the address ("+15551234567 is not a valid number"). */
function cleanError(message: string, address: string): string {
  const masked = address === '' ? message : message.split(address).join(maskAddress(address));
  return masked.length > MAX_ERROR_LENGTH ? `${masked.slice(0, MAX_ERROR_LENGTH - 1)}…` : masked;
}

/** null: not classified (a bug or an unexpected failure): retried like a transient error. */
function classify(err: unknown): ErrorClass | null {
  if (err instanceof ChannelError) return err.errorClass;
  const name = (err as { name?: unknown } | null)?.name;
  if (name === 'TimeoutError' || name === 'AbortError') return 'transient';
  return null;
}

type SentRecord = { id: string; provider: string; provider_message_id: string; sent_at: Date; attempted_at: Date; duration_ms: number; receipt_check_at: Date | null };

/**
 * Sends recorded in ONE statement for all the deliveries of a turn (a batch job's rows, and the
 * jobs running beside it): each row marked sent if still pending, each try logged. Per row: true
 * when it was pending and is now sent.
 */
async function markSentMany(pool: pg.Pool, records: readonly SentRecord[]): Promise<boolean[]> {
  const { rows } = await pool.query<{ id: string }>(prepared(
    'deliveries.mark-sent',
    `with input as (
       select * from json_to_recordset($1::json) as r(id uuid, provider text, provider_message_id text, sent_at timestamptz,
                                                      attempted_at timestamptz, duration_ms int, receipt_check_at timestamptz)
     ), marked as (
       update deliveries d
          set status = 'sent', provider = i.provider, provider_message_id = i.provider_message_id, sent_at = i.sent_at, updated_at = i.sent_at,
              attempts = d.attempts + 1, last_error = null, error_class = null, receipt_check_at = i.receipt_check_at
         from input i
        where d.id = i.id and d.status = 'pending'
       returning d.id
     ), attempt as (
       insert into delivery_attempts (delivery_id, attempted_at, provider, outcome, duration_ms)
       select id, attempted_at, provider, 'accepted', duration_ms from input
     )
     select id from marked`,
    [JSON.stringify(records)],
  ));
  const marked = new Set(rows.map((r) => r.id));
  return records.map((r) => marked.has(r.id));
}

/** The worker's concurrent deliveries share their "sent" records: one statement per turn. */
const sentWriter = batcherPer((pool: pg.Pool) => (records: readonly SentRecord[]) => markSentMany(pool, records), 200);

/** The incidents alerts are rendered from, read together for the deliveries of a turn. */
const incidentReader = batcherPer((pool: pg.Pool) => async (ids: readonly string[]) => {
  const found = new Map((await getIncidents(pool, [...new Set(ids)])).map((i) => [i.id, i]));
  return ids.map((id) => found.get(id) ?? null);
}, 200);

const readIncident = (pool: pg.Pool) => async (id: string): Promise<IncidentRow | undefined> => (await incidentReader(pool).run(id)) ?? undefined;

/** Records a failed try; false when the row was no longer pending (cancelled or finished meanwhile). */
async function markFailedTry(
  pool: pg.Pool, row: DeliveryRow, provider: string, error: string, errorClass: ErrorClass | null,
  final: boolean, attemptedAt: Date, now: Date, durationMs: number,
): Promise<boolean> {
  const { rows } = await pool.query<{ n: number }>(prepared(
    'deliveries.mark-failed-try',
    `with marked as (
       update deliveries
          set attempts = attempts + 1, last_error = $3, error_class = $4, updated_at = $5,
              status = case when $6 then 'failed' else status end
        where id = $1 and status = 'pending'
       returning id
     ), attempt as (
       insert into delivery_attempts (delivery_id, attempted_at, provider, outcome, error_class, error, duration_ms)
       values ($1, $7, $2, 'failed', $4, $3, $8)
     )
     select count(*)::int as n from marked`,
    [row.id, provider, error, errorClass, now, final, attemptedAt, durationMs],
  ));
  return rows[0]?.n === 1;
}

const deliveryRef = (row: DeliveryRow) => ({ id: row.id, incident_id: row.incident_id, contact_id: row.contact_id, channel: row.channel });

/**
 * A delivery is failed for good: a dead address turns that channel off for the contact, and an
 * alert's incident timeline records which of the contact's channels still carry it.
 */
async function afterFinalFailure(deps: DeliveryDeps, row: DeliveryRow, provider: string, err: unknown, error: string): Promise<void> {
  const now = deps.clock();
  try {
    if (err instanceof ChannelError && err.deadAddress !== undefined && row.contact_id !== null && (row.channel === 'email' || row.channel === 'sms')) {
      await disableContactChannel(deps.pool, row.contact_id, row.channel, err.deadAddress, now, row.address);
    }
    if (row.kind === 'alert') await recordFailover(deps.pool, deliveryRef(row), error, now);
    if (err instanceof ChannelError && err.sendStatus !== undefined) {
      await recordSendOutcome(deps.pool, row, { provider, status: err.sendStatus }, now, deps.metrics);
    }
  } catch (e) {
    // The failure itself is recorded; this is bookkeeping on top of it.
    deps.log.error({ delivery_id: row.id, err: { message: (e as Error).message } }, 'could not record the consequences of a failed delivery');
  }
}

/**
 * One try at one delivery. `attemptsMade` counts earlier tries of this job (BullMQ's
 * job.attemptsMade); `maxAttempts` is the job's attempts option.
 * Returns 'sent', 'skipped' (not pending, or gone) or 'failed' (permanent error, or the last
 * try). Throws on a retryable failure so that BullMQ retries with backoff: a
 * DeliveryDeferredError when the provider's circuit is open (never the last try).
 */
export async function processDelivery(
  deps: DeliveryDeps, deliveryId: string, attemptsMade: number, maxAttempts: number, owner: string = deliveryJobId(deliveryId), leases?: Leases,
): Promise<DeliveryOutcome> {
  // Read and leased in one statement. A row still in a batch (its own job was added when the batch
  // was not known: outbox.ts) leaves it: the batch's job, when it runs, leaves it alone.
  const { rows } = await deps.pool.query<DeliveryRow>(prepared(
    'deliveries.take-one',
    `update deliveries d set job_key = null, lease_owner = $2, lease_until = now() + make_interval(secs => $3)
      where d.id = $1 and d.status = 'pending' and ${leaseFree('$2')}
     returning ${ROW_COLUMNS}`,
    [deliveryId, owner, (leases?.leaseMs ?? LEASE_MS) / 1000],
  ));
  const row = rows[0];
  if (row === undefined) {
    // Held by a run elsewhere (its batch's job, or this job run twice by the queue): that run sends it,
    // or, if it died, its lease lapses; this job comes back then instead of ending with the row pending.
    // (Still pending but free by now, let go between the two statements: tried again at once.)
    const { rows: [held] } = await deps.pool.query<{ wait_ms: number | null }>(prepared(
      'deliveries.held-one',
      `select ceil(extract(epoch from lease_until - now()) * 1000)::int as wait_ms from deliveries where id = $1 and status = 'pending'`,
      [deliveryId],
    ));
    if (held !== undefined) throw new DeliveryDeferredError('being sent by another run', Math.max(0, held.wait_ms ?? 0) + HELD_SLACK_MS);
    deps.log.debug({ delivery_id: deliveryId }, 'delivery not pending; skipped');
    deps.metrics?.deliveries.inc({ channel: 'unknown', kind: 'unknown', outcome: 'skipped' });
    return 'skipped';
  }
  leases?.hold([row.id], owner);
  try {
    return await deliverRow(deps, row, attemptsMade, maxAttempts);
  } catch (err) {
    // Tried again later, maybe in another worker: the row is let go now, not when its lease lapses.
    await deps.pool.query(`update deliveries set lease_owner = null, lease_until = null where id = $1 and lease_owner = $2 and status = 'pending'`, [row.id, owner])
      .catch(() => undefined);
    throw err;
  } finally {
    leases?.forget([row.id]);
  }
}

/** A job that found its rows held elsewhere comes back this long after their lease ends. */
const HELD_SLACK_MS = 250;

/** See processDelivery: one try at a row read as pending. */
async function deliverRow(deps: DeliveryDeps, row: DeliveryRow, attemptsMade: number, maxAttempts: number): Promise<DeliveryOutcome> {
  const count = (outcome: DeliveryOutcome | 'retry') => deps.metrics?.deliveries.inc({ channel: row.channel, kind: row.kind, outcome });

  const configured = providersOf(deps.channels[row.channel]);
  const primary = configured[0];
  if (primary === undefined) {
    // A worker built without this channel (calls, in a harness for messages only): nothing can place it.
    await deps.pool.query(`update deliveries set status = 'cancelled', last_error = 'no provider for this channel in this worker', updated_at = $2 where id = $1 and status = 'pending'`, [row.id, deps.clock()]);
    deps.log.warn({ delivery_id: row.id, channel: row.channel, kind: row.kind }, 'delivery cancelled: this worker has no provider for its channel');
    count('skipped');
    return 'skipped';
  }
  let text: MessageText;
  try {
    // A verification code is sealed in its row (members read their own deliveries): opened only here.
    text = row.kind === 'verification'
      ? { subject: null, body: verificationText(deps.linkSecret, row), html: null, data: null }
      : await messageText(deps.pool, row, { repeat: row.repeat_of !== null, incident: readIncident(deps.pool) });
  } catch (err) {
    if (isDatabaseUnavailable(err)) throw err;
    // Its data cannot make a message (a corrupt snapshot, a row an older version wrote): trying
    // again renders the same nothing. Failed at once, and the contact's other channels carry it.
    const error = cleanError(`could not render the message: ${err instanceof Error ? err.message : String(err)}`, row.address);
    const now = deps.clock();
    await markFailedTry(deps.pool, row, primary.provider, error, 'permanent', true, now, now, 0);
    deps.log.error({ delivery_id: row.id, incident_id: row.incident_id, channel: row.channel, kind: row.kind, error }, 'delivery failed: its message could not be rendered');
    count('failed');
    await afterFinalFailure(deps, row, primary.provider, err, error);
    return 'failed';
  }
  // A repeat says so, in the contact's language, and goes only where the message has not been.
  // (An alert rendered now says it in its own words; a stored text gets the marker added.)
  if (row.repeat_of !== null && row.body !== null) text = markRepeat(text, row.channel, row.locale);
  const providers = await providersFor(deps.pool, row, configured);
  if (providers.length === 0) {
    await deps.pool.query(`update deliveries set status = 'cancelled', last_error = 'no provider left that has not carried it', updated_at = $2 where id = $1 and status = 'pending'`, [row.id, deps.clock()]);
    count('skipped');
    return 'skipped';
  }
  const msg: OutboundMessage = {
    deliveryId: row.id, channel: row.channel, to: row.address, subject: text.subject, body: text.body,
    html: text.html, kind: row.kind, incidentId: row.incident_id, data: text.data,
  };

  // The providers in order: a transient failure or an open breaker moves the delivery to the next
  // one at once; an error about the address (permanent) stops here, since
  // another provider would get the same answer (the contact's other channels carry the alert).
  let waitMs: number | undefined;
  let sent: { result: SendResult; attemptedAt: Date; durationMs: number; receipts: boolean } | undefined;
  let lastError = '';
  let lastClass: ErrorClass | null = null;
  // A provider earlier in this pass failed for its own reasons (down, slow): a later provider's "bad
  // address" is then only a fallback's word (its own suppression list, its own rules) and does not end
  // the delivery or turn the address off; the next pass tries the first provider again.
  let earlierFailed = false;
  for (const [i, channel] of providers.entries()) {
    const next = providers[i + 1];
    const logFields = {
      delivery_id: row.id, channel: row.channel, kind: row.kind, to: maskAddress(row.address),
      provider: channel.provider, attempt: attemptsMade + 1, max_attempts: maxAttempts,
    };
    let attemptedAt = deps.clock();
    let started = performance.now();
    try {
      let waited = 0;
      for (;;) {
        try {
          const result = await channel.send(msg, AbortSignal.timeout(deps.sendTimeoutMs ?? SEND_TIMEOUT_MS));
          sent = { result, attemptedAt, durationMs: Math.round(performance.now() - started), receipts: channel.receipts !== false };
          break;
        } catch (err) {
          // A sender's budget that frees up within moments (many sends of one burst met at its
          // slot): waited for here, in the delivery's place, instead of a queue round trip each.
          const wait = err instanceof ThrottledError ? err.retryAfterMs ?? 0 : Infinity;
          if (wait > THROTTLE_WAIT_IN_PLACE_MS || waited + wait > THROTTLE_WAIT_IN_PLACE_TOTAL_MS) throw err;
          waited += wait;
          await sleep(wait);
          attemptedAt = deps.clock();
          started = performance.now();
        }
      }
      break;
    } catch (err) {
      if (err instanceof ThrottledError) {
        // Our own per-sender budget says "not yet" (carrier rules for that sender): the delivery
        // waits for it rather than spilling onto the next provider. Not a try, and not an attempt.
        waitMs = Math.min(waitMs ?? Infinity, err.retryAfterMs ?? 0);
        deps.log.debug({ ...logFields, retry_after_ms: err.retryAfterMs }, 'delivery throttled; will come back');
        break;
      }
      const durationMs = Math.round(performance.now() - started);
      const errorClass = classify(err);
      const error = cleanError(err instanceof Error ? err.message : String(err), row.address);
      lastError = error;
      lastClass = errorClass;
      // Read right after the failure: open now means this try failed into (or opened) an outage.
      // The provider's own Retry-After counts the same way: it asked us to wait, not to give up.
      const retryAfterMs = errorClass === 'permanent' ? undefined
        : err instanceof ChannelError && err.retryAfterMs !== undefined ? err.retryAfterMs
          : circuitRetryAfterMs(channel);
      if (retryAfterMs !== undefined) waitMs = Math.min(waitMs ?? Infinity, retryAfterMs);
      // (On the job's last attempt with nothing asking to wait, the fallback's word stands: the row must end.)
      const fallbackSaysDead = errorClass === 'permanent' && earlierFailed && !(waitMs === undefined && attemptsMade + 1 >= maxAttempts);
      const final = (errorClass === 'permanent' && !fallbackSaysDead) || (next === undefined && waitMs === undefined && attemptsMade + 1 >= maxAttempts);
      earlierFailed = true;
      deps.metrics?.providerCalls.inc({ provider: channel.provider, outcome: 'failed', error_class: errorClass ?? 'unclassified' });
      deps.metrics?.providerCallSeconds.observe({ provider: channel.provider, outcome: 'failed' }, durationMs / 1000);
      const stillPending = await markFailedTry(deps.pool, row, channel.provider, error, errorClass, final, attemptedAt, deps.clock(), durationMs);
      if (!stillPending) {
        // Cancelled while this provider was failing (the member checked in): the next provider must not send it.
        deps.log.info({ ...logFields }, 'delivery no longer pending after a failed try; not sent elsewhere');
        count('skipped');
        return 'skipped';
      }
      if (final) {
        deps.log.warn({ ...logFields, error_class: errorClass, error, duration_ms: durationMs }, 'delivery failed');
        count('failed');
        await afterFinalFailure(deps, row, channel.provider, err, error);
        return 'failed';
      }
      if (fallbackSaysDead) {
        deps.log.info({ ...logFields, error_class: errorClass, error }, 'a fallback provider refused the address while the first was failing; retrying the first later');
        break;
      }
      if (next !== undefined) {
        deps.log.info({ ...logFields, error_class: errorClass, error, duration_ms: durationMs, next: next.provider }, 'delivery try failed; trying the next provider now');
        await failover(deps, row, channel.provider, next.provider, error);
        continue;
      }
      deps.log.info({ ...logFields, error_class: errorClass, error, duration_ms: durationMs, retry_after_ms: retryAfterMs }, 'delivery try failed on every provider; will retry');
    }
  }

  if (sent === undefined) {
    // Every provider failed or asked to wait. The channel counts as down once all of them have been for a while.
    const down = providers.map((p) => circuitDownForMs(p));
    if (down.every((d) => d !== undefined) && Math.min(...(down as number[])) >= (deps.failoverAfterMs ?? FAILOVER_AFTER_MS)) {
      await recordFailover(deps.pool, deliveryRef(row), `${providers.map((p) => p.provider).join(', ')} down for ${Math.round(Math.min(...(down as number[])) / 60_000)} min`, deps.clock());
    }
    count('retry');
    const what = lastError === '' ? 'throttled' : `delivery try failed (${lastClass ?? 'unclassified'}): ${lastError}`;
    if (waitMs !== undefined) throw new DeliveryDeferredError(what, waitMs);
    // A fresh error: the original may carry the provider's response (addresses, bodies).
    throw new Error(what);
  }

  const { result, attemptedAt, durationMs, receipts } = sent;
  const logFields = { delivery_id: row.id, channel: row.channel, kind: row.kind, to: maskAddress(row.address), provider: result.provider, attempt: attemptsMade + 1 };
  deps.metrics?.providerCalls.inc({ provider: result.provider, outcome: 'accepted', error_class: 'none' });
  deps.metrics?.providerCallSeconds.observe({ provider: result.provider, outcome: 'accepted' }, durationMs / 1000);
  const sentAt = deps.clock();
  // Alerts by SMS and email wait for a receipt (from a provider that can send us one), when another provider could carry a repeat.
  const receiptCheckAt = row.kind === 'alert' && (row.channel === 'sms' || row.channel === 'email') && (deps.receiptTimeoutMs ?? 0) > 0 && receipts
    && providers.some((p) => p.provider !== result.provider) ? new Date(sentAt.getTime() + deps.receiptTimeoutMs!) : null;
  const record: SentRecord = {
    id: row.id, provider: result.provider, provider_message_id: result.providerMessageId, sent_at: sentAt, attempted_at: attemptedAt, duration_ms: durationMs, receipt_check_at: receiptCheckAt,
  };
  const marked = await whileDatabaseDown(() => sentWriter(deps.pool).run(record), deps.log, logFields);
  // Same clock as sent_at, so the metric matches sent_at - created_at in the table.
  deps.metrics?.deliveryLatency.observe({ channel: row.channel, kind: row.kind }, Math.max(0, sentAt.getTime() - row.created_at.getTime()) / 1000);
  count('sent');
  if (!marked) {
    deps.log.info({ ...logFields }, 'delivery changed while sending; left as it was');
    return 'sent';
  }
  deps.log.info({ ...logFields, duration_ms: durationMs }, 'delivery sent');
  // Statuses from the provider's answer, and callbacks that came before this record.
  await recordSendOutcome(deps.pool, row, result, sentAt, deps.metrics).catch((err: Error) => {
    deps.log.warn({ delivery_id: row.id, err: { message: err.message } }, 'could not record the provider status of a sent delivery; the reconciler applies held statuses');
  });
  return 'sent';
}

/** A delivery moves to the next provider: on its incident's timeline, and counted. */
async function failover(deps: DeliveryDeps, row: DeliveryRow, from: string, to: string, reason: string): Promise<void> {
  deps.metrics?.providerFailovers?.inc({ channel: row.channel, from, to });
  if (row.kind !== 'alert') return;
  await recordProviderFailover(deps.pool, deliveryRef(row), from, to, reason, deps.clock()).catch((err: Error) => {
    deps.log.warn({ delivery_id: row.id, err: { message: err.message } }, 'could not record a provider failover on the timeline');
  });
}

export type BatchOutcome = 'batch';

/**
 * A batch row whose turn has not come this long after its job started is set aside with a job of
 * its own. With the send timeout (15 s) and the record retry (30 s) the job then never holds a row
 * anywhere near HUNG_AFTER_MS (90 s), after which its worker would be replaced and the job run again.
 */
export const BATCH_TURN_WITHIN_MS = 30_000;

/**
 * A batch job (outbox.ts): its pending rows, all tried at once, each exactly as processDelivery
 * tries one (failover, final failures, records), with the batch's reads and writes shared
 * (sentWriter, incidentReader: one statement per turn) and, through the channels, the providers' bulk
 * calls. A row that must be tried again (every provider failed, a throttle, an open breaker) is
 * set aside: taken out of the batch and given a job of its own at its time (its backoff, or the
 * provider's wait), so it never holds the others up nor makes them go again. An unreachable
 * database defers the whole batch (what was sent is recorded; the rest is retried).
 */
export type BatchRun = {
  /** The job's attemptsMade and attempts option, and its backoff's base delay. */
  attemptsMade: number;
  maxAttempts: number;
  backoffDelayMs?: number;
  /** The worker's limit on deliveries in hand (one per worker; a fresh one when not given). */
  limit?: Limiter;
  /** Set when the worker shuts down: rows not started yet are set aside. */
  stopping?: { readonly now: boolean };
  /** The job's priority: its rows wait for the limit in this order. */
  priority?: number;
  /** Who holds the rows (lease.ts): the job id and this process. */
  owner?: string;
  leases?: Leases;
};

export async function processDeliveryBatch(deps: DeliveryDeps, jobKey: string, run: BatchRun): Promise<BatchOutcome> {
  const { attemptsMade, maxAttempts, backoffDelayMs } = run;
  const limit = run.limit ?? new Limiter(deps.concurrency ?? DEFAULT_CONCURRENCY);
  const owner = run.owner ?? deliveryBatchJobId(jobKey);
  // Read and leased in one statement: the rows no other run holds (the queue may run one job twice at once: lease.ts).
  const { rows } = await deps.pool.query<DeliveryRow>(prepared(
    'deliveries.take-batch',
    `update deliveries d set lease_owner = $2, lease_until = now() + make_interval(secs => $3)
      where d.job_key = $1 and d.status = 'pending' and ${leaseFree('$2')}
     returning ${ROW_COLUMNS}`,
    [jobKey, owner, (run.leases?.leaseMs ?? LEASE_MS) / 1000],
  ));
  run.leases?.hold(rows.map((r) => r.id), owner);
  try {
    const started = Date.now();
    const results = await Promise.allSettled(rows.map((row) => limit.run(async () => {
      // Its turn came late (the worker's limit is busy with slow sends): given its own job instead, so
      // this job stays far shorter than a hung one (HUNG_AFTER_MS) and is never taken for one.
      if (run.stopping?.now === true || Date.now() - started > (deps.batchTurnWithinMs ?? BATCH_TURN_WITHIN_MS)) return 'late' as const;
      return deliverRow(deps, row, attemptsMade, maxAttempts);
    }, run.priority ?? 0)));
    // A row the batch tried spent one of its attempts; a late or deferred one did not.
    const left = maxAttempts - attemptsMade;
    const again: SetAside[] = [];
    let databaseDown: unknown;
    results.forEach((r, i) => {
      const id = rows[i]!.id;
      if (r.status === 'fulfilled') {
        if (r.value === 'late') again.push({ id, delayMs: 0, attempts: left });
      } else if (isDatabaseUnavailable(r.reason)) {
        databaseDown ??= r.reason;
      } else if (r.reason instanceof DeliveryDeferredError) {
        again.push({ id, delayMs: deferDelayMs(r.reason.retryAfterMs), attempts: left });
      } else {
        again.push({ id, delayMs: deliveryBackoffMs(attemptsMade + 1, backoffDelayMs), attempts: Math.max(1, left - 1) });
      }
    });
    if (again.length > 0) await setAside(deps, jobKey, owner, again, backoffDelayMs);
    if (databaseDown !== undefined) throw databaseDown;
  } finally {
    run.leases?.forget(rows.map((r) => r.id));
  }
  // Rows of the batch still pending that this run did not have (another run held them, or let them
  // go meanwhile): this job comes back once their lease ends, so they are never left without a job.
  const { rows: [left] } = await deps.pool.query<{ n: number; wait_ms: number | null }>(prepared(
    'deliveries.batch-left',
    `select count(*)::int as n, ceil(extract(epoch from max(d.lease_until) - now()) * 1000)::int as wait_ms
       from deliveries d where d.job_key = $1 and d.status = 'pending' and d.lease_owner is distinct from $2`,
    [jobKey, owner],
  ));
  if (left !== undefined && left.n > 0) throw new DeliveryDeferredError('some of the batch is being sent by another run', Math.max(0, left.wait_ms ?? 0) + HELD_SLACK_MS);
  return 'batch';
}

type SetAside = { id: string; delayMs: number; attempts: number };

/**
 * Rows of a batch to be tried again on their own: out of the batch (job_key cleared, only while
 * still pending and still in it), then one job each, delayed. The job ids are the rows' own, so
 * the reconciler's re-add is a no-op beside them, with the attempts each has left.
 */
async function setAside(deps: DeliveryDeps, jobKey: string, owner: string, rows: SetAside[], backoffDelayMs: number | undefined): Promise<void> {
  const { rows: taken } = await deps.pool.query<{ id: string; priority: DeliveryPriority }>(prepared(
    'deliveries.set-aside',
    `update deliveries d set job_key = null, lease_owner = null, lease_until = null
      where d.id = any($1::uuid[]) and d.job_key = $2 and d.status = 'pending' and d.lease_owner = $3
     returning d.id, (${PRIORITY_SQL}) as priority`,
    [rows.map((r) => r.id), jobKey, owner],
  ));
  if (taken.length === 0) return;
  const byId = new Map(rows.map((r) => [r.id, r]));
  try {
    if (deps.queues === undefined) throw new Error('no queue to put them on');
    await deps.queues.queue('delivery').addBulk(taken.map(({ id, priority }) => ({
      name: DELIVERY_JOB_NAME, data: { deliveryId: id } satisfies DeliveryJobData,
      opts: {
        ...deliveryJobOptions(id, priority, { attempts: byId.get(id)!.attempts, ...(backoffDelayMs === undefined ? {} : { backoffDelayMs }) }),
        delay: byId.get(id)!.delayMs,
      },
    })));
    deps.log.info({ job_key: jobKey, deliveries: taken.length }, 'deliveries of a batch set aside to be tried again on their own');
  } catch (err) {
    // Pending and out of the batch: the reconciler gives each its job within a minute.
    deps.log.warn({ job_key: jobKey, deliveries: taken.length, err: { message: (err as Error).message } }, 'could not queue deliveries set aside from a batch; the reconciler will');
  }
}

/**
 * The BullMQ processor for the `delivery` queue. A deferred try (provider circuit open) moves
 * the job to delayed until the breaker lets a trial through, without spending an attempt: an
 * outage longer than the job's attempts never marks an alert failed. Without a lock token
 * (called outside a worker) it falls back to an ordinary retry.
 */
export function deliveryProcessor(deps: DeliveryDeps): (job: Job, token?: string) => Promise<DeliveryOutcome | BatchOutcome> {
  // One limit for the worker: however many jobs are in hand, at most this many deliveries are.
  const limit = new Limiter(deps.concurrency ?? DEFAULT_CONCURRENCY);
  // Shutting down (SIGTERM): batch rows not started yet are set aside with jobs of their own, so
  // the batch jobs in hand end with the sends already under way instead of running on.
  const stopping = { now: false };
  deps.queues?.beforeClose(() => {
    stopping.now = true;
    limit.open();
  });
  // The rows in hand, their leases renewed while this process lives (lease.ts).
  const leases = new Leases(deps.pool, deps.log);
  deps.queues?.afterClose(() => leases.stop());
  // The jobs in hand here, by id: the queue may hand out one a second time while it still runs.
  const inHand = new Map<string, number>();
  return async (job, token) => {
    const jobId = job.id ?? '';
    const owner = leases.owner(jobId);
    const run = async (): Promise<DeliveryOutcome | BatchOutcome> => {
      const since = inHand.get(jobId);
      if (since !== undefined && Date.now() - since < HUNG_AFTER_MS) {
        throw new DeliveryDeferredError('this job is already running in this worker', IN_HAND_RETRY_MS);
      }
      const mine = Date.now();
      inHand.set(jobId, mine);
      try {
        if (job.name === DELIVERY_BATCH_JOB_NAME) {
          const { jobKey } = (job.data ?? {}) as Partial<DeliveryBatchJobData>;
          if (typeof jobKey !== 'string' || !UUID.test(jobKey)) throw new UnrecoverableError('delivery batch job without a valid jobKey');
          return await processDeliveryBatch(deps, jobKey, {
            attemptsMade: job.attemptsMade, maxAttempts: job.opts.attempts ?? 1, backoffDelayMs: (job.opts.backoff as { delay?: number } | undefined)?.delay,
            limit, stopping, priority: job.opts.priority ?? 0, owner, leases,
          });
        }
        const { deliveryId } = (job.data ?? {}) as Partial<DeliveryJobData>;
        if (typeof deliveryId !== 'string' || !UUID.test(deliveryId)) throw new UnrecoverableError('delivery job without a valid deliveryId');
        return await limit.run(() => processDelivery(deps, deliveryId, job.attemptsMade, job.opts.attempts ?? 1, owner, leases), job.opts.priority ?? 0);
      } finally {
        if (inHand.get(jobId) === mine) inHand.delete(jobId);
      }
    };
    try {
      return await run();
    } catch (err) {
      // An unreachable database is an outage, not this delivery's fault: no attempt is spent.
      const deferred = err instanceof DeliveryDeferredError ? err
        : isDatabaseUnavailable(err) ? new DeliveryDeferredError('database unreachable', DATABASE_DOWN_DEFER_MS) : undefined;
      if (deferred === undefined || token === undefined) throw err;
      // Bounded: on a queue connection that has not recovered from a restart this call can hang,
      // holding the worker's slot for good. Failing instead frees it (the try is retried).
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        job.moveToDelayed(Date.now() + deferDelayMs(deferred.retryAfterMs), token),
        new Promise<never>((_, reject) => { timer = setTimeout(() => reject(new Error(`could not defer the job: ${deferred.message}`)), QUEUE_CALL_TIMEOUT_MS); }),
      ]).finally(() => clearTimeout(timer));
      throw new DelayedError();
    }
  };
}
