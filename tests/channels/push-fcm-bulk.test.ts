import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from '@jest/globals';
import type pg from 'pg';
import { createFcmChannel, FCM_MAX_BATCH, type FcmChannel } from '../../src/channels/push-fcm/index.js';
import { ChannelError, type OutboundMessage, type SendResult } from '../../src/channels/types.js';
import type { Queryable } from '../../src/db/pool.js';
import { pushAddress } from '../../src/incidents/plan.js';
import { createLogger } from '../../src/observability/logger.js';
import { createTestDatabase, type TestDatabase } from '../helpers/db.js';
import { startFakeFcm, type FakeFcm } from '../fakes/fcm.js';

/**
 * sendMany: many deliveries' pushes in one call. Their devices are read in one query and dead
 * tokens deleted in one statement; each delivery's devices go in a sendEach of their own (its own
 * wire: Retry-After and sender mismatch are its own), so each outcome is the one `send` gives.
 */

let db: TestDatabase;
let fake: FakeFcm;
let channel: FcmChannel;
const statements: string[] = [];

beforeAll(async () => {
  db = await createTestDatabase();
  fake = await startFakeFcm();
  // Counts the channel's own statements.
  const pool: Queryable = { query: ((q: string | pg.QueryConfig, values?: unknown[]) => {
    statements.push((typeof q === 'string' ? q : q.text).trim().split(/\s+/)[0]!);
    return db.pool.query(q as string, values);
  }) as Queryable['query'] };
  channel = createFcmChannel({ pool, log: createLogger('silent'), projectId: fake.projectId, credential: fake.credential(), connect: fake.connect });
});
beforeEach(() => { statements.length = 0; });
afterAll(async () => {
  await channel.close();
  await fake.close();
  await db.drop();
});

async function member(tokens: string[]): Promise<string> {
  const id = randomUUID();
  await db.pool.query('insert into members (id, display_name) values ($1, $2)', [id, 'Ann']);
  for (const token of tokens) await db.pool.query('insert into devices (member_id, token, platform) values ($1, $2, $3)', [id, token, 'ios']);
  return id;
}
const tokenOf = (label: string) => `${label}-${randomUUID()}`;
const message = (memberId: string): OutboundMessage => ({
  deliveryId: randomUUID(), channel: 'push', to: pushAddress(memberId), subject: 'Check on Ann', body: 'Ann missed her 09:30 check-in.',
  html: null, kind: 'alert', incidentId: randomUUID(),
});
const tokensLeft = async (memberId: string) =>
  (await db.pool.query<{ token: string }>('select token from devices where member_id = $1 order by token', [memberId])).rows.map((r) => r.token);
const deadline = () => AbortSignal.timeout(10_000);

describe('FCM sendMany against a local FCM v1 server', () => {
  it('declares a batch of up to 500 deliveries', () => {
    expect(channel.maxBatch).toBe(FCM_MAX_BATCH);
  });

  it('sends every delivery to every device of its member, each answered with its own message id, devices read in one query', async () => {
    const tokens = [[tokenOf('a1'), tokenOf('a2')], [tokenOf('b1')], [tokenOf('c1'), tokenOf('c2'), tokenOf('c3')]];
    const msgs = await Promise.all(tokens.map(async (t) => message(await member(t))));
    statements.length = 0;
    const out = await channel.sendMany!(msgs, deadline());
    expect(statements).toEqual(['select']);
    msgs.forEach((msg, i) => {
      const r = out[i] as SendResult;
      expect(r).toMatchObject({ provider: 'fcm', status: { status: 'sent', errorCode: null } });
      for (const token of tokens[i]!) {
        const [sent] = fake.acceptedFor(token);
        expect(sent!.message.data).toMatchObject({ delivery_id: msg.deliveryId });
      }
      expect(tokens[i]!.map((t) => fake.acceptedFor(t)[0]!.name)).toContain(r.providerMessageId);
    });
    expect(new Set(out.map((r) => (r as SendResult).providerMessageId)).size).toBe(3);
  });

  it('fails a delivery whose every token is dead alone (devices deleted in one statement), the others sent', async () => {
    const [dead1, dead2, alive, halfDead, halfAlive] = [tokenOf('dead1'), tokenOf('dead2'), tokenOf('alive'), tokenOf('halfdead'), tokenOf('halfalive')];
    fake.setToken(dead1, 'unregistered');
    fake.setToken(dead2, 'sender-id-mismatch');
    fake.setToken(halfDead, 'unregistered');
    const [gone, ok, half] = [await member([dead1, dead2]), await member([alive]), await member([halfDead, halfAlive])];
    statements.length = 0;
    const out = await channel.sendMany!([message(gone), message(ok), message(half)], deadline());
    expect(out[0]).toBeInstanceOf(ChannelError);
    expect(out[0]).toMatchObject({ errorClass: 'permanent', deadAddress: undefined, sendStatus: { status: 'undelivered' } });
    expect(out[1]).toMatchObject({ provider: 'fcm', providerMessageId: fake.acceptedFor(alive)[0]!.name });
    expect(out[2]).toMatchObject({ provider: 'fcm', providerMessageId: fake.acceptedFor(halfAlive)[0]!.name });
    expect(await tokensLeft(gone)).toEqual([]);
    expect(await tokensLeft(half)).toEqual([halfAlive]);
    expect(statements).toEqual(['select', 'delete']);
  });

  it('keeps each delivery’s wire its own: a sender mismatch is dead for one while a permission denial is configuration for another', async () => {
    const [foreign, denied] = [tokenOf('foreign'), tokenOf('denied')];
    fake.setToken(foreign, 'sender-id-mismatch');
    fake.setToken(denied, 'permission-denied');
    const [a, b] = [await member([foreign]), await member([denied])];
    const out = await channel.sendMany!([message(a), message(b)], deadline());
    expect(out[0]).toMatchObject({ errorClass: 'permanent', sendStatus: { status: 'undelivered' } });
    expect(out[1]).toMatchObject({ errorClass: 'configuration' });
    expect(await tokensLeft(a)).toEqual([]);
    expect(await tokensLeft(b)).toEqual([denied]);
  });

  it('fails every delivery transiently with FCM’s Retry-After when FCM throttles them all', async () => {
    const tokens = [tokenOf('q1'), tokenOf('q2'), tokenOf('q3')];
    for (const t of tokens) fake.setToken(t, 'quota-exceeded', 1);
    fake.configure({ retryAfterSeconds: 30 });
    try {
      const msgs = await Promise.all(tokens.map(async (t) => message(await member([t]))));
      const out = await channel.sendMany!(msgs, deadline());
      for (const e of out) expect(e).toMatchObject({ name: 'ChannelError', errorClass: 'transient', retryAfterMs: 30_000 });
    } finally {
      fake.configure({ retryAfterSeconds: 1 });
    }
  });

  it('fails a delivery without devices or with an address that is not a member permanently, without calling FCM for it', async () => {
    const token = tokenOf('only');
    const none = await member([]);
    const ok = await member([token]);
    const before = fake.stats.requests;
    const out = await channel.sendMany!([message(none), { ...message(ok), to: 'ann@example.test' }, message(ok)], deadline());
    expect(out[0]).toMatchObject({ errorClass: 'permanent', message: 'fcm: the member has no registered devices' });
    expect(out[1]).toMatchObject({ errorClass: 'permanent', message: 'fcm: a push address must be user:<member id>' });
    expect(out[2]).toMatchObject({ provider: 'fcm' });
    expect(fake.stats.requests - before).toBe(1);
  });

  it('stops every delivery at the deadline as transient', async () => {
    const tokens = [tokenOf('h1'), tokenOf('h2')];
    for (const t of tokens) fake.setToken(t, 'hang', 1);
    const msgs = await Promise.all(tokens.map(async (t) => message(await member([t]))));
    const out = await channel.sendMany!(msgs, AbortSignal.timeout(300));
    for (const e of out) expect(e).toMatchObject({ errorClass: 'transient', message: 'fcm did not answer before the delivery deadline' });
  });
});
