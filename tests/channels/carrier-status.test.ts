import { generateKeyPairSync, randomUUID, sign } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { createSendGridChannel } from '../../src/channels/email-sendgrid/index.js';
import { createFcmChannel, type FcmChannel } from '../../src/channels/push-fcm/index.js';
import { createTwilioChannel } from '../../src/channels/sms-twilio/index.js';
import type { Channels } from '../../src/channels/types.js';
import { HELD_STATUS_TTL_MS, sweepHeldStatuses } from '../../src/delivery/carrier-status.js';
import { processDelivery } from '../../src/delivery/deliver.js';
import { createLogger } from '../../src/observability/logger.js';
import { startTestApp, type TestApp } from '../helpers/app.js';
import { OpenApiChecker } from '../helpers/openapi-check.js';
import { alerts, memberWithContacts, testClock, tokenFrom } from '../incidents/helpers.js';
import { startFakeFcm, type FakeFcm } from '../fakes/fcm.js';
import { startFakeSendGrid, type FakeSendGrid } from '../fakes/sendgrid.js';
import { startFakeTwilio, statusCallbackParams, twilioSignature, type AcceptedMessage, type FakeTwilio } from '../fakes/twilio.js';

/**
 * Issue 17 #7: what carriers say after they accepted an alert reaches the incident timeline and
 * the contact's alert page. Callbacks are signed as the providers sign them; the messages really
 * go through the channels to the local fakes.
 */

const log = createLogger('silent');
const BASE = 'http://pruuf.test';
const OUR_NUMBER = '+15005550006';
const keys = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
const SENDGRID_KEY = keys.publicKey.export({ type: 'spki', format: 'der' }).toString('base64');

type TimelineDelivery = {
  id: string; channel: string; contact_id: string; status: string;
  carrier_status: string | null; carrier_status_at: string | null; carrier_error_code: string | null;
};

describe('carrier statuses on the incident timeline', () => {
  let t: TestApp;
  let twilio: FakeTwilio;
  let sendgrid: FakeSendGrid;
  let fcmFake: FakeFcm;
  let fcm: FcmChannel;
  let channels: Channels;
  let openapi: OpenApiChecker;
  const clock = testClock('2026-12-06T12:00:00Z');
  const nowS = () => Math.floor(clock.now.getTime() / 1000);

  beforeAll(async () => {
    twilio = await startFakeTwilio();
    sendgrid = await startFakeSendGrid();
    fcmFake = await startFakeFcm();
    t = await startTestApp({
      clock: () => clock.now,
      env: {
        TWILIO_ACCOUNT_SID: twilio.accountSid, TWILIO_AUTH_TOKEN: twilio.authToken, TWILIO_FROM_NUMBER: OUR_NUMBER, TWILIO_API_BASE: twilio.url,
        SENDGRID_WEBHOOK_PUBLIC_KEY: SENDGRID_KEY, FREE_PLAN_CHANNELS: 'push,sms,email',
      },
    });
    fcm = createFcmChannel({ pool: t.db.pool, log, projectId: fcmFake.projectId, credential: fcmFake.credential(), connect: fcmFake.connect });
    channels = {
      push: fcm,
      sms: createTwilioChannel({
        accountSid: twilio.accountSid, authToken: twilio.authToken, apiBase: twilio.url, from: OUR_NUMBER, validitySeconds: 1800,
        statusCallbackUrl: `${BASE}/webhooks/twilio/status`, ratePerSecond: 1000, pool: t.db.pool, log,
      }),
      email: createSendGridChannel({ apiKey: sendgrid.apiKey, baseUrl: sendgrid.url, from: { email: 'alerts@pruuf.test', name: 'Pruuf' } }),
    };
    openapi = await OpenApiChecker.load(t.app);
  });
  afterAll(async () => {
    twilio.setBeforeAnswer(undefined);
    await t.close();
    await fcm.close();
    await Promise.all([twilio.close(), sendgrid.close(), fcmFake.close()]);
  });

  const send = (id: string) => processDelivery({ pool: t.db.pool, channels, clock: () => clock.now, log }, id, 0, 3);

  /** An SOS to `tiers` contacts; every alert row, none sent yet. */
  async function sos(tiers = [1], prepare?: (m: Awaited<ReturnType<typeof memberWithContacts>>) => Promise<void>) {
    const m = await memberWithContacts(t, tiers);
    await prepare?.(m);
    // Contact phones differ per member: Twilio's fake finds the message by number.
    for (const c of m.contacts) {
      c.phone = `+4477${String(Math.floor(Math.random() * 1e8)).padStart(8, '0')}`;
      await t.db.pool.query('update contacts set phone = $2 where id = $1', [c.id, c.phone]);
    }
    const res = await t.app.inject({ method: 'POST', url: '/v1/sos', headers: m.headers, payload: {} });
    expect(res.statusCode).toBe(201);
    const incidentId = res.json().id as string;
    const { rows } = await t.db.pool.query<{ id: string; channel: string; contact_id: string }>(
      `select id, channel, contact_id from deliveries where incident_id = $1 and kind = 'alert'`, [incidentId]);
    const alert = (channel: string, contact = m.contacts[0]!) => rows.find((r) => r.channel === channel && r.contact_id === contact.id)!.id;
    return { m, incidentId, alert };
  }

  async function timeline(incidentId: string, headers: { authorization: string }) {
    const res = await t.app.inject({ method: 'GET', url: `/v1/incidents/${incidentId}`, headers });
    expect(res.statusCode).toBe(200);
    expect(openapi.problems('GET', '/v1/incidents/:id', res)).toEqual([]);
    return res.json() as { deliveries: TimelineDelivery[] };
  }
  const shown = async (s: Awaited<ReturnType<typeof sos>>, deliveryId: string) =>
    (await timeline(s.incidentId, s.m.headers)).deliveries.find((d) => d.id === deliveryId)!;

  const postTwilio = (m: Pick<AcceptedMessage, 'sid' | 'to'>, status: string, errorCode?: string) => {
    const params = statusCallbackParams({ sid: m.sid, accountSid: twilio.accountSid, to: m.to, from: OUR_NUMBER }, status, errorCode);
    return t.app.inject({
      method: 'POST', url: '/webhooks/twilio/status', payload: new URLSearchParams(params).toString(),
      headers: { 'content-type': 'application/x-www-form-urlencoded', 'x-twilio-signature': twilioSignature(twilio.authToken, `${BASE}/webhooks/twilio/status`, params) },
    });
  };
  const smsTo = (phone: string) => twilio.accepted.filter((x) => x.to === phone).at(-1)!;

  let seq = 0;
  function postSendGrid(events: Record<string, unknown>[]) {
    const body = Buffer.from(JSON.stringify(events));
    const timestamp = String(nowS());
    const signature = sign('sha256', Buffer.concat([Buffer.from(timestamp), body]), keys.privateKey).toString('base64');
    return t.app.inject({
      method: 'POST', url: '/webhooks/sendgrid/events', payload: body,
      headers: { 'content-type': 'application/json', 'x-twilio-email-event-webhook-signature': signature, 'x-twilio-email-event-webhook-timestamp': timestamp },
    });
  }
  const emailEvent = (deliveryId: string, event: string, extra: Record<string, unknown> = {}) => ({
    email: 'contact@example.test', timestamp: nowS(), event, sg_event_id: `ev-${(seq += 1)}-${randomUUID()}`,
    sg_message_id: `${sendgrid.acceptedFor(deliveryId)[0]!.messageId}.filter-1`, delivery_id: deliveryId, kind: 'alert', ...extra,
  });

  const history = async (deliveryId: string) =>
    (await t.db.pool.query<{ status: string; carrier_status: string | null; error_code: string | null }>(
      'select status, carrier_status, error_code from delivery_statuses where delivery_id = $1 order by id', [deliveryId])).rows;
  const scrape = async () => (await t.app.inject({ method: 'GET', url: '/metrics' })).body;

  it('shows an SMS alert as delivered, and since when, once Twilio calls back "delivered"', async () => {
    const s = await sos();
    const id = s.alert('sms');
    expect(await send(id)).toBe('sent');
    expect(await shown(s, id)).toMatchObject({ status: 'sent', carrier_status: null, carrier_status_at: null, carrier_error_code: null });
    clock.add(1);
    expect((await postTwilio(smsTo(s.m.contacts[0]!.phone), 'sent')).statusCode).toBe(204);
    expect(await shown(s, id)).toMatchObject({ carrier_status: 'sent', carrier_status_at: clock.now.toISOString() });
    clock.add(1);
    expect((await postTwilio(smsTo(s.m.contacts[0]!.phone), 'delivered')).statusCode).toBe(204);
    expect(await shown(s, id)).toMatchObject({ status: 'sent', carrier_status: 'delivered', carrier_status_at: clock.now.toISOString(), carrier_error_code: null });
    expect(await history(id)).toEqual([
      { status: 'sent', carrier_status: 'sent', error_code: null },
      { status: 'delivered', carrier_status: 'delivered', error_code: null },
    ]);
    expect(await scrape()).toMatch(/pruuf_delivery_statuses_total\{provider="twilio",channel="sms",status="delivered",outcome="applied"\} [1-9]/);
  });

  it('shows "undelivered" with Twilio\'s code 30003, and keeps SMS on for the contact (a phone that was off)', async () => {
    const s = await sos();
    const id = s.alert('sms');
    await send(id);
    expect((await postTwilio(smsTo(s.m.contacts[0]!.phone), 'undelivered', '30003')).statusCode).toBe(204);
    expect(await shown(s, id)).toMatchObject({ carrier_status: 'undelivered', carrier_error_code: '30003', carrier_status_at: clock.now.toISOString() });
    const contact = (await t.app.inject({ method: 'GET', url: `/v1/contacts/${s.m.contacts[0]!.id}`, headers: s.m.headers })).json();
    expect(contact).toMatchObject({ sms_disabled: false });
  });

  it('applies a repeated callback once and never lets a late "sent" or "queued" move a delivered SMS back', async () => {
    const s = await sos();
    const id = s.alert('sms');
    await send(id);
    const msg = smsTo(s.m.contacts[0]!.phone);
    await postTwilio(msg, 'delivered');
    const first = await shown(s, id);
    clock.add(3);
    for (const word of ['delivered', 'sent', 'queued', 'delivered']) expect((await postTwilio(msg, word)).statusCode).toBe(204);
    expect(await shown(s, id)).toEqual(first);
    expect((await history(id)).map((h) => h.status)).toEqual(['delivered', 'sent', 'queued']);
    const { rows } = await t.db.pool.query('select provider_status from deliveries where id = $1', [id]);
    expect(rows[0].provider_status).toBe('delivered');
    const metrics = await scrape();
    expect(metrics).toMatch(/pruuf_delivery_statuses_total\{provider="twilio",channel="sms",status="delivered",outcome="duplicate"\} [1-9]/);
    expect(metrics).toMatch(/pruuf_delivery_statuses_total\{provider="twilio",channel="sms",status="sent",outcome="stale"\} [1-9]/);
  });

  it('holds a callback that arrives before the worker records the send, and applies it right after the record', async () => {
    const s = await sos();
    const id = s.alert('sms');
    const seen: Record<string, unknown>[] = [];
    // Twilio calls back before its answer to the send reaches our worker.
    twilio.setBeforeAnswer(async (m) => {
      expect((await postTwilio(m, 'delivered')).statusCode).toBe(204);
      seen.push((await t.db.pool.query('select status, provider_message_id, carrier_status from deliveries where id = $1', [id])).rows[0]);
      seen.push(...(await t.db.pool.query('select status from held_delivery_statuses where provider_message_id = $1', [m.sid])).rows);
    });
    try {
      expect(await send(id)).toBe('sent');
    } finally {
      twilio.setBeforeAnswer(undefined);
    }
    expect(seen).toEqual([{ status: 'pending', provider_message_id: null, carrier_status: null }, { status: 'delivered' }]);
    expect(await shown(s, id)).toMatchObject({ status: 'sent', carrier_status: 'delivered' });
    const sid = smsTo(s.m.contacts[0]!.phone).sid;
    expect((await t.db.pool.query('select 1 from held_delivery_statuses where provider_message_id = $1', [sid])).rows).toHaveLength(0);
    expect(await scrape()).toMatch(/pruuf_delivery_statuses_total\{provider="twilio",channel="unknown",status="delivered",outcome="held"\} [1-9]/);
  });

  it('turns SMS off for a dead number even when its early "undelivered" was held, and records the failover', async () => {
    const s = await sos();
    const id = s.alert('sms');
    twilio.setBeforeAnswer(async (m) => { await postTwilio(m, 'undelivered', '30005'); });
    try {
      await send(id);
    } finally {
      twilio.setBeforeAnswer(undefined);
    }
    expect(await shown(s, id)).toMatchObject({ carrier_status: 'undelivered', carrier_error_code: '30005' });
    const contact = (await t.app.inject({ method: 'GET', url: `/v1/contacts/${s.m.contacts[0]!.id}`, headers: s.m.headers })).json();
    expect(contact).toMatchObject({ sms_disabled: true, sms_disabled_reason: expect.stringContaining('unknown number') });
    const { rows } = await t.db.pool.query(`select detail from incident_events where incident_id = $1 and type = 'failover'`, [s.incidentId]);
    expect(rows).toEqual([{ detail: expect.objectContaining({ channel: 'sms', delivery_id: id }) }]);
  });

  it("lets the reconciler's pass apply a held status that both sides missed, and drop one held for over a day", async () => {
    const s = await sos();
    const id = s.alert('sms');
    const sid = `SM${randomUUID().replace(/-/g, '')}`;
    await postTwilio({ sid, to: s.m.contacts[0]!.phone }, 'delivered');
    // The send recorded with that sid by a worker that looked for held statuses a moment too early.
    await t.db.pool.query(`update deliveries set status = 'sent', provider = 'twilio', provider_message_id = $2, sent_at = $3 where id = $1`, [id, sid, clock.now]);
    expect(await shown(s, id)).toMatchObject({ carrier_status: null });
    const orphan = `SM${randomUUID().replace(/-/g, '')}`;
    await postTwilio({ sid: orphan, to: '+447700900123' }, 'sent');
    expect(await sweepHeldStatuses(t.db.pool, clock.now)).toMatchObject({ applied: 1 });
    expect(await shown(s, id)).toMatchObject({ carrier_status: 'delivered' });
    const later = new Date(clock.now.getTime() + HELD_STATUS_TTL_MS + 60_000);
    expect((await sweepHeldStatuses(t.db.pool, later)).dropped).toBeGreaterThanOrEqual(1);
    expect((await t.db.pool.query('select 1 from held_delivery_statuses where provider_message_id = $1', [orphan])).rows).toHaveLength(0);
  });

  it('shows an email alert that bounced as "bounced" with the SMTP status, turns email off, and keeps it bounced after a late "delivered"', async () => {
    const s = await sos();
    const id = s.alert('email');
    expect(await send(id)).toBe('sent');
    const res = await postSendGrid([
      emailEvent(id, 'processed', { timestamp: nowS() - 3 }),
      emailEvent(id, 'bounce', { type: 'bounce', status: '5.1.1', reason: '550 5.1.1 user unknown' }),
    ]);
    expect(res.json()).toMatchObject({ applied: 2, email_disabled: 1 });
    const at = new Date(nowS() * 1000 + 2).toISOString();
    expect(await shown(s, id)).toMatchObject({ carrier_status: 'bounced', carrier_error_code: '5.1.1', carrier_status_at: at });
    await postSendGrid([emailEvent(id, 'delivered', { timestamp: nowS() - 60 }), emailEvent(id, 'deferred', { response: '421 try later' })]);
    expect(await shown(s, id)).toMatchObject({ carrier_status: 'bounced', carrier_error_code: '5.1.1', carrier_status_at: at });
    const contact = (await t.app.inject({ method: 'GET', url: `/v1/contacts/${s.m.contacts[0]!.id}`, headers: s.m.headers })).json();
    expect(contact.email_disabled).toBe(true);
    expect((await history(id)).map((h) => h.carrier_status)).toEqual([null, 'bounced', 'delivered', 'deferred']);
  });

  it('applies a replayed SendGrid event once', async () => {
    const s = await sos();
    const id = s.alert('email');
    await send(id);
    const delivered = emailEvent(id, 'delivered');
    expect((await postSendGrid([delivered])).json()).toMatchObject({ applied: 1 });
    expect((await postSendGrid([delivered])).json()).toMatchObject({ applied: 0, duplicates: 1 });
    expect(await history(id)).toHaveLength(1);
    expect(await shown(s, id)).toMatchObject({ carrier_status: 'delivered' });
  });

  it("records FCM's answer for a push alert: sent when a device took it, undelivered with FCM's code when every token is dead", async () => {
    /** An SOS whose first contact is linked to an app user with one device holding `token`. */
    const withDevice = (token: string) => sos([1], async (m) => {
      const user = randomUUID();
      await t.db.pool.query('insert into members (id) values ($1)', [user]);
      await t.db.pool.query(`insert into devices (member_id, token, platform) values ($1, $2, 'android')`, [user, token]);
      await t.db.pool.query('update contacts set linked_user_id = $2 where id = $1', [m.contacts[0]!.id, user]);
    });
    const ok = await withDevice(`ok-${randomUUID()}`);
    expect(await send(ok.alert('push'))).toBe('sent');
    expect(await shown(ok, ok.alert('push'))).toMatchObject({ status: 'sent', carrier_status: 'sent', carrier_error_code: null });

    const token = `dead-${randomUUID()}`;
    fcmFake.setToken(token, 'unregistered');
    const dead = await withDevice(token);
    expect(await send(dead.alert('push'))).toBe('failed');
    expect(await shown(dead, dead.alert('push'))).toMatchObject({
      status: 'failed', carrier_status: 'undelivered', carrier_error_code: 'messaging/registration-token-not-registered',
    });
  });

  it("counts on the contact's alert page how the alerts reached people, per channel", async () => {
    const s = await sos([1, 1]);
    const [a, b] = s.m.contacts as [typeof s.m.contacts[0], typeof s.m.contacts[0]];
    for (const c of [a, b]) {
      await send(s.alert('sms', c));
      await send(s.alert('email', c));
    }
    await postTwilio(smsTo(a.phone), 'delivered');
    await postTwilio(smsTo(b.phone), 'undelivered', '30003');
    await postSendGrid([emailEvent(s.alert('email', a), 'delivered')]);
    const link = tokenFrom((await alerts(t.db.pool, s.incidentId)).find((x) => x.contact_id === a.id && x.channel === 'email')!.body);
    const page = await t.app.inject({ method: 'GET', url: `/a/${link}`, headers: { accept: 'text/html' } });
    expect(page.statusCode).toBe(200);
    expect(page.body).toContain('SMS: 1 delivered, 1 undelivered');
    expect(page.body).toContain('Email: 1 delivered, 1 sent, no delivery report yet');
    expect(page.body).not.toContain(a.phone);
    expect(page.body).not.toContain(b.email);
  });
});
