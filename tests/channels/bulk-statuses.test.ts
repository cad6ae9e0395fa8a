import { afterAll, beforeAll, beforeEach, describe, expect, it } from '@jest/globals';
import { generateKeyPairSync, randomUUID, sign } from 'node:crypto';
import { coalesced } from '../../src/channels/coalesce.js';
import { createDevOutboxChannel } from '../../src/channels/dev-outbox/index.js';
import { createPostmarkChannel } from '../../src/channels/email-postmark/index.js';
import { createSendGridChannel } from '../../src/channels/email-sendgrid/index.js';
import { createFcmChannel, type FcmChannel } from '../../src/channels/push-fcm/index.js';
import type { Channel, OutboundMessage, SendResult } from '../../src/channels/types.js';
import { withTransaction } from '../../src/db/pool.js';
import { processDelivery, type DeliveryDeps } from '../../src/delivery/deliver.js';
import { insertDeliveries, type NewDelivery } from '../../src/delivery/outbox.js';
import { pushAddress } from '../../src/incidents/plan.js';
import { createLogger } from '../../src/observability/logger.js';
import { startTestApp, type TestApp } from '../helpers/app.js';
import { testClock } from '../incidents/helpers.js';
import { startFakeFcm, type FakeFcm } from '../fakes/fcm.js';
import { startFakePostmark, webhookViaInject, type FakePostmark, type WebhookAuth } from '../fakes/postmark.js';
import { startFakeSendGrid, type FakeSendGrid } from '../fakes/sendgrid.js';

/**
 * Per-delivery statuses of messages that left in one bulk request (issue 19): SendGrid events
 * through its signed webhook (many deliveries share one X-Message-Id), Postmark records through
 * its webhook, FCM's answers recorded by the delivery job, each on its own delivery.
 */

const keys = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
const PUBLIC_KEY = keys.publicKey.export({ type: 'spki', format: 'der' }).toString('base64');
const AUTH: WebhookAuth = { user: 'postmark', password: 'correct-horse-battery-staple' };
const clock = testClock('2026-12-07T10:00:00Z');
const nowS = () => Math.floor(clock.now.getTime() / 1000);
const FROM = { email: 'alerts@pruuf.test', name: 'Pruuf' };
const log = createLogger('silent');

type Row = { status: string; provider: string | null; provider_message_id: string | null; provider_status: string | null; carrier_status: string | null };

describe('statuses of deliveries sent in one bulk request', () => {
  let t: TestApp;
  let sendgrid: FakeSendGrid;
  let postmark: FakePostmark;
  let fcmFake: FakeFcm;
  let fcm: FcmChannel;
  let seq = 0;

  beforeAll(async () => {
    t = await startTestApp({
      clock: () => clock.now,
      env: { SENDGRID_WEBHOOK_PUBLIC_KEY: PUBLIC_KEY, POSTMARK_WEBHOOK_USER: AUTH.user, POSTMARK_WEBHOOK_PASSWORD: AUTH.password },
    });
    [sendgrid, postmark, fcmFake] = await Promise.all([startFakeSendGrid(), startFakePostmark(), startFakeFcm()]);
    fcm = createFcmChannel({ pool: t.db.pool, log, projectId: fcmFake.projectId, credential: fcmFake.credential(), connect: fcmFake.connect });
  });
  beforeEach(() => {
    sendgrid.reset();
    postmark.reset();
  });
  afterAll(async () => {
    await fcm.close();
    await Promise.all([sendgrid.close(), postmark.close(), fcmFake.close()]);
    await t.close();
  });

  const insert = (ds: Partial<NewDelivery>[]) => withTransaction(t.db.pool, (tx) => insertDeliveries(tx, ds.map((d) => ({
    memberId: null, contactId: null, kind: 'alert', channel: 'email', address: `c-${randomUUID()}@example.test`,
    subject: 'Check on Ann', body: 'Ann missed her check-in: https://pruuf.test/a/tok', html: '<p>Ann missed her check-in</p>', ...d,
  } as NewDelivery))));
  const row = async (id: string) => (await t.db.pool.query<Row>(
    'select status, provider, provider_message_id, provider_status, carrier_status from deliveries where id = $1', [id])).rows[0]!;
  const outbound = async (id: string): Promise<OutboundMessage> => {
    const { rows: [d] } = await t.db.pool.query<{ address: string; subject: string; body: string; html: string | null }>('select address, subject, body, html from deliveries where id = $1', [id]);
    return { deliveryId: id, channel: 'email', to: d!.address, subject: d!.subject, body: d!.body, html: d!.html, kind: 'alert', incidentId: null };
  };
  /** What deliver.ts markSent writes after a send. */
  const markSent = (id: string, r: SendResult) => t.db.pool.query(
    `update deliveries set status = 'sent', provider = $2, provider_message_id = $3, sent_at = $4, updated_at = $4 where id = $1`, [id, r.provider, r.providerMessageId, clock.now]);

  const postSendGrid = (events: unknown[]) => {
    const payload = Buffer.from(JSON.stringify(events));
    const timestamp = String(nowS());
    const signature = sign('sha256', Buffer.concat([Buffer.from(timestamp), payload]), keys.privateKey).toString('base64');
    return t.app.inject({
      method: 'POST', url: '/webhooks/sendgrid/events', payload,
      headers: { 'content-type': 'application/json', 'x-twilio-email-event-webhook-signature': signature, 'x-twilio-email-event-webhook-timestamp': timestamp },
    });
  };
  /** An event as SendGrid posts it for one personalization: its own sg_message_id suffix, its custom args at the top level. */
  const sgEvent = (m: OutboundMessage, messageId: string, name: string, extra: Record<string, unknown> = {}) => {
    seq += 1;
    return {
      email: m.to, timestamp: nowS(), event: name, sg_event_id: `ev-${seq}-${randomUUID()}`,
      sg_message_id: `${messageId}.filterdrecv-5df4b7f7c6-2mwlf-1-5F8A1C3E-${seq}.0`, delivery_id: m.deliveryId, kind: 'alert', ...extra,
    };
  };

  it('SendGrid: events of messages sharing one X-Message-Id each land on their own delivery, with or without our delivery_id', async () => {
    const ids = await insert([{}, {}, {}, {}]);
    const msgs = await Promise.all(ids.map(outbound));
    const channel = createSendGridChannel({ apiKey: sendgrid.apiKey, baseUrl: sendgrid.url, from: FROM });
    const out = await channel.sendMany!(msgs, AbortSignal.timeout(5000));
    expect(sendgrid.requests).toHaveLength(1);
    const messageId = sendgrid.requests[0]!.messageId;
    for (const [i, r] of out.entries()) await markSent(ids[i]!, r as SendResult);

    const [a, b, c, d] = msgs as [OutboundMessage, OutboundMessage, OutboundMessage, OutboundMessage];
    const noId = (e: Record<string, unknown>) => { const { delivery_id: _d, ...rest } = e; return rest; };
    const res = await postSendGrid([
      sgEvent(a, messageId, 'processed'), sgEvent(a, messageId, 'delivered', { response: '250 OK' }),
      sgEvent(b, messageId, 'bounce', { type: 'blocked', reason: '550 blocked', status: '5.7.1' }),
      // No delivery_id (custom args lost): the shared message id and the recipient's address find it.
      noId(sgEvent(c, messageId, 'deferred', { response: '421 try later' })),
      // Neither our id nor an address of that request: matches no delivery, never an arbitrary one of them.
      noId({ ...sgEvent(d, messageId, 'delivered'), email: 'someone-else@example.test' }),
    ]);
    expect(res.statusCode).toBe(200);
    expect(res.json()).toEqual({ received: 5, applied: 4, duplicates: 0, ignored: 1, email_disabled: 0 });
    expect(await row(a.deliveryId)).toMatchObject({ provider_message_id: messageId, provider_status: 'delivered', carrier_status: 'delivered' });
    expect(await row(b.deliveryId)).toMatchObject({ provider_message_id: messageId, provider_status: 'bounce', carrier_status: 'bounced' });
    expect(await row(c.deliveryId)).toMatchObject({ provider_message_id: messageId, provider_status: 'deferred', carrier_status: 'deferred' });
    expect(await row(d.deliveryId)).toMatchObject({ provider_message_id: messageId, provider_status: null, carrier_status: null });
  });

  it('Postmark: the records of a batch land on their own deliveries', async () => {
    postmark.setWebhooks({ send: webhookViaInject({ inject: (o) => t.app.inject(o) }), auth: AUTH });
    try {
      const ids = await insert([{}, {}, {}]);
      const msgs = await Promise.all(ids.map(outbound));
      postmark.bounceAddress(msgs[1]!.to, 'HardBounce');
      const channel = createPostmarkChannel({ serverToken: postmark.serverToken, apiBase: postmark.url, from: FROM });
      const out = await channel.sendMany!(msgs, AbortSignal.timeout(5000));
      for (const [i, r] of out.entries()) await markSent(ids[i]!, r as SendResult);
      await postmark.settled();
      expect(postmark.accepted.every((m) => m.viaBatch)).toBe(true);
      expect(postmark.webhookPosts.map((p) => p.status)).toEqual([200, 200, 200]);
      expect(await row(ids[0]!)).toMatchObject({ provider: 'postmark', provider_message_id: postmark.acceptedFor(ids[0]!)[0]!.messageId, carrier_status: 'delivered' });
      expect(await row(ids[1]!)).toMatchObject({ provider: 'postmark', provider_message_id: postmark.acceptedFor(ids[1]!)[0]!.messageId, carrier_status: 'bounced' });
      expect(await row(ids[2]!)).toMatchObject({ provider: 'postmark', provider_message_id: postmark.acceptedFor(ids[2]!)[0]!.messageId, carrier_status: 'delivered' });
    } finally {
      postmark.setWebhooks(undefined);
    }
  });

  it('through the delivery job: concurrent email deliveries are coalesced and each row records its own send', async () => {
    const outbox = createDevOutboxChannel(t.db.pool);
    const email: Channel = coalesced(createSendGridChannel({ apiKey: sendgrid.apiKey, baseUrl: sendgrid.url, from: FROM }));
    const deps: DeliveryDeps = { pool: t.db.pool, channels: { push: outbox, sms: outbox, email }, clock: () => clock.now, log, sendTimeoutMs: 5000 };
    const ids = await insert(Array.from({ length: 12 }, () => ({})));
    expect(await Promise.all(ids.map((id) => processDelivery(deps, id, 0, 3)))).toEqual(ids.map(() => 'sent'));
    // However the jobs' sends fell into turns, each message left once and each row has its request's id.
    expect(sendgrid.requests.reduce((s, r) => s + r.personalizations, 0)).toBe(12);
    expect(sendgrid.requests.length).toBeLessThan(12);
    for (const id of ids) {
      const [sent] = sendgrid.acceptedFor(id);
      expect(sendgrid.acceptedFor(id)).toHaveLength(1);
      expect(await row(id)).toMatchObject({ status: 'sent', provider: 'sendgrid', provider_message_id: sent!.messageId });
    }
  });

  it('through the delivery job: FCM answers of coalesced pushes are recorded on each delivery, a dead member’s alone', async () => {
    const outbox = createDevOutboxChannel(t.db.pool);
    const deps: DeliveryDeps = { pool: t.db.pool, channels: { push: coalesced(fcm), sms: outbox, email: outbox }, clock: () => clock.now, log, sendTimeoutMs: 5000 };
    const tokens = [randomUUID(), randomUUID(), randomUUID()];
    fcmFake.setToken(tokens[1]!, 'unregistered');
    const members: string[] = [];
    for (const token of tokens) {
      const id = randomUUID();
      await t.db.pool.query('insert into members (id, display_name) values ($1, $2)', [id, 'Ann']);
      await t.db.pool.query('insert into devices (member_id, token, platform) values ($1, $2, $3)', [id, token, 'android']);
      members.push(id);
    }
    const ids = await insert(members.map((m) => ({ channel: 'push', address: pushAddress(m), html: null })));
    expect(await Promise.all(ids.map((id) => processDelivery(deps, id, 0, 3)))).toEqual(['sent', 'failed', 'sent']);
    expect(await row(ids[0]!)).toMatchObject({ provider: 'fcm', provider_message_id: fcmFake.acceptedFor(tokens[0]!)[0]!.name, carrier_status: 'sent' });
    expect(await row(ids[1]!)).toMatchObject({ status: 'failed', carrier_status: 'undelivered' });
    expect(await row(ids[2]!)).toMatchObject({ provider: 'fcm', provider_message_id: fcmFake.acceptedFor(tokens[2]!)[0]!.name, carrier_status: 'sent' });
  });
});
