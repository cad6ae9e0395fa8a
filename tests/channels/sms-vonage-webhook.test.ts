import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { createVonageChannel, VONAGE_PROVIDER } from '../../src/channels/sms-vonage/index.js';
import type { Channel } from '../../src/channels/types.js';
import { withTransaction } from '../../src/db/pool.js';
import { recordSendOutcome } from '../../src/delivery/carrier-status.js';
import { insertDeliveries } from '../../src/delivery/outbox.js';
import { createLogger } from '../../src/observability/logger.js';
import { errorOf, startTestApp, type TestApp } from '../helpers/app.js';
import { OpenApiChecker } from '../helpers/openapi-check.js';
import { waitFor } from '../delivery/fake-provider.js';
import { memberWithContacts, testClock } from '../incidents/helpers.js';
import { signedReceipt, signVonageParams, startFakeVonage, type AcceptedVonageMessage, type FakeVonage, type ReceiptFormat, type ReceiptOptions } from '../fakes/vonage.js';

/**
 * Issue 18: Vonage's delivery receipts reach the delivery row, the incident timeline and the
 * contact, signed as Vonage signs them; the messages really go through the Vonage channel (the
 * SDK's own requests) to the local fake. The send is recorded on the row as the worker records
 * it (deliver.ts markSent), so these tests do not depend on how the worker picks a provider.
 */

const log = createLogger('silent');
const BASE = 'http://pruuf.test';
const PATH = '/webhooks/vonage/status';
const OUR_NUMBER = '+447700900000';

type TimelineDelivery = { id: string; channel: string; status: string; carrier_status: string | null; carrier_status_at: string | null; carrier_error_code: string | null };

describe('Vonage delivery receipts', () => {
  let t: TestApp;
  let fake: FakeVonage;
  let sms: Channel;
  let openapi: OpenApiChecker;
  const clock = testClock('2026-11-24T09:00:00Z');

  beforeAll(async () => {
    // Automatic receipts (setReceipts('delivered')) come to the app as Vonage would post them.
    fake = await startFakeVonage({ clock: () => clock.now, onReceipt: async (_m, params) => { await post(params); } });
    t = await startTestApp({
      clock: () => clock.now,
      env: {
        VONAGE_API_KEY: fake.apiKey, VONAGE_API_SECRET: fake.apiSecret, VONAGE_FROM: OUR_NUMBER, VONAGE_API_BASE: fake.url,
        VONAGE_SIGNATURE_SECRET: fake.signatureSecret, VONAGE_SIGNATURE_METHOD: fake.signatureMethod, FREE_PLAN_CHANNELS: 'push,sms,email',
      },
    });
    sms = createVonageChannel({
      apiKey: fake.apiKey, apiSecret: fake.apiSecret, apiBase: fake.url, from: OUR_NUMBER, statusCallbackUrl: `${BASE}${PATH}`, validitySeconds: 1800, log,
    });
    openapi = await OpenApiChecker.load(t.app);
  });
  afterAll(async () => {
    await t.close();
    await fake.close();
  });

  let phones = 0;
  const newPhone = () => `+4477008${String(10_000 + phones++).padStart(5, '0')}`;

  const post = (params: Record<string, string>, format: ReceiptFormat = 'json') => t.app.inject(
    format === 'get' ? { method: 'GET', url: `${PATH}?${new URLSearchParams(params).toString()}` }
      : format === 'json' ? { method: 'POST', url: PATH, payload: params, headers: { 'content-type': 'application/json' } }
        : { method: 'POST', url: PATH, payload: new URLSearchParams(params).toString(), headers: { 'content-type': 'application/x-www-form-urlencoded' } },
  );
  const receipt = (m: AcceptedVonageMessage, status: string, opts: ReceiptOptions & { format?: ReceiptFormat } = {}) => post(fake.receipt(m, status, opts), opts.format);

  /** Sends a pending delivery through the Vonage channel and records the send as the worker does. */
  async function sendAndRecord(deliveryId: string, record = true, body = 'Ann added you as an emergency contact.') {
    const { rows: [row] } = await t.db.pool.query<{ address: string; kind: string }>('select address, kind from deliveries where id = $1', [deliveryId]);
    const result = await sms.send({ deliveryId, channel: 'sms', to: row!.address, subject: null, body, html: null, kind: row!.kind, incidentId: null }, AbortSignal.timeout(5000));
    const message = fake.accepted.find((x) => x.clientRef === deliveryId)!;
    expect(result).toEqual({ provider: VONAGE_PROVIDER, providerMessageId: message.messageIds[0] });
    if (record) await markSent(deliveryId, result.providerMessageId);
    return message;
  }
  /** deliver.ts markSent, then what the worker does right after (held statuses). */
  async function markSent(deliveryId: string, messageId: string) {
    const { rows: [row] } = await t.db.pool.query(
      `update deliveries set status = 'sent', provider = $2, provider_message_id = $3, sent_at = $4, updated_at = $4, attempts = attempts + 1,
              last_error = null, error_class = null
        where id = $1 and status = 'pending'
        returning id, contact_id, incident_id, channel, kind, address`,
      [deliveryId, VONAGE_PROVIDER, messageId, clock.now],
    );
    await recordSendOutcome(t.db.pool, row, { provider: VONAGE_PROVIDER, providerMessageId: messageId }, clock.now);
  }

  /** A member with one active contact on `phone`, and an SMS to that contact pending (or sent through Vonage). */
  async function contactSms(opts: { phone?: string; send?: boolean; record?: boolean; body?: string } = {}) {
    const phone = opts.phone ?? newPhone();
    const sub = randomUUID();
    const headers = await t.as(sub);
    const created = await t.app.inject({ method: 'POST', url: '/v1/contacts', headers, payload: { name: 'Bo', phone } });
    expect(created.statusCode).toBe(201);
    const contactId = created.json().id as string;
    await t.db.pool.query(`update contacts set status = 'active' where id = $1`, [contactId]);
    const [deliveryId] = await withTransaction(t.db.pool, (tx) => insertDeliveries(tx, [{ memberId: sub, contactId, kind: 'invitation', channel: 'sms', address: phone, body: 'Ann added you.' }]));
    const message = opts.send === false ? undefined : await sendAndRecord(deliveryId!, opts.record ?? true, opts.body);
    return { sub, headers, contactId, phone, deliveryId: deliveryId!, message: message! };
  }
  const row = async (deliveryId: string) =>
    (await t.db.pool.query<{ status: string; provider_status: string | null; provider_error_code: string | null; carrier_status: string | null; carrier_status_at: Date | null }>(
      'select status, provider_status, provider_error_code, carrier_status, carrier_status_at from deliveries where id = $1', [deliveryId])).rows[0]!;
  const contact = async (headers: { authorization: string }, id: string) => (await t.app.inject({ method: 'GET', url: `/v1/contacts/${id}`, headers })).json();

  /** An SOS whose SMS alert to the first contact went out through Vonage. */
  async function smsAlert() {
    const m = await memberWithContacts(t, [1]);
    const phone = newPhone();
    await t.db.pool.query('update contacts set phone = $2 where id = $1', [m.contacts[0]!.id, phone]);
    const sos = await t.app.inject({ method: 'POST', url: '/v1/sos', headers: m.headers, payload: {} });
    expect(sos.statusCode).toBe(201);
    const incidentId = sos.json().id as string;
    const { rows: [d] } = await t.db.pool.query<{ id: string }>(`select id from deliveries where incident_id = $1 and channel = 'sms' and kind = 'alert'`, [incidentId]);
    const message = await sendAndRecord(d!.id, true, 'Ann pressed SOS. Open https://pruuf.test/a/x');
    const timeline = async () => {
      const res = await t.app.inject({ method: 'GET', url: `/v1/incidents/${incidentId}`, headers: m.headers });
      expect(res.statusCode).toBe(200);
      expect(openapi.problems('GET', '/v1/incidents/:id', res)).toEqual([]);
      return res.json() as { deliveries: TimelineDelivery[]; events: { type: string; contact_id: string; detail: Record<string, unknown> }[] };
    };
    return { m, phone, incidentId, deliveryId: d!.id, message, timeline };
  }

  it('shows an SMS alert as sent, then delivered, on the incident timeline once Vonage reports it', async () => {
    const a = await smsAlert();
    expect((await a.timeline()).deliveries.find((d) => d.id === a.deliveryId)).toMatchObject({ status: 'sent', carrier_status: null });

    clock.add(1);
    const accepted = await receipt(a.message, 'accepted');
    expect(accepted.statusCode).toBe(204);
    expect(openapi.problems('POST', PATH, accepted)).toEqual([]);
    expect((await a.timeline()).deliveries.find((d) => d.id === a.deliveryId)).toMatchObject({ carrier_status: 'sent', carrier_status_at: clock.now.toISOString() });

    clock.add(1);
    expect((await receipt(a.message, 'delivered')).statusCode).toBe(204);
    expect((await a.timeline()).deliveries.find((d) => d.id === a.deliveryId))
      .toMatchObject({ carrier_status: 'delivered', carrier_status_at: clock.now.toISOString(), carrier_error_code: null });
    expect(await row(a.deliveryId)).toMatchObject({ provider_status: 'delivered', provider_error_code: null });
  });

  it('records the receipt Vonage sends by itself once a message is delivered, and nothing while it never reports', async () => {
    const quiet = await contactSms();
    fake.setReceipts('delivered');
    try {
      const s = await contactSms();
      await waitFor(async () => ((await row(s.deliveryId)).carrier_status === 'delivered' ? true : undefined), 5000);
    } finally {
      fake.setReceipts('never');
    }
    expect((await row(quiet.deliveryId)).carrier_status).toBeNull();
  });

  it.each(['json', 'form', 'get'] as const)('accepts a signed receipt sent as %s', async (format) => {
    const s = await contactSms();
    const res = await receipt(s.message, 'delivered', { format });
    expect(res.statusCode).toBe(204);
    expect((await row(s.deliveryId)).carrier_status).toBe('delivered');
  });

  it('applies a repeated receipt once', async () => {
    const s = await contactSms();
    const params = fake.receipt(s.message, 'delivered');
    expect((await post(params)).statusCode).toBe(204);
    const first = await row(s.deliveryId);
    clock.add(1);
    expect((await post(params)).statusCode).toBe(204);
    expect(await row(s.deliveryId)).toEqual(first);
    const { rows } = await t.db.pool.query('select count(*)::int as n from delivery_statuses where delivery_id = $1', [s.deliveryId]);
    expect(rows[0].n).toBe(1);
  });

  it('keeps delivered when a late "accepted" or "buffered" arrives after it', async () => {
    const s = await contactSms();
    await receipt(s.message, 'delivered');
    clock.add(1);
    expect((await receipt(s.message, 'accepted')).statusCode).toBe(204);
    expect((await receipt(s.message, 'buffered')).statusCode).toBe(204);
    expect(await row(s.deliveryId)).toMatchObject({ provider_status: 'delivered', carrier_status: 'delivered' });
  });

  it('shows buffered as deferred and expired as undelivered', async () => {
    const s = await contactSms();
    await receipt(s.message, 'buffered');
    expect((await row(s.deliveryId)).carrier_status).toBe('deferred');
    clock.add(1);
    await receipt(s.message, 'expired', { errCode: '2' });
    expect(await row(s.deliveryId)).toMatchObject({ provider_status: 'expired', carrier_status: 'undelivered', provider_error_code: '2' });
  });

  describe('refuses with 401 in the envelope, and changes nothing,', () => {
    const tamper: [string, (p: Record<string, string>, m: AcceptedVonageMessage) => Record<string, string>][] = [
      ['an unsigned receipt', (p) => Object.fromEntries(Object.entries(p).filter(([k]) => k !== 'sig'))],
      ['a receipt signed with another secret', (_p, m) => fake.receipt(m, 'failed', { errCode: '3', secret: 'another-secret' })],
      ['a receipt signed with another method', (_p, m) => fake.receipt(m, 'failed', { errCode: '3', method: 'md5hash' })],
      ['a receipt whose parameters were changed after signing', (p) => ({ ...p, 'err-code': '3' })],
      ['a receipt signed more than five minutes ago (a replay)', (_p, m) => fake.receipt(m, 'failed', { errCode: '3', at: new Date(clock.now.getTime() - 6 * 60_000) })],
      ['a receipt without a timestamp', (_p, m) => signedReceipt({ messageId: m.messageIds[0]!, to: m.to, from: m.from, clientRef: m.clientRef, apiKey: fake.apiKey },
        'failed', fake.signatureSecret, fake.signatureMethod, clock.now, '3', { timestamp: '' })],
    ];
    it.each(tamper)('%s', async (_name, make) => {
      const s = await contactSms();
      const params = make(fake.receipt(s.message, 'failed', { errCode: '2' }), s.message);
      const res = await post(params);
      expect(res.statusCode).toBe(401);
      expect(errorOf(res.body).code).toBe('UNAUTHENTICATED');
      expect(await row(s.deliveryId)).toMatchObject({ provider_status: null, carrier_status: null });
      expect((await contact(s.headers, s.contactId)).sms_disabled).toBe(false);
    });
  });

  it('turns SMS off for a contact whose number is no longer in service (err-code 3), with the reason the member sees', async () => {
    const s = await contactSms();
    expect((await receipt(s.message, 'failed', { errCode: '3' })).statusCode).toBe(204);
    expect(await row(s.deliveryId)).toMatchObject({ provider_status: 'failed', provider_error_code: '3', carrier_status: 'failed' });
    const c = await contact(s.headers, s.contactId);
    expect(c).toMatchObject({ sms_disabled: true, sms_disabled_reason: expect.stringContaining('no longer in service') });
    expect(c.channels).not.toContain('sms');
  });

  it('keeps SMS on for a handset that was switched off (err-code 2)', async () => {
    const s = await contactSms();
    await receipt(s.message, 'failed', { errCode: '2' });
    expect(await contact(s.headers, s.contactId)).toMatchObject({ sms_disabled: false, sms_opted_out: false });
  });

  it('opts the number out everywhere when Vonage says the recipient asked not to receive our messages (err-code 9)', async () => {
    const s = await contactSms();
    await receipt(s.message, 'rejected', { errCode: '9' });
    expect(await contact(s.headers, s.contactId)).toMatchObject({ sms_opted_out: true, sms_disabled: false });
  });

  it('leaves a contact alone when the number failed after the member changed it', async () => {
    const s = await contactSms();
    await t.app.inject({ method: 'PATCH', url: `/v1/contacts/${s.contactId}`, headers: s.headers, payload: { phone: newPhone() } });
    await receipt(s.message, 'failed', { errCode: '14' });
    expect((await contact(s.headers, s.contactId)).sms_disabled).toBe(false);
  });

  it('records on the incident timeline that an undelivered alert SMS fell back to the other channels', async () => {
    const a = await smsAlert();
    await receipt(a.message, 'failed', { errCode: '12' });
    const timeline = await a.timeline();
    const failover = timeline.events.find((e) => e.type === 'failover');
    expect(failover).toMatchObject({ contact_id: a.m.contacts[0]!.id, detail: { channel: 'sms', carried_by: ['email'] } });
    expect(failover!.detail.reason).toContain('err-code 12');
    expect(JSON.stringify(timeline)).not.toContain(a.phone.slice(1));
  });

  it('applies a receipt that comes before the send is recorded: by client-ref at once', async () => {
    const s = await contactSms({ record: false });
    expect((await receipt(s.message, 'delivered')).statusCode).toBe(204);
    expect(await row(s.deliveryId)).toMatchObject({ status: 'pending', carrier_status: 'delivered' });
    await markSent(s.deliveryId, s.message.messageIds[0]!);
    expect(await row(s.deliveryId)).toMatchObject({ status: 'sent', carrier_status: 'delivered' });
  });

  it('holds a receipt without client-ref that comes before the send is recorded, and applies it with the record', async () => {
    const s = await contactSms({ record: false });
    const params = signedReceipt({ messageId: s.message.messageIds[0]!, to: s.message.to, from: s.message.from, apiKey: fake.apiKey },
      'failed', fake.signatureSecret, fake.signatureMethod, clock.now, '4');
    expect((await post(params)).statusCode).toBe(204);
    expect((await t.db.pool.query('select status from held_delivery_statuses where provider = $1 and provider_message_id = $2', [VONAGE_PROVIDER, s.message.messageIds[0]])).rows)
      .toEqual([{ status: 'failed' }]);
    expect((await row(s.deliveryId)).carrier_status).toBeNull();
    await markSent(s.deliveryId, s.message.messageIds[0]!);
    expect(await row(s.deliveryId)).toMatchObject({ status: 'sent', carrier_status: 'failed', provider_error_code: '4' });
    expect((await contact(s.headers, s.contactId)).sms_disabled).toBe(true);
  });

  it('applies the receipt of the second part of a long message to its delivery (client-ref)', async () => {
    const s = await contactSms({ body: `Ann 🙏 ${'ж'.repeat(100)}` });
    expect(s.message.messageIds).toHaveLength(2);
    expect((await receipt(s.message, 'failed', { part: 1, errCode: '3' })).statusCode).toBe(204);
    expect(await row(s.deliveryId)).toMatchObject({ carrier_status: 'failed' });
    expect((await contact(s.headers, s.contactId)).sms_disabled).toBe(true);
  });

  it('refuses a signed receipt without a message id with 400', async () => {
    const params = signedReceipt({ messageId: 'x', to: newPhone(), from: OUR_NUMBER, apiKey: fake.apiKey }, 'delivered', fake.signatureSecret, fake.signatureMethod, clock.now);
    delete params.messageId;
    params.sig = signVonageParams(params, fake.signatureSecret, fake.signatureMethod);
    const res = await post(params);
    expect(res.statusCode).toBe(400);
    expect(errorOf(res.body).code).toBe('VALIDATION_ERROR');
  });

  it('refuses an oversized receipt with 413 before any signature work', async () => {
    const s = await contactSms();
    const res = await post(fake.receipt(s.message, 'failed', { errCode: '3', extra: { pad: 'x'.repeat(17 * 1024) } }));
    expect(res.statusCode).toBe(413);
    expect(errorOf(res.body).code).toBe('PAYLOAD_TOO_LARGE');
    expect((await row(s.deliveryId)).provider_status).toBeNull();
  });

  it('refuses a receipt that is not a flat set of parameters with 400', async () => {
    const res = await t.app.inject({ method: 'POST', url: PATH, payload: { messageId: 'A', status: 'delivered', sig: 'ab', timestamp: '1', nested: { a: 1 } } });
    expect(res.statusCode).toBe(400);
    expect(errorOf(res.body).code).toBe('VALIDATION_ERROR');
  });
});

describe('Vonage delivery receipts without VONAGE_SIGNATURE_SECRET', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await startTestApp({ env: { VONAGE_API_KEY: 'abc', VONAGE_API_SECRET: 'def', VONAGE_FROM: 'Pruuf' } });
  });
  afterAll(async () => {
    await t.close();
  });

  it('are all refused with 401, saying what to configure', async () => {
    const params = signedReceipt({ messageId: '0B00000127FDBC63', to: '+447700900123', from: 'Pruuf', apiKey: 'abc' }, 'delivered', 'any', 'sha256hmac', new Date());
    const res = await t.app.inject({ method: 'POST', url: PATH, payload: params });
    expect(res.statusCode).toBe(401);
    expect(errorOf(res.body).message).toContain('VONAGE_SIGNATURE_SECRET');
  });
});
