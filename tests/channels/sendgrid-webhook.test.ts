import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { generateKeyPairSync, randomUUID, sign, type KeyObject } from 'node:crypto';
import { createDevOutboxChannel } from '../../src/channels/dev-outbox/index.js';
import { createSendGridChannel } from '../../src/channels/email-sendgrid/index.js';
import { loadSendGridPublicKey } from '../../src/channels/email-sendgrid/signature.js';
import { processDelivery } from '../../src/delivery/deliver.js';
import { createLogger } from '../../src/observability/logger.js';
import { errorOf, startTestApp, type TestApp } from '../helpers/app.js';
import { memberWithContacts, testClock } from '../incidents/helpers.js';
import { startFakeSendGrid, type FakeSendGrid } from '../fakes/sendgrid.js';

/**
 * The signed event webhook, with payloads signed exactly as SendGrid signs them: ECDSA P-256 over
 * SHA-256 of (timestamp + body), DER, base64; the key given as SendGrid shows it (base64 DER SPKI).
 */

const keys = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
const other = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
const PUBLIC_KEY = keys.publicKey.export({ type: 'spki', format: 'der' }).toString('base64');
const clock = testClock('2026-11-23T10:00:00Z');
const nowS = () => Math.floor(clock.now.getTime() / 1000);
const URL = '/webhooks/sendgrid/events';

function signed(body: string | Buffer, opts: { timestamp?: number; key?: KeyObject } = {}) {
  const timestamp = String(opts.timestamp ?? nowS());
  const payload = Buffer.isBuffer(body) ? body : Buffer.from(body);
  const signature = sign('sha256', Buffer.concat([Buffer.from(timestamp), payload]), opts.key ?? keys.privateKey).toString('base64');
  return {
    headers: {
      'content-type': 'application/json',
      'x-twilio-email-event-webhook-signature': signature,
      'x-twilio-email-event-webhook-timestamp': timestamp,
    },
    payload,
  };
}

type Sent = { deliveryId: string; messageId: string; contactId: string; incidentId: string; headers: { authorization: string } };
type Status = { provider_status: string | null; provider_status_at: Date | null; provider_error_code: string | null; status: string };

describe('POST /webhooks/sendgrid/events', () => {
  let t: TestApp;
  let fake: FakeSendGrid;
  let seq = 0;

  beforeAll(async () => {
    t = await startTestApp({ clock: () => clock.now, env: { SENDGRID_WEBHOOK_PUBLIC_KEY: PUBLIC_KEY, FREE_PLAN_CHANNELS: 'push,sms,email' } });
    fake = await startFakeSendGrid();
  });
  afterAll(async () => {
    await fake.close();
    await t.close();
  });

  /** An SOS alert to one contact, its email really sent through SendGrid (the fake). */
  async function alertEmail(): Promise<Sent> {
    const m = await memberWithContacts(t, [1]);
    const sos = await t.app.inject({ method: 'POST', url: '/v1/sos', headers: m.headers, payload: {} });
    expect(sos.statusCode).toBe(201);
    const { rows: [d] } = await t.db.pool.query<{ id: string }>(
      `select id from deliveries where incident_id = $1 and channel = 'email' and kind = 'alert'`, [sos.json().id],
    );
    const outbox = createDevOutboxChannel(t.db.pool);
    const email = createSendGridChannel({ apiKey: fake.apiKey, baseUrl: fake.url, from: { email: 'alerts@pruuf.test', name: 'Pruuf' } });
    const deps = { pool: t.db.pool, channels: { push: outbox, sms: outbox, email }, clock: () => clock.now, log: createLogger('silent') };
    expect(await processDelivery(deps, d!.id, 0, 3)).toBe('sent');
    return { deliveryId: d!.id, messageId: fake.acceptedFor(d!.id)[0]!.messageId, contactId: m.contacts[0]!.id, incidentId: sos.json().id, headers: m.headers };
  }

  /** An event as SendGrid posts it: our custom args at the top level. */
  function event(s: Sent, name: string, extra: Record<string, unknown> = {}) {
    seq += 1;
    return {
      email: 'contact@example.test', timestamp: nowS(), event: name, sg_event_id: `ev-${seq}-${randomUUID()}`,
      sg_message_id: `${s.messageId}.filterdrecv-5df4b7f7c6-2mwlf-1-5F8A1C3E-4.0`, 'smtp-id': `<${s.messageId}@ismtpd0001p1lon1.sendgrid.net>`,
      delivery_id: s.deliveryId, kind: 'alert', incident_id: s.incidentId, ...extra,
    };
  }

  const post = (events: unknown, opts: Parameters<typeof signed>[1] = {}) =>
    t.app.inject({ method: 'POST', url: URL, ...signed(JSON.stringify(events), opts) });
  const status = async (id: string) =>
    (await t.db.pool.query<Status>('select provider_status, provider_status_at, provider_error_code, status from deliveries where id = $1', [id])).rows[0]!;
  const eventCount = async () => (await t.db.pool.query<{ n: number }>(`select count(*)::int as n from provider_events where provider = 'sendgrid'`)).rows[0]!.n;
  const contact = async (s: Sent) => (await t.app.inject({ method: 'GET', url: `/v1/contacts/${s.contactId}`, headers: s.headers })).json();

  it('applies a signed batch: the delivery row shows the latest status SendGrid reported', async () => {
    const s = await alertEmail();
    const res = await post([event(s, 'processed', { timestamp: nowS() - 5 }), event(s, 'delivered', { response: '250 2.0.0 OK' })]);
    expect(res.statusCode).toBe(200);
    expect(res.json()).toEqual({ received: 2, applied: 2, duplicates: 0, ignored: 0, email_disabled: 0 });
    const st = await status(s.deliveryId);
    expect(st).toMatchObject({ provider_status: 'delivered', provider_error_code: null, status: 'sent' });
    expect(Math.floor(st.provider_status_at!.getTime() / 1000)).toBe(nowS());
  });

  it('matches an event by sg_message_id when it carries no delivery id', async () => {
    const s = await alertEmail();
    const { delivery_id: _d, ...bare } = event(s, 'deferred', { response: '421 4.7.0 try again later', attempt: '1' });
    const res = await post([bare]);
    expect(res.json()).toMatchObject({ applied: 1 });
    expect(await status(s.deliveryId)).toMatchObject({ provider_status: 'deferred', provider_error_code: '421 4.7.0 try again later' });
  });

  it('refuses a forged signature and changes nothing', async () => {
    const s = await alertEmail();
    const before = await eventCount();
    const res = await post([event(s, 'delivered')], { key: other.privateKey });
    expect(res.statusCode).toBe(401);
    expect(errorOf(res.body)).toMatchObject({ code: 'UNAUTHENTICATED', message: expect.stringContaining('signature') });
    expect((await status(s.deliveryId)).provider_status).toBeNull();
    expect(await eventCount()).toBe(before);
  });

  it('refuses a body changed after signing, and a request without the signature headers', async () => {
    const s = await alertEmail();
    const good = signed(JSON.stringify([event(s, 'processed')]));
    const tampered = Buffer.from(good.payload.toString().replace('"processed"', '"delivered"'));
    const res = await t.app.inject({ method: 'POST', url: URL, headers: good.headers, payload: tampered });
    expect(res.statusCode).toBe(401);
    const unsigned = await t.app.inject({ method: 'POST', url: URL, headers: { 'content-type': 'application/json' }, payload: JSON.stringify([event(s, 'delivered')]) });
    expect(unsigned.statusCode).toBe(401);
    expect(errorOf(unsigned.body).message).toContain('X-Twilio-Email-Event-Webhook-Signature');
    const junk = await t.app.inject({ method: 'POST', url: URL, headers: { ...good.headers, 'x-twilio-email-event-webhook-signature': 'not base64 at all!' }, payload: good.payload });
    expect(junk.statusCode).toBe(401);
    expect((await status(s.deliveryId)).provider_status).toBeNull();
  });

  it('refuses a validly signed request whose timestamp is over 10 minutes old or ahead of our clock', async () => {
    const s = await alertEmail();
    const stale = await post([event(s, 'delivered')], { timestamp: nowS() - 601 });
    expect(stale.statusCode).toBe(401);
    expect(errorOf(stale.body).message).toContain('10-minute window');
    const future = await post([event(s, 'delivered')], { timestamp: nowS() + 300 });
    expect(future.statusCode).toBe(401);
    expect((await status(s.deliveryId)).provider_status).toBeNull();
    const recent = await post([event(s, 'delivered')], { timestamp: nowS() - 540 });
    expect(recent.statusCode).toBe(200);
  });

  it('applies a replayed sg_event_id once: a replayed bounce does not turn email off again', async () => {
    const s = await alertEmail();
    const bounce = event(s, 'bounce', { type: 'bounce', status: '5.1.1', reason: '550 5.1.1 user unknown' });
    expect((await post([bounce])).json()).toMatchObject({ applied: 1, email_disabled: 1 });
    // An operator turned it back on after checking the mailbox with the contact.
    await t.db.pool.query('update contacts set email_disabled = false, email_disabled_reason = null where id = $1', [s.contactId]);
    const again = await post([bounce]);
    expect(again.statusCode).toBe(200);
    expect(again.json()).toEqual({ received: 1, applied: 0, duplicates: 1, ignored: 0, email_disabled: 0 });
    expect((await contact(s)).email_disabled).toBe(false);
    const { rows } = await t.db.pool.query('select 1 from provider_events where provider = $1 and event_id = $2', ['sendgrid', bounce.sg_event_id]);
    expect(rows).toHaveLength(1);
  });

  it('keeps delivered when processed arrives after it, in a later second or the same one', async () => {
    const a = await alertEmail();
    await post([event(a, 'delivered', { timestamp: nowS() - 10 })]);
    await post([event(a, 'processed', { timestamp: nowS() - 12 })]);
    expect((await status(a.deliveryId)).provider_status).toBe('delivered');
    const b = await alertEmail();
    await post([event(b, 'delivered', { timestamp: nowS() - 3 })]);
    await post([event(b, 'processed', { timestamp: nowS() - 3 })]);
    expect((await status(b.deliveryId)).provider_status).toBe('delivered');
  });

  it('turns email off on a hard bounce, shows it on the contact without the address, and the timeline records the failover', async () => {
    const s = await alertEmail();
    const res = await post([event(s, 'bounce', {
      type: 'bounce', status: '5.1.1', bounce_classification: 'Invalid Address',
      reason: '550 5.1.1 <contact@example.test>: Recipient address rejected: User unknown in virtual mailbox table',
    })]);
    expect(res.json()).toMatchObject({ applied: 1, email_disabled: 1 });
    expect(await status(s.deliveryId)).toMatchObject({ provider_status: 'bounce', provider_error_code: '5.1.1' });
    const c = await contact(s);
    expect(c.email_disabled).toBe(true);
    expect(c.email_disabled_reason).toBe('bounced: 550 5.1.1 the address: Recipient address rejected: User unknown in virtual mailbox table');
    expect(c.channels).not.toContain('email');
    const inc = (await t.app.inject({ method: 'GET', url: `/v1/incidents/${s.incidentId}`, headers: s.headers })).json();
    const failover = inc.events.find((e: { type: string }) => e.type === 'failover');
    expect(failover).toMatchObject({ contact_id: s.contactId, detail: { channel: 'email', delivery_id: s.deliveryId, carried_by: ['sms'] } });
  });

  it('keeps email on when a bounce arrives for an address the contact no longer has', async () => {
    const s = await alertEmail();
    await t.app.inject({ method: 'PATCH', url: `/v1/contacts/${s.contactId}`, headers: s.headers, payload: { email: `new-${seq}@example.test` } });
    const res = await post([event(s, 'bounce', { type: 'bounce', status: '5.1.1', reason: '550 5.1.1 user unknown' })]);
    expect(res.json()).toMatchObject({ applied: 1, email_disabled: 0 });
    expect((await status(s.deliveryId)).provider_status).toBe('bounce');
    expect((await contact(s)).email_disabled).toBe(false);
  });

  it('keeps email on for a blocked bounce and for drops that say nothing about the address, but not for a drop of a bounced address', async () => {
    const s = await alertEmail();
    await post([event(s, 'bounce', { type: 'blocked', status: '4.7.1', reason: '421 4.7.1 temporarily deferred' })]);
    await post([event(s, 'dropped', { reason: 'Unsubscribed Address' })]);
    expect((await contact(s)).email_disabled).toBe(false);
    expect((await status(s.deliveryId)).provider_status).toBe('dropped');
    const res = await post([event(s, 'dropped', { reason: 'Bounced Address', status: '' })]);
    expect(res.json()).toMatchObject({ email_disabled: 1 });
    expect((await contact(s)).email_disabled_reason).toBe('dropped: Bounced Address');
  });

  it('ignores engagement events and events for messages that are not ours', async () => {
    const s = await alertEmail();
    await post([event(s, 'delivered')]);
    const res = await post([
      event(s, 'open', { useragent: 'Mozilla/5.0' }), event(s, 'click', { url: 'https://pruuf.test/a/x' }),
      { ...event(s, 'delivered'), delivery_id: randomUUID(), sg_message_id: 'unknownmessage.filter' },
    ]);
    expect(res.json()).toEqual({ received: 3, applied: 0, duplicates: 0, ignored: 3, email_disabled: 0 });
    expect((await status(s.deliveryId)).provider_status).toBe('delivered');
  });

  it('answers 400 for a signed body that is not a batch of events', async () => {
    const notArray = await t.app.inject({ method: 'POST', url: URL, ...signed('{"event":"delivered"}') });
    expect(notArray.statusCode).toBe(400);
    expect(errorOf(notArray.body)).toMatchObject({ code: 'VALIDATION_ERROR', message: 'request body must be a JSON array of SendGrid events' });
    const notJson = await t.app.inject({ method: 'POST', url: URL, ...signed('[{"event":') });
    expect(errorOf(notJson.body)).toMatchObject({ code: 'VALIDATION_ERROR', message: 'request body is not valid JSON' });
    const noId = await post([{ event: 'delivered', timestamp: nowS() }]);
    expect(noId.statusCode).toBe(400);
    expect(errorOf(noId.body).message).toContain('body.0.sg_event_id');
  });

  it('refuses an oversized body with 413 before looking at the signature', async () => {
    const res = await t.app.inject({
      method: 'POST', url: URL, headers: { 'content-type': 'application/json' },
      payload: JSON.stringify([{ event: 'processed', pad: 'x'.repeat(t.config.WEBHOOK_BODY_LIMIT_BYTES) }]),
    });
    expect(res.statusCode).toBe(413);
    expect(errorOf(res.body).code).toBe('PAYLOAD_TOO_LARGE');
  });

  it('answers 5xx when the database fails, so SendGrid retries, and the retry applies the batch', async () => {
    const s = await alertEmail();
    const batch = [event(s, 'delivered')];
    await t.db.pool.query('alter table provider_events rename to provider_events_away');
    try {
      const res = await post(batch);
      expect(res.statusCode).toBeGreaterThanOrEqual(500);
    } finally {
      await t.db.pool.query('alter table provider_events_away rename to provider_events');
    }
    expect((await status(s.deliveryId)).provider_status).toBeNull();
    expect((await post(batch)).json()).toMatchObject({ applied: 1 });
    expect((await status(s.deliveryId)).provider_status).toBe('delivered');
  });
});

describe('the SendGrid event webhook without a verification key', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await startTestApp();
  });
  afterAll(() => t.close());

  it('refuses every request, saying which setting is missing', async () => {
    const res = await t.app.inject({ method: 'POST', url: URL, ...signed('[]') });
    expect(res.statusCode).toBe(401);
    expect(errorOf(res.body).message).toContain('SENDGRID_WEBHOOK_PUBLIC_KEY');
  });

  it('is documented in the OpenAPI description', async () => {
    const res = await t.app.inject({ method: 'GET', url: '/openapi.json' });
    expect(res.statusCode).toBe(200);
    expect(Object.keys(res.json().paths)).toContain('/webhooks/sendgrid/events');
  });
});

describe('the SendGrid verification key', () => {
  it('is accepted as SendGrid shows it (base64) and as PEM, with or without escaped newlines', () => {
    const pem = keys.publicKey.export({ type: 'spki', format: 'pem' }).toString();
    for (const value of [PUBLIC_KEY, pem, pem.replace(/\n/g, '\\n')]) {
      expect(loadSendGridPublicKey(value).asymmetricKeyDetails?.namedCurve).toBe('prime256v1');
    }
  });

  it('is refused when it is not a P-256 public key, naming the setting', () => {
    const rsa = generateKeyPairSync('rsa', { modulusLength: 1024 }).publicKey.export({ type: 'spki', format: 'der' }).toString('base64');
    expect(() => loadSendGridPublicKey(rsa)).toThrow('SENDGRID_WEBHOOK_PUBLIC_KEY must be an ECDSA P-256 key');
    expect(() => loadSendGridPublicKey('not a key')).toThrow('SENDGRID_WEBHOOK_PUBLIC_KEY is not a public key');
  });
});
