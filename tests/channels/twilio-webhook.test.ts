import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { createTwilioChannel } from '../../src/channels/sms-twilio/index.js';
import type { Channel } from '../../src/channels/types.js';
import { withTransaction } from '../../src/db/pool.js';
import { processDelivery } from '../../src/delivery/deliver.js';
import { insertDeliveries } from '../../src/delivery/outbox.js';
import { createLogger } from '../../src/observability/logger.js';
import { errorOf, startTestApp, type TestApp } from '../helpers/app.js';
import { setVerifiedPhone } from '../helpers/phone.js';
import { memberWithContacts, testClock } from '../incidents/helpers.js';
import { inboundParams, startFakeTwilio, statusCallbackParams, twilioSignature, type AcceptedMessage, type FakeTwilio } from '../fakes/twilio.js';

const log = createLogger('silent');
const BASE = 'http://pruuf.test';
const OUR_NUMBER = '+15005550006';

describe('Twilio webhooks', () => {
  let t: TestApp;
  let fake: FakeTwilio;
  let sms: Channel;
  const clock = testClock('2026-11-24T09:00:00Z');

  beforeAll(async () => {
    fake = await startFakeTwilio();
    t = await startTestApp({
      clock: () => clock.now,
      env: {
        TWILIO_ACCOUNT_SID: fake.accountSid, TWILIO_AUTH_TOKEN: fake.authToken, TWILIO_FROM_NUMBER: OUR_NUMBER,
        TWILIO_API_BASE: fake.url, FREE_PLAN_CHANNELS: 'push,sms,email',
      },
    });
    sms = createTwilioChannel({
      accountSid: fake.accountSid, authToken: fake.authToken, apiBase: fake.url, from: OUR_NUMBER, validitySeconds: 1800,
      statusCallbackUrl: `${BASE}/webhooks/twilio/status`, ratePerSecond: 1000, pool: t.db.pool, log,
    });
  });
  afterAll(async () => {
    await t.close();
    await fake.close();
  });

  let phones = 0;
  const newPhone = () => `+4477009${String(10_000 + phones++).padStart(5, '0')}`;

  const post = (path: string, params: Record<string, string>, signature: string | null = twilioSignature(fake.authToken, `${BASE}${path}`, params)) =>
    t.app.inject({
      method: 'POST', url: path, payload: new URLSearchParams(params).toString(),
      headers: { 'content-type': 'application/x-www-form-urlencoded', ...(signature === null ? {} : { 'x-twilio-signature': signature }) },
    });
  const status = (m: AcceptedMessage, s: string, errorCode?: string) =>
    post('/webhooks/twilio/status', statusCallbackParams({ sid: m.sid, accountSid: fake.accountSid, to: m.to, from: OUR_NUMBER }, s, errorCode));
  const inbound = (from: string, body: string, sid?: string) =>
    post('/webhooks/twilio/inbound', inboundParams({ from, to: OUR_NUMBER, body, accountSid: fake.accountSid, ...(sid === undefined ? {} : { sid }) }));

  /** A member with one active contact on `phone`, and an SMS to that contact really sent through Twilio (the fake). */
  async function sentSms(phone = newPhone(), kind: 'alert' | 'invitation' = 'invitation') {
    const sub = randomUUID();
    const headers = await t.as(sub);
    const created = await t.app.inject({ method: 'POST', url: '/v1/contacts', headers, payload: { name: 'Bo', phone } });
    expect(created.statusCode).toBe(201);
    const contactId = created.json().id as string;
    await t.db.pool.query(`update contacts set status = 'active' where id = $1`, [contactId]);
    const [id] = await withTransaction(t.db.pool, (tx) => insertDeliveries(tx, [{ memberId: sub, contactId, kind, channel: 'sms', address: phone, body: 'Ann added you as an emergency contact.' }]));
    expect(await processDelivery({ pool: t.db.pool, channels: { push: sms, sms, email: sms }, clock: () => clock.now, log }, id!, 0, 3)).toBe('sent');
    const message = fake.accepted.find((m) => m.to === phone)!;
    return { sub, headers, contactId, deliveryId: id!, message };
  }
  const row = async (deliveryId: string) =>
    (await t.db.pool.query<{ provider_status: string | null; provider_error_code: string | null; provider_status_at: Date | null }>(
      'select provider_status, provider_error_code, provider_status_at from deliveries where id = $1', [deliveryId])).rows[0]!;
  const contact = async (headers: { authorization: string }, id: string) => (await t.app.inject({ method: 'GET', url: `/v1/contacts/${id}`, headers })).json();

  describe('POST /webhooks/twilio/status', () => {
    it('records the status Twilio reports on the delivery', async () => {
      const s = await sentSms();
      const res = await status(s.message, 'sent');
      expect(res.statusCode).toBe(204);
      expect(await row(s.deliveryId)).toMatchObject({ provider_status: 'sent', provider_error_code: null });
      clock.add(1);
      await status(s.message, 'delivered');
      expect(await row(s.deliveryId)).toMatchObject({ provider_status: 'delivered' });
    });

    it('keeps a later status when an earlier one arrives after it', async () => {
      const s = await sentSms();
      await status(s.message, 'delivered');
      clock.add(1);
      expect((await status(s.message, 'sent')).statusCode).toBe(204);
      expect((await row(s.deliveryId)).provider_status).toBe('delivered');
    });

    it('applies a replayed callback once', async () => {
      const s = await sentSms();
      await status(s.message, 'sent');
      const first = await row(s.deliveryId);
      clock.add(5);
      expect((await status(s.message, 'sent')).statusCode).toBe(204);
      expect(await row(s.deliveryId)).toEqual(first);
      const { rows } = await t.db.pool.query('select count(*)::int as n from provider_events where provider = $1 and event_id = $2', ['twilio', `${s.message.sid}:sent`]);
      expect(rows[0].n).toBe(1);
    });

    it.each([
      ['a missing signature', null],
      ['a signature made with another auth token', 'forged'],
      ['a valid signature over other parameters', 'tampered'],
    ] as const)('refuses %s with 403 in the envelope and changes nothing', async (_name, kind) => {
      const s = await sentSms();
      const params = statusCallbackParams({ sid: s.message.sid, accountSid: fake.accountSid, to: s.message.to }, 'undelivered', '30005');
      const url = `${BASE}/webhooks/twilio/status`;
      const signature = kind === null ? null
        : kind === 'forged' ? twilioSignature('0'.repeat(32), url, params)
          : twilioSignature(fake.authToken, url, { ...params, ErrorCode: '30003' });
      const res = await post('/webhooks/twilio/status', params, signature);
      expect(res.statusCode).toBe(403);
      expect(errorOf(res.body).code).toBe('FORBIDDEN');
      expect((await row(s.deliveryId)).provider_status).toBeNull();
      expect((await contact(s.headers, s.contactId)).sms_disabled).toBe(false);
    });

    it('turns SMS off for a contact whose number does not exist (30005), with the reason the member sees', async () => {
      const s = await sentSms();
      expect((await status(s.message, 'undelivered', '30005')).statusCode).toBe(204);
      expect(await row(s.deliveryId)).toMatchObject({ provider_status: 'undelivered', provider_error_code: '30005' });
      const c = await contact(s.headers, s.contactId);
      expect(c).toMatchObject({ sms_disabled: true, sms_disabled_reason: expect.stringContaining('unknown number') });
      expect(c.channels).not.toContain('sms');
    });

    it('keeps SMS on for a handset that was switched off (30003)', async () => {
      const s = await sentSms();
      await status(s.message, 'undelivered', '30003');
      expect(await row(s.deliveryId)).toMatchObject({ provider_status: 'undelivered', provider_error_code: '30003' });
      expect(await contact(s.headers, s.contactId)).toMatchObject({ sms_disabled: false, sms_opted_out: false });
    });

    it('opts the number out everywhere when Twilio says the recipient unsubscribed (21610)', async () => {
      const s = await sentSms();
      await status(s.message, 'failed', '21610');
      expect(await contact(s.headers, s.contactId)).toMatchObject({ sms_opted_out: true, sms_disabled: false });
    });

    it('leaves a contact alone when the number failed after the member changed it', async () => {
      const s = await sentSms();
      await t.app.inject({ method: 'PATCH', url: `/v1/contacts/${s.contactId}`, headers: s.headers, payload: { phone: newPhone() } });
      await status(s.message, 'undelivered', '30006');
      expect((await contact(s.headers, s.contactId)).sms_disabled).toBe(false);
    });

    it('records on the incident timeline that an undelivered alert SMS fell back to the other channels', async () => {
      const m = await memberWithContacts(t, [1]);
      const phone = newPhone();
      await t.db.pool.query('update contacts set phone = $2 where id = $1', [m.contacts[0]!.id, phone]);
      const sos = await t.app.inject({ method: 'POST', url: '/v1/sos', headers: m.headers });
      expect(sos.statusCode).toBe(201);
      const incidentId = sos.json().id as string;
      const { rows: [d] } = await t.db.pool.query<{ id: string }>(`select id from deliveries where incident_id = $1 and channel = 'sms' and kind = 'alert'`, [incidentId]);
      expect(await processDelivery({ pool: t.db.pool, channels: { push: sms, sms, email: sms }, clock: () => clock.now, log }, d!.id, 0, 3)).toBe('sent');
      const message = fake.accepted.find((x) => x.to === phone)!;
      await status(message, 'undelivered', '30006');
      const timeline = (await t.app.inject({ method: 'GET', url: `/v1/incidents/${incidentId}`, headers: m.headers })).json();
      const failover = timeline.events.find((e: { type: string }) => e.type === 'failover');
      expect(failover).toMatchObject({ contact_id: m.contacts[0]!.id, detail: { channel: 'sms', carried_by: ['email'] } });
      expect(failover.detail.reason).toContain('30006');
      expect(JSON.stringify(timeline)).not.toContain(phone);
    });

    it('answers a callback for a message it does not know yet with 204 and holds it once, touching no delivery', async () => {
      const sid = `SM${randomUUID().replace(/-/g, '')}`;
      const params = statusCallbackParams({ sid, accountSid: fake.accountSid, to: newPhone() }, 'delivered');
      expect((await post('/webhooks/twilio/status', params)).statusCode).toBe(204);
      expect((await post('/webhooks/twilio/status', params)).statusCode).toBe(204);
      const { rows } = await t.db.pool.query('select status from held_delivery_statuses where provider_message_id = $1', [sid]);
      expect(rows).toEqual([{ status: 'delivered' }]);
      expect((await t.db.pool.query('select 1 from delivery_statuses where event_id like $1', [`${sid}%`])).rows).toHaveLength(0);
    });

    it('refuses a signed callback without a message sid with 400', async () => {
      const res = await post('/webhooks/twilio/status', { MessageStatus: 'sent' });
      expect(res.statusCode).toBe(400);
      expect(errorOf(res.body).code).toBe('VALIDATION_ERROR');
    });
  });

  describe('POST /webhooks/twilio/inbound', () => {
    const twimlMessage = (body: string) => /<Message>([^<]*)<\/Message>/.exec(body)?.[1];

    it.each(['STOP', ' stop ', 'Unsubscribe', 'quit.'])('opts every contact with the number out of SMS on %p, and START opts them back in', async (word) => {
      const phone = newPhone();
      const a = await sentSms(phone);
      const b = await sentSms(phone);
      const res = await inbound(phone, word);
      expect(res.statusCode).toBe(200);
      expect(res.headers['content-type']).toMatch(/^text\/xml/);
      expect(twimlMessage(res.body)).toBeUndefined();
      expect(await contact(a.headers, a.contactId)).toMatchObject({ sms_opted_out: true });
      const bc = await contact(b.headers, b.contactId);
      expect(bc).toMatchObject({ sms_opted_out: true });
      expect(bc.channels).not.toContain('sms');
      await inbound(phone, 'start');
      expect(await contact(a.headers, a.contactId)).toMatchObject({ sms_opted_out: false });
      expect((await contact(b.headers, b.contactId)).channels).toContain('sms');
    });

    it('answers HELP with a short help text', async () => {
      const res = await inbound(newPhone(), 'help');
      expect(res.statusCode).toBe(200);
      const text = twimlMessage(res.body);
      expect(text).toContain('reply OK to check in');
      expect(text).toContain('STOP');
      expect(text!.length).toBeLessThanOrEqual(160);
    });

    async function memberWithPhone() {
      const sub = randomUUID();
      const headers = await t.as(sub);
      const phone = newPhone();
      const res = await t.app.inject({ method: 'PATCH', url: '/v1/me', headers, payload: { phone } });
      expect(res.statusCode).toBe(200);
      // Only a verified phone checks in by reply (tests/members/phone-verification.test.ts covers how it gets verified).
      await setVerifiedPhone(t.db.pool, sub, phone);
      return { sub, headers, phone };
    }
    const checkIns = async (headers: { authorization: string }) => (await t.app.inject({ method: 'GET', url: '/v1/check-ins', headers })).json().data as { source: string }[];

    it.each(['OK', ' ok ', 'Yes', '1', 'o k!'])('checks a member in who replies %p and confirms it', async (word) => {
      const m = await memberWithPhone();
      const res = await inbound(m.phone, word);
      expect(res.statusCode).toBe(200);
      expect(twimlMessage(res.body)).toContain('you are checked in');
      const list = await checkIns(m.headers);
      expect(list).toHaveLength(1);
      expect(list[0]!.source).toBe('sms');
    });

    it('checks in once when Twilio delivers the same reply twice', async () => {
      const m = await memberWithPhone();
      const sid = `SM${randomUUID().replace(/-/g, '')}`;
      const first = await inbound(m.phone, 'OK', sid);
      const again = await inbound(m.phone, 'OK', sid);
      expect([first.statusCode, again.statusCode]).toEqual([200, 200]);
      expect(await checkIns(m.headers)).toHaveLength(1);
    });

    it('resolves an open incident when the member replies OK', async () => {
      const m = await memberWithContacts(t, [1]);
      const phone = newPhone();
      await setVerifiedPhone(t.db.pool, m.sub, phone);
      const incidentId = (await t.app.inject({ method: 'POST', url: '/v1/sos', headers: m.headers })).json().id as string;
      const res = await inbound(phone, 'OK');
      expect(twimlMessage(res.body)).toContain('contacts are being told');
      const inc = (await t.app.inject({ method: 'GET', url: `/v1/incidents/${incidentId}`, headers: m.headers })).json();
      expect(inc.state).toBe('resolved');
    });

    it('checks a member in on YES and opts the number back in where it is an opted-out contact', async () => {
      const m = await memberWithPhone();
      const asContact = await sentSms(m.phone);
      await inbound(m.phone, 'STOP');
      expect((await contact(asContact.headers, asContact.contactId)).sms_opted_out).toBe(true);
      await inbound(m.phone, 'YES');
      expect(await checkIns(m.headers)).toHaveLength(1);
      expect((await contact(asContact.headers, asContact.contactId)).sms_opted_out).toBe(false);
      expect((await t.app.inject({ method: 'GET', url: '/v1/me', headers: m.headers })).json().sms_opted_out).toBe(false);
    });

    it('opts a contact back in on YES without checking anyone in', async () => {
      const s = await sentSms();
      await inbound(s.message.to, 'STOP');
      const res = await inbound(s.message.to, 'yes');
      expect(twimlMessage(res.body)).toBeUndefined();
      expect((await contact(s.headers, s.contactId)).sms_opted_out).toBe(false);
      expect(await checkIns(s.headers)).toHaveLength(0);
    });

    it('answers a member who writes something else with a hint and checks nobody in', async () => {
      const m = await memberWithPhone();
      const res = await inbound(m.phone, 'I am fine thanks, running late');
      expect(twimlMessage(res.body)).toContain('reply OK');
      expect(await checkIns(m.headers)).toHaveLength(0);
    });

    it('answers an unknown sender politely and changes nothing', async () => {
      const s = await sentSms();
      const before = await contact(s.headers, s.contactId);
      const res = await inbound(newPhone(), 'OK');
      expect(res.statusCode).toBe(200);
      expect(twimlMessage(res.body)).toContain('open the link');
      expect(await contact(s.headers, s.contactId)).toEqual(before);
      const { rows } = await t.db.pool.query(`select count(*)::int as n from check_ins where source = 'sms'`);
      const n = rows[0].n as number;
      await inbound(newPhone(), 'hello?');
      expect((await t.db.pool.query(`select count(*)::int as n from check_ins where source = 'sms'`)).rows[0].n).toBe(n);
    });

    it('refuses a forged reply with 403 and checks nobody in', async () => {
      const m = await memberWithPhone();
      const params = inboundParams({ from: m.phone, to: OUR_NUMBER, body: 'OK', accountSid: fake.accountSid });
      const res = await post('/webhooks/twilio/inbound', params, twilioSignature('f'.repeat(32), `${BASE}/webhooks/twilio/inbound`, params));
      expect(res.statusCode).toBe(403);
      expect(errorOf(res.body).code).toBe('FORBIDDEN');
      expect(await checkIns(m.headers)).toHaveLength(0);
    });
  });
});
