import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { randomUUID } from 'node:crypto';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import twilio from 'twilio';
import { buildApp } from '../../src/app.js';
import { createDevOutboxChannel } from '../../src/channels/dev-outbox/index.js';
import { processDelivery } from '../../src/delivery/deliver.js';
import { createTokenVerifier } from '../../src/auth/jwt.js';
import { loadMigrations } from '../../src/db/migrate.js';
import { signLink } from '../../src/links/tokens.js';
import { loggerOptions, type Logger } from '../../src/observability/logger.js';
import { QueueSystem } from '../../src/queue/index.js';
import { testConfig } from '../helpers/app.js';
import { createTestDatabase, type TestDatabase } from '../helpers/db.js';
import { signToken, TEST_JWT_SECRET, TEST_LINK_SECRET } from '../helpers/tokens.js';
import { tokenFrom } from '../incidents/helpers.js';
import { TWILIO_ENV } from './world.js';

/**
 * Secrets hygiene: a realistic session through the real app with LOG_LEVEL=debug, every log line
 * captured, then searched for what must never be written in full: bearer tokens, signed links,
 * phone numbers, email addresses and message bodies.
 */
describe('logs at debug level', () => {
  const lines: string[] = [];
  let db: TestDatabase;
  let queues: QueueSystem;
  let app: Awaited<ReturnType<typeof buildApp>>;
  const secrets: Record<string, string> = {};
  let logger: Logger;

  beforeAll(async () => {
    db = await createTestDatabase();
    const config = testConfig('redis', db.url, { ...TWILIO_ENV, LOG_LEVEL: 'debug', FREE_PLAN_CHANNELS: 'push,sms,email' });
    const sink = new Writable({ write(chunk: Buffer, _enc, done) { lines.push(...chunk.toString().split('\n').filter(Boolean)); done(); } });
    const log = pino(loggerOptions('debug'), sink) as unknown as Logger;
    logger = log;
    queues = new QueueSystem({ backend: 'redis', redisUrl: config.REDIS_URL, databaseUrl: db.url, prefix: config.QUEUE_PREFIX }, log);
    app = await buildApp({
      config, pool: db.pool, queues, migrations: await loadMigrations(), logger: log,
      verifyToken: createTokenVerifier({ hsSecret: TEST_JWT_SECRET }), linkSecret: TEST_LINK_SECRET,
    });
    await app.ready();
  });
  afterAll(async () => {
    await app.close();
    await queues.close();
    await db.drop();
  });

  it('never contain a bearer token, a signed link, a phone number, an email address or a message body in full', async () => {
    const sub = randomUUID();
    const token = await signToken({ sub, email: 'member.private@example.test' });
    const headers = { authorization: `Bearer ${token}` };
    Object.assign(secrets, {
      bearer: token, memberEmail: 'member.private@example.test', memberPhone: '+447700900555',
      contactEmail: 'contact.private@example.test', contactPhone: '+447700900777', note: 'my secret note about the garden',
    });
    const ok = async (method: 'GET' | 'POST' | 'PATCH', url: string, payload?: object, extra: Record<string, string> = {}) => {
      const res = await app.inject({ method, url, headers: { ...headers, ...extra }, ...(payload === undefined ? {} : { payload }) });
      expect(res.statusCode).toBeLessThan(500);
      return res;
    };
    await ok('PATCH', '/v1/me', { display_name: 'Ann', phone: secrets.memberPhone });
    // The phone verified by its SMS code, the worker sending it: neither the code nor its SMS is logged.
    await ok('POST', '/v1/me/phone/verification', { phone: secrets.memberPhone });
    const { rows: [code] } = await db.pool.query<{ id: string }>(`select id from deliveries where kind = 'verification'`);
    const dev = createDevOutboxChannel(db.pool);
    expect(await processDelivery({ pool: db.pool, channels: { push: dev, sms: dev, email: dev }, clock: () => new Date(), log: logger, linkSecret: TEST_LINK_SECRET }, code!.id, 0, 1)).toBe('sent');
    const { rows: [sent] } = await db.pool.query<{ body: string }>(`select body from dev_outbox where kind = 'verification'`);
    secrets.verificationSms = sent!.body;
    const digits = /\d{6}/.exec(sent!.body)![0];
    await ok('POST', '/v1/me/phone/verification/confirm', { phone: secrets.memberPhone, code: String((Number(digits) + 1) % 1_000_000).padStart(6, '0') });
    expect((await ok('POST', '/v1/me/phone/verification/confirm', { phone: secrets.memberPhone, code: digits })).json().phone_verified).toBe(true);
    const contact = await ok('POST', '/v1/contacts', { name: 'Bob', email: secrets.contactEmail, phone: secrets.contactPhone });
    await db.pool.query(`update contacts set status = 'active' where id = $1`, [contact.json().id]);
    await ok('POST', '/v1/check-ins', { note: secrets.note, location: { lat: 51.5, lng: -0.12 } }, { 'idempotency-key': 'key-1' });
    const sos = await ok('POST', '/v1/sos', { note: secrets.note });
    const { rows } = await db.pool.query<{ body: string }>(`select body from deliveries where incident_id = $1 and kind = 'alert'`, [sos.json().id]);
    expect(rows.length).toBeGreaterThan(0);
    secrets.alertBody = rows[0]!.body;
    const ack = tokenFrom(rows.find((r) => r.body.includes('/a/'))!.body);
    secrets.ackLink = ack;
    await app.inject({ method: 'GET', url: `/a/${ack}`, headers: { accept: 'text/html' } });
    await app.inject({ method: 'POST', url: `/a/${ack}/ack` });
    const checkin = signLink(TEST_LINK_SECRET, 'checkin', sub, new Date(Date.now() + 3_600_000));
    secrets.checkinLink = checkin;
    await app.inject({ method: 'POST', url: `/c/${checkin}` });
    await app.inject({ method: 'GET', url: `/c/${checkin}x` });
    // A text from the member's phone, signed as Twilio signs it: a check-in by reply.
    const form = { MessageSid: `SM${'a'.repeat(32)}`, From: '+447700900555', Body: 'OK and another private sentence' };
    secrets.smsBody = form.Body;
    const signature = twilio.getExpectedTwilioSignature(TWILIO_ENV.TWILIO_AUTH_TOKEN, 'http://pruuf.test/webhooks/twilio/inbound', form);
    const sms = await app.inject({ method: 'POST', url: '/webhooks/twilio/inbound', headers: { 'x-twilio-signature': signature, 'content-type': 'application/x-www-form-urlencoded' }, payload: new URLSearchParams(form).toString() });
    expect(sms.statusCode).toBe(200);
    // Refusals log too: a forged webhook, an expired token, a bad token in the query string.
    await app.inject({ method: 'POST', url: '/webhooks/twilio/inbound', headers: { 'x-twilio-signature': 'forged', 'content-type': 'application/x-www-form-urlencoded' }, payload: new URLSearchParams(form).toString() });
    const expired = await signToken({ sub, expiresIn: Math.floor(Date.now() / 1000) - 10 });
    secrets.expiredBearer = expired;
    await app.inject({ method: 'GET', url: `/v1/me?token=${expired}`, headers: { authorization: `Bearer ${expired}` } });
    await app.inject({ method: 'GET', url: '/v1/me', headers: { authorization: `Bearer ${token}x` } });
    await new Promise((r) => setTimeout(r, 300));

    expect(lines.length).toBeGreaterThan(20);
    const text = lines.join('\n');
    const found = Object.entries(secrets).filter(([, v]) => text.includes(v)).map(([k]) => k);
    expect(found).toEqual([]);
    expect(text).not.toMatch(new RegExp(`(^|\\D)${/\d{6}/.exec(secrets.verificationSms!)![0]}(\\D|$)`));
    // And nothing that merely looks like one: no JWT, no full E.164 number, no full email address.
    expect(text.match(/eyJ[\w-]{8,}\.[\w-]{8,}\.[\w-]*/g) ?? []).toEqual([]);
    expect(text.match(/\+[1-9]\d{9,14}/g) ?? []).toEqual([]);
    expect(text.match(/[\w.+-]{2,}@[\w-]+\.[\w.]+/g) ?? []).toEqual([]);
  });
});
