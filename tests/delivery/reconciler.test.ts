import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { systemClock } from '../../src/clock.js';
import { withTransaction } from '../../src/db/pool.js';
import { enqueueDeliveries, insertDeliveries, type NewDelivery } from '../../src/delivery/outbox.js';
import { reconcileDeliveries, RECONCILE_JOB_NAME } from '../../src/delivery/reconciler.js';
import { createLogger } from '../../src/observability/logger.js';
import { createMetrics } from '../../src/observability/metrics.js';
import { QueueSystem } from '../../src/queue/index.js';
import { startWorker } from '../../src/worker.js';
import { testConfig } from '../helpers/app.js';
import { createTestDatabase, type TestDatabase } from '../helpers/db.js';
import { createFakeProvider, waitFor } from './fake-provider.js';

const log = createLogger('silent');
const JOBS = { backoffDelayMs: 10, attempts: 4 };

describe.each(['redis', 'postgres'] as const)('the delivery reconciler on the %s queue backend', (backend) => {
  let db: TestDatabase;
  let queues: QueueSystem;
  beforeAll(async () => {
    db = await createTestDatabase();
    const config = testConfig(backend, db.url);
    queues = new QueueSystem({ backend, redisUrl: config.REDIS_URL, databaseUrl: db.url, prefix: config.QUEUE_PREFIX }, log);
  });
  afterAll(async () => {
    await queues.close();
    await db.drop();
  });

  const delivery = (address: string): NewDelivery => ({ memberId: null, contactId: null, kind: 'reminder', channel: 'email', address, body: 'Time to check in.' });
  const waitingJobs = () => queues.queue('delivery').getJobCountByTypes('waiting', 'delayed', 'active', 'prioritized');

  it('re-enqueues the pending rows a lost queue forgot, and each is sent exactly once', async () => {
    const ids = await withTransaction(db.pool, (tx) => insertDeliveries(tx, Array.from({ length: 5 }, (_, i) => delivery(`r${i}@example.test`))));
    const [done, cancelled] = await withTransaction(db.pool, (tx) => insertDeliveries(tx, [delivery('done@example.test'), delivery('cancelled@example.test')]));
    await db.pool.query(`update deliveries set status = 'sent' where id = $1`, [done]);
    await db.pool.query(`update deliveries set status = 'cancelled' where id = $1`, [cancelled]);
    // Rows written together share one batch job; a row without a batch (written before batches,
    // or set aside from one) has a job of its own.
    await db.pool.query(`update deliveries set job_key = null where id = $1`, [ids[4]]);
    await enqueueDeliveries(db.pool, queues, ids, log, JOBS);
    expect(await waitingJobs()).toBe(2);

    // The queue loses everything (Redis flushed, failover without persistence).
    await queues.queue('delivery').obliterate({ force: true });
    expect(await waitingJobs()).toBe(0);

    // Rows younger than the threshold may still be on their way to the queue: left alone.
    expect(await reconcileDeliveries(db.pool, queues, log, 60_000, JOBS)).toBe(0);
    expect(await waitingJobs()).toBe(0);

    // Small batches walk every pending row; a second run adds nothing (same job ids).
    expect(await reconcileDeliveries(db.pool, queues, log, 0, { ...JOBS, batchSize: 2 })).toBe(5);
    expect(await reconcileDeliveries(db.pool, queues, log, 0, JOBS)).toBe(5);
    expect(await waitingJobs()).toBe(2);

    const fake = createFakeProvider(db.pool);
    await startWorker({ pool: db.pool, queues, clock: systemClock, log, metrics: createMetrics(), channels: fake.channels, deliveryJobs: JOBS });
    await waitFor(async () => {
      const { rows } = await db.pool.query<{ n: number }>(`select count(*)::int as n from deliveries where id = any($1) and status = 'sent'`, [ids]);
      return rows[0]!.n === 5 ? true : undefined;
    });
    const { rows } = await db.pool.query<{ delivery_id: string; n: number }>(
      'select delivery_id, count(*)::int as n from dev_outbox group by delivery_id order by delivery_id',
    );
    expect(rows.map((r) => r.delivery_id)).toEqual([...ids].sort());
    expect(rows.every((r) => r.n === 1)).toBe(true);
    expect(ids.map((id) => fake.calls(id))).toEqual([1, 1, 1, 1, 1]);
    expect(fake.calls(done!) + fake.calls(cancelled!)).toBe(0);

    // Nothing pending is left to re-enqueue.
    expect(await reconcileDeliveries(db.pool, queues, log, 0, JOBS)).toBe(0);
  });

  it('runs every minute from a job scheduler on the system queue, next to the heartbeat', async () => {
    const schedulers = await queues.queue('system').getJobSchedulers();
    expect(schedulers.map((s) => s.key)).toEqual(expect.arrayContaining(['heartbeat', RECONCILE_JOB_NAME]));
    expect(schedulers.find((s) => s.key === RECONCILE_JOB_NAME)).toMatchObject({ every: 60_000 });
  });
});
