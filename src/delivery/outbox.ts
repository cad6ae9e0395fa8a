import { randomUUID } from 'node:crypto';
import type { JobsOptions } from 'bullmq';
import type { ChannelName } from '../channels/types.js';
import type { Queryable } from '../db/pool.js';
import type { Logger } from '../observability/logger.js';
import type { QueueSystem } from '../queue/index.js';
import { deliveryPriorities, prioritiesOfNew, PRIORITY_LOOKUP_TIMEOUT_MS, type DeliveryJobRef, type DeliveryPriority } from './priority.js';

/**
 * The outbox: a delivery is a row first (committed with the state change that caused it), and
 * a queue job second. Jobs carry the id only and use a deterministic job id, so re-enqueueing
 * (after commit, and by the reconciler) never duplicates.
 */

export type DeliveryKind = 'invitation' | 'reminder' | 'alert' | 'all_clear' | 'ack_notice' | 'ack_lapsed' | 'check_in_note' | 'verification';

export type NewDelivery = {
  memberId: string | null;
  contactId: string | null;
  kind: DeliveryKind;
  channel: ChannelName;
  address: string;
  subject?: string | null;
  /** null: rendered when the worker sends it, from `render` (see src/incidents/render-at-send.ts). */
  body: string | null;
  html?: string | null;
  incidentId?: string | null;
  /** The incident step an alert belongs to; with the kind, contact and channel it is unique per incident. */
  stepNo?: number | null;
  /** Push only: the data payload (string values) sent beside the title and body. */
  data?: Record<string, string> | null;
  /** With `body` null: what the message is rendered from at send time (an alert's round, contact and link; a verification's sealed code). */
  render?: object | null;
};

export const DELIVERY_JOB_NAME = 'deliver';
export type DeliveryJobData = { deliveryId: string };

export const deliveryJobId = (deliveryId: string): string => `delivery-${deliveryId}`;

/**
 * A batch of deliveries in one job (issue 19): rows written together at one priority share a
 * `job_key`, and their job sends them all at once (deliver.ts), so a burst puts thousands of jobs
 * on the queue instead of tens of thousands and records their outcomes in a few statements.
 */
export const DELIVERY_BATCH_JOB_NAME = 'deliver-batch';
export type DeliveryBatchJobData = { jobKey: string };
export const deliveryBatchJobId = (jobKey: string): string => `deliveries-${jobKey}`;
/** Rows per batch: enough to fill a provider's bulk call, few enough that a batch is one quick job. */
export const DELIVERY_BATCH_MAX = 50;

export type DeliveryJobSettings = {
  /** Tries per job, the first included. The last failed try marks the row failed. */
  attempts?: number;
  /** Base of the backoff: delay · 2^(try-1), capped at DELIVERY_BACKOFF_CAP_MS, minus up to 50 % jitter. */
  backoffDelayMs?: number;
};

/**
 * Tries spent only on failures that are the delivery's own (an open breaker, a Retry-After or an
 * unreachable database spend none). 12, not 8: against a provider failing 35 % of calls, one
 * delivery in ~300,000 ends failed instead of one in ~4,000.
 */
export const DELIVERY_ATTEMPTS = 12;
export const DELIVERY_BACKOFF_MS = 1000;
/**
 * An alert is never left waiting long between two tries: exponential from DELIVERY_BACKOFF_MS,
 * but never more than 30 s (plain exponential would wait 4+ minutes before a 9th try). All 12
 * tries fit in ~3.5 minutes of backoff plus the send timeouts.
 */
export const DELIVERY_BACKOFF_CAP_MS = 30_000;
/** The delivery worker's custom BullMQ backoff strategy (see deliveryBackoffMs). */
export const DELIVERY_BACKOFF_TYPE = 'delivery';

/** Delay before the next try after `attemptsMade` failed tries: capped exponential, jittered down by up to half. */
export function deliveryBackoffMs(attemptsMade: number, baseMs: number = DELIVERY_BACKOFF_MS, random: () => number = Math.random): number {
  const full = Math.min(DELIVERY_BACKOFF_CAP_MS, baseMs * 2 ** Math.max(0, attemptsMade - 1));
  return Math.round(full * (1 - 0.5 * random()));
}

/** `priority`: see priority.ts (first alerts first when jobs wait). */
export function deliveryJobOptions(deliveryId: string, priority: DeliveryPriority, s: DeliveryJobSettings = {}): JobsOptions {
  return {
    jobId: deliveryJobId(deliveryId),
    priority,
    attempts: s.attempts ?? DELIVERY_ATTEMPTS,
    backoff: { type: DELIVERY_BACKOFF_TYPE, delay: s.backoffDelayMs ?? DELIVERY_BACKOFF_MS },
    // Gone once finished, so the reconciler can re-add a still-pending row; the handler's
    // status check makes a re-added job for a finished row a no-op.
    removeOnComplete: true,
    removeOnFail: true,
  };
}

/**
 * Inserts rows in ONE statement, inside the caller's transaction. Returns the ids inserted, in
 * input order: an incident message that already exists (same step, contact, channel, kind) is
 * skipped, so a retried step never sends twice. `fresh`: the rows belong to incidents this
 * transaction just created, so none can exist yet; inserted without ON CONFLICT (no speculative
 * insertion: a burst of misses writes thousands), and a duplicate would be an error, not a skip.
 */
export async function insertDeliveries(db: Queryable, rows: NewDelivery[], opts: { fresh?: boolean } = {}): Promise<string[]> {
  if (rows.length === 0) return [];
  const ids = rows.map(() => randomUUID());
  const keys = batchKeys(rows);
  // One JSON document for the batch: JSON.stringify and PostgreSQL's JSON parser are far cheaper
  // than a dozen text arrays built and escaped element by element (a sweep writes thousands).
  const batch = rows.map((r, i) => ({
    id: ids[i], member_id: r.memberId, contact_id: r.contactId, kind: r.kind, channel: r.channel, address: r.address,
    subject: r.subject ?? null, body: r.body, html: r.html ?? null, incident_id: r.incidentId ?? null, step_no: r.stepNo ?? null,
    data: r.data ?? null, render: r.render ?? null, job_key: keys[i],
  }));
  const { rows: inserted } = await db.query<{ id: string }>(
    `insert into deliveries (id, member_id, contact_id, kind, channel, address, subject, body, html, incident_id, step_no, data, render, job_key)
     select id, member_id, contact_id, kind, channel, address, subject, body, html, incident_id, step_no, data, render, job_key
       from json_to_recordset($1::json) as r(id uuid, member_id uuid, contact_id uuid, kind text, channel text, address text,
                                              subject text, body text, html text, incident_id uuid, step_no int, data jsonb, render jsonb, job_key uuid)
     ${opts.fresh === true ? '' : 'on conflict do nothing'}
     returning id`,
    [JSON.stringify(batch)],
  );
  if (inserted.length === ids.length) return ids;
  const kept = new Set(inserted.map((r) => r.id));
  return ids.filter((id) => kept.has(id));
}

/** The batch key of each row, in order: rows of one priority, in chunks of DELIVERY_BATCH_MAX. */
function batchKeys(rows: NewDelivery[]): string[] {
  const open = new Map<DeliveryPriority, { key: string; size: number }>();
  return prioritiesOfNew(rows).map((priority) => {
    let batch = open.get(priority);
    if (batch === undefined || batch.size >= DELIVERY_BATCH_MAX) {
      batch = { key: randomUUID(), size: 0 };
      open.set(priority, batch);
    }
    batch.size += 1;
    return batch.key;
  });
}

/**
 * Adds delivery jobs: one per batch (the most urgent priority among its rows), one per row without
 * a batch. Deterministic ids: a job already queued is a no-op and keeps the priority it was added
 * with. Throws on failure.
 */
export async function addDeliveryJobs(queues: QueueSystem, jobs: DeliveryJobRef[], settings: DeliveryJobSettings = {}): Promise<void> {
  if (jobs.length === 0) return;
  const batches = new Map<string, DeliveryPriority>();
  const singles: DeliveryJobRef[] = [];
  for (const j of jobs) {
    if (j.jobKey === undefined || j.jobKey === null) singles.push(j);
    else batches.set(j.jobKey, Math.min(batches.get(j.jobKey) ?? j.priority, j.priority) as DeliveryPriority);
  }
  await queues.queue('delivery').addBulk([
    ...[...batches].map(([jobKey, priority]) => ({
      name: DELIVERY_BATCH_JOB_NAME, data: { jobKey } satisfies DeliveryBatchJobData,
      opts: { ...deliveryJobOptions(jobKey, priority, settings), jobId: deliveryBatchJobId(jobKey) },
    })),
    ...singles.map(({ id, priority }) => ({
      name: DELIVERY_JOB_NAME, data: { deliveryId: id } satisfies DeliveryJobData, opts: deliveryJobOptions(id, priority, settings),
    })),
  ]);
}

export const ENQUEUE_TIMEOUT_MS = 3000;

/**
 * After commit: one job per batch (or per id without one), at the priority its rows give (one lookup for the whole batch,
 * see priority.ts). Never throws and never holds a request for long: the rows are committed, so
 * a queue that is down or slow only delays them until the reconciler re-enqueues.
 */
export async function enqueueDeliveries(
  db: Queryable, queues: QueueSystem, ids: string[], log: Logger, settings: DeliveryJobSettings & { timeoutMs?: number } = {},
): Promise<void> {
  if (ids.length === 0) return;
  let timer: NodeJS.Timeout | undefined;
  const timeoutMs = settings.timeoutMs ?? ENQUEUE_TIMEOUT_MS;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`queue did not accept the jobs within ${timeoutMs} ms`)), timeoutMs);
  });
  const adding = deliveryPriorities(db, ids, log, Math.min(timeoutMs / 3, PRIORITY_LOOKUP_TIMEOUT_MS)).then((jobs) => addDeliveryJobs(queues, jobs, settings));
  adding.catch(() => undefined); // a late failure after the timeout is already logged below
  try {
    await Promise.race([adding, timeout]);
  } catch (err) {
    log.warn({ err: { message: (err as Error).message }, delivery_ids: ids }, 'enqueueing deliveries failed; the reconciler will re-enqueue them');
  } finally {
    clearTimeout(timer);
  }
}
