import { hostname } from 'node:os';
import type { Job } from 'bullmq';
import type pg from 'pg';
import { createChannels } from './channels/index.js';
import { CHANNEL_NAMES, providersOf, type Channels } from './channels/types.js';
import type { Clock } from './clock.js';
import type { Config } from './config.js';
import { DEFAULT_BREAKER_OPTIONS, withBreakers, type BreakerOptions, type ProviderBreaker } from './delivery/breaker.js';
import { DEFAULT_CONCURRENCY, deliveryProcessor, SEND_TIMEOUT_MS } from './delivery/deliver.js';
import { deliveryBackoffMs, type DeliveryJobSettings } from './delivery/outbox.js';
import { sweepHeldStatuses } from './delivery/carrier-status.js';
import { reconcileDeliveries, RECONCILE_EVERY_MS, RECONCILE_JOB_NAME } from './delivery/reconciler.js';
import type { Logger } from './observability/logger.js';
import type { Metrics } from './observability/metrics.js';
import type { QueueSystem } from './queue/index.js';
import type { IncidentSettings } from './incidents/engine.js';
import type { SweepLane } from './incidents/isolate.js';
import { sweepOnce } from './incidents/sweep.js';
import { refillFollowing } from './schedules/repo.js';
import { recordHeartbeat } from './system/heartbeat.js';
import { AUDIT_EVERY_MS, AUDIT_JOB_NAME, auditorSettings, DEFAULT_AUDITOR_SETTINGS, runAudit, type AuditorSettings } from './ops/auditor.js';
import { collectQueueMetrics } from './ops/queue-metrics.js';
import { DEFAULT_RETENTION_SETTINGS, RETENTION_EVERY_MS, RETENTION_JOB_NAME, retentionSettings, runRetention, type RetentionSettings } from './retention/retention.js';

export type WorkerDeps = {
  pool: pg.Pool;
  queues: QueueSystem;
  clock: Clock;
  log: Logger;
  metrics: Metrics;
  /** Default: createChannels from `config` (the dev outbox wherever no real provider is configured). */
  channels?: Channels;
  /** Provider credentials for the default channels; without it every channel is the dev outbox. */
  config?: Config;
  /**
   * The per-provider circuit breakers around the channels, given or default alike (so tests
   * exercise the production path). Fields given override DEFAULT_BREAKER_OPTIONS; `false` sends
   * without breakers. The breakers shut down when the QueueSystem closes the delivery worker.
   */
  breakers?: Partial<BreakerOptions> | false;
  /** Attempts and backoff of the delivery jobs the reconciler re-adds (tests shorten the backoff). */
  deliveryJobs?: DeliveryJobSettings;
  deliveryConcurrency?: number;
  /** PROVIDER_FAILOVER_MINUTES in ms. */
  failoverAfterMs?: number;
  /** RECEIPT_TIMEOUT_SECONDS in ms: SMS/email alerts with no delivered receipt this long after acceptance are repeated through the next provider (0/undefined: off). */
  receiptTimeoutMs?: number;
  /** Escalation settings; without them this process runs no sweeper. */
  incidents?: IncidentSettings;
  sweepEveryMs?: number;
  /** Default: from `config` (AUDITOR_*, HEARTBEAT_URL), else DEFAULT_AUDITOR_SETTINGS. */
  auditor?: AuditorSettings;
  /** How often the auditor runs (default every minute; tests run it faster). */
  auditEveryMs?: number;
  /** How often the worker checks that the queue still holds its schedulers (default QUEUE_WATCH_MS). */
  queueWatchMs?: number;
  /** Default: from `config` (RETENTION_DAYS, LOCATION_RETENTION_HOURS), else DEFAULT_RETENTION_SETTINGS. */
  retention?: RetentionSettings;
};

const SCHEDULER_LOCK = 7_301_117_002;
export const HEARTBEAT_EVERY_MS = 15_000;
/** Safety net for the check-in hot path, which refills the deadline-after-next itself right after answering. */
export const REFILL_JOB_NAME = 'refill-following-deadlines';
export const REFILL_EVERY_MS = 30_000;

/**
 * Job schedulers are upserted from this one place, under an advisory lock, because concurrent
 * upserts of the same scheduler from several processes are a known source of duplicate jobs.
 */
export const SWEEP_JOB_NAME = 'sweep';

export async function upsertSchedulers(deps: Pick<WorkerDeps, 'pool' | 'queues' | 'sweepEveryMs' | 'auditEveryMs'>): Promise<void> {
  const client = await deps.pool.connect();
  try {
    await client.query('select pg_advisory_lock($1)', [SCHEDULER_LOCK]);
    try {
      const system = deps.queues.queue('system');
      await system.upsertJobScheduler('heartbeat', { every: HEARTBEAT_EVERY_MS }, { name: 'heartbeat', data: {} });
      await system.upsertJobScheduler(RECONCILE_JOB_NAME, { every: RECONCILE_EVERY_MS }, { name: RECONCILE_JOB_NAME, data: {} });
      await system.upsertJobScheduler(REFILL_JOB_NAME, { every: REFILL_EVERY_MS }, { name: REFILL_JOB_NAME, data: {} });
      await system.upsertJobScheduler(AUDIT_JOB_NAME, { every: deps.auditEveryMs ?? AUDIT_EVERY_MS }, { name: AUDIT_JOB_NAME, data: {}, opts: { removeOnComplete: true, removeOnFail: 100 } });
      await system.upsertJobScheduler(RETENTION_JOB_NAME, { every: RETENTION_EVERY_MS }, { name: RETENTION_JOB_NAME, data: {}, opts: { removeOnComplete: true, removeOnFail: 100 } });
      if (deps.sweepEveryMs !== undefined) {
        await deps.queues.queue('sweep').upsertJobScheduler(SWEEP_JOB_NAME, { every: deps.sweepEveryMs }, { name: SWEEP_JOB_NAME, data: {}, opts: { removeOnComplete: true, removeOnFail: 100 } });
      }
    } finally {
      await client.query('select pg_advisory_unlock($1)', [SCHEDULER_LOCK]);
    }
  } finally {
    client.release();
  }
}

/**
 * A dead worker's in-flight alerts come back when their lock expires and a stalled check runs:
 * 10 s locks (renewed every 5 s while the process lives) checked every 5 s bring them back in
 * about 15 s instead of BullMQ's 30 s + 30 s. A job that stalls more often than maxStalledCount
 * is failed and removed, and the reconciler re-adds its still-pending row.
 */
export const DELIVERY_LOCK = Object.freeze({ lockDuration: 10_000, stalledInterval: 5_000, maxStalledCount: 3 });

/**
 * A queue can lose everything while the worker lives: Redis restarted without persistence, or
 * the PostgreSQL backend's tables emptied. The jobs of pending deliveries come back through the
 * reconciler, but the repeating jobs (sweep, heartbeat, reconciler) would be gone for good and
 * no process would notice. Every QUEUE_WATCH_MS each worker checks that its schedulers are still
 * there; when one is missing it puts them back and re-adds every pending delivery at once.
 */
export const QUEUE_WATCH_MS = 3000;
const QUEUE_WATCH_TIMEOUT_MS = 30_000;

async function restoreLostQueue(deps: WorkerDeps, sweepEveryMs: number | undefined): Promise<boolean> {
  const present = await Promise.all([
    deps.queues.queue('system').getJobScheduler('heartbeat'),
    sweepEveryMs === undefined ? true : deps.queues.queue('sweep').getJobScheduler(SWEEP_JOB_NAME),
  ]);
  if (present.every((p) => p !== undefined && p !== null)) return false;
  deps.log.warn({ queue_backend: deps.queues.backend }, 'the queue lost its jobs (restarted or emptied): restoring the schedulers and re-adding pending deliveries');
  await upsertSchedulers({ ...deps, sweepEveryMs });
  await reconcileDeliveries(deps.pool, deps.queues, deps.log, 0, deps.deliveryJobs);
  deps.metrics.queueRestored.inc();
  return true;
}

export type StartedWorker = {
  workerId: string;
  /** provider → circuit breaker of the delivery channels (empty with `breakers: false`). */
  breakers: Map<string, ProviderBreaker>;
  /** Shuts the breakers down; also done when the QueueSystem closes. Idempotent. */
  shutdownBreakers: () => void;
};

/** Starts this process's queue workers. Closing the QueueSystem drains them and shuts the breakers down. */
export async function startWorker(deps: WorkerDeps): Promise<StartedWorker> {
  const workerId = `${hostname()}:${process.pid}`;
  const auditor = deps.auditor ?? (deps.config === undefined ? DEFAULT_AUDITOR_SETTINGS : auditorSettings(deps.config));
  const retention = deps.retention ?? (deps.config === undefined ? DEFAULT_RETENTION_SETTINGS : retentionSettings(deps.config));
  const sweepFailureMetrics = {
    itemFailure: (lane: SweepLane) => deps.metrics.sweepItemFailures.inc({ lane }),
    laneError: (lane: SweepLane) => deps.metrics.sweepLaneErrors.inc({ lane }),
  };
  deps.queues.worker('system', async (job) => {
    if (job.name === 'heartbeat') {
      const at = await recordHeartbeat(deps.pool, workerId, deps.queues.backend, deps.clock);
      deps.metrics.workerHeartbeat.set(at.getTime() / 1000);
      deps.metrics.jobsProcessed.inc({ queue: 'system', outcome: 'completed' });
      return { at: at.toISOString() };
    }
    if (job.name === RECONCILE_JOB_NAME) {
      const pending = await reconcileDeliveries(deps.pool, deps.queues, deps.log, undefined, deps.deliveryJobs);
      // Provider statuses that came before their send was recorded, and were missed by both sides.
      const held = await sweepHeldStatuses(deps.pool, deps.clock(), deps.metrics);
      if (held.applied + held.dropped > 0) deps.log.info(held, 'held provider statuses applied or dropped');
      deps.metrics.jobsProcessed.inc({ queue: 'system', outcome: 'completed' });
      return { pending, held };
    }
    if (job.name === REFILL_JOB_NAME) {
      const refilled = await refillFollowing(deps.pool, deps.clock(), { log: deps.log, failures: sweepFailureMetrics });
      deps.metrics.jobsProcessed.inc({ queue: 'system', outcome: 'completed' });
      return { refilled };
    }
    if (job.name === AUDIT_JOB_NAME) {
      const [result] = await Promise.all([
        runAudit({ pool: deps.pool, clock: deps.clock, log: deps.log, metrics: deps.metrics, settings: auditor }),
        collectQueueMetrics(deps.queues, deps.metrics),
      ]);
      deps.metrics.jobsProcessed.inc({ queue: 'system', outcome: 'completed' });
      return result;
    }
    if (job.name === RETENTION_JOB_NAME) {
      const purged = await runRetention({ pool: deps.pool, clock: deps.clock, log: deps.log, metrics: deps.metrics, settings: retention });
      deps.metrics.jobsProcessed.inc({ queue: 'system', outcome: 'completed' });
      return purged;
    }
    throw new Error(`unknown system job: ${job.name}`);
  }, { concurrency: 1 });

  const own = deps.channels === undefined ? createChannels({ pool: deps.pool, config: deps.config, log: deps.log, linkSecret: deps.incidents?.links.linkSecret }) : undefined;
  const channels = deps.channels ?? own!.channels;
  const guarded = deps.breakers === false
    ? { channels, breakers: new Map<string, ProviderBreaker>(), shutdown: () => undefined }
    : withBreakers(channels, { ...DEFAULT_BREAKER_OPTIONS, timeoutMs: SEND_TIMEOUT_MS, ...deps.breakers }, deps.metrics);
  const providerCounts = Object.fromEntries(CHANNEL_NAMES.map((c) => [c, providersOf(guarded.channels[c]).length]));
  const deliver = deliveryProcessor({
    pool: deps.pool, channels: guarded.channels, clock: deps.clock, log: deps.log, metrics: deps.metrics, failoverAfterMs: deps.failoverAfterMs,
    ...(deps.receiptTimeoutMs === undefined ? {} : { receiptTimeoutMs: deps.receiptTimeoutMs }),
    // The sweeper's link secret (every production worker has one) also opens phone verification codes.
    ...(deps.incidents === undefined ? {} : { linkSecret: deps.incidents.links.linkSecret }),
    ...(deps.breakers === false || deps.breakers?.timeoutMs === undefined ? {} : { sendTimeoutMs: deps.breakers.timeoutMs }),
    queues: deps.queues,
    concurrency: deps.deliveryConcurrency ?? DEFAULT_CONCURRENCY,
  });
  deps.queues.worker('delivery', async (job: Job, token?: string) => {
    try {
      const outcome = await deliver(job, token);
      deps.metrics.jobsProcessed.inc({ queue: 'delivery', outcome });
      return outcome;
    } catch (err) {
      deps.metrics.jobsProcessed.inc({ queue: 'delivery', outcome: 'retry' });
      throw err;
    }
  }, {
    concurrency: deps.deliveryConcurrency ?? DEFAULT_CONCURRENCY, ...DELIVERY_LOCK,
    settings: {
      backoffStrategy: (attemptsMade, _type, _err, job) => deliveryBackoffMs(attemptsMade, (job?.opts.backoff as { delay?: number } | undefined)?.delay),
    },
  });
  // After the active jobs finished, so no send is cut off by the shutdown.
  deps.queues.afterClose(() => {
    guarded.shutdown();
    void own?.close().catch((err: unknown) => deps.log.warn({ err: { message: (err as Error).message } }, 'closing provider clients failed'));
  });

  if (deps.incidents !== undefined) {
    const incidents = deps.incidents;
    // One sweep at a time per process; other processes sweep side by side (SKIP LOCKED).
    deps.queues.worker('sweep', async () => {
      const started = performance.now();
      const r = await sweepOnce({
        pool: deps.pool, queues: deps.queues, log: deps.log, clock: deps.clock, settings: incidents, failures: sweepFailureMetrics,
        ...((deps.receiptTimeoutMs ?? 0) > 0 ? { receipts: { providerCounts, metrics: deps.metrics } } : {}),
        ...(deps.deliveryJobs === undefined ? {} : { deliveryJobs: deps.deliveryJobs }),
      });
      if (r.missed + r.steps + r.ackTimeouts > 0 || r.failedLanes.length > 0) deps.log.info({ ...r }, 'sweep');
      deps.metrics.sweepDuration.observe((performance.now() - started) / 1000);
      deps.metrics.sweepClaimed.observe(r.missed + r.skippedPaused + r.steps + r.ackTimeouts + r.reminders);
      const rows = { missed: r.missed, skipped_paused: r.skippedPaused, step: r.steps, ack_timeout: r.ackTimeouts, reminder: r.reminders, delivery: r.deliveries };
      for (const [kind, n] of Object.entries(rows)) if (n > 0) deps.metrics.sweepRows.inc({ kind }, n);
      deps.metrics.jobsProcessed.inc({ queue: 'sweep', outcome: 'completed' });
      return r;
    }, { concurrency: 1 });
  }

  const sweepEveryMs = deps.incidents === undefined ? undefined : (deps.sweepEveryMs ?? 1000);
  await upsertSchedulers({ ...deps, sweepEveryMs });
  let watching = false;
  const watch = setInterval(() => {
    if (watching) return;
    watching = true;
    // While the queue or the database is down this fails; it is tried again on the next tick.
    // Bounded: a query hanging on a half-open connection must not end the watch for good.
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => { timer = setTimeout(() => reject(new Error('queue watch timed out')), QUEUE_WATCH_TIMEOUT_MS); });
    Promise.race([restoreLostQueue(deps, sweepEveryMs), timeout])
      .catch((err: unknown) => deps.log.debug({ err: { message: (err as Error).message } }, 'queue watch failed; trying again'))
      .finally(() => { clearTimeout(timer); watching = false; });
  }, deps.queueWatchMs ?? QUEUE_WATCH_MS);
  watch.unref();
  deps.queues.beforeClose(() => clearInterval(watch));
  // Whatever the queue lost while no worker ran goes out now, not a minute from now.
  try {
    await reconcileDeliveries(deps.pool, deps.queues, deps.log, undefined, deps.deliveryJobs);
  } catch (err) {
    deps.log.warn({ err: { message: (err as Error).message } }, 'initial delivery reconciliation failed; the scheduler retries every minute');
  }
  deps.log.info({ worker_id: workerId, queue_backend: deps.queues.backend }, 'worker started');
  return { workerId, breakers: guarded.breakers, shutdownBreakers: guarded.shutdown };
}
