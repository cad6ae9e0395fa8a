import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { createChannels } from '../../src/channels/index.js';
import type { Channels } from '../../src/channels/types.js';
import { createTwilioVoiceChannel } from '../../src/channels/voice-twilio/index.js';
import { DeliveryDeferredError, processDelivery } from '../../src/delivery/deliver.js';
import { sweepOnce } from '../../src/incidents/sweep.js';
import { signLink } from '../../src/links/tokens.js';
import { createLogger } from '../../src/observability/logger.js';
import { errorOf, startTestApp, type TestApp } from '../helpers/app.js';
import { TEST_LINK_SECRET } from '../helpers/tokens.js';
import { startFakeTwilio, twilioSignature, type FakeTwilio } from '../fakes/twilio.js';
import { callDriver, gatherAction, type AcceptedCall, type CallDriver, type WebhookPost } from '../fakes/twilio-voice.js';
import { alerts, memberWithContacts, sweepDeps, testClock, tokenFrom } from './helpers.js';

const log = createLogger('silent');
const BASE = 'http://pruuf.test';
const OUR_NUMBER = '+15005550006';
const clock = testClock('2026-11-23T08:00:00Z');

describe('phone calls in an escalation', () => {
  let t: TestApp;
  let fake: FakeTwilio;
  let channels: Channels;
  let phone: CallDriver;

  const post: WebhookPost = async (url, params, signature) => {
    const res = await t.app.inject({
      method: 'POST', url: url.slice(BASE.length), payload: new URLSearchParams(params).toString(),
      headers: { 'content-type': 'application/x-www-form-urlencoded', 'x-twilio-signature': signature },
    });
    return { status: res.statusCode, body: res.body };
  };

  beforeAll(async () => {
    fake = await startFakeTwilio();
    t = await startTestApp({
      clock: () => clock.now,
      env: {
        TWILIO_ACCOUNT_SID: fake.accountSid, TWILIO_AUTH_TOKEN: fake.authToken, TWILIO_FROM_NUMBER: OUR_NUMBER, TWILIO_API_BASE: fake.url,
        FREE_PLAN_CHANNELS: 'push,sms,email', FREE_PLAN_CONTACTS: '10', SMS_RATE_PER_SECOND: '1000',
      },
    });
    // The worker's channels (SMS and calls through the fake Twilio; push and email to the dev outbox),
    // calls signing their URLs on the test's clock.
    const voice = createTwilioVoiceChannel({
      accountSid: fake.accountSid, authToken: fake.authToken, apiBase: fake.url, from: OUR_NUMBER, publicBaseUrl: BASE,
      linkSecret: TEST_LINK_SECRET, timeoutSeconds: 30, callsPerSecond: 1000, pool: t.db.pool, log, clock: () => clock.now,
    });
    channels = { ...createChannels({ pool: t.db.pool, config: t.config, log }).channels, voice };
    phone = callDriver(fake, post);
  });
  afterAll(async () => {
    await t.close();
    await fake.close();
  });

  /** What the worker does: every pending delivery handed to its channel (a throttled one after the wait it asks for). */
  async function deliverAll(): Promise<void> {
    const { rows } = await t.db.pool.query<{ id: string }>(`select id from deliveries where status = 'pending' order by created_at, id`);
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
  const sweep = () => sweepOnce(sweepDeps(t, clock));
  const incidentOf = async (memberId: string) =>
    (await t.db.pool.query('select id, state, acknowledged_by, step_no, next_step_at from incidents where member_id = $1', [memberId])).rows[0];
  const deliveries = async (incidentId: string) =>
    (await t.db.pool.query<{ id: string; contact_id: string; channel: string; kind: string; step_no: number; status: string; provider_message_id: string | null; carrier_status: string | null; provider_status: string | null; provider_error_code: string | null }>(
      `select id, contact_id, channel, kind, step_no, status, provider_message_id, carrier_status, provider_status, provider_error_code
         from deliveries where incident_id = $1 order by step_no, kind, contact_id, channel`, [incidentId])).rows;
  const calls = async (incidentId: string) => (await deliveries(incidentId)).filter((d) => d.channel === 'voice');
  const events = async (incidentId: string, type: string) =>
    (await t.db.pool.query<{ contact_id: string | null; step_no: number | null; detail: Record<string, unknown> }>(
      'select contact_id, step_no, detail from incident_events where incident_id = $1 and type = $2 order by at, id', [incidentId, type])).rows;
  const placed = (d: { provider_message_id: string | null }): AcceptedCall => {
    const call = fake.calls.find((c) => c.sid === d.provider_message_id);
    if (call === undefined) throw new Error(`no call placed for ${d.provider_message_id ?? 'an unsent delivery'}`);
    return call;
  };

  /** A member with contacts in `tiers` who missed a deadline: tier 1 alerted and its messages sent, then step 2 due. */
  async function missedAndStepTwo(tiers: number[]) {
    clock.set('2026-11-23T08:00:00Z');
    const m = await memberWithContacts(t, tiers);
    clock.set('2026-11-23T10:00:00Z');
    await sweep();
    await deliverAll();
    const inc = await incidentOf(m.sub);
    clock.add(15);
    await sweep();
    await deliverAll();
    return { m, incidentId: inc.id as string };
  }

  it('missed check-in: tier 1 gets SMS, email and push; at step 2 tier 1 is called; key 1 acknowledges and the others are told', async () => {
    clock.set('2026-11-23T08:00:00Z');
    const m = await memberWithContacts(t, [1, 1, 2]);
    // Contact 0 also uses the app (push).
    const appUser = randomUUID();
    await t.db.pool.query(`insert into members (id, display_name) values ($1, 'Bob')`, [appUser]);
    await t.db.pool.query(`insert into devices (member_id, token, platform) values ($1, $2, 'ios')`, [appUser, `tok-${appUser}`]);
    await t.db.pool.query('update contacts set linked_user_id = $2 where id = $1', [m.contacts[0]!.id, appUser]);
    const [c0, c1, c2] = m.contacts as [typeof m.contacts[0], typeof m.contacts[0], typeof m.contacts[0]];

    clock.set('2026-11-23T10:00:00Z');
    await sweep();
    await deliverAll();
    const inc = await incidentOf(m.sub);
    const step1 = (await deliveries(inc.id)).filter((d) => d.step_no === 1);
    expect(step1.map((d) => `${d.contact_id}:${d.channel}:${d.status}`).sort()).toEqual([
      `${c0.id}:email:sent`, `${c0.id}:push:sent`, `${c0.id}:sms:sent`, `${c1.id}:email:sent`, `${c1.id}:sms:sent`,
    ].sort());
    expect(await calls(inc.id)).toEqual([]);

    // Nobody said "I'm on it" by step 2: tier 2 gets its messages, tier 1 a call each.
    clock.add(15);
    await sweep();
    const queued = await calls(inc.id);
    expect(queued.map((d) => `${d.contact_id}:${d.step_no}:${d.kind}`).sort()).toEqual([`${c0.id}:2:alert`, `${c1.id}:2:alert`].sort());
    expect((await events(inc.id, 'call_started')).map((e) => e.contact_id).sort()).toEqual([c0.id, c1.id].sort());
    await deliverAll();
    const sentCalls = await calls(inc.id);
    expect(sentCalls.map((d) => d.status)).toEqual(['sent', 'sent']);
    const [call0, call1] = [c0, c1].map((c) => placed(sentCalls.find((d) => d.contact_id === c.id)!));
    const sent0 = sentCalls.find((d) => d.contact_id === c0.id)!;
    // What Twilio was asked: call contact 0 from our number, fetch what to say, report every status, spot voicemail.
    expect(call0!).toMatchObject({ to: c0.phone, from: OUR_NUMBER, method: 'POST', machineDetection: 'Enable', timeout: '30' });
    expect(call0!.url).toMatch(/^http:\/\/pruuf\.test\/webhooks\/twilio\/voice\/twiml\?d=[\w-]+$/);
    expect(call0!.statusCallback).toMatch(/^http:\/\/pruuf\.test\/webhooks\/twilio\/voice\/status\?d=[\w-]+$/);
    expect(call0!.statusCallbackEvents).toEqual(['initiated', 'ringing', 'answered', 'completed']);

    // Contact 0 answers: hears who, what and when, and presses 1.
    clock.add(1);
    const run = await phone.answer(call0!, { digits: '1' });
    expect(run.statuses.every((s) => s === 200 || s === 204)).toBe(true);
    expect(run.twiml[0]).toContain('<Gather input="dtmf" numDigits="1" action="http://pruuf.test/webhooks/twilio/voice/gather?d=');
    expect(run.twiml[0]).toContain('<Say language="en-US">This is Pruuf with an alert. Ann missed a check-in that was due at 09:30 UTC on Monday 23 November 2026');
    expect(run.twiml[0]).toContain('Press 1 if you are taking care of it. Press 2 if it needs more help. Press 9 to hear this again.');
    expect(run.twiml[1]).toContain('Thank you. The others will be told that you are taking care of Ann.');
    expect(run.twiml[1]).toContain('<Hangup/>');

    // Acknowledged, as with the link: escalation stops, the other alerted contacts are told.
    expect(await incidentOf(m.sub)).toMatchObject({ state: 'acknowledged', acknowledged_by: c0.id, next_step_at: null });
    const notices = (await deliveries(inc.id)).filter((d) => d.kind === 'ack_notice');
    expect(notices.map((d) => `${d.contact_id}:${d.channel}`).sort()).toEqual([`${c1.id}:email`, `${c1.id}:sms`, `${c2.id}:email`, `${c2.id}:sms`].sort());
    const notice = (await alerts(t.db.pool, inc.id, 'ack_notice')).find((d) => d.channel === 'sms')!;
    expect(notice.body).toContain('Contact 0 is on it');
    // The call's outcome: answered by a person, key 1.
    expect((await calls(inc.id)).find((d) => d.contact_id === c0.id)).toMatchObject({ provider_status: 'completed', carrier_status: 'delivered' });
    expect(await events(inc.id, 'call_outcome')).toEqual([
      { contact_id: c0.id, step_no: null, detail: { delivery_id: sent0.id, outcome: 'completed', key: '1', keys: ['1'], answered_by: 'human', duration_seconds: 42 } },
    ]);

    // Contact 1's phone was still ringing: answered now, it says who is on it and asks nothing.
    const late = await phone.answer(call1!, { digits: '1' });
    expect(late.twiml).toHaveLength(1);
    expect(late.twiml[0]).toContain('Contact 0 is already taking care of Ann.');
    expect(gatherAction(late.twiml[0]!)).toBeUndefined();
    expect((await incidentOf(m.sub)).acknowledged_by).toBe(c0.id);
  });

  it('a call nobody answers is recorded, counts as no acknowledgement, and escalation goes on', async () => {
    const { m, incidentId } = await missedAndStepTwo([1, 2, 3]);
    const [call] = await calls(incidentId);
    const run = await phone.noAnswer(placed(call!));
    expect(run.twiml).toEqual([]);
    expect((await calls(incidentId))[0]).toMatchObject({ carrier_status: 'undelivered', provider_status: 'no-answer', provider_error_code: 'no-answer' });
    expect((await events(incidentId, 'call_outcome')).map((e) => e.detail)).toEqual([expect.objectContaining({ outcome: 'no-answer', key: null })]);
    expect((await incidentOf(m.sub)).state).toBe('open');
    clock.add(15);
    await sweep();
    const tier3 = m.contacts.find((c) => c.tier === 3)!;
    expect((await deliveries(incidentId)).filter((d) => d.step_no === 3).map((d) => d.contact_id)).toContain(tier3.id);
    // Step 3 does not call again (VOICE_CALL_AFTER_STEPS = 1: only when step 2 comes due).
    expect(await calls(incidentId)).toHaveLength(1);
  });

  it('key 2 alerts every tier not alerted yet, now', async () => {
    const { m, incidentId } = await missedAndStepTwo([1, 2, 3]);
    const tier3 = m.contacts.find((c) => c.tier === 3)!;
    expect((await deliveries(incidentId)).some((d) => d.contact_id === tier3.id)).toBe(false);
    const run = await phone.answer(placed((await calls(incidentId))[0]!), { digits: '2' });
    expect(run.twiml[1]).toContain("We are alerting everyone else on Ann's list now.");
    const now = (await deliveries(incidentId)).filter((d) => d.contact_id === tier3.id);
    expect(now.map((d) => `${d.step_no}:${d.channel}`).sort()).toEqual(['3:email', '3:sms']);
    expect((await events(incidentId, 'escalated_by_contact')).map((e) => e.contact_id)).toEqual([m.contacts[0]!.id]);
    expect((await events(incidentId, 'call_outcome'))[0]!.detail).toMatchObject({ key: '2', keys: ['2'] });
  });

  it('key 9 says it all again; another key says so and asks again; no key says goodbye', async () => {
    const { incidentId } = await missedAndStepTwo([1]);
    const run = await phone.answer(placed((await calls(incidentId))[0]!), { digits: ['9', '7'] });
    expect(run.twiml[1]).toBe(run.twiml[0]);
    expect(run.twiml[2]).toContain('<Say language="en-US">Sorry, that is not one of the choices. Please call them');
    expect(gatherAction(run.twiml[2]!)).toBe(gatherAction(run.twiml[0]!));
    expect(run.twiml[0]).toContain('</Gather><Say language="en-US">We did not hear a key. We will keep alerting the other contacts. Goodbye.</Say><Hangup/>');
    expect((await t.db.pool.query('select state from incidents where id = $1', [incidentId])).rows[0].state).toBe('open');
    expect((await events(incidentId, 'call_outcome'))[0]!.detail).toMatchObject({ outcome: 'completed', key: '7', keys: ['9', '7'] });
  });

  it('refuses a request Twilio did not sign, or a call URL we did not sign, and changes nothing', async () => {
    const { m, incidentId } = await missedAndStepTwo([1]);
    const call = placed((await calls(incidentId))[0]!);
    const action = `${BASE}/webhooks/twilio/voice/gather?d=${new URL(call.url).searchParams.get('d')!}`;
    const params = { CallSid: call.sid, AccountSid: fake.accountSid, Digits: '1', From: OUR_NUMBER, To: call.to, CallStatus: 'in-progress' };
    const forged = await post(action, params, twilioSignature('0'.repeat(32), action, params));
    expect(forged.status).toBe(403);
    expect(errorOf(forged.body).code).toBe('FORBIDDEN');
    const unsigned = await t.app.inject({ method: 'POST', url: action.slice(BASE.length), payload: new URLSearchParams(params).toString(), headers: { 'content-type': 'application/x-www-form-urlencoded' } });
    expect(unsigned.statusCode).toBe(403);
    // Signed by Twilio, but naming a delivery with a token we did not make (another secret; an ack link's token).
    for (const token of [signLink('x'.repeat(32), 'call', randomUUID(), new Date(clock.now.getTime() + 3_600_000)), tokenFrom((await alerts(t.db.pool, incidentId)).find((a) => a.channel === 'sms')!.body)]) {
      const url = `${BASE}/webhooks/twilio/voice/gather?d=${token}`;
      const res = await post(url, params, twilioSignature(fake.authToken, url, params));
      expect(res.status).toBe(404);
      expect(errorOf(res.body).code).toBe('NOT_FOUND');
    }
    expect(await incidentOf(m.sub)).toMatchObject({ state: 'open', acknowledged_by: null });
    expect(await events(incidentId, 'call_key')).toEqual([]);
    expect((await deliveries(incidentId)).filter((d) => d.kind === 'ack_notice')).toEqual([]);
  });

  it('SOS calls every contact with a phone at once, beside the messages', async () => {
    clock.set('2026-11-23T12:00:00Z');
    const m = await memberWithContacts(t, [1, 2, 3]);
    const sos = await t.app.inject({ method: 'POST', url: '/v1/sos', headers: m.headers, payload: { note: 'I fell' } });
    expect(sos.statusCode).toBe(201);
    const inc = await incidentOf(m.sub);
    expect((await calls(inc.id)).map((d) => `${d.contact_id}:${d.step_no}`).sort()).toEqual(m.contacts.map((c) => `${c.id}:1`).sort());
    await deliverAll();
    const run = await phone.answer(placed((await calls(inc.id))[0]!));
    expect(run.twiml[0]).toContain('This is Pruuf with an urgent alert. Ann pressed the SOS button at 12:00 UTC on Monday 23 November 2026');
    expect(run.twiml[0]).toContain('Their message: I fell.');
  });

  it('speaks the contact\'s language', async () => {
    clock.set('2026-11-23T08:00:00Z');
    const m = await memberWithContacts(t, [1]);
    const patched = await t.app.inject({ method: 'PATCH', url: `/v1/contacts/${m.contacts[0]!.id}`, headers: m.headers, payload: { locale: 'es' } });
    expect(patched.statusCode).toBe(200);
    await t.db.pool.query(`update contacts set status = 'active' where id = $1`, [m.contacts[0]!.id]);
    clock.set('2026-11-23T10:00:00Z');
    await sweep();
    clock.add(15);
    await sweep();
    await deliverAll();
    const inc = await incidentOf(m.sub);
    const run = await phone.answer(placed((await calls(inc.id))[0]!), { digits: '1' });
    expect(run.twiml[0]).toContain('<Say language="es-ES">Te llamamos de Pruuf con una alerta. Ann no hizo su check-in, previsto para las 09:30 UTC, lunes 23 de noviembre de 2026');
    expect(run.twiml[0]).toContain('Pulsa 1 si te encargas tú.');
    expect(run.twiml[1]).toContain('<Say language="es-ES">Gracias. Avisaremos a los demás de que te encargas de Ann.');
  });

  it('calls nobody when the incident was acknowledged or resolved before step 2, and withdraws a call not placed yet', async () => {
    clock.set('2026-11-23T08:00:00Z');
    const acked = await memberWithContacts(t, [1, 2]);
    const resolved = await memberWithContacts(t, [1, 2]);
    const lateAck = await memberWithContacts(t, [1, 2]);
    clock.set('2026-11-23T10:00:00Z');
    await sweep();
    const incs = await Promise.all([acked, resolved, lateAck].map((m) => incidentOf(m.sub)));
    const link = async (incidentId: string) => tokenFrom((await alerts(t.db.pool, incidentId)).find((a) => a.channel === 'email')!.body);
    expect((await t.app.inject({ method: 'POST', url: `/a/${await link(incs[0].id)}/ack` })).statusCode).toBe(200);
    expect((await t.app.inject({ method: 'POST', url: '/v1/check-ins', headers: resolved.headers, payload: {} })).statusCode).toBe(201);
    clock.add(15);
    await sweep();
    expect(await calls(incs[0].id)).toEqual([]);
    expect(await calls(incs[1].id)).toEqual([]);
    // Step 2 wrote the call, but "I'm on it" came before the worker placed it.
    expect(await calls(incs[2].id)).toHaveLength(1);
    expect((await t.app.inject({ method: 'POST', url: `/a/${await link(incs[2].id)}/ack` })).statusCode).toBe(200);
    await deliverAll();
    expect((await calls(incs[2].id))[0]).toMatchObject({ status: 'cancelled', provider_message_id: null });
  });

  it('records a voicemail as not reached, and hangs up on it', async () => {
    const { incidentId } = await missedAndStepTwo([1]);
    const run = await phone.machine(placed((await calls(incidentId))[0]!));
    expect(run.twiml[0]).toBe('<?xml version="1.0" encoding="UTF-8"?><Response><Hangup/></Response>');
    expect((await calls(incidentId))[0]).toMatchObject({ carrier_status: 'undelivered', provider_status: 'answering_machine', provider_error_code: 'machine_start' });
    expect((await events(incidentId, 'call_outcome'))[0]!.detail).toMatchObject({ outcome: 'answering_machine', key: null });
  });
});
