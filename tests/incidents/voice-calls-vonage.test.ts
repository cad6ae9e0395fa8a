import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import type pg from 'pg';
import { createChannels, providerNames } from '../../src/channels/index.js';
import type { Channel, Channels } from '../../src/channels/types.js';
import { createTwilioVoiceChannel } from '../../src/channels/voice-twilio/index.js';
import { createVonageVoiceChannel } from '../../src/channels/voice-vonage/index.js';
import { DeliveryDeferredError, processDelivery } from '../../src/delivery/deliver.js';
import { sweepOnce } from '../../src/incidents/sweep.js';
import { createLogger } from '../../src/observability/logger.js';
import { startTestApp, type TestApp } from '../helpers/app.js';
import { TEST_LINK_SECRET } from '../helpers/tokens.js';
import { startFakeTwilio, type FakeTwilio } from '../fakes/twilio.js';
import { inputUrlOf, startFakeVonageVoice, vonageCallDriver, type FakeVonageVoice, type VonageCallDriver, type VonageWebhook } from '../fakes/vonage-voice.js';
import { alerts, memberWithContacts, sweepDeps, testClock } from './helpers.js';

const log = createLogger('silent');
const BASE = 'http://pruuf.test';
const TWILIO_NUMBER = '+15005550006';
const VONAGE_NUMBER = '+447700900500';
const clock = testClock('2026-11-23T08:00:00Z');

const vonageEnv = (v: FakeVonageVoice) => ({
  VONAGE_APPLICATION_ID: v.applicationId, VONAGE_PRIVATE_KEY: v.privateKey, VONAGE_VOICE_FROM: VONAGE_NUMBER,
  VONAGE_SIGNATURE_SECRET: v.signatureSecret, VONAGE_VOICE_API_BASE: v.url,
});
const vonageChannel = (t: TestApp, v: FakeVonageVoice): Channel => createVonageVoiceChannel({
  applicationId: v.applicationId, privateKey: v.privateKey, apiBase: v.url, from: VONAGE_NUMBER, publicBaseUrl: BASE,
  linkSecret: TEST_LINK_SECRET, timeoutSeconds: 30, callsPerSecond: 1000, pool: t.db.pool, log, clock: () => clock.now,
});
/** Vonage's webhooks, through app.inject. */
const injector = (t: TestApp): VonageWebhook => async (method, url, body, authorization) => {
  const res = await t.app.inject({
    method, url: url.slice(BASE.length), headers: { authorization, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    ...(body === undefined ? {} : { payload: JSON.stringify(body) }),
  });
  return { status: res.statusCode, body: res.body };
};

/** The worker: every pending delivery (of a channel) handed to the channels, a throttled one after its wait. */
async function deliverAll(t: TestApp, channels: Channels, channel?: string): Promise<void> {
  const { rows } = await t.db.pool.query<{ id: string }>(
    `select id from deliveries where status = 'pending' and ($1::text is null or channel = $1) order by created_at, id`, [channel ?? null]);
  for (const r of rows) {
    for (let i = 0; ; i += 1) {
      try {
        await processDelivery({ pool: t.db.pool, channels, clock: () => clock.now, log }, r.id, 0, 3);
        break;
      } catch (err) {
        if (!(err instanceof DeliveryDeferredError) || i === 20) throw err;
        await new Promise((resolve) => setTimeout(resolve, err.retryAfterMs));
      }
    }
  }
}

type CallRow = { id: string; contact_id: string; status: string; provider: string | null; provider_message_id: string | null; provider_status: string | null; carrier_status: string | null };
const calls = async (pool: pg.Pool, incidentId: string) => (await pool.query<CallRow>(
  `select id, contact_id, status, provider, provider_message_id, provider_status, carrier_status from deliveries
    where incident_id = $1 and channel = 'voice' order by contact_id`, [incidentId])).rows;
const events = async (pool: pg.Pool, incidentId: string, type: string) => (await pool.query<{ contact_id: string | null; detail: Record<string, unknown> }>(
  'select contact_id, detail from incident_events where incident_id = $1 and type = $2 order by at, id', [incidentId, type])).rows;

const vonageCall = (v: FakeVonageVoice, uuid: string) => {
  const call = v.calls.find((c) => c.uuid === uuid);
  if (call === undefined) throw new Error(`no Vonage call ${uuid}`);
  return call;
};

/** A member with contacts in `tiers` who missed a deadline: tier 1 alerted, then step 2 due (calls written, none placed). */
async function missedToStepTwo(t: TestApp, channels: Channels, tiers: number[], locale?: string) {
  clock.set('2026-11-23T08:00:00Z');
  const m = await memberWithContacts(t, tiers);
  if (locale !== undefined) await t.db.pool.query('update contacts set locale = $2 where id = $1', [m.contacts[0]!.id, locale]);
  clock.set('2026-11-23T10:00:00Z');
  await sweepOnce(sweepDeps(t, clock));
  await deliverAll(t, channels);
  const { rows: [inc] } = await t.db.pool.query<{ id: string }>('select id from incidents where member_id = $1', [m.sub]);
  clock.add(15);
  await sweepOnce(sweepDeps(t, clock));
  return { m, incidentId: inc!.id };
}

describe('phone calls through Vonage Voice alone', () => {
  let t: TestApp;
  let vonage: FakeVonageVoice;
  let channels: Channels;
  let phone: VonageCallDriver;

  beforeAll(async () => {
    vonage = await startFakeVonageVoice();
    t = await startTestApp({ clock: () => clock.now, env: { ...vonageEnv(vonage), FREE_PLAN_CHANNELS: 'push,sms,email', FREE_PLAN_CONTACTS: '10' } });
    channels = { ...createChannels({ pool: t.db.pool, config: t.config, log }).channels, voice: vonageChannel(t, vonage) };
    phone = vonageCallDriver(vonage, injector(t), () => clock.now);
  });
  afterAll(async () => {
    await t.close();
    await vonage.close();
  });

  it('is the voice channel when only Vonage is configured', () => {
    expect(providerNames(createChannels({ pool: t.db.pool, config: t.config, log, linkSecret: TEST_LINK_SECRET }).channels).voice).toEqual(['vonage-voice']);
  });

  it('missed check-in: at step 2 tier 1 is called through Vonage; key 1 acknowledges and the others are told', async () => {
    const { m, incidentId } = await missedToStepTwo(t, channels, [1, 1, 2]);
    const [c0, c1, c2] = m.contacts as [typeof m.contacts[0], typeof m.contacts[0], typeof m.contacts[0]];
    expect((await calls(t.db.pool, incidentId)).map((d) => d.contact_id).sort()).toEqual([c0.id, c1.id].sort());
    await deliverAll(t, channels);
    const placed = await calls(t.db.pool, incidentId);
    expect(placed.map((d) => `${d.status}:${d.provider}`)).toEqual(['sent:vonage-voice', 'sent:vonage-voice']);
    const call0 = phone.callTo(c0.phone)!;
    expect(placed.find((d) => d.contact_id === c0.id)!.provider_message_id).toBe(call0.uuid);
    expect(call0).toMatchObject({ to: c0.phone.slice(1), from: VONAGE_NUMBER.slice(1), ringingTimer: 30, machineDetection: 'hangup' });
    expect(call0.answerUrl).toMatch(/^http:\/\/pruuf\.test\/webhooks\/vonage\/voice\/answer\?d=[\w-]+$/);
    expect(call0.eventUrl).toMatch(/^http:\/\/pruuf\.test\/webhooks\/vonage\/voice\/event\?d=[\w-]+$/);

    clock.add(1);
    const run = await phone.answer(call0, { digits: '1' });
    expect(run.statuses.every((s) => s === 200 || s === 204)).toBe(true);
    const [talk, input] = run.ncco[0]!;
    expect(talk).toMatchObject({ action: 'talk', language: 'en-US', bargeIn: true });
    expect(talk!.text).toContain('This is Pruuf with an alert. Ann missed a check-in that was due at 09:30 UTC on Monday 23 November 2026');
    expect(talk!.text).toContain('Press 1 if you are taking care of it. Press 2 if it needs more help. Press 9 to hear this again.');
    expect(input).toMatchObject({ action: 'input', type: ['dtmf'], dtmf: { maxDigits: 1, timeOut: 8 } });
    expect(inputUrlOf(run.ncco[0]!)).toMatch(/^http:\/\/pruuf\.test\/webhooks\/vonage\/voice\/input\?d=[\w-]+$/);
    expect(run.ncco[1]).toEqual([{ action: 'talk', language: 'en-US', text: expect.stringMatching(/^Thank you\. The others will be told that you are taking care of Ann\./) }]);

    const { rows: [inc] } = await t.db.pool.query('select state, acknowledged_by, next_step_at from incidents where id = $1', [incidentId]);
    expect(inc).toEqual({ state: 'acknowledged', acknowledged_by: c0.id, next_step_at: null });
    const notices = await alerts(t.db.pool, incidentId, 'ack_notice');
    expect(notices.map((d) => `${d.contact_id}:${d.channel}`).sort()).toEqual([`${c1.id}:email`, `${c1.id}:sms`, `${c2.id}:email`, `${c2.id}:sms`].sort());
    expect(notices.find((d) => d.channel === 'sms')!.body).toContain('Contact 0 is on it');
    const sent0 = (await calls(t.db.pool, incidentId)).find((d) => d.contact_id === c0.id)!;
    expect(sent0).toMatchObject({ provider_status: 'completed', carrier_status: 'delivered' });
    expect(await events(t.db.pool, incidentId, 'call_outcome')).toEqual([
      { contact_id: c0.id, detail: { delivery_id: sent0.id, outcome: 'completed', key: '1', keys: ['1'], answered_by: null, duration_seconds: 42 } },
    ]);

    // Contact 1 answers late: told who is on it, asked nothing.
    const late = await phone.answer(phone.callTo(c1.phone)!, { digits: '1' });
    expect(late.ncco).toEqual([[{ action: 'talk', language: 'en-US', text: expect.stringMatching(/^Contact 0 is already taking care of Ann\./) }]]);
  });

  it('speaks Spanish to an es contact; 9 repeats, no key says goodbye', async () => {
    const { incidentId } = await missedToStepTwo(t, channels, [1], 'es');
    await deliverAll(t, channels, 'voice');
    const [call] = await calls(t.db.pool, incidentId);
    const run = await phone.answer(vonage.calls.find((c) => c.uuid === call!.provider_message_id)!, { digits: '9' });
    expect(run.ncco[0]![0]).toMatchObject({ action: 'talk', language: 'es-ES' });
    expect(run.ncco[0]![0]!.text).toContain('Te llamamos de Pruuf con una alerta. Ann no hizo su check-in, previsto para las 09:30 UTC, lunes 23 de noviembre de 2026');
    expect(run.ncco[0]![0]!.text).toContain('Pulsa 1 si te encargas tú.');
    expect(run.ncco[1]).toEqual(run.ncco[0]);
    // The input timed out after the repeat: a goodbye in Spanish, and escalation goes on.
    expect(run.ncco[2]).toHaveLength(1);
    expect(run.ncco[2]![0]).toMatchObject({ action: 'talk', language: 'es-ES' });
    expect(inputUrlOf(run.ncco[2]!)).toBeUndefined();
    expect((await t.db.pool.query('select state from incidents where id = $1', [incidentId])).rows[0].state).toBe('open');
    expect((await events(t.db.pool, incidentId, 'call_outcome'))[0]!.detail).toMatchObject({ outcome: 'completed', key: '9', keys: ['9'] });
  });

  it('records unanswered calls and voicemail without acknowledging', async () => {
    const { m, incidentId } = await missedToStepTwo(t, channels, [1, 1]);
    await deliverAll(t, channels, 'voice');
    await phone.noAnswer(phone.callTo(m.contacts[0]!.phone)!);
    const machine = await phone.machine(phone.callTo(m.contacts[1]!.phone)!);
    expect(machine.ncco).toEqual([]);
    const byContact = Object.fromEntries((await calls(t.db.pool, incidentId)).map((d) => [d.contact_id, `${d.provider_status}:${d.carrier_status}`]));
    expect(byContact).toEqual({ [m.contacts[0]!.id]: 'no-answer:undelivered', [m.contacts[1]!.id]: 'answering_machine:undelivered' });
    // One outcome per call: the voicemail's `completed` after `machine` adds nothing.
    expect((await events(t.db.pool, incidentId, 'call_outcome')).map((e) => `${e.contact_id}:${String(e.detail.outcome)}`).sort())
      .toEqual([`${m.contacts[0]!.id}:no-answer`, `${m.contacts[1]!.id}:answering_machine`].sort());
    expect((await t.db.pool.query('select state from incidents where id = $1', [incidentId])).rows[0].state).toBe('open');
  });
});

describe('phone calls with Twilio Voice and Vonage Voice', () => {
  let t: TestApp;
  let twilio: FakeTwilio;
  let vonage: FakeVonageVoice;
  let channels: Channels;

  beforeAll(async () => {
    [twilio, vonage] = await Promise.all([startFakeTwilio(), startFakeVonageVoice()]);
    t = await startTestApp({
      clock: () => clock.now,
      env: {
        TWILIO_ACCOUNT_SID: twilio.accountSid, TWILIO_AUTH_TOKEN: twilio.authToken, TWILIO_FROM_NUMBER: TWILIO_NUMBER, TWILIO_API_BASE: twilio.url,
        ...vonageEnv(vonage), FREE_PLAN_CHANNELS: 'push,sms,email', FREE_PLAN_CONTACTS: '10', SMS_RATE_PER_SECOND: '1000',
      },
    });
    const twilioVoice = createTwilioVoiceChannel({
      accountSid: twilio.accountSid, authToken: twilio.authToken, apiBase: twilio.url, from: TWILIO_NUMBER, publicBaseUrl: BASE,
      linkSecret: TEST_LINK_SECRET, timeoutSeconds: 30, callsPerSecond: 1000, pool: t.db.pool, log, clock: () => clock.now,
    });
    channels = { ...createChannels({ pool: t.db.pool, config: t.config, log }).channels, voice: [twilioVoice, vonageChannel(t, vonage)] };
  });
  afterAll(async () => {
    await t.close();
    await Promise.all([twilio.close(), vonage.close()]);
  });

  it('tries Twilio first (VOICE_PROVIDERS default)', () => {
    expect(providerNames(createChannels({ pool: t.db.pool, config: t.config, log, linkSecret: TEST_LINK_SECRET }).channels).voice).toEqual(['twilio-voice', 'vonage-voice']);
  });

  it('Twilio Voice down (500): the call goes through Vonage at once, the timeline says so, and key 1 there acknowledges', async () => {
    const { m, incidentId } = await missedToStepTwo(t, channels, [1, 2]);
    const twilioCallsBefore = twilio.calls.length;
    twilio.setFaults({ error500: 1 });
    try {
      await deliverAll(t, channels, 'voice');
    } finally {
      twilio.setFaults({});
    }
    const [call] = await calls(t.db.pool, incidentId);
    expect(call).toMatchObject({ status: 'sent', provider: 'vonage-voice' });
    expect(twilio.calls).toHaveLength(twilioCallsBefore);
    expect((await events(t.db.pool, incidentId, 'provider_failover')).map((e) => e.detail)).toEqual([
      expect.objectContaining({ delivery_id: call!.id, channel: 'voice', from: 'twilio-voice', to: 'vonage-voice' }),
    ]);
    const run = await vonageCallDriver(vonage, injector(t), () => clock.now).answer(vonageCall(vonage, call!.provider_message_id!), { digits: '1' });
    expect(run.statuses.every((s) => s === 200 || s === 204)).toBe(true);
    const { rows: [inc] } = await t.db.pool.query('select state, acknowledged_by from incidents where id = $1', [incidentId]);
    expect(inc).toEqual({ state: 'acknowledged', acknowledged_by: m.contacts[0]!.id });
  });
});
