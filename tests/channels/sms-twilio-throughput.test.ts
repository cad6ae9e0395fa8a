import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { createDevOutboxChannel } from '../../src/channels/dev-outbox/index.js';
import { createTwilioChannel } from '../../src/channels/sms-twilio/index.js';
import { systemClock } from '../../src/clock.js';
import { withTransaction } from '../../src/db/pool.js';
import { enqueueDeliveries, insertDeliveries, type NewDelivery } from '../../src/delivery/outbox.js';
import { createLogger } from '../../src/observability/logger.js';
import { createMetrics } from '../../src/observability/metrics.js';
import { QueueSystem } from '../../src/queue/index.js';
import { startWorker } from '../../src/worker.js';
import { testConfig } from '../helpers/app.js';
import { createTestDatabase, type TestDatabase } from '../helpers/db.js';
import { waitFor } from '../delivery/fake-provider.js';
import { startFakeTwilio, type FakeTwilio } from '../fakes/twilio.js';

const log = createLogger('silent');
const RATE = 4;
const N = 8;
/** Arrival at the fake is the grant plus a request's own latency, which varies by a few ms. */
const JITTER_MS = 60;

describe('per-sender SMS throughput through the real delivery worker', () => {
  let db: TestDatabase;
  let queues: QueueSystem;
  let other: QueueSystem;
  let fake: FakeTwilio;

  beforeAll(async () => {
    db = await createTestDatabase();
    const config = testConfig('redis', db.url);
    fake = await startFakeTwilio();
    // Two workers, as two processes would be: each its own queue connection and its own channel.
    const worker = async () => {
      const q = new QueueSystem({ backend: 'redis', redisUrl: config.REDIS_URL, databaseUrl: db.url, prefix: config.QUEUE_PREFIX }, log);
      const sms = createTwilioChannel({
        accountSid: fake.accountSid, authToken: fake.authToken, apiBase: fake.url, from: '+15005550006',
        validitySeconds: 1800, statusCallbackUrl: 'http://pruuf.test/webhooks/twilio/status', ratePerSecond: RATE, pool: db.pool, log,
      });
      const outbox = createDevOutboxChannel(db.pool);
      // One delivery slot each: a throttled SMS must give it back rather than wait in it.
      await startWorker({
        pool: db.pool, queues: q, clock: systemClock, log, metrics: createMetrics(),
        channels: { push: outbox, sms, email: outbox }, deliveryJobs: { attempts: 3, backoffDelayMs: 10 }, deliveryConcurrency: 1,
      });
      return q;
    };
    queues = await worker();
    other = await worker();
  });
  afterAll(async () => {
    await queues.close();
    await other.close();
    await fake.close();
    await db.drop();
  });

  const sms = (i: number): NewDelivery => ({
    memberId: null, contactId: null, kind: 'alert', channel: 'sms', address: `+4477009002${String(i).padStart(2, '0')}`, body: `Alert ${i}`,
  });

  it(`spreads ${N} messages at ${RATE}/s over at least ${(N - 1) / RATE} s at Twilio, each sent once, spending no attempts, while other channels go on (two workers share the budget)`, async () => {
    const smsIds = await withTransaction(db.pool, (tx) => insertDeliveries(tx, Array.from({ length: N }, (_, i) => sms(i))));
    await enqueueDeliveries(db.pool, queues, smsIds, log, { attempts: 3, backoffDelayMs: 10 });
    const [emailId] = await withTransaction(db.pool, (tx) => insertDeliveries(tx, [{
      memberId: null, contactId: null, kind: 'alert', channel: 'email', address: 'ann@example.test', subject: 'Check on Ann', body: 'Ann missed her check-in.',
    }]));
    await enqueueDeliveries(db.pool, queues, [emailId!], log);

    const sentAt = async (id: string) => (await db.pool.query<{ status: string; sent_at: Date | null }>('select status, sent_at from deliveries where id = $1', [id])).rows[0]!;
    const emailSent = await waitFor(async () => {
      const r = await sentAt(emailId!);
      return r.status === 'sent' ? r.sent_at! : undefined;
    }, 10_000);
    const rows = await waitFor(async () => {
      const { rows } = await db.pool.query<{ status: string; attempts: number; tries: number; sent_at: Date }>(
        `select status, attempts, sent_at, (select count(*)::int from delivery_attempts a where a.delivery_id = d.id) as tries
           from deliveries d where id = any($1)`, [smsIds],
      );
      return rows.every((r) => r.status !== 'pending') ? rows : undefined;
    }, 20_000);

    expect(rows.map((r) => [r.status, r.attempts, r.tries])).toEqual(Array.from({ length: N }, () => ['sent', 1, 1]));
    const arrivals = fake.accepted.filter((m) => m.body.startsWith('Alert ')).map((m) => m.receivedAt).sort((a, b) => a - b);
    expect(arrivals).toHaveLength(N);
    expect(new Set(fake.accepted.map((m) => m.to)).size).toBe(N);
    // From the second arrival on: the first request also pays the client's cold start (its first
    // connection), which would shorten the measured spread without any slot being early.
    expect(arrivals.at(-1)! - arrivals[1]!).toBeGreaterThanOrEqual(((N - 2) / RATE) * 1000 - JITTER_MS);
    // The email did not queue behind the throttled SMS in the workers' single delivery slots.
    const lastSms = Math.max(...rows.map((r) => r.sent_at.getTime()));
    expect(emailSent.getTime()).toBeLessThan(lastSms - 1000);
  });
});
