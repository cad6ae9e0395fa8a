import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { systemClock } from '../../src/clock.js';
import { createLogger } from '../../src/observability/logger.js';
import { createMetrics } from '../../src/observability/metrics.js';
import { QueueSystem } from '../../src/queue/index.js';
import { startWorker } from '../../src/worker.js';
import { createTestDatabase, type TestDatabase } from '../helpers/db.js';
import { testConfig } from '../helpers/app.js';

async function waitFor<T>(fn: () => Promise<T | undefined>, timeoutMs = 15_000): Promise<T> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > until) throw new Error('timed out waiting');
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe.each(['redis', 'postgres'] as const)('the queue on the %s backend', (backend) => {
  let db: TestDatabase;
  let queues: QueueSystem;
  beforeAll(async () => {
    db = await createTestDatabase();
    const config = testConfig(backend, db.url);
    queues = new QueueSystem({ backend, redisUrl: config.REDIS_URL, databaseUrl: db.url, prefix: config.QUEUE_PREFIX }, createLogger('silent'));
  });
  afterAll(async () => {
    await queues.close();
    await db.drop();
  });

  // First, before any other worker on this queue exists to take the job.
  it('drains an active job before close returns', async () => {
    const local = new QueueSystem(queues.settings, createLogger('silent'));
    let finished = false;
    let started!: () => void;
    const startedP = new Promise<void>((r) => (started = r));
    local.worker('system', async (job) => {
      if (job.name !== 'slow') return undefined;
      started();
      await new Promise((r) => setTimeout(r, 500));
      finished = true;
      return 'done';
    });
    await local.add('system', 'slow', {});
    await startedP;
    await local.close();
    expect(finished).toBe(true);
  });

  it('runs the heartbeat scheduler through a worker, which records it in PostgreSQL', async () => {
    const metrics = createMetrics();
    await startWorker({ pool: db.pool, queues, clock: systemClock, log: createLogger('silent'), metrics });
    const beat = await waitFor(async () => {
      const { rows } = await db.pool.query('select worker_id, queue_backend, beat_at from worker_heartbeats');
      return rows[0];
    });
    expect(beat.queue_backend).toBe(backend);
    const schedulers = await queues.queue('system').getJobSchedulers();
    expect(schedulers.map((s) => s.key).sort()).toEqual(['audit', 'heartbeat', 'reconcile-deliveries', 'refill-following-deadlines', 'retention']);
  });

  it('keeps one scheduler when several workers start at once', async () => {
    const { upsertSchedulers } = await import('../../src/worker.js');
    await Promise.all([upsertSchedulers({ pool: db.pool, queues }), upsertSchedulers({ pool: db.pool, queues }), upsertSchedulers({ pool: db.pool, queues })]);
    expect(await queues.queue('system').getJobSchedulersCount()).toBe(5);
  });

  it('treats a job id that already exists as a no-op, so re-enqueueing never duplicates', async () => {
    const q = queues.queue('system');
    await q.add('noop', {}, { jobId: 'dedupe-me', delay: 60_000 });
    await q.add('noop', {}, { jobId: 'dedupe-me', delay: 60_000 });
    const delayed = await q.getJobs(['delayed']);
    expect(delayed.filter((j) => j.id === 'dedupe-me')).toHaveLength(1);
    await q.remove('dedupe-me');
  });

});
