import { createHash, createPrivateKey, generateKeyPairSync, randomUUID } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { SignJWT } from 'jose';
import { configuredProviders, createChannels } from '../../src/channels/index.js';
import { ChannelError, providersOf, ThrottledError, type Channel, type OutboundMessage } from '../../src/channels/types.js';
import { createVonageVoiceChannel, type VonageVoiceOptions } from '../../src/channels/voice-vonage/index.js';
import { ConfigError, loadConfig } from '../../src/config.js';
import { processDelivery } from '../../src/delivery/deliver.js';
import { signLink, verifyLink } from '../../src/links/tokens.js';
import { createLogger } from '../../src/observability/logger.js';
import { errorOf, startTestApp, type TestApp } from '../helpers/app.js';
import { TEST_LINK_SECRET } from '../helpers/tokens.js';
import { memberWithContacts, testClock } from '../incidents/helpers.js';
import { signVonageWebhook, startFakeVonageVoice, type FakeVonageVoice } from '../fakes/vonage-voice.js';

const log = createLogger('silent');
const BASE = 'http://pruuf.test';
const FROM = '+447700900500';
const clock = testClock('2026-11-23T12:00:00Z');

describe('the Vonage voice channel and its webhooks', () => {
  let t: TestApp;
  let fake: FakeVonageVoice;

  beforeAll(async () => {
    fake = await startFakeVonageVoice();
    t = await startTestApp({
      clock: () => clock.now,
      env: {
        VONAGE_APPLICATION_ID: fake.applicationId, VONAGE_PRIVATE_KEY: fake.privateKey, VONAGE_VOICE_FROM: FROM,
        VONAGE_SIGNATURE_SECRET: fake.signatureSecret, VONAGE_VOICE_API_BASE: fake.url, FREE_PLAN_CONTACTS: '10',
      },
    });
  });
  afterAll(async () => {
    await t.close();
    await fake.close();
  });

  const channel = (over: Partial<VonageVoiceOptions> = {}): Channel => createVonageVoiceChannel({
    applicationId: fake.applicationId, privateKey: fake.privateKey, apiBase: fake.url, from: FROM, publicBaseUrl: BASE, linkSecret: TEST_LINK_SECRET,
    timeoutSeconds: 25, callsPerSecond: 1000, pool: t.db.pool, log, clock: () => clock.now, ...over,
  });
  const msg = (to: string): OutboundMessage => ({
    deliveryId: randomUUID(), channel: 'voice', to, subject: null, body: 'This is Pruuf with an alert.', html: null, kind: 'alert', incidentId: null,
  });
  /** A send that waits for its turn when the shared calls-per-second budget says "not yet". */
  const sendSoon = async (c: Channel, m: OutboundMessage) => {
    for (;;) {
      try {
        return await c.send(m, AbortSignal.timeout(5000));
      } catch (err) {
        if (!(err instanceof ThrottledError)) throw err;
        await new Promise((resolve) => setTimeout(resolve, err.retryAfterMs));
      }
    }
  };
  const refusal = async (c: Channel, to: string) => {
    try {
      await c.send(msg(to), AbortSignal.timeout(5000));
    } catch (err) {
      return err;
    }
    throw new Error('the call was placed');
  };

  it('places a call with the SDK\'s own request code (a JWT the fake verified with the public key); its URLs carry the signed call token', async () => {
    const m = msg('+447700900123');
    const result = await channel().send(m, AbortSignal.timeout(5000));
    const call = fake.calls.find((c) => c.uuid === result.providerMessageId)!;
    expect(result).toEqual({ provider: 'vonage-voice', providerMessageId: call.uuid });
    expect(call.body).toEqual({
      to: [{ type: 'phone', number: '447700900123' }], from: { type: 'phone', number: '447700900500' },
      answer_url: [expect.stringMatching(/^http:\/\/pruuf\.test\/webhooks\/vonage\/voice\/answer\?d=[\w-]+$/)],
      event_url: [expect.stringMatching(/^http:\/\/pruuf\.test\/webhooks\/vonage\/voice\/event\?d=[\w-]+$/)],
      ringing_timer: 25, machine_detection: 'hangup',
    });
    for (const url of [call.answerUrl, call.eventUrl!]) {
      const link = verifyLink(TEST_LINK_SECRET, 'call', new URL(url).searchParams.get('d')!, clock.now);
      expect({ delivery: link.s, expires: link.e }).toEqual({ delivery: m.deliveryId, expires: clock.now.getTime() / 1000 + 86_400 });
    }
  });

  it('classifies refusals: another key is configuration, a bad number permanent, Vonage trouble transient', async () => {
    const other = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
    const before = fake.outcomes.unauthorized ?? 0;
    expect(await refusal(channel({ privateKey: other }), '+447700900123')).toMatchObject({ errorClass: 'configuration', message: 'Vonage HTTP 401' });
    expect(fake.outcomes.unauthorized).toBe(before + 1);
    expect(await refusal(channel(), '+12')).toMatchObject({ errorClass: 'permanent', message: 'Vonage HTTP 400' });
    fake.setFaults({ error500: 1 });
    try {
      const err = await refusal(channel(), '+447700900123');
      expect(err).toBeInstanceOf(ChannelError);
      expect(err).toMatchObject({ errorClass: 'transient' });
    } finally {
      fake.setFaults({});
    }
  });

  /** An SOS call of a new member, placed through the channel: its delivery id and the `d` token of its URLs. */
  async function placedCall() {
    const m = await memberWithContacts(t, [1]);
    const sos = await t.app.inject({ method: 'POST', url: '/v1/sos', headers: m.headers, payload: {} });
    const incidentId = sos.json().id as string;
    const { rows: [d] } = await t.db.pool.query<{ id: string }>(`select id from deliveries where incident_id = $1 and channel = 'voice'`, [incidentId]);
    const channels = { ...createChannels({ pool: t.db.pool, config: t.config, log }).channels, voice: channel() };
    expect(await processDelivery({ pool: t.db.pool, channels, clock: () => clock.now, log }, d!.id, 0, 3)).toBe('sent');
    const call = fake.calls.at(-1)!;
    return { incidentId, deliveryId: d!.id, call, token: new URL(call.answerUrl).searchParams.get('d')! };
  }
  const post = async (path: string, token: string, body: unknown, authorization?: string) => t.app.inject({
    method: 'POST', url: `${path}?d=${token}`, payload: JSON.stringify(body),
    headers: { 'content-type': 'application/json', ...(authorization === undefined ? {} : { authorization }) },
  });
  const bearer = async (body: unknown, opts: { secret?: string; at?: Date; over?: Record<string, unknown> } = {}) =>
    `Bearer ${await signVonageWebhook(opts.secret ?? fake.signatureSecret, fake, body, opts.at ?? clock.now, opts.over)}`;

  it('refuses a webhook Vonage did not sign (401), or a call token we did not sign (404), and changes nothing', async () => {
    const { incidentId, call, token } = await placedCall();
    const key1 = { uuid: call.uuid, conversation_uuid: call.conversationUuid, dtmf: { digits: '1', timed_out: false } };
    const rs256 = await new SignJWT({ application_id: fake.applicationId }).setProtectedHeader({ alg: 'RS256' }).setIssuedAt(Math.floor(clock.now.getTime() / 1000))
      .sign(createPrivateKey(fake.privateKey));
    const refused: [string, string | undefined][] = [
      ['no signature', undefined],
      ['another secret', await bearer(key1, { secret: 'x'.repeat(40) })],
      ['a body other than the one signed', await bearer({ ...key1, dtmf: { digits: '2', timed_out: false } })],
      ['signed 10 minutes ago', await bearer(key1, { at: new Date(clock.now.getTime() - 10 * 60_000) })],
      ['another application', await bearer(key1, { over: { application_id: randomUUID() } })],
      ['RS256 with the application key', `Bearer ${rs256}`],
      ['not a JWT', 'Bearer abc'],
    ];
    for (const [why, auth] of refused) {
      const res = await post('/webhooks/vonage/voice/input', token, key1, auth);
      expect({ why, status: res.statusCode, code: errorOf(res.body).code }).toEqual({ why, status: 401, code: 'UNAUTHENTICATED' });
    }
    const get = await t.app.inject({ method: 'GET', url: `/webhooks/vonage/voice/answer?d=${token}&uuid=${call.uuid}` });
    expect(get.statusCode).toBe(401);
    // Signed by Vonage, but naming a delivery with a token we did not make.
    const foreign = signLink('y'.repeat(32), 'call', randomUUID(), new Date(clock.now.getTime() + 3_600_000));
    const res = await post('/webhooks/vonage/voice/input', foreign, key1, await bearer(key1));
    expect({ status: res.statusCode, code: errorOf(res.body).code }).toEqual({ status: 404, code: 'NOT_FOUND' });
    const { rows: [inc] } = await t.db.pool.query('select state from incidents where id = $1', [incidentId]);
    expect(inc.state).toBe('open');
    expect((await t.db.pool.query(`select 1 from incident_events where incident_id = $1 and type in ('call_key', 'acknowledged')`, [incidentId])).rowCount).toBe(0);
    // Signed and ours (the hash over the bytes as sent, spacing included): the same key acknowledges.
    const spaced = JSON.stringify(key1, null, 2);
    const ok = await t.app.inject({
      method: 'POST', url: `/webhooks/vonage/voice/input?d=${token}`, payload: spaced,
      headers: { 'content-type': 'application/json', authorization: await bearer(key1, { over: { payload_hash: createHash('sha256').update(spaced).digest('hex') } }) },
    });
    expect(ok.statusCode).toBe(200);
    expect((await t.db.pool.query('select state from incidents where id = $1', [incidentId])).rows[0].state).toBe('acknowledged');
  });

  it('records call events once each, never backwards; a malformed one is 400 once signed', async () => {
    const { incidentId, deliveryId, call, token } = await placedCall();
    const event = async (status: string, extra: Record<string, unknown> = {}) => {
      const body = { uuid: call.uuid, conversation_uuid: call.conversationUuid, status, direction: 'outbound', timestamp: clock.now.toISOString(), ...extra };
      return post('/webhooks/vonage/voice/event', token, body, await bearer(body));
    };
    const row = async () => (await t.db.pool.query('select provider, provider_status, carrier_status, provider_error_code from deliveries where id = $1', [deliveryId])).rows[0];
    expect((await event('started')).statusCode).toBe(204);
    expect((await event('ringing')).statusCode).toBe(204);
    expect(await row()).toEqual({ provider: 'vonage-voice', provider_status: 'ringing', carrier_status: null, provider_error_code: null });
    expect((await event('rejected', { detail: 'restricted' })).statusCode).toBe(204);
    expect((await event('rejected', { detail: 'restricted' })).statusCode).toBe(204); // a replay
    expect((await event('ringing')).statusCode).toBe(204); // late, out of order
    expect((await event('transfer')).statusCode).toBe(204); // says nothing about the outcome
    expect(await row()).toEqual({ provider: 'vonage-voice', provider_status: 'failed', carrier_status: 'failed', provider_error_code: 'restricted' });
    const outcomes = (await t.db.pool.query(`select detail from incident_events where incident_id = $1 and type = 'call_outcome'`, [incidentId])).rows;
    expect(outcomes).toEqual([{ detail: { delivery_id: deliveryId, outcome: 'failed', key: null, keys: [], answered_by: null, duration_seconds: null } }]);
    expect((await event('BUSY!')).statusCode).toBe(400);
  });

  it('reads its configuration: all four together, the key as PEM text, escaped text or a file, and the provider order', async () => {
    const pem = fake.privateKey;
    const base = { VONAGE_APPLICATION_ID: fake.applicationId, VONAGE_PRIVATE_KEY: pem, VONAGE_VOICE_FROM: FROM, VONAGE_SIGNATURE_SECRET: 's3cret', VOICE_CALLS_PER_SECOND: '100' };
    expect(loadConfig(base).VOICE_PROVIDERS).toEqual(['twilio-voice', 'vonage-voice']);
    expect(() => loadConfig({ ...base, VONAGE_PRIVATE_KEY: undefined })).toThrow(ConfigError);
    expect(() => loadConfig({ ...base, VONAGE_VOICE_FROM: undefined })).toThrow(/VONAGE_VOICE_FROM/);
    expect(() => loadConfig({ ...base, VONAGE_SIGNATURE_SECRET: undefined })).toThrow(/VONAGE_SIGNATURE_SECRET/);
    expect(() => loadConfig({ ...base, VONAGE_PRIVATE_KEY: '-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----' })).toThrow(/VONAGE_PRIVATE_KEY.*value hidden/);
    expect(() => loadConfig({ ...base, VONAGE_PRIVATE_KEY: '/no/such/file.key' })).toThrow(/VONAGE_PRIVATE_KEY/);
    expect(() => loadConfig({ ...base, VONAGE_APPLICATION_ID: 'my-app' })).toThrow(/VONAGE_APPLICATION_ID/);
    expect(() => loadConfig({ VOICE_PROVIDERS: 'vonage-voice,vonage-voice' })).toThrow(ConfigError);
    expect(() => loadConfig({ VOICE_PROVIDERS: 'plivo' })).toThrow(ConfigError);
    expect(loadConfig({ ...base, VONAGE_PRIVATE_KEY: pem.replace(/\n/g, '\\n') }).VONAGE_PRIVATE_KEY).toContain('\\n');
    const file = join(mkdtempSync(join(tmpdir(), 'pruuf-vonage-')), 'private.key');
    writeFileSync(file, pem);
    const fromFile = loadConfig({ ...base, VONAGE_PRIVATE_KEY: file, VONAGE_VOICE_API_BASE: fake.url });
    // Each form of the key places a call: the fake verified the JWT signed with it.
    for (const config of [loadConfig({ ...base, VONAGE_VOICE_API_BASE: fake.url }), loadConfig({ ...base, VONAGE_PRIVATE_KEY: pem.replace(/\n/g, '\\n'), VONAGE_VOICE_API_BASE: fake.url }), fromFile]) {
      const voice = createChannels({ pool: t.db.pool, config, log, linkSecret: TEST_LINK_SECRET }).channels.voice;
      expect(providersOf(voice).map((c) => c.provider)).toEqual(['vonage-voice']);
      await expect(sendSoon(providersOf(voice)[0]!, msg('+447700900124'))).resolves.toMatchObject({ provider: 'vonage-voice' });
    }
    const twilio = { TWILIO_ACCOUNT_SID: `AC${'0'.repeat(32)}`, TWILIO_AUTH_TOKEN: 'x', TWILIO_FROM_NUMBER: '+15005550006' };
    expect(configuredProviders(loadConfig({ ...base, ...twilio })).voice).toEqual(['twilio-voice', 'vonage-voice']);
    expect(configuredProviders(loadConfig({ ...base, ...twilio, VOICE_PROVIDERS: 'vonage-voice, twilio-voice' })).voice).toEqual(['vonage-voice', 'twilio-voice']);
    expect(configuredProviders(loadConfig({ ...base, ...twilio, VOICE_PROVIDERS: 'vonage-voice' })).voice).toEqual(['vonage-voice']);
    expect(configuredProviders(loadConfig(twilio)).voice).toEqual(['twilio-voice']);
  });
});
