import { randomUUID } from 'node:crypto';
import { Writable } from 'node:stream';
import { afterAll, afterEach, beforeAll, describe, expect, it } from '@jest/globals';
import { pino } from 'pino';
import { createFcmChannel, type FcmChannel } from '../../src/channels/push-fcm/index.js';
import { ChannelError, type OutboundMessage } from '../../src/channels/types.js';
import { pushAddress } from '../../src/incidents/plan.js';
import { loggerOptions } from '../../src/observability/logger.js';
import { createTestDatabase, type TestDatabase } from '../helpers/db.js';
import { startFakeFcm, type FakeFcm } from '../fakes/fcm.js';

let db: TestDatabase;
let fake: FakeFcm;
let channel: FcmChannel;
const logLines: string[] = [];
const log = pino(loggerOptions('info'), new Writable({
  write(chunk: Buffer, _enc, done) {
    logLines.push(chunk.toString('utf8'));
    done();
  },
}));

beforeAll(async () => {
  db = await createTestDatabase();
  fake = await startFakeFcm();
  channel = createFcmChannel({ pool: db.pool, log, projectId: fake.projectId, credential: fake.credential(), connect: fake.connect });
});
afterAll(async () => {
  await channel.close();
  await fake.close();
  await db.drop();
});
afterEach(() => {
  fake.configure({ retryAfterSeconds: 1, faults: { error500: 0, throttle: 0, hang: 0, reset: 0 } });
});

/** A member with one device per token; returns the member id. */
async function member(tokens: string[]): Promise<string> {
  const id = randomUUID();
  await db.pool.query('insert into members (id, display_name) values ($1, $2)', [id, 'Ann']);
  for (const [i, token] of tokens.entries()) {
    await db.pool.query('insert into devices (member_id, token, platform) values ($1, $2, $3)', [id, token, i % 2 === 0 ? 'ios' : 'android']);
  }
  return id;
}

const tokenOf = (label: string) => `${label}-${randomUUID()}`;

function message(memberId: string, extra: Partial<OutboundMessage> = {}): OutboundMessage {
  return {
    deliveryId: randomUUID(), channel: 'push', to: pushAddress(memberId), subject: 'Check on Ann', body: 'Ann missed her 09:30 check-in.',
    html: null, kind: 'alert', incidentId: randomUUID(), ...extra,
  };
}

async function tokensLeft(memberId: string): Promise<string[]> {
  const { rows } = await db.pool.query<{ token: string }>('select token from devices where member_id = $1 order by token', [memberId]);
  return rows.map((r) => r.token);
}

async function failure(promise: Promise<unknown>): Promise<ChannelError> {
  const err = await promise.then(() => undefined, (e: unknown) => e);
  if (!(err instanceof ChannelError)) throw new Error(`expected a ChannelError, got ${String(err)}`);
  return err;
}

const deadline = () => AbortSignal.timeout(10_000);

describe('the FCM channel against a local FCM v1 server', () => {
  it('sends one message per device of the member and answers with the first message id', async () => {
    const tokens = [tokenOf('a'), tokenOf('b'), tokenOf('c')];
    const id = await member(tokens);
    const result = await channel.send(message(id), deadline());
    expect(result.provider).toBe('fcm');
    expect(result.providerMessageId).toMatch(new RegExp(`^projects/${fake.projectId}/messages/\\d+$`));
    for (const token of tokens) expect(fake.acceptedFor(token)).toHaveLength(1);
    expect(fake.accepted.map((m) => m.name)).toContain(result.providerMessageId);
  });

  it('asks for high priority, a per-incident collapse key and a time-sensitive sound on every platform', async () => {
    const token = tokenOf('wire');
    const id = await member([token]);
    const msg = message(id);
    await channel.send(msg, deadline());
    const sent = fake.acceptedFor(token)[0]!.message;
    expect(sent.notification).toEqual({ title: 'Check on Ann', body: 'Ann missed her 09:30 check-in.' });
    expect(sent.data).toEqual({ delivery_id: msg.deliveryId, kind: 'alert', incident_id: msg.incidentId });
    expect(sent.android).toMatchObject({ priority: 'high', collapse_key: msg.incidentId, notification: { sound: 'default' } });
    expect(sent.apns.headers).toMatchObject({ 'apns-priority': '10', 'apns-collapse-id': msg.incidentId, 'apns-push-type': 'alert' });
    expect(sent.apns.payload.aps).toEqual({ 'sound': 'default', 'interruption-level': 'time-sensitive' });
    expect(sent.webpush.headers).toEqual({ Urgency: 'high' });
  });

  it('collapses on the delivery id and titles the notification Pruuf when there is no incident nor subject', async () => {
    const token = tokenOf('reminder');
    const id = await member([token]);
    const msg = message(id, { incidentId: null, subject: null, kind: 'reminder' });
    await channel.send(msg, deadline());
    const sent = fake.acceptedFor(token)[0]!.message;
    expect(sent.notification.title).toBe('Pruuf');
    expect(sent.data).toEqual({ delivery_id: msg.deliveryId, kind: 'reminder' });
    expect(sent.android.collapse_key).toBe(msg.deliveryId);
    expect(sent.apns.headers['apns-collapse-id']).toBe(msg.deliveryId);
  });

  it('deletes a device whose token is unregistered and still counts the push as sent through the others', async () => {
    const [dead, alive] = [tokenOf('dead'), tokenOf('alive')];
    fake.setToken(dead, 'unregistered');
    const id = await member([dead, alive]);
    const result = await channel.send(message(id), deadline());
    expect(result.providerMessageId).toBe(fake.acceptedFor(alive)[0]!.name);
    expect(await tokensLeft(id)).toEqual([alive]);
    expect(logLines.join('')).not.toContain(dead);
  });

  it('fails permanently and deletes the devices when every token is dead (unregistered or of another sender)', async () => {
    const [gone, foreign] = [tokenOf('gone'), tokenOf('foreign')];
    fake.setToken(gone, 'unregistered');
    fake.setToken(foreign, 'sender-id-mismatch');
    const id = await member([gone, foreign]);
    const err = await failure(channel.send(message(id), deadline()));
    expect(err.errorClass).toBe('permanent');
    expect(err.deadAddress).toBeUndefined();
    expect(await tokensLeft(id)).toEqual([]);
    expect(err.message).not.toContain(gone);
  });

  it('fails permanently without calling FCM when the member has no devices or the address is not a member', async () => {
    const before = fake.stats.requests;
    expect((await failure(channel.send(message(await member([])), deadline()))).errorClass).toBe('permanent');
    expect((await failure(channel.send({ ...message(randomUUID()), to: 'ann@example.test' }, deadline()))).errorClass).toBe('permanent');
    expect(fake.stats.requests).toBe(before);
  });

  it('treats a permission denial without a sender mismatch as our configuration and keeps the device', async () => {
    const token = tokenOf('iam');
    fake.setToken(token, 'permission-denied');
    const id = await member([token]);
    const err = await failure(channel.send(message(id), deadline()));
    expect(err.errorClass).toBe('configuration');
    expect(await tokensLeft(id)).toEqual([token]);
  });

  it('fails permanently on an invalid argument, keeps the device and logs it as a bug without the token', async () => {
    const token = tokenOf('invalid');
    fake.setToken(token, 'invalid-argument');
    const id = await member([token]);
    logLines.length = 0;
    const err = await failure(channel.send(message(id), deadline()));
    expect(err.errorClass).toBe('permanent');
    expect(err.message).toContain('messaging/invalid-argument');
    expect(await tokensLeft(id)).toEqual([token]);
    const bug = logLines.map((l) => JSON.parse(l) as Record<string, unknown>).find((l) => l.code === 'messaging/invalid-argument');
    expect(bug).toMatchObject({ level: 50, platform: 'ios' });
    expect(logLines.join('')).not.toContain(token);
  });

  it('fails transiently on a 500 and keeps the device', async () => {
    const token = tokenOf('internal');
    fake.setToken(token, 'internal');
    const id = await member([token]);
    const err = await failure(channel.send(message(id), deadline()));
    expect(err.errorClass).toBe('transient');
    expect(err.retryAfterMs).toBeUndefined();
    expect(await tokensLeft(id)).toEqual([token]);
  });

  it('fails transiently on a 429 and passes on its Retry-After, which the SDK does not retry by itself', async () => {
    const token = tokenOf('quota');
    fake.setToken(token, 'quota-exceeded');
    fake.configure({ retryAfterSeconds: 30 });
    const id = await member([token]);
    const before = fake.stats.requests;
    const err = await failure(channel.send(message(id), deadline()));
    expect(err).toMatchObject({ errorClass: 'transient', retryAfterMs: 30_000 });
    expect(fake.stats.requests - before).toBe(1);
  });

  it('fails transiently on a 503 whose Retry-After is longer than the SDK waits, and passes it on', async () => {
    const token = tokenOf('unavailable');
    fake.setToken(token, 'unavailable');
    fake.configure({ retryAfterSeconds: 120 });
    const id = await member([token]);
    const err = await failure(channel.send(message(id), deadline()));
    expect(err).toMatchObject({ errorClass: 'transient', retryAfterMs: 120_000 });
  });

  it('lets the SDK retry a 503 with a short Retry-After within the same send', async () => {
    const token = tokenOf('blip');
    fake.setToken(token, 'unavailable', 1);
    const id = await member([token]);
    const before = fake.stats.requests;
    await channel.send(message(id), deadline());
    expect(fake.stats.requests - before).toBe(2);
    expect(fake.acceptedFor(token)).toHaveLength(1);
  });

  it('stops at the deadline while the SDK waits out a Retry-After, and its later retry never reaches FCM', async () => {
    const token = tokenOf('slow-retry');
    fake.setToken(token, 'unavailable');
    fake.configure({ retryAfterSeconds: 2 });
    const id = await member([token]);
    const before = fake.stats.requests;
    const started = Date.now();
    const err = await failure(channel.send(message(id), AbortSignal.timeout(300)));
    expect(Date.now() - started).toBeLessThan(1500);
    expect(err).toMatchObject({ errorClass: 'transient', retryAfterMs: 2000 });
    await new Promise((r) => setTimeout(r, 2500));
    expect(fake.stats.requests - before).toBe(1);
  });

  it('is accepted when one device accepts and another fails transiently, and transient when none accepts', async () => {
    const [ok, broken, busy] = [tokenOf('ok'), tokenOf('broken'), tokenOf('busy')];
    fake.setToken(broken, 'internal');
    const mixed = await member([ok, broken]);
    expect((await channel.send(message(mixed), deadline())).providerMessageId).toBe(fake.acceptedFor(ok)[0]!.name);

    const [dead] = [tokenOf('dead-too')];
    fake.setToken(dead, 'unregistered');
    fake.setToken(busy, 'internal');
    const none = await member([dead, busy]);
    const err = await failure(channel.send(message(none), deadline()));
    expect(err.errorClass).toBe('transient');
    expect(await tokensLeft(none)).toEqual([busy]);
  });

  it('gives up at the deadline on a server that never answers and closes the hanging connection', async () => {
    const token = tokenOf('hang');
    fake.setToken(token, 'hang');
    const id = await member([token]);
    const started = Date.now();
    const err = await failure(channel.send(message(id), AbortSignal.timeout(300)));
    expect(err.errorClass).toBe('transient');
    expect(Date.now() - started).toBeLessThan(1500);
    const until = Date.now() + 2000;
    while (fake.hanging() > 0 && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
    expect(fake.hanging()).toBe(0);
  });

  it('is accepted after one connection reset, which the SDK retries at once', async () => {
    const token = tokenOf('reset-once');
    fake.setToken(token, 'reset', 1);
    const id = await member([token]);
    await channel.send(message(id), deadline());
    expect(fake.acceptedFor(token)).toHaveLength(1);
  });

  it('fails transiently when every connection is reset, once the SDK has spent its retries', async () => {
    const token = tokenOf('reset');
    fake.setToken(token, 'reset');
    const id = await member([token]);
    const before = fake.stats.requests;
    const err = await failure(channel.send(message(id), AbortSignal.timeout(20_000)));
    expect(err.errorClass).toBe('transient');
    expect(err.message).toContain('app/network-error');
    expect(fake.stats.requests - before).toBe(5);
  }, 25_000);

  it('reports an APNs credential problem and a rejected access token as configuration errors', async () => {
    const token = tokenOf('apns');
    fake.setToken(token, 'third-party-auth');
    const id = await member([token]);
    expect((await failure(channel.send(message(id), deadline()))).errorClass).toBe('configuration');

    const other = tokenOf('any');
    const otherId = await member([other]);
    const wrongKey = createFcmChannel({ pool: db.pool, log, projectId: fake.projectId, credential: fake.credential('revoked'), connect: fake.connect });
    const noToken = createFcmChannel({
      pool: db.pool, log, projectId: fake.projectId, connect: fake.connect,
      credential: { getAccessToken: () => Promise.reject(new Error('invalid_grant')) },
    });
    try {
      expect((await failure(wrongKey.send(message(otherId), deadline()))).errorClass).toBe('configuration');
      expect((await failure(noToken.send(message(otherId), deadline()))).errorClass).toBe('configuration');
      expect(await tokensLeft(otherId)).toEqual([other]);
    } finally {
      await wrongKey.close();
      await noToken.close();
    }
  });

  it('under random 500s, 429/503s and hangs, each push is either accepted once or fails transiently', async () => {
    const faulty = await startFakeFcm({ seed: 7, retryAfterSeconds: 120, faults: { error500: 0.3, throttle: 0.1, hang: 0.05 } });
    const c = createFcmChannel({ pool: db.pool, log, projectId: faulty.projectId, credential: faulty.credential(), connect: faulty.connect });
    try {
      let sent = 0;
      const classes = new Set<string>();
      for (let i = 0; i < 60; i++) {
        const token = tokenOf(`dice${i}`);
        const outcome = await c.send(message(await member([token])), AbortSignal.timeout(200)).then(() => 'sent', (e: ChannelError) => e.errorClass);
        if (outcome === 'sent') sent++;
        else classes.add(outcome);
        expect(faulty.acceptedFor(token)).toHaveLength(outcome === 'sent' ? 1 : 0);
      }
      expect([...classes]).toEqual(['transient']);
      const { stats } = faulty;
      expect(stats.requests).toBe(60);
      expect(stats.accepted).toBe(sent);
      expect(stats.error500 + stats.throttled + stats.hung).toBe(60 - sent);
      expect(stats.error500).toBeGreaterThan(stats.throttled);
      expect(stats.hung).toBeGreaterThan(0);
    } finally {
      await c.close();
      await faulty.close();
    }
  });

  it('runs several channels side by side, each on its own app, and refuses to send once closed', async () => {
    const second = createFcmChannel({ pool: db.pool, log, projectId: fake.projectId, credential: fake.credential(), connect: fake.connect });
    expect(second.app.name).not.toBe(channel.app.name);
    const token = tokenOf('second');
    const id = await member([token]);
    await second.send(message(id), deadline());
    await second.close();
    expect((await failure(second.send(message(id), deadline()))).errorClass).toBe('transient');
    await channel.send(message(id), deadline());
    expect(fake.acceptedFor(token)).toHaveLength(2);
  });
});
