import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { createDevOutboxChannel } from '../../src/channels/dev-outbox/index.js';
import type { Job } from 'bullmq';
import { ThrottledError, type Channel, type Channels } from '../../src/channels/types.js';
import { deliveryProcessor, QUEUE_CALL_TIMEOUT_MS } from '../../src/delivery/deliver.js';
import { systemClock } from '../../src/clock.js';
import { createPool, withTransaction } from '../../src/db/pool.js';
import { enqueueDeliveries, insertDeliveries, type NewDelivery } from '../../src/delivery/outbox.js';
import { incidentSettings } from '../../src/incidents/settings.js';
import { createLogger } from '../../src/observability/logger.js';
import { createMetrics } from '../../src/observability/metrics.js';
import { QueueSystem, type QueueSettings } from '../../src/queue/index.js';
import { startWorker, SWEEP_JOB_NAME } from '../../src/worker.js';
import { testConfig, type QueueBackend } from '../helpers/app.js';
import { createTestDatabase, type TestDatabase } from '../helpers/db.js';
import { startTcpProxy, type TcpProxy } from '../helpers/tcp-proxy.js';
import { TEST_LINK_SECRET } from '../helpers/tokens.js';
import { waitFor } from '../delivery/fake-provider.js';

/**
 * What the chaos run (npm run test:chaos) shows with whole processes, pinned here one mechanism
 * at a time: the database or the queue going away under a live worker loses nothing, spends no
 * attempt and crashes nothing. The database "goes away" through a TCP proxy in front of the
 * machine's PostgreSQL, which the other test files keep using undisturbed.
 */
const log = createLogger('silent');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A QueueSystem on a fresh test queue prefix over `db`, with the config the test app would have. */
function queuesFor(backend: QueueBackend, db: TestDatabase, settings: Pick<QueueSettings, 'stallAfterMs' | 'hungAfterMs'> = {}, env: Record<string, string> = {}) {
  const config = testConfig(backend, db.url, env);
  const queues = new QueueSystem({ backend, redisUrl: config.REDIS_URL, databaseUrl: db.url, prefix: config.QUEUE_PREFIX, ...settings }, log);
  return { config, queues };
}

const delivery = (address: string): NewDelivery => ({
  memberId: null, contactId: null, kind: 'alert', channel: 'email', address, subject: 'Check on Ann', body: 'Ann missed her check-in.',
});

describe('a database restart under a worker', () => {
  let db: TestDatabase;
  let proxy: TcpProxy;
  let queues: QueueSystem;
  let pool: ReturnType<typeof createPool>;
  const calls = new Map<string, number>();
  /** Addresses whose send takes the database down right after the provider accepted. */
  const cutOnAccept = new Set<string>();

  beforeAll(async () => {
    db = await createTestDatabase();
    proxy = await startTcpProxy({ host: new URL(db.url).hostname, port: Number(new URL(db.url).port || 5432) });
    pool = createPool(proxy.url(db.url), 5, log);
    ({ queues } = queuesFor('redis', db));
    // The provider writes through the direct pool: it is not the one that goes down.
    const outbox = createDevOutboxChannel(db.pool);
    const channel: Channel = {
      provider: 'fake',
      async send(msg, signal) {
        calls.set(msg.deliveryId, (calls.get(msg.deliveryId) ?? 0) + 1);
        const accepted = await outbox.send(msg, signal);
        if (cutOnAccept.has(msg.to)) {
          proxy.cut();
          setTimeout(() => proxy.restore(), 700);
        }
        return accepted;
      },
    };
    const channels: Channels = { push: channel, sms: channel, email: channel };
    // One attempt per job: a try that spent an attempt on the outage would leave the row pending.
    await startWorker({ pool, queues, clock: systemClock, log, metrics: createMetrics(), channels, breakers: false, deliveryJobs: { attempts: 1 } });
  });
  afterAll(async () => {
    proxy.restore();
    await queues.close();
    await pool.end();
    await proxy.close();
    await db.drop();
  });

  const insert = (address: string) => withTransaction(db.pool, (tx) => insertDeliveries(tx, [delivery(address)])).then(([id]) => id!);
  const sentRow = (id: string) => waitFor(async () => {
    const { rows } = await db.pool.query<{ status: string; attempts: number }>('select status, attempts from deliveries where id = $1', [id]);
    return rows[0]?.status === 'pending' ? undefined : rows[0];
  }, 20_000);
  const outboxCount = async (id: string) =>
    (await db.pool.query<{ n: number }>('select count(*)::int as n from dev_outbox where delivery_id = $1', [id])).rows[0]!.n;

  it('keeps a connection it holds from crashing the process when the server ends it', async () => {
    const client = await pool.connect();
    const pid = (await client.query<{ pid: number }>('select pg_backend_pid() as pid')).rows[0]!.pid;
    // Checked out and idle, as inside a transaction awaiting something else: the server ends it.
    await db.pool.query('select pg_terminate_backend($1)', [pid]);
    await sleep(200);
    await expect(client.query('select 1')).rejects.toThrow();
    client.release();
    const { rows } = await pool.query<{ one: number }>('select 1 as one');
    expect(rows[0]!.one).toBe(1);
  });

  it('records an accepted delivery once the database is back, without sending it again', async () => {
    const id = await insert('record-after-restart@example.test');
    cutOnAccept.add('record-after-restart@example.test');
    await enqueueDeliveries(db.pool, queues, [id], log, { attempts: 1 });
    expect(await sentRow(id)).toMatchObject({ status: 'sent', attempts: 1 });
    expect(calls.get(id)).toBe(1);
    expect(await outboxCount(id)).toBe(1);
  });

  it('waits out a database that is down when the job starts, without spending an attempt', async () => {
    const id = await insert('starts-during-outage@example.test');
    proxy.cut();
    await enqueueDeliveries(db.pool, queues, [id], log, { attempts: 1 });
    await sleep(1000);
    expect(calls.get(id)).toBeUndefined();
    proxy.restore();
    expect(await sentRow(id)).toMatchObject({ status: 'sent', attempts: 1 });
    expect(calls.get(id)).toBe(1);
  });
});

describe('a deferral the queue cannot take', () => {
  let db: TestDatabase;
  beforeAll(async () => {
    db = await createTestDatabase();
  });
  afterAll(() => db.drop());

  it('fails the try after QUEUE_CALL_TIMEOUT_MS instead of holding the worker slot for good', async () => {
    const [id] = await withTransaction(db.pool, (tx) => insertDeliveries(tx, [delivery('throttled@example.test')]));
    const throttled: Channel = { provider: 'fake', send: async () => { throw new ThrottledError('sender budget spent', 1000); } };
    const process = deliveryProcessor({ pool: db.pool, channels: { push: throttled, sms: throttled, email: throttled }, clock: systemClock, log });
    // The job's queue connection never answers (as after a restart it did not recover from).
    const job = { data: { deliveryId: id }, attemptsMade: 0, opts: { attempts: 3 }, moveToDelayed: () => new Promise<void>(() => undefined) } as unknown as Job;
    const started = Date.now();
    await expect(process(job, 'lock-token')).rejects.toThrow(/could not defer the job/);
    expect(Date.now() - started).toBeGreaterThanOrEqual(QUEUE_CALL_TIMEOUT_MS - 50);
  }, 15_000);
});

describe.each(['redis', 'postgres'] as QueueBackend[])('the %s queue losing everything under a live worker', (backend) => {
  let db: TestDatabase;
  let queues: QueueSystem;
  const metrics = createMetrics();

  beforeAll(async () => {
    db = await createTestDatabase();
    const made = queuesFor(backend, db, {}, { FREE_PLAN_CHANNELS: 'push,sms,email' });
    queues = made.queues;
    const config = made.config;
    await startWorker({
      pool: db.pool, queues, clock: systemClock, log, metrics, incidents: incidentSettings(config, TEST_LINK_SECRET),
      queueWatchMs: 200, deliveryJobs: { backoffDelayMs: 10 },
    });
  });
  afterAll(async () => {
    await queues.close();
    await db.drop();
  });

  it('puts its schedulers back and re-adds the pending deliveries within seconds', async () => {
    expect(await queues.queue('sweep').getJobScheduler(SWEEP_JOB_NAME)).toBeDefined();
    // A delivery whose job goes with the rest (the every-minute reconciler would find it only a minute later).
    const [id] = await withTransaction(db.pool, (tx) => insertDeliveries(tx, [delivery('after-flush@example.test')]));
    // Redis restarted empty / the queue tables emptied: every job and every scheduler gone.
    for (const name of ['system', 'sweep', 'delivery'] as const) {
      const q = queues.queue(name);
      for (const s of await q.getJobSchedulers()) await q.removeJobScheduler(s.key);
      await q.obliterate({ force: true });
    }
    const row = await waitFor(async () => {
      const { rows } = await db.pool.query<{ status: string }>('select status from deliveries where id = $1', [id]);
      return rows[0]?.status === 'sent' ? rows[0] : undefined;
    }, 10_000);
    expect(row.status).toBe('sent');
    expect(await queues.queue('sweep').getJobScheduler(SWEEP_JOB_NAME)).toBeDefined();
    expect(await queues.queue('system').getJobScheduler('heartbeat')).toBeDefined();
    expect((await metrics.queueRestored.get()).values[0]!.value).toBeGreaterThanOrEqual(1);
  });
});

describe.each(['redis', 'postgres'] as QueueBackend[])('a %s queue worker that stops taking jobs', (backend) => {
  let db: TestDatabase;
  let queues: QueueSystem;

  beforeAll(async () => {
    db = await createTestDatabase();
    ({ queues } = queuesFor(backend, db, { stallAfterMs: 300 }));
  });
  afterAll(async () => {
    await queues.close();
    await db.drop();
  });

  it('is replaced by a fresh worker, which takes the waiting jobs', async () => {
    const done: string[] = [];
    const stuck = queues.worker('sweep', async (job) => {
      done.push(String(job.data.n));
    }, { concurrency: 2 });
    await queues.add('sweep', 'probe', { n: 0 });
    await waitFor(async () => (done.includes('0') ? true : undefined));
    // As after a lost connection: the process lives, its worker takes nothing.
    await stuck.close();
    await queues.add('sweep', 'probe', { n: 1 });
    await waitFor(async () => (done.includes('1') ? true : undefined), 10_000);
    expect(queues.replacedWorkers).toBe(1);
  });

  it('leaves a busy worker alone however long its job takes', async () => {
    const before = queues.replacedWorkers;
    let release!: () => void;
    const held = new Promise<void>((r) => (release = r));
    const started: string[] = [];
    queues.worker('delivery', async (job) => {
      started.push(String(job.data.n));
      if (job.data.n === 'long') await held;
    }, { concurrency: 1 });
    await queues.add('delivery', 'probe', { n: 'long' });
    await waitFor(async () => (started.includes('long') ? true : undefined));
    await queues.add('delivery', 'probe', { n: 'next' }); // waits behind the long one
    await sleep(1500); // five times the stall threshold
    expect(queues.replacedWorkers).toBe(before);
    expect(started).toEqual(['long']);
    release();
    await waitFor(async () => (started.includes('next') ? true : undefined));
  });
});

describe('a queue worker whose job hangs', () => {
  let db: TestDatabase;
  let queues: QueueSystem;

  beforeAll(async () => {
    db = await createTestDatabase();
    ({ queues } = queuesFor('redis', db, { stallAfterMs: 300, hungAfterMs: 800 }));
  });
  afterAll(async () => {
    await queues.close();
    await db.drop();
  });

  it('is replaced once the job has been in hand longer than any job may take, and the job runs again', async () => {
    const runs: number[] = [];
    queues.worker('sweep', async (job) => {
      runs.push(Number(job.data.n));
      if (runs.length === 1) await new Promise(() => undefined); // hangs for good, as on a dead connection
    }, { concurrency: 1, lockDuration: 1000, stalledInterval: 500 });
    await queues.add('sweep', 'probe', { n: 7 });
    await waitFor(async () => (queues.replacedWorkers === 1 ? true : undefined), 10_000);
    // Its lock no longer renewed, the job comes back as stalled and a live worker runs it.
    await waitFor(async () => (runs.length >= 2 ? true : undefined), 15_000);
    expect(runs.slice(0, 2)).toEqual([7, 7]);
  }, 30_000);
});
