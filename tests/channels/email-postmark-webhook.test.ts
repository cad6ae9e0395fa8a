import { afterAll, beforeAll, beforeEach, describe, expect, it } from '@jest/globals';
import { randomUUID } from 'node:crypto';
import { createPostmarkChannel } from '../../src/channels/email-postmark/index.js';
import type { Channel } from '../../src/channels/types.js';
import { messageText, type StoredMessage } from '../../src/incidents/render-at-send.js';
import { errorOf, startTestApp, type TestApp } from '../helpers/app.js';
import { OpenApiChecker } from '../helpers/openapi-check.js';
import { memberWithContacts, testClock } from '../incidents/helpers.js';
import {
  bounceRecord, deliveryRecord, postWebhook, spamComplaintRecord, startFakePostmark, webhookViaInject,
  type AcceptedEmail, type FakePostmark, type WebhookAuth,
} from '../fakes/postmark.js';

/**
 * Postmark's webhook against real deliveries: each alert email really goes through the Postmark
 * SDK to the local fake, and its row is then marked sent exactly as the worker's markSent does
 * (status, provider, provider_message_id, sent_at), so these tests do not depend on how the
 * worker picks among email providers. Records are posted as Postmark posts them: one JSON record
 * per request, with the basic auth of the webhook URL.
 */

const AUTH: WebhookAuth = { user: 'postmark', password: 'correct-horse-battery-staple' };
const URL = '/webhooks/postmark/events';
const clock = testClock('2026-12-07T09:00:00Z');

type Sent = { deliveryId: string; contactId: string; incidentId: string; headers: { authorization: string }; mail: AcceptedEmail };
type Row = { status: string; provider_status: string | null; provider_error_code: string | null; carrier_status: string | null; carrier_status_at: Date | null };

describe('POST /webhooks/postmark/events', () => {
  let t: TestApp;
  let fake: FakePostmark;
  let channel: Channel;
  let openapi: OpenApiChecker;

  beforeAll(async () => {
    t = await startTestApp({
      clock: () => clock.now,
      env: { POSTMARK_WEBHOOK_USER: AUTH.user, POSTMARK_WEBHOOK_PASSWORD: AUTH.password, FREE_PLAN_CHANNELS: 'push,sms,email' },
    });
    fake = await startFakePostmark();
    channel = createPostmarkChannel({ serverToken: fake.serverToken, apiBase: fake.url, from: { email: 'alerts@pruuf.test', name: 'Pruuf' } });
    openapi = await OpenApiChecker.load(t.app);
  });
  beforeEach(() => {
    fake.reset();
    fake.setWebhooks(undefined);
  });
  afterAll(async () => {
    await fake.close();
    await t.close();
  });

  const send = webhookViaInject({ inject: (o) => t.app.inject(o) });
  /** `null`: no Authorization header at all. */
  const post = async (record: unknown, auth: WebhookAuth | null = AUTH) => {
    const res = await postWebhook(send, record, auth ?? undefined);
    return { status: res.status, json: JSON.parse(res.body) as Record<string, unknown>, body: res.body };
  };

  /** An SOS alert to one contact; its email sent through Postmark (the fake) and recorded as the worker records a send. */
  async function alertEmail(): Promise<Sent> {
    const m = await memberWithContacts(t, [1]);
    const sos = await t.app.inject({ method: 'POST', url: '/v1/sos', headers: m.headers, payload: {} });
    expect(sos.statusCode).toBe(201);
    const { rows: [row] } = await t.db.pool.query<StoredMessage & { address: string }>(
      `select id, kind, channel, incident_id, contact_id, subject, body, html, data, render, address
         from deliveries where incident_id = $1 and channel = 'email' and kind = 'alert'`, [sos.json().id],
    );
    const text = await messageText(t.db.pool, row!);
    const result = await channel.send({
      deliveryId: row!.id, channel: 'email', to: row!.address, subject: text.subject, body: text.body, html: text.html, kind: 'alert', incidentId: sos.json().id,
    }, AbortSignal.timeout(5000));
    expect(result.provider).toBe('postmark');
    // deliver.ts markSent: the same columns, so the row is what the worker leaves after a send.
    await t.db.pool.query(
      `update deliveries set status = 'sent', provider = $2, provider_message_id = $3, sent_at = $4, updated_at = $4, attempts = attempts + 1
        where id = $1 and status = 'pending'`,
      [row!.id, result.provider, result.providerMessageId, clock.now],
    );
    const mail = fake.acceptedFor(row!.id)[0]!;
    expect(mail.messageId).toBe(result.providerMessageId);
    return { deliveryId: row!.id, contactId: m.contacts[0]!.id, incidentId: sos.json().id, headers: m.headers, mail };
  }

  const row = async (id: string) => (await t.db.pool.query<Row>(
    'select status, provider_status, provider_error_code, carrier_status, carrier_status_at from deliveries where id = $1', [id])).rows[0]!;
  const contact = async (s: Sent) => (await t.app.inject({ method: 'GET', url: `/v1/contacts/${s.contactId}`, headers: s.headers })).json();
  const timeline = async (s: Sent) => {
    const res = await t.app.inject({ method: 'GET', url: `/v1/incidents/${s.incidentId}`, headers: s.headers });
    expect(openapi.problems('GET', '/v1/incidents/:id', res)).toEqual([]);
    return res.json() as { deliveries: { id: string; carrier_status: string | null; carrier_error_code: string | null }[]; events: { type: string; contact_id: string; detail: Record<string, unknown> }[] };
  };
  const eventCount = async () => (await t.db.pool.query<{ n: number }>(`select count(*)::int as n from provider_events where provider = 'postmark'`)).rows[0]!.n;

  it('shows the alert as delivered when Postmark posts its Delivery record (the fake posts it by itself)', async () => {
    fake.setWebhooks({ send, auth: AUTH });
    const s = await alertEmail();
    await fake.settled();
    expect(fake.webhookPosts).toEqual([{ messageId: s.mail.messageId, recordType: 'Delivery', status: 200 }]);
    expect(await row(s.deliveryId)).toMatchObject({ status: 'sent', provider_status: 'delivered', carrier_status: 'delivered', provider_error_code: null });
    const d = (await timeline(s)).deliveries.find((x) => x.id === s.deliveryId)!;
    expect(d).toMatchObject({ carrier_status: 'delivered', carrier_error_code: null });
    const metrics = (await t.app.inject({ method: 'GET', url: '/metrics' })).body;
    expect(metrics).toMatch(/pruuf_delivery_statuses_total\{provider="postmark",channel="email",status="delivered",outcome="applied"\} [1-9]/);
  });

  it('records when Postmark says it was delivered, and answers what it did', async () => {
    const s = await alertEmail();
    const at = new Date(clock.now.getTime() + 4000);
    const res = await post(deliveryRecord(s.mail, at));
    expect(res.status).toBe(200);
    expect(res.json).toEqual({ record_type: 'Delivery', outcome: 'applied', email_disabled: false });
    expect((await row(s.deliveryId)).carrier_status_at?.toISOString()).toBe(at.toISOString());
  });

  it('turns email off on a hard bounce, shows "bounced" on the timeline with the failover, and keeps the address out of the reason', async () => {
    const s = await alertEmail();
    const res = await post(bounceRecord(s.mail, 'HardBounce', { Details: `smtp;550 5.1.1 <${s.mail.to}>: Recipient address rejected: User unknown` }));
    expect(res.json).toEqual({ record_type: 'Bounce', outcome: 'applied', email_disabled: true });
    expect(await row(s.deliveryId)).toMatchObject({ provider_status: 'bounce', carrier_status: 'bounced', provider_error_code: 'HardBounce' });
    const c = await contact(s);
    expect(c.email_disabled).toBe(true);
    expect(c.email_disabled_reason).toBe('bounced: smtp;550 5.1.1 the address: Recipient address rejected: User unknown');
    expect(c.channels).not.toContain('email');
    const tl = await timeline(s);
    expect(tl.deliveries.find((x) => x.id === s.deliveryId)).toMatchObject({ carrier_status: 'bounced', carrier_error_code: 'HardBounce' });
    expect(tl.events.find((e) => e.type === 'failover')).toMatchObject({ contact_id: s.contactId, detail: { channel: 'email', delivery_id: s.deliveryId } });
  });

  it('applies a repeated record once: a retried bounce does not turn email off again, a retried Delivery changes nothing', async () => {
    const s = await alertEmail();
    const bounce = bounceRecord(s.mail, 'HardBounce');
    expect((await post(bounce)).json).toMatchObject({ outcome: 'applied', email_disabled: true });
    // An operator turned it back on after checking the mailbox with the contact.
    await t.db.pool.query('update contacts set email_disabled = false, email_disabled_reason = null where id = $1', [s.contactId]);
    const again = await post(bounce);
    expect(again.status).toBe(200);
    expect(again.json).toEqual({ record_type: 'Bounce', outcome: 'duplicate', email_disabled: false });
    expect((await contact(s)).email_disabled).toBe(false);

    const other = await alertEmail();
    const delivered = deliveryRecord(other.mail);
    expect((await post(delivered)).json).toMatchObject({ outcome: 'applied' });
    const before = await eventCount();
    expect((await post(delivered)).json).toMatchObject({ outcome: 'duplicate' });
    expect(await eventCount()).toBe(before);
    const { rows } = await t.db.pool.query('select 1 from delivery_statuses where delivery_id = $1', [other.deliveryId]);
    expect(rows).toHaveLength(1);
  });

  it('keeps email on for a soft bounce, and shows a delayed message as deferred until it is delivered', async () => {
    const s = await alertEmail();
    expect((await post(bounceRecord(s.mail, 'SoftBounce'))).json).toEqual({ record_type: 'Bounce', outcome: 'applied', email_disabled: false });
    expect(await row(s.deliveryId)).toMatchObject({ carrier_status: 'bounced', provider_error_code: 'SoftBounce' });
    expect((await contact(s)).email_disabled).toBe(false);

    const d = await alertEmail();
    await post(bounceRecord(d.mail, 'Transient', {}, new Date(clock.now.getTime() + 1000)));
    expect(await row(d.deliveryId)).toMatchObject({ provider_status: 'deferred', carrier_status: 'deferred', provider_error_code: 'Transient' });
    await post(deliveryRecord(d.mail, new Date(clock.now.getTime() + 60_000)));
    expect(await row(d.deliveryId)).toMatchObject({ carrier_status: 'delivered', provider_error_code: null });
    expect((await contact(d)).email_disabled).toBe(false);
  });

  it('turns email off for any bounce after which Postmark deactivated the address', async () => {
    const s = await alertEmail();
    const res = await post(bounceRecord(s.mail, 'Blocked', { Inactive: true, Details: 'smtp;554 5.7.1 blocked by policy' }));
    expect(res.json).toMatchObject({ outcome: 'applied', email_disabled: true });
    expect((await contact(s)).email_disabled_reason).toBe('bounced: smtp;554 5.7.1 blocked by policy');
  });

  it('turns email off on a spam complaint, and the alert still counts as delivered (no failover: it arrived)', async () => {
    const s = await alertEmail();
    await post(deliveryRecord(s.mail));
    const res = await post(spamComplaintRecord(s.mail, new Date(clock.now.getTime() + 3_600_000)));
    expect(res.json).toEqual({ record_type: 'SpamComplaint', outcome: 'applied', email_disabled: true });
    expect(await row(s.deliveryId)).toMatchObject({ provider_status: 'spamcomplaint', carrier_status: 'delivered' });
    expect((await contact(s)).email_disabled_reason).toMatch(/^spam complaint: /);
    expect((await timeline(s)).events.filter((e) => e.type === 'failover')).toEqual([]);
  });

  it('ignores records that are not ours or not about delivery: no delivery_id, an unknown one, opens, clicks, autoresponders', async () => {
    const s = await alertEmail();
    const before = await eventCount();
    const records = [
      { ...deliveryRecord(s.mail), Metadata: {} },
      { ...deliveryRecord(s.mail), Metadata: null },
      deliveryRecord({ ...s.mail, metadata: { delivery_id: randomUUID() } }),
      { RecordType: 'Open', MessageID: s.mail.messageId, Metadata: s.mail.metadata, FirstOpen: true, ReceivedAt: clock.now.toISOString() },
      { RecordType: 'Click', MessageID: s.mail.messageId, Metadata: s.mail.metadata, OriginalLink: 'https://pruuf.test/a/x' },
      { RecordType: 'SubscriptionChange', MessageID: s.mail.messageId, Metadata: s.mail.metadata, SuppressSending: true, SuppressionReason: 'ManualSuppression' },
      bounceRecord(s.mail, 'AutoResponder'),
    ];
    for (const r of records) {
      const res = await post(r);
      expect(res.status).toBe(200);
      expect(res.json).toMatchObject({ outcome: 'ignored', email_disabled: false });
    }
    expect(await eventCount()).toBe(before);
    expect(await row(s.deliveryId)).toMatchObject({ provider_status: null, carrier_status: null });
    expect((await contact(s)).email_disabled).toBe(false);
  });

  it('refuses a wrong password, a wrong user and a request without basic auth with 401, and changes nothing', async () => {
    const s = await alertEmail();
    const before = await eventCount();
    const record = bounceRecord(s.mail, 'HardBounce');
    for (const auth of [{ ...AUTH, password: `${AUTH.password}x` }, { ...AUTH, user: 'someone' }, { user: '', password: '' }, null]) {
      const res = await post(record, auth);
      expect(res.status).toBe(401);
      expect(errorOf(res.body)).toMatchObject({ code: 'UNAUTHENTICATED', message: expect.stringContaining('basic auth') });
    }
    const bearer = await t.app.inject({ method: 'POST', url: URL, headers: { 'content-type': 'application/json', authorization: 'Bearer abc' }, payload: JSON.stringify(record) });
    expect(bearer.statusCode).toBe(401);
    expect(bearer.headers['www-authenticate']).toMatch(/^Basic /);
    expect(await eventCount()).toBe(before);
    expect(await row(s.deliveryId)).toMatchObject({ provider_status: null, carrier_status: null });
    expect((await contact(s)).email_disabled).toBe(false);
  });

  it('records nothing for a message the fake accepted and never delivered', async () => {
    fake.setWebhooks({ send, auth: AUTH });
    fake.setNeverDeliver(true);
    const s = await alertEmail();
    await fake.settled();
    expect(fake.webhookPosts).toEqual([]);
    expect(await row(s.deliveryId)).toMatchObject({ status: 'sent', carrier_status: null });
  });

  it('answers 400 for an authenticated body that is not a Postmark record, and 413 for an oversized one', async () => {
    const raw = (payload: string) => t.app.inject({
      method: 'POST', url: URL, payload, headers: { 'content-type': 'application/json', authorization: `Basic ${Buffer.from(`${AUTH.user}:${AUTH.password}`).toString('base64')}` },
    });
    const notJson = await raw('{"RecordType":');
    expect(notJson.statusCode).toBe(400);
    expect(errorOf(notJson.body)).toMatchObject({ code: 'VALIDATION_ERROR', message: 'request body is not valid JSON' });
    const list = await raw('[{"RecordType":"Delivery"}]');
    expect(errorOf(list.body).message).toContain('one Postmark webhook record');
    const noType = await raw('{"MessageID":"x"}');
    expect(noType.statusCode).toBe(400);
    expect(errorOf(noType.body).message).toContain('body.RecordType');
    const big = await raw(JSON.stringify({ RecordType: 'Bounce', Content: 'x'.repeat(t.config.WEBHOOK_BODY_LIMIT_BYTES) }));
    expect(big.statusCode).toBe(413);
    expect(errorOf(big.body).code).toBe('PAYLOAD_TOO_LARGE');
  });
});

describe('the Postmark webhook without credentials', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await startTestApp();
  });
  afterAll(() => t.close());

  it('refuses every request, saying which settings are missing', async () => {
    const res = await postWebhook(webhookViaInject({ inject: (o) => t.app.inject(o) }), { RecordType: 'Delivery' }, AUTH);
    expect(res.status).toBe(401);
    expect(errorOf(res.body).message).toContain('POSTMARK_WEBHOOK_USER');
  });

  it('is documented in the OpenAPI description', async () => {
    const res = await t.app.inject({ method: 'GET', url: '/openapi.json' });
    expect(Object.keys(res.json().paths)).toContain(URL);
  });
});
