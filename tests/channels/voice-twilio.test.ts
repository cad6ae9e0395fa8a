import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { createChannels, devOutboxChannels } from '../../src/channels/index.js';
import { ChannelError, type Channel, type OutboundMessage } from '../../src/channels/types.js';
import { createTwilioVoiceChannel, type TwilioVoiceOptions } from '../../src/channels/voice-twilio/index.js';
import { ConfigError, loadConfig } from '../../src/config.js';
import { processDelivery } from '../../src/delivery/deliver.js';
import { voiceAddress } from '../../src/incidents/calls.js';
import { sweepOnce } from '../../src/incidents/sweep.js';
import { LinkError, verifyLink } from '../../src/links/tokens.js';
import { createLogger } from '../../src/observability/logger.js';
import { startTestApp, type TestApp } from '../helpers/app.js';
import { TEST_LINK_SECRET } from '../helpers/tokens.js';
import { memberWithContacts, sweepDeps, testClock } from '../incidents/helpers.js';
import { startFakeTwilio, twilioSignature, type FakeTwilio } from '../fakes/twilio.js';

const log = createLogger('silent');
const BASE = 'http://pruuf.test';
const FROM = '+15005550006';
const clock = testClock('2026-11-23T08:00:00Z');

describe('the Twilio voice channel', () => {
  let t: TestApp;
  let fake: FakeTwilio;

  beforeAll(async () => {
    fake = await startFakeTwilio();
    t = await startTestApp({
      clock: () => clock.now,
      env: {
        TWILIO_ACCOUNT_SID: fake.accountSid, TWILIO_AUTH_TOKEN: fake.authToken, TWILIO_MESSAGING_SERVICE_SID: 'MG00000000000000000000000000000000',
        TWILIO_VOICE_FROM: FROM, TWILIO_API_BASE: fake.url, VOICE_CALL_AFTER_STEPS: '2', VOICE_SOS: 'false', FREE_PLAN_CONTACTS: '10',
      },
    });
  });
  afterAll(async () => {
    await t.close();
    await fake.close();
  });

  const channel = (over: Partial<TwilioVoiceOptions> = {}): Channel => createTwilioVoiceChannel({
    accountSid: fake.accountSid, authToken: fake.authToken, apiBase: fake.url, from: FROM, publicBaseUrl: BASE, linkSecret: TEST_LINK_SECRET,
    timeoutSeconds: 25, callsPerSecond: 1000, pool: t.db.pool, log, clock: () => clock.now, ...over,
  });
  const msg = (to: string): OutboundMessage => ({
    deliveryId: randomUUID(), channel: 'voice', to, subject: null, body: 'This is Pruuf with an alert.', html: null, kind: 'alert', incidentId: null,
  });
  const tokenOf = (url: string) => new URL(url).searchParams.get('d')!;

  it('places a call through the Calls API; its URLs name the delivery in a signed call token that lasts a day', async () => {
    const m = msg('+447700900123');
    const result = await channel().send(m, AbortSignal.timeout(5000));
    const call = fake.calls.find((c) => c.sid === result.providerMessageId)!;
    expect(result).toEqual({ provider: 'twilio-voice', providerMessageId: expect.stringMatching(/^CA[0-9a-f]{32}$/) });
    expect(call).toMatchObject({ to: '+447700900123', from: FROM, method: 'POST', machineDetection: 'Enable', timeout: '25' });
    expect(call.statusCallbackEvents).toEqual(['initiated', 'ringing', 'answered', 'completed']);
    expect(call.params.StatusCallbackMethod).toBe('POST');
    for (const url of [call.url, call.statusCallback!]) {
      const link = verifyLink(TEST_LINK_SECRET, 'call', tokenOf(url), clock.now);
      expect({ delivery: link.s, expires: link.e }).toEqual({ delivery: m.deliveryId, expires: clock.now.getTime() / 1000 + 86_400 });
      // Not an alert link, and not valid the next day.
      expect(() => verifyLink(TEST_LINK_SECRET, 'ack', tokenOf(url), clock.now)).toThrow(new LinkError('wrong_purpose'));
      expect(() => verifyLink(TEST_LINK_SECRET, 'call', tokenOf(url), new Date(clock.now.getTime() + 86_400_000))).toThrow(new LinkError('expired'));
    }
  });

  it('classifies refusals: a bad number is permanent, bad credentials configuration, Twilio trouble transient', async () => {
    const refused = async (c: Channel, to: string) => {
      try {
        await c.send(msg(to), AbortSignal.timeout(5000));
      } catch (err) {
        return err;
      }
      throw new Error('the call was placed');
    };
    expect(await refused(channel(), '12345')).toMatchObject({ errorClass: 'permanent' });
    expect(await refused(channel({ authToken: '0'.repeat(32) }), '+447700900123')).toMatchObject({ errorClass: 'configuration' });
    fake.setFaults({ error500: 1 });
    try {
      const err = await refused(channel(), '+447700900123');
      expect(err).toBeInstanceOf(ChannelError);
      expect(err).toMatchObject({ errorClass: 'transient' });
    } finally {
      fake.setFaults({});
    }
  });

  it('calls tier 1 at the step VOICE_CALL_AFTER_STEPS says, and records each call status once, never backwards', async () => {
    clock.set('2026-11-23T08:00:00Z');
    const m = await memberWithContacts(t, [1, 2, 3]);
    clock.set('2026-11-23T10:00:00Z');
    await sweepOnce(sweepDeps(t, clock));
    const { rows: [inc] } = await t.db.pool.query('select id from incidents where member_id = $1', [m.sub]);
    const voice = async () => (await t.db.pool.query(
      `select id, step_no, contact_id, status, provider_status, carrier_status, provider_error_code from deliveries where incident_id = $1 and channel = 'voice'`, [inc.id])).rows;
    clock.add(15);
    await sweepOnce(sweepDeps(t, clock)); // step 2: no call yet (VOICE_CALL_AFTER_STEPS = 2)
    expect(await voice()).toEqual([]);
    clock.add(15);
    await sweepOnce(sweepDeps(t, clock)); // step 3: tier 1 is called
    const [d] = await voice();
    expect(d).toMatchObject({ step_no: 3, contact_id: m.contacts[0]!.id, status: 'pending' });

    const channels = { ...createChannels({ pool: t.db.pool, config: t.config, log }).channels, voice: channel() };
    expect(await processDelivery({ pool: t.db.pool, channels, clock: () => clock.now, log }, d.id, 0, 3)).toBe('sent');
    const call = fake.calls.at(-1)!;
    const status = (s: string, extra: Record<string, string> = {}) => {
      const params = { CallSid: call.sid, AccountSid: fake.accountSid, CallStatus: s, From: FROM, To: call.to, Direction: 'outbound-api', ...extra };
      return t.app.inject({
        method: 'POST', url: call.statusCallback!.slice(BASE.length), payload: new URLSearchParams(params).toString(),
        headers: { 'content-type': 'application/x-www-form-urlencoded', 'x-twilio-signature': twilioSignature(fake.authToken, call.statusCallback!, params) },
      });
    };
    expect((await status('ringing')).statusCode).toBe(204);
    expect((await voice())[0]).toMatchObject({ provider_status: 'ringing', carrier_status: null });
    expect((await status('busy', { CallDuration: '0' })).statusCode).toBe(204);
    expect((await status('busy', { CallDuration: '0' })).statusCode).toBe(204); // a replay
    expect((await status('ringing')).statusCode).toBe(204); // late, out of order
    expect((await voice())[0]).toMatchObject({ provider_status: 'busy', carrier_status: 'undelivered', provider_error_code: 'busy' });
    const outcomes = (await t.db.pool.query(`select contact_id, detail from incident_events where incident_id = $1 and type = 'call_outcome'`, [inc.id])).rows;
    expect(outcomes).toEqual([{ contact_id: m.contacts[0]!.id, detail: { delivery_id: d.id, outcome: 'busy', key: null, keys: [], answered_by: null, duration_seconds: 0 } }]);
    // The timeline shows the call with the other deliveries.
    const timeline = (await t.app.inject({ method: 'GET', url: `/v1/incidents/${inc.id}`, headers: m.headers })).json();
    expect(timeline.deliveries.find((x: { id: string }) => x.id === d.id)).toMatchObject({ channel: 'voice', carrier_status: 'undelivered' });
    // Malformed callbacks are a 400 in the envelope once signed, never a 5xx.
    expect((await status('BUSY!')).statusCode).toBe(400);
  });

  it('with VOICE_SOS=false an SOS alerts by message only', async () => {
    const m = await memberWithContacts(t, [1]);
    const sos = await t.app.inject({ method: 'POST', url: '/v1/sos', headers: m.headers, payload: {} });
    const { rows } = await t.db.pool.query(`select channel from deliveries where incident_id = $1 order by channel`, [sos.json().id]);
    expect(rows.map((r) => r.channel)).toEqual(['email', 'sms']);
  });

  it('calls from TWILIO_VOICE_FROM, or the SMS number; with neither (a messaging service only) calls go to the dev outbox', () => {
    const base = { TWILIO_ACCOUNT_SID: 'AC00000000000000000000000000000000', FIREBASE_SERVICE_ACCOUNT_JSON: undefined, FIREBASE_SERVICE_ACCOUNT_PATH: '/x', SENDGRID_API_KEY: 'x' };
    expect(devOutboxChannels({ ...base, TWILIO_FROM_NUMBER: FROM, TWILIO_VOICE_FROM: undefined })).toEqual([]);
    expect(devOutboxChannels({ ...base, TWILIO_FROM_NUMBER: undefined, TWILIO_VOICE_FROM: FROM })).toEqual([]);
    expect(devOutboxChannels({ ...base, TWILIO_FROM_NUMBER: undefined, TWILIO_VOICE_FROM: undefined })).toEqual(['voice']);
    expect(() => loadConfig({ TWILIO_VOICE_FROM: '0800 123' })).toThrow(ConfigError);
    expect(() => loadConfig({ VOICE_SOS: 'maybe' })).toThrow(ConfigError);
    expect(loadConfig({})).toMatchObject({ VOICE_CALL_AFTER_STEPS: 1, VOICE_SOS: true, VOICE_CALL_TIMEOUT_SECONDS: 30 });
    expect(loadConfig({ VOICE_SOS: 'false' }).VOICE_SOS).toBe(false);
  });

  it('calls the SMS address of a contact in a plan snapshot older than calls, and nobody without a phone', () => {
    expect(voiceAddress({ id: randomUUID(), name: 'Bo', channels: [{ channel: 'email', address: 'bo@example.test' }, { channel: 'sms', address: '+447700900777' }] })).toBe('+447700900777');
    expect(voiceAddress({ id: randomUUID(), name: 'Bo', channels: [{ channel: 'email', address: 'bo@example.test' }] })).toBeUndefined();
    expect(voiceAddress({ id: randomUUID(), name: 'Bo', channels: [], voice: '+447700900778' })).toBe('+447700900778');
  });
});

describe('calls without Twilio', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await startTestApp({ clock: () => clock.now });
  });
  afterAll(() => t.close());

  it('land in the dev outbox as what they would say', async () => {
    clock.set('2026-11-23T12:00:00Z');
    const m = await memberWithContacts(t, [1]);
    const sos = await t.app.inject({ method: 'POST', url: '/v1/sos', headers: m.headers, payload: {} });
    const { rows: [call] } = await t.db.pool.query(`select id from deliveries where incident_id = $1 and channel = 'voice'`, [sos.json().id]);
    const set = createChannels({ pool: t.db.pool, config: t.config, log, linkSecret: TEST_LINK_SECRET });
    expect(set.devOutbox).toContain('voice');
    expect(await processDelivery({ pool: t.db.pool, channels: set.channels, clock: () => clock.now, log }, call.id, 0, 3)).toBe('sent');
    const outbox = (await t.app.inject({ method: 'GET', url: '/dev/outbox', headers: { accept: 'application/json' } })).json().data;
    expect(outbox.find((o: { channel: string }) => o.channel === 'voice')).toMatchObject({
      kind: 'alert', to: m.contacts[0]!.phone, subject: null, incident_id: sos.json().id,
      body: expect.stringMatching(/^This is Pruuf with an urgent alert\. Ann pressed the SOS button at 12:00 UTC on Monday 23 November 2026.* Press 1 if you are taking care of it\./),
    });
  });
});
