import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { createDevOutboxChannel } from '../../src/channels/dev-outbox/index.js';
import { createFcmChannel, type FcmChannel } from '../../src/channels/push-fcm/index.js';
import { systemClock } from '../../src/clock.js';
import { withTransaction } from '../../src/db/pool.js';
import { withBreakers, type BreakerSet } from '../../src/delivery/breaker.js';
import { DeliveryDeferredError, processDelivery, type DeliveryDeps } from '../../src/delivery/deliver.js';
import { insertDeliveries } from '../../src/delivery/outbox.js';
import { pushAddress } from '../../src/incidents/plan.js';
import { createLogger } from '../../src/observability/logger.js';
import { createTestDatabase, type TestDatabase } from '../helpers/db.js';
import { startFakeFcm, type FakeFcm } from '../fakes/fcm.js';

const log = createLogger('silent');

let db: TestDatabase;
let fake: FakeFcm;
let fcm: FcmChannel;
let deps: DeliveryDeps;

beforeAll(async () => {
  db = await createTestDatabase();
  fake = await startFakeFcm();
  fcm = createFcmChannel({ pool: db.pool, log, projectId: fake.projectId, credential: fake.credential(), connect: fake.connect });
  const outbox = createDevOutboxChannel(db.pool);
  deps = { pool: db.pool, channels: { push: fcm, sms: outbox, email: outbox }, clock: systemClock, log };
});
afterAll(async () => {
  await fcm.close();
  await fake.close();
  await db.drop();
});

type Row = { status: string; provider: string | null; provider_message_id: string | null; attempts: number; error_class: string | null; last_error: string | null };

async function memberWith(tokens: string[]): Promise<string> {
  const id = randomUUID();
  await db.pool.query('insert into members (id) values ($1)', [id]);
  for (const token of tokens) await db.pool.query(`insert into devices (member_id, token, platform) values ($1, $2, 'android')`, [id, token]);
  return id;
}

async function pushReminder(memberId: string): Promise<string> {
  const [id] = await withTransaction(db.pool, (tx) => insertDeliveries(tx, [{
    memberId, contactId: null, kind: 'reminder', channel: 'push', address: pushAddress(memberId), subject: 'Time to check in', body: 'Your check-in is due at 09:30.',
  }]));
  return id!;
}

const row = async (id: string): Promise<Row> =>
  (await db.pool.query<Row>('select status, provider, provider_message_id, attempts, error_class, last_error from deliveries where id = $1', [id])).rows[0]!;

describe('push deliveries through the FCM channel', () => {
  it('marks the delivery sent by fcm with the message id FCM returned', async () => {
    const token = `ok-${randomUUID()}`;
    const id = await pushReminder(await memberWith([token]));
    expect(await processDelivery(deps, id, 0, 3)).toBe('sent');
    const [accepted] = fake.acceptedFor(token);
    expect(accepted!.message.data).toMatchObject({ delivery_id: id, kind: 'reminder' });
    expect(await row(id)).toMatchObject({ status: 'sent', provider: 'fcm', provider_message_id: accepted!.name, attempts: 1, error_class: null });
  });

  it('marks the delivery failed at once, and forgets the device, when the member has only a dead token', async () => {
    const token = `dead-${randomUUID()}`;
    fake.setToken(token, 'unregistered');
    const memberId = await memberWith([token]);
    const id = await pushReminder(memberId);
    expect(await processDelivery(deps, id, 0, 3)).toBe('failed');
    const r = await row(id);
    expect(r).toMatchObject({ status: 'failed', attempts: 1, error_class: 'permanent' });
    expect(r.last_error).not.toContain(token);
    expect((await db.pool.query('select 1 from devices where member_id = $1', [memberId])).rowCount).toBe(0);
  });

  it('keeps a delivery pending and defers it for the Retry-After of a throttled FCM', async () => {
    const token = `busy-${randomUUID()}`;
    fake.setToken(token, 'quota-exceeded', 1);
    fake.configure({ retryAfterSeconds: 20 });
    const id = await pushReminder(await memberWith([token]));
    const err = await processDelivery(deps, id, 0, 3).then(() => undefined, (e: unknown) => e);
    expect(err).toBeInstanceOf(DeliveryDeferredError);
    expect((err as DeliveryDeferredError).retryAfterMs).toBe(20_000);
    expect(await row(id)).toMatchObject({ status: 'pending', attempts: 1, error_class: 'transient' });
    expect(await processDelivery(deps, id, 1, 3)).toBe('sent');
  });

  it('ends a try that hangs at the breaker deadline and leaves the delivery pending for a retry', async () => {
    const token = `hang-${randomUUID()}`;
    fake.setToken(token, 'hang', 1);
    const breakers: BreakerSet = withBreakers(deps.channels, {
      timeoutMs: 300, errorThresholdPercentage: 50, resetTimeoutMs: 1000, volumeThreshold: 10, rollingCountTimeout: 10_000,
    });
    try {
      const guarded: DeliveryDeps = { ...deps, channels: breakers.channels };
      const id = await pushReminder(await memberWith([token]));
      const started = Date.now();
      await expect(processDelivery(guarded, id, 0, 3)).rejects.toThrow(/transient/);
      expect(Date.now() - started).toBeLessThan(1200);
      expect(await row(id)).toMatchObject({ status: 'pending', attempts: 1, error_class: 'transient' });
      expect(await processDelivery(guarded, id, 1, 3)).toBe('sent');
      expect(await row(id)).toMatchObject({ status: 'sent', provider: 'fcm' });
    } finally {
      breakers.shutdown();
    }
  });
});
