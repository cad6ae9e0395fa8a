import { hostname } from 'node:os';
import type pg from 'pg';
import type { Clock } from './clock.js';
import type { Logger } from './observability/logger.js';
import type { Metrics } from './observability/metrics.js';
import type { QueueSystem } from './queue/index.js';
import { recordHeartbeat } from './system/heartbeat.js';

export type WorkerDeps = { pool: pg.Pool; queues: QueueSystem; clock: Clock; log: Logger; metrics: Metrics };

const SCHEDULER_LOCK = 7_301_117_002;
export const HEARTBEAT_EVERY_MS = 15_000;

/**
 * Job schedulers are upserted from this one place, under an advisory lock, because concurrent
 * upserts of the same scheduler from several processes are a known source of duplicate jobs.
 */
export async function upsertSchedulers(deps: Pick<WorkerDeps, 'pool' | 'queues'>): Promise<void> {
  const client = await deps.pool.connect();
  try {
    await client.query('select pg_advisory_lock($1)', [SCHEDULER_LOCK]);
    try {
      await deps.queues.queue('system').upsertJobScheduler('heartbeat', { every: HEARTBEAT_EVERY_MS }, { name: 'heartbeat', data: {} });
    } finally {
      await client.query('select pg_advisory_unlock($1)', [SCHEDULER_LOCK]);
    }
  } finally {
    client.release();
  }
}

/** Starts this process's queue workers. Closing the QueueSystem drains them. */
export async function startWorker(deps: WorkerDeps): Promise<{ workerId: string }> {
  const workerId = `${hostname()}:${process.pid}`;
  deps.queues.worker('system', async (job) => {
    if (job.name === 'heartbeat') {
      const at = await recordHeartbeat(deps.pool, workerId, deps.queues.backend, deps.clock);
      deps.metrics.workerHeartbeat.set(at.getTime() / 1000);
      deps.metrics.jobsProcessed.inc({ queue: 'system', outcome: 'completed' });
      return { at: at.toISOString() };
    }
    throw new Error(`unknown system job: ${job.name}`);
  }, { concurrency: 1 });
  await upsertSchedulers(deps);
  deps.log.info({ worker_id: workerId, queue_backend: deps.queues.backend }, 'worker started');
  return { workerId };
}
