import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { systemClock } from '../../src/clock.js';
import { withTransaction } from '../../src/db/pool.js';
import { Limiter } from '../../src/batcher.js';
import { ThrottledError, type Channel, type OutboundMessage } from '../../src/channels/types.js';
import type { Job } from 'bullmq';
import { DeliveryDeferredError, deliveryProcessor, IN_HAND_RETRY_MS, processDelivery, processDeliveryBatch } from '../../src/delivery/deliver.js';
import { DELIVERY_BATCH_JOB_NAME, DELIVERY_BATCH_MAX, DELIVERY_JOB_NAME, deliveryBatchJobId, deliveryJobId, enqueueDeliveries, insertDeliveries, type NewDelivery } from '../../src/delivery/outbox.js';
import { reconcileDeliveries } from '../../src/delivery/reconciler.js';
import { createLogger } from '../../src/observability/logger.js';
import { createMetrics } from '../../src/observability/metrics.js';
import { QueueSystem } from '../../src/queue/index.js';
import { startWorker } from '../../src/worker.js';
import { testConfig } from '../helpers/app.js';
import { createTestDatabase, type TestDatabase } from '../helpers/db.js';
import { createFakeProvider, waitFor, type FakeProvider } from './fake-provider.js';

const log = createLogger('silent');
const JOBS = { backoffDelayMs: 10, attempts: 4 };

/** Issue 19: deliveries written together travel as one job, and each still lives and fails on its own. */
describe.each(['redis', 'postgres'] as const)('delivery batches on the %s queue backend', (backend) => {
  let db: TestDatabase;
  let queues: QueueSystem;
  let fake: FakeProvider;

  beforeAll(async () => {
    db = await createTestDatabase();
    const config = testConfig(backend, db.url);
    queues = new QueueSystem({ backend, redisUrl: config.REDIS_URL, databaseUrl: db.url, prefix: config.QUEUE_PREFIX }, log);
    fake = createFakeProvider(db.pool);
    await startWorker({ pool: db.pool, queues, clock: systemClock, log, metrics: createMetrics(), channels: fake.channels, deliveryJobs: JOBS });
  });
  afterAll(async () => {
    await queues.close();
    await db.drop();
  });

  const delivery = (address: string, extra: Partial<NewDelivery> = {}): NewDelivery => ({
    memberId: null, contactId: null, kind: 'reminder', channel: 'email', address, subject: 'Time to check in', body: 'Check in by 09:30.', ...extra,
  });
  const insert = (rows: NewDelivery[]) => withTransaction(db.pool, (tx) => insertDeliveries(tx, rows));
  type Row = { id: string; status: string; attempts: number; job_key: string | null; last_error: string | null };
  const rowsOf = async (ids: string[]) => {
    const { rows } = await db.pool.query<Row>('select id, status, attempts, job_key, last_error from deliveries where id = any($1)', [ids]);
    const byId = new Map(rows.map((r) => [r.id, r]));
    return ids.map((id) => byId.get(id)!);
  };
  const settled = (ids: string[]) => waitFor(async () => {
    const rows = await rowsOf(ids);
    return rows.every((r) => r.status !== 'pending') ? rows : undefined;
  });
  const outboxCount = async (id: string) =>
    (await db.pool.query<{ n: number }>('select count(*)::int as n from dev_outbox where delivery_id = $1', [id])).rows[0]!.n;
  /** The fake email provider, holding every send until release(): runs that stay in hand. */
  const gatedEmail = () => {
    let release!: () => void;
    const gate = new Promise<void>((r) => { release = r; });
    const email = fake.channels.email as Channel;
    const slow: Channel = { ...email, async send(msg: OutboundMessage, signal: AbortSignal) {
      await gate;
      return email.send(msg, signal);
    } };
    return { slow, release };
  };
  const queued = async () => {
    const jobs = await queues.queue('delivery').getJobs(['waiting', 'prioritized', 'delayed']);
    return jobs.map((j) => ({ name: j.name, priority: j.opts.priority }));
  };

  it('go out as one job per batch, each row sent once, and a broken or failing row never holds the others', async () => {
    const q = queues.queue('delivery');
    await q.pause();
    const ids = await insert([
      delivery('a@example.test'), delivery('b@example.test'), delivery('c@example.test'),
      // Fails once (a provider's 503): set aside with a job of its own, sent on its second try.
      delivery('transient-1@example.test'),
      // The address is refused for good: failed, alone.
      delivery('permanent@example.test'),
      // A row that cannot make a message (a code sealed with another key): failed, alone.
      delivery('+15550001111', { kind: 'verification', channel: 'sms', subject: null, body: null, render: { verification_id: 'v1', sealed: 'AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA' } }),
    ]);
    const keys = new Set((await rowsOf(ids)).map((r) => r.job_key));
    expect(keys.size).toBe(1);
    await enqueueDeliveries(db.pool, queues, ids, log, JOBS);
    expect(await queued()).toEqual([{ name: DELIVERY_BATCH_JOB_NAME, priority: 5 }]);
    await q.resume();

    const [a, b, c, transient, permanent, broken] = await settled(ids);
    for (const r of [a!, b!, c!]) {
      expect(r).toMatchObject({ status: 'sent', attempts: 1 });
      expect(await outboxCount(r.id)).toBe(1);
    }
    expect(transient).toMatchObject({ status: 'sent', attempts: 2, job_key: null });
    expect(fake.calls(transient!.id)).toBe(2);
    expect(permanent).toMatchObject({ status: 'failed', attempts: 1 });
    expect(broken).toMatchObject({ status: 'failed' });
    expect(broken!.last_error).toMatch(/could not render/);
    expect(fake.calls(broken!.id)).toBe(0);
  });

  it(`split into batches of at most ${DELIVERY_BATCH_MAX}, one priority each`, async () => {
    const q = queues.queue('delivery');
    await q.pause();
    const ids = await insert([
      ...Array.from({ length: DELIVERY_BATCH_MAX + 1 }, (_, i) => delivery(`n${i}@example.test`)),
      delivery('inv@example.test', { kind: 'invitation' }),
    ]);
    await enqueueDeliveries(db.pool, queues, ids, log, JOBS);
    const jobs = await queued();
    expect(jobs.map((j) => j.priority).sort()).toEqual([5, 5, 6]);
    await q.resume();
    expect((await settled(ids)).every((r) => r.status === 'sent')).toBe(true);
    for (const id of ids) expect(await outboxCount(id)).toBe(1);
  });

  it('a row is sent only under its lease: another run waits for it, its own run takes it back', async () => {
    const [id] = await insert([delivery('lease@example.test')]);
    const deps = { pool: db.pool, channels: fake.channels, clock: systemClock, log };
    const { rows: [r] } = await db.pool.query<{ job_key: string }>(
      `update deliveries set lease_owner = $2, lease_until = now() + interval '1 minute' where id = $1 returning job_key`, [id, 'deliveries-x@elsewhere'],
    );
    // A job of its own while its batch's job holds it elsewhere: it comes back when the lease ends.
    const held = await processDelivery(deps, id!, 0, 3).then(() => undefined, (e: unknown) => e);
    expect(held).toBeInstanceOf(DeliveryDeferredError);
    expect((held as DeliveryDeferredError).retryAfterMs).toBeGreaterThan(55_000);
    expect((held as DeliveryDeferredError).retryAfterMs).toBeLessThan(61_000);
    expect(fake.calls(id!)).toBe(0);
    // The holder's own run (a retry in the same process) takes it again at once.
    await db.pool.query('update deliveries set lease_owner = $2 where id = $1', [id, `${deliveryBatchJobId(r!.job_key)}@here`]);
    expect(await processDelivery(deps, id!, 0, 3, `${deliveryBatchJobId(r!.job_key)}@here`)).toBe('sent');
    expect(await outboxCount(id!)).toBe(1);
    // Once sent, nothing is waited for: the other job ends.
    expect(await processDelivery(deps, id!, 0, 3)).toBe('skipped');

    // A lapsed lease (its holder died) is free for anyone.
    const [id2] = await insert([delivery('lapsed@example.test')]);
    await db.pool.query(`update deliveries set lease_owner = 'gone', lease_until = now() - interval '1 second' where id = $1`, [id2]);
    expect(await processDelivery(deps, id2!, 0, 3)).toBe('sent');
    // Taken out of its batch: the batch's job, when it comes, finds nothing left to send.
    expect((await rowsOf([id2!]))[0]!.job_key).toBeNull();
  });

  it('a row let go by its holder between the take and the look (a race) is tried again, never left without a job', async () => {
    const [id] = await insert([delivery('race@example.test')]);
    await db.pool.query(`update deliveries set lease_owner = 'other@x.1', lease_until = now() + interval '1 minute' where id = $1`, [id]);
    // The holder sets it aside just after this job's take found it held.
    const racing = new Proxy(db.pool, {
      get: (target, prop) => (prop !== 'query' ? Reflect.get(target, prop) : async (q: string | { name?: string }, values?: unknown[]) => {
        if (typeof q === 'object' && q.name === 'deliveries.held-one') await target.query('update deliveries set lease_owner = null, lease_until = null, job_key = null where id = $1', [id]);
        return target.query(q as string, values);
      }),
    });
    const deps = { pool: racing, channels: fake.channels, clock: systemClock, log };
    const err = await processDelivery(deps, id!, 0, 3).then(() => undefined, (e: unknown) => e);
    expect(err).toBeInstanceOf(DeliveryDeferredError);
    expect((err as DeliveryDeferredError).retryAfterMs).toBeLessThan(1000);
    expect(await processDelivery({ ...deps, pool: db.pool }, id!, 0, 3)).toBe('sent');
  });

  it('a batch job run twice at once (the queue lost it and it was re-added) sends each row once', async () => {
    const ids = await insert(Array.from({ length: 3 }, (_, i) => delivery(`twice${i}@example.test`)));
    const key = (await rowsOf([ids[0]!]))[0]!.job_key!;
    const { slow, release } = gatedEmail();
    const deps = { pool: db.pool, channels: { ...fake.channels, email: slow }, clock: systemClock, log, queues };
    const jobId = deliveryBatchJobId(key);
    // The first run, in one worker process, has its rows in hand and waits on the provider.
    const first = processDeliveryBatch(deps, key, { attemptsMade: 0, maxAttempts: 4, owner: `${jobId}@a` });
    await waitFor(async () => ((await db.pool.query(`select count(*)::int as n from deliveries where job_key = $1 and lease_owner = $2`, [key, `${jobId}@a`])).rows[0]!.n === 3 ? true : undefined));
    // The same job, run again in another process: it sends nothing and comes back when the lease ends.
    const second = await processDeliveryBatch(deps, key, { attemptsMade: 0, maxAttempts: 4, owner: `${jobId}@b` }).then(() => undefined, (e: unknown) => e);
    expect(second).toBeInstanceOf(DeliveryDeferredError);
    release();
    expect(await first).toBe('batch');
    for (const id of ids) {
      expect(fake.calls(id)).toBe(1);
      expect(await outboxCount(id)).toBe(1);
    }
    // Back after the lease: nothing left, the job ends.
    expect(await processDeliveryBatch(deps, key, { attemptsMade: 0, maxAttempts: 4, owner: `${jobId}@b` })).toBe('batch');
    expect(ids.reduce((n, id) => n + fake.calls(id), 0)).toBe(3);
  });

  it('a job handed out again while it runs in the same worker waits for the first run', async () => {
    const [id] = await insert([delivery('same-worker@example.test')]);
    const { slow, release } = gatedEmail();
    const processor = deliveryProcessor({ pool: db.pool, channels: { ...fake.channels, email: slow }, clock: systemClock, log });
    const job = { id: deliveryJobId(id!), name: DELIVERY_JOB_NAME, data: { deliveryId: id }, attemptsMade: 0, opts: { attempts: 3 } } as unknown as Job;
    const first = processor(job);
    await waitFor(async () => ((await db.pool.query(`select lease_owner from deliveries where id = $1`, [id])).rows[0]!.lease_owner !== null ? true : undefined));
    const again = await processor(job).then(() => undefined, (e: unknown) => e);
    expect(again).toBeInstanceOf(DeliveryDeferredError);
    expect((again as DeliveryDeferredError).retryAfterMs).toBe(IN_HAND_RETRY_MS);
    release();
    expect(await first).toBe('sent');
    expect(fake.calls(id!)).toBe(1);
    expect(await processor(job)).toBe('skipped');
  });

  it('a row whose turn comes late (slow sends ahead of it) gets a job of its own instead of keeping its batch job running', async () => {
    const q = queues.queue('delivery');
    await q.pause();
    const ids = await insert(Array.from({ length: 4 }, (_, i) => delivery(`slow${i}@example.test`)));
    const key = (await rowsOf([ids[0]!]))[0]!.job_key!;
    const slow = { ...fake.channels.email as Channel, async send(msg: OutboundMessage, signal: AbortSignal) {
      await new Promise((r) => setTimeout(r, 300));
      return (fake.channels.email as Channel).send(msg, signal);
    } };
    const deps = { pool: db.pool, channels: { ...fake.channels, email: slow }, clock: systemClock, log, queues, batchTurnWithinMs: 450 };
    // One delivery in hand at a time: the third row's turn comes after 600 ms.
    expect(await processDeliveryBatch(deps, key, { attemptsMade: 0, maxAttempts: 4, backoffDelayMs: 10, limit: new Limiter(1) })).toBe('batch');
    const rows = await rowsOf(ids);
    expect(rows.map((r) => r.status)).toEqual(['sent', 'sent', 'pending', 'pending']);
    expect(rows.slice(2).map((r) => r.job_key)).toEqual([null, null]);
    expect((await queued()).map((j) => j.name)).toEqual(['deliver', 'deliver']);
    await q.resume();
    expect((await settled(ids)).every((r) => r.status === 'sent')).toBe(true);
    for (const id of ids) expect(await outboxCount(id)).toBe(1);
  });

  it('a sender throttle of a moment is waited for in place; a longer one sets the row aside', async () => {
    const q = queues.queue('delivery');
    await q.pause();
    const ids = await insert([delivery('brief@example.test'), delivery('long@example.test')]);
    const key = (await rowsOf([ids[0]!]))[0]!.job_key!;
    const email = fake.channels.email as Channel;
    const throttledOnce = new Set<string>();
    const budget: Channel = { ...email, async send(msg: OutboundMessage, signal: AbortSignal) {
      if (!throttledOnce.has(msg.to)) {
        throttledOnce.add(msg.to);
        throw new ThrottledError('sender over its rate', msg.to.startsWith('brief') ? 50 : 2000);
      }
      return email.send(msg, signal);
    } };
    const deps = { pool: db.pool, channels: { ...fake.channels, email: budget }, clock: systemClock, log, queues };
    expect(await processDeliveryBatch(deps, key, { attemptsMade: 0, maxAttempts: 4, backoffDelayMs: 10 })).toBe('batch');
    const [brief, long] = await rowsOf(ids);
    // Sent by the batch on its second call, one try recorded, no job of its own.
    expect(brief).toMatchObject({ status: 'sent', attempts: 1 });
    expect(await outboxCount(brief!.id)).toBe(1);
    // Out of the batch, waiting for its own job (no try spent on a throttle).
    expect(long).toMatchObject({ status: 'pending', attempts: 0, job_key: null });
    // A throttle is not a try: the row's own job keeps every attempt the batch had.
    expect((await q.getJobs(['delayed'])).map((j) => [j.name, j.opts.attempts])).toEqual([['deliver', 4]]);
    await q.resume();
    expect((await settled(ids)).every((r) => r.status === 'sent')).toBe(true);
  });

  it('the reconciler rebuilds a batch whose rows no longer share a priority into one batch per priority', async () => {
    const q = queues.queue('delivery');
    await q.pause();
    const ids = await insert([delivery('r1@example.test', { kind: 'invitation' }), delivery('r2@example.test', { kind: 'invitation' })]);
    // One of them is now more urgent (here by hand; in life: a contact's first channel failed for good).
    await db.pool.query(`update deliveries set kind = 'check_in_note' where id = $1`, [ids[1]]);
    await db.pool.query(`update deliveries set kind = 'reminder' where id = $1`, [ids[0]]);
    expect(await reconcileDeliveries(db.pool, queues, log, 0, JOBS)).toBe(2);
    const keys = (await rowsOf(ids)).map((r) => r.job_key);
    expect(keys[0]).not.toBe(keys[1]);
    expect((await queued()).map((j) => j.priority).sort()).toEqual([5, 6]);
    await q.resume();
    expect((await settled(ids)).every((r) => r.status === 'sent')).toBe(true);
    for (const id of ids) expect(await outboxCount(id)).toBe(1);
  });
});

describe('a worker shutting down with a batch in hand', () => {
  it('ends with the sends under way and gives the rows not started their own jobs', async () => {
    const db = await createTestDatabase();
    const config = testConfig('redis', db.url);
    const settings = { backend: 'redis' as const, redisUrl: config.REDIS_URL, databaseUrl: db.url, prefix: config.QUEUE_PREFIX };
    const queues = new QueueSystem(settings, log);
    const inspect = new QueueSystem(settings, log);
    try {
      const fake = createFakeProvider(db.pool);
      const email = fake.channels.email as Channel;
      let started = 0;
      const slow: Channel = { ...email, async send(msg: OutboundMessage, signal: AbortSignal) {
        started += 1;
        await new Promise((r) => setTimeout(r, 400));
        return email.send(msg, signal);
      } };
      // One delivery in hand at a time: the batch's other rows wait their turn.
      await startWorker({ pool: db.pool, queues, clock: systemClock, log, metrics: createMetrics(), channels: { ...fake.channels, email: slow }, deliveryJobs: JOBS, deliveryConcurrency: 1 });
      const ids = await withTransaction(db.pool, (tx) => insertDeliveries(tx, Array.from({ length: 6 }, (_, i) => ({
        memberId: null, contactId: null, kind: 'reminder' as const, channel: 'email' as const, address: `stop${i}@example.test`, subject: 'Time to check in', body: 'Check in by 09:30.',
      }))));
      await enqueueDeliveries(db.pool, queues, ids, log, JOBS);
      await waitFor(async () => (started > 0 ? true : undefined));

      const t0 = Date.now();
      await queues.close();
      // The send under way finished; nothing waited for the five behind it.
      expect(Date.now() - t0).toBeLessThan(3000);
      const { rows } = await db.pool.query<{ status: string; job_key: string | null }>('select status, job_key from deliveries where id = any($1)', [ids]);
      expect(rows.filter((r) => r.status === 'sent')).toHaveLength(1);
      const left = rows.filter((r) => r.status === 'pending');
      expect(left).toHaveLength(5);
      expect(left.every((r) => r.job_key === null)).toBe(true);
      const jobs = await inspect.queue('delivery').getJobs(['waiting', 'prioritized', 'delayed']);
      expect(jobs.map((j) => j.name)).toEqual(Array.from({ length: 5 }, () => 'deliver'));
      await inspect.queue('delivery').obliterate({ force: true });
    } finally {
      await inspect.close();
      await queues.close();
      await db.drop();
    }
  });
});
