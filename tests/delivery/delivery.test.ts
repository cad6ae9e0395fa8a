import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { systemClock } from '../../src/clock.js';
import { withTransaction } from '../../src/db/pool.js';
import { processDelivery } from '../../src/delivery/deliver.js';
import { deliveryJobId, enqueueDeliveries, insertDeliveries, type NewDelivery } from '../../src/delivery/outbox.js';
import { createLogger } from '../../src/observability/logger.js';
import { createMetrics } from '../../src/observability/metrics.js';
import { QueueSystem } from '../../src/queue/index.js';
import { startWorker } from '../../src/worker.js';
import { testConfig } from '../helpers/app.js';
import { createTestDatabase, type TestDatabase } from '../helpers/db.js';
import { createFakeProvider, waitFor, type FakeProvider } from './fake-provider.js';

const log = createLogger('silent');
const JOBS = { backoffDelayMs: 10, attempts: 4 };

type Row = { status: string; attempts: number; provider: string | null; provider_message_id: string | null; error_class: string | null; last_error: string | null; sent_at: Date | null };

describe.each(['redis', 'postgres'] as const)('delivering outbox rows on the %s queue backend', (backend) => {
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
    memberId: null, contactId: null, kind: 'alert', channel: 'email', address, subject: 'Check on Ann', body: 'Ann missed her check-in.', ...extra,
  });
  const insert = (rows: NewDelivery[]) => withTransaction(db.pool, (tx) => insertDeliveries(tx, rows));
  const row = async (id: string): Promise<Row> =>
    (await db.pool.query<Row>('select status, attempts, provider, provider_message_id, error_class, last_error, sent_at from deliveries where id = $1', [id])).rows[0]!;
  const settled = (id: string) => waitFor(async () => {
    const r = await row(id);
    return r.status === 'pending' ? undefined : r;
  });
  const outboxCount = async (id: string) =>
    (await db.pool.query<{ n: number }>('select count(*)::int as n from dev_outbox where delivery_id = $1', [id])).rows[0]!.n;
  const attempts = async (id: string) =>
    (await db.pool.query<{ provider: string; outcome: string; error_class: string | null; error: string | null; duration_ms: number }>(
      'select provider, outcome, error_class, error, duration_ms from delivery_attempts where delivery_id = $1 order by attempted_at, id', [id],
    )).rows;
  /** The job ran and is gone (removeOnComplete/removeOnFail). */
  const jobGone = (id: string) => waitFor(async () => ((await queues.queue('delivery').getJob(deliveryJobId(id))) === undefined ? true : undefined));

  it('inserts rows in input order and returns their ids', async () => {
    const ids = await insert([delivery('a@example.test'), delivery('+15551230001', { channel: 'sms', subject: null }), delivery('c@example.test')]);
    const { rows } = await db.pool.query<{ id: string; address: string }>('select id, address from deliveries where id = any($1)', [ids]);
    const byId = new Map(rows.map((r) => [r.id, r.address]));
    expect(ids.map((id) => byId.get(id))).toEqual(['a@example.test', '+15551230001', 'c@example.test']);
    await enqueueDeliveries(db.pool, queues, ids, log, JOBS);
    for (const id of ids) expect((await settled(id)).status).toBe('sent');
  });

  it('sends an inserted and enqueued delivery to the dev outbox exactly once and marks it sent', async () => {
    const [id] = await insert([delivery('ann@example.test', { body: 'Ann missed her check-in. https://pruuf.test/a/tok' })]);
    await enqueueDeliveries(db.pool, queues, [id!], log, JOBS);
    const r = await settled(id!);
    expect(r).toMatchObject({ status: 'sent', attempts: 1, provider: 'dev-outbox', error_class: null, last_error: null });
    expect(r.sent_at).toBeInstanceOf(Date);
    const { rows: [box] } = await db.pool.query('select id, channel, "to", subject, body, kind from dev_outbox where delivery_id = $1', [id]);
    expect(box).toMatchObject({ id: r.provider_message_id, channel: 'email', to: 'ann@example.test', subject: 'Check on Ann', kind: 'alert' });
    expect(box.body).toContain('https://pruuf.test/a/tok');
    const tries = await attempts(id!);
    expect(tries).toHaveLength(1);
    expect(tries[0]).toMatchObject({ provider: 'dev-outbox', outcome: 'accepted', error_class: null, error: null });
    expect(tries[0]!.duration_ms).toBeGreaterThanOrEqual(0);
  });

  it('sends a batch of deliveries, each exactly once', async () => {
    const ids = await insert(Array.from({ length: 30 }, (_, i) => delivery(`p${i}@example.test`)));
    await enqueueDeliveries(db.pool, queues, ids, log, JOBS);
    for (const id of ids) expect((await settled(id)).status).toBe('sent');
    const { rows } = await db.pool.query<{ n: number }>('select count(*)::int as n from dev_outbox where delivery_id = any($1)', [ids]);
    expect(rows[0]!.n).toBe(30);
    expect(ids.map((id) => fake.calls(id))).toEqual(ids.map(() => 1));
  });

  it('sends once when the same id is enqueued twice, and skips it when enqueued again after it was sent', async () => {
    const [id] = await insert([delivery('twice@example.test')]);
    await Promise.all([enqueueDeliveries(db.pool, queues, [id!], log, JOBS), enqueueDeliveries(db.pool, queues, [id!], log, JOBS)]);
    await enqueueDeliveries(db.pool, queues, [id!, id!], log, JOBS);
    expect((await settled(id!)).status).toBe('sent');
    await jobGone(id!);
    await enqueueDeliveries(db.pool, queues, [id!], log, JOBS);
    await jobGone(id!);
    expect(fake.calls(id!)).toBe(1);
    expect(await outboxCount(id!)).toBe(1);
    expect(await attempts(id!)).toHaveLength(1);
    expect((await row(id!)).attempts).toBe(1);
  });

  it.each(['sent', 'cancelled'])('skips a row that is already %s', async (status) => {
    const [id] = await insert([delivery(`${status}@example.test`)]);
    await db.pool.query('update deliveries set status = $2 where id = $1', [id, status]);
    await enqueueDeliveries(db.pool, queues, [id!], log, JOBS);
    await jobGone(id!);
    expect(fake.calls(id!)).toBe(0);
    expect(await outboxCount(id!)).toBe(0);
    expect(await attempts(id!)).toHaveLength(0);
    expect(await row(id!)).toMatchObject({ status, attempts: 0 });
  });

  it('skips a delivery that does not exist', async () => {
    const deps = { pool: db.pool, channels: fake.channels, clock: systemClock, log };
    await expect(processDelivery(deps, '00000000-0000-4000-8000-000000000000', 0, 3)).resolves.toBe('skipped');
  });

  it('marks a delivery failed on a permanent error, without retrying and without the full address in the error', async () => {
    const [id] = await insert([delivery('permanent@example.test')]);
    await enqueueDeliveries(db.pool, queues, [id!], log, JOBS);
    const r = await settled(id!);
    expect(r).toMatchObject({ status: 'failed', attempts: 1, error_class: 'permanent', sent_at: null });
    expect(r.last_error).toBe('p***@example.test does not exist');
    await jobGone(id!);
    await new Promise((res) => setTimeout(res, 100)); // a retry would have run by now (backoff 10 ms)
    expect(fake.calls(id!)).toBe(1);
    expect(await outboxCount(id!)).toBe(0);
    const tries = await attempts(id!);
    expect(tries).toEqual([expect.objectContaining({ outcome: 'failed', error_class: 'permanent', error: 'p***@example.test does not exist' })]);
  });

  it('retries a transient error with backoff and then sends, recording every try', async () => {
    const [id] = await insert([delivery('transient-2@example.test', { channel: 'sms' })]);
    await enqueueDeliveries(db.pool, queues, [id!], log, JOBS);
    const r = await settled(id!);
    expect(r).toMatchObject({ status: 'sent', attempts: 3, provider: 'dev-outbox', error_class: null });
    expect(fake.calls(id!)).toBe(3);
    expect(await outboxCount(id!)).toBe(1);
    expect((await attempts(id!)).map((a) => [a.outcome, a.error_class])).toEqual([
      ['failed', 'transient'], ['failed', 'transient'], ['accepted', null],
    ]);
  });

  it('retries an unclassified error like a transient one, recording it as unclassified', async () => {
    const [id] = await insert([delivery('crash-1@example.test')]);
    await enqueueDeliveries(db.pool, queues, [id!], log, JOBS);
    expect(await settled(id!)).toMatchObject({ status: 'sent', attempts: 2 });
    expect((await attempts(id!)).map((a) => [a.outcome, a.error_class, a.error])).toEqual([
      ['failed', null, 'socket hang up'], ['accepted', null, null],
    ]);
  });

  it('marks a delivery failed when its last try fails', async () => {
    const [id] = await insert([delivery('transient-99@example.test')]);
    await enqueueDeliveries(db.pool, queues, [id!], log, { ...JOBS, attempts: 3 });
    const r = await settled(id!);
    expect(r).toMatchObject({ status: 'failed', attempts: 3, error_class: 'transient', last_error: 'upstream 503' });
    await jobGone(id!);
    expect(fake.calls(id!)).toBe(3);
    expect(await attempts(id!)).toHaveLength(3);
    expect(await outboxCount(id!)).toBe(0);
  });
});
