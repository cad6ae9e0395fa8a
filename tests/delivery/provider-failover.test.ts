import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { configuredProviders, devOutboxChannels } from '../../src/channels/index.js';
import { ChannelError, type Channel, type Channels } from '../../src/channels/types.js';
import { ConfigError, loadConfig } from '../../src/config.js';
import { processDelivery } from '../../src/delivery/deliver.js';
import { sweepOnce } from '../../src/incidents/sweep.js';
import { createLogger } from '../../src/observability/logger.js';
import { createMetrics } from '../../src/observability/metrics.js';
import { startTestApp, type TestApp } from '../helpers/app.js';
import { memberWithContacts, sweepDeps, testClock } from '../incidents/helpers.js';
import { createOutageProvider } from './fake-provider.js';

// Issue 18: several providers per channel, failover between them, and a repeat when no receipt comes.
const clock = testClock('2026-11-23T08:00:00Z');
const log = createLogger('silent');
const RECEIPT_MS = 120_000;

describe('redundant delivery: providers per channel', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await startTestApp({ clock: () => clock.now, env: { FREE_PLAN_CHANNELS: 'push,sms,email', FREE_PLAN_CONTACTS: '10' } });
  });
  afterAll(() => t.close());

  async function incidentAlerts() {
    clock.set('2026-11-23T08:00:00Z');
    const m = await memberWithContacts(t, [1]);
    clock.set('2026-11-23T10:00:00Z');
    await sweepOnce(sweepDeps(t, clock));
    const { rows: [inc] } = await t.db.pool.query<{ id: string }>('select id from incidents where member_id = $1', [m.sub]);
    const { rows } = await t.db.pool.query<{ id: string; channel: string }>(`select id, channel from deliveries where incident_id = $1 and kind = 'alert' order by channel`, [inc!.id]);
    return { m, incidentId: inc!.id, deliveries: rows };
  }

  function twoProviders() {
    const primary = createOutageProvider(t.db.pool, 'primary');
    const secondary = createOutageProvider(t.db.pool, 'secondary');
    const p = primary.channels.sms as Channel;
    const s = secondary.channels.sms as Channel;
    const channels: Channels = { push: p, sms: [p, s], email: [p, s] };
    const metrics = createMetrics();
    return { primary, secondary, channels, metrics, deps: { pool: t.db.pool, channels, clock: () => clock.now, log, metrics, receiptTimeoutMs: RECEIPT_MS } };
  }

  const attempts = async (id: string) => (await t.db.pool.query<{ provider: string; outcome: string }>(
    'select provider, outcome from delivery_attempts where delivery_id = $1 order by id', [id])).rows.map((a) => `${a.provider}:${a.outcome}`);

  it('moves an alert to the next provider at once when the first fails, and says so on the timeline', async () => {
    const { incidentId, deliveries } = await incidentAlerts();
    const { primary, secondary, deps, metrics } = twoProviders();
    primary.setDown(true);
    for (const d of deliveries) {
      expect(await processDelivery(deps, d.id, 0, 12)).toBe('sent');
      expect(await attempts(d.id)).toEqual(['primary:failed', 'secondary:accepted']);
      expect(secondary.accepted(d.id)).toBe(1);
      expect(primary.accepted(d.id)).toBe(0);
    }
    const { rows: events } = await t.db.pool.query<{ detail: { channel: string; from: string; to: string; reason: string } }>(
      `select detail from incident_events where incident_id = $1 and type = 'provider_failover' order by detail->>'channel'`, [incidentId]);
    expect(events.map((e) => `${e.detail.channel}:${e.detail.from}->${e.detail.to}`)).toEqual(['email:primary->secondary', 'sms:primary->secondary']);
    expect(events[0]!.detail.reason).toContain('primary upstream 503');
    const text = await metrics.registry.metrics();
    expect(text).toMatch(/pruuf_provider_failovers_total\{channel="sms",from="primary",to="secondary"\} 1/);
  });

  it('does not move an alert between providers for an error about the address', async () => {
    const { deliveries } = await incidentAlerts();
    const secondary = createOutageProvider(t.db.pool, 'secondary');
    const badNumber: Channel = { provider: 'primary', send: async () => { throw new ChannelError('+4477009 is not a valid number', 'permanent', undefined, 'invalid number'); } };
    const channels: Channels = { push: badNumber, sms: [badNumber, secondary.channels.sms as Channel], email: [badNumber, secondary.channels.sms as Channel] };
    const sms = deliveries.find((d) => d.channel === 'sms')!;
    expect(await processDelivery({ pool: t.db.pool, channels, clock: () => clock.now, log }, sms.id, 0, 12)).toBe('failed');
    expect(await attempts(sms.id)).toEqual(['primary:failed']);
    expect(secondary.calls(sms.id)).toBe(0);
  });

  it('does not let a fallback provider\'s "bad address" end an alert while the first provider was only failing', async () => {
    const { deliveries } = await incidentAlerts();
    const primary = createOutageProvider(t.db.pool, 'primary');
    primary.setDown(true);
    const suppressing: Channel = { provider: 'secondary', send: async () => { throw new ChannelError('recipient is on the suppression list', 'permanent', undefined, 'suppressed'); } };
    const channels: Channels = { push: primary.channels.sms as Channel, sms: [primary.channels.sms as Channel, suppressing], email: [primary.channels.sms as Channel, suppressing] };
    const email = deliveries.find((d) => d.channel === 'email')!;
    const deps = { pool: t.db.pool, channels, clock: () => clock.now, log };
    await expect(processDelivery(deps, email.id, 0, 12)).rejects.toThrow(/suppression/);
    const row = async () => (await t.db.pool.query('select d.status, c.email_disabled from deliveries d join contacts c on c.id = d.contact_id where d.id = $1', [email.id])).rows[0];
    expect(await row()).toEqual({ status: 'pending', email_disabled: false });
    // The first provider is back: it carries the alert.
    primary.setDown(false);
    expect(await processDelivery(deps, email.id, 1, 12)).toBe('sent');
    expect(primary.accepted(email.id)).toBe(1);
    // On the job's last attempt the fallback's word stands and the delivery ends.
    const sms = deliveries.find((d) => d.channel === 'sms')!;
    primary.setDown(true);
    expect(await processDelivery(deps, sms.id, 11, 12)).toBe('failed');
  });

  it('does not move an alert to the next provider once it was withdrawn while the first was failing (the member checked in)', async () => {
    const { deliveries } = await incidentAlerts();
    const secondary = createOutageProvider(t.db.pool, 'secondary');
    const slowThenDown: Channel = {
      provider: 'primary',
      send: async (msg) => {
        await t.db.pool.query(`update deliveries set status = 'cancelled' where id = $1`, [msg.deliveryId]); // resolved meanwhile
        throw new ChannelError('primary upstream 503', 'transient');
      },
    };
    const channels: Channels = { push: slowThenDown, sms: [slowThenDown, secondary.channels.sms as Channel], email: [slowThenDown, secondary.channels.sms as Channel] };
    const sms = deliveries.find((d) => d.channel === 'sms')!;
    expect(await processDelivery({ pool: t.db.pool, channels, clock: () => clock.now, log }, sms.id, 0, 12)).toBe('skipped');
    expect(secondary.calls(sms.id)).toBe(0);
  });

  it('repeats an alert with no delivered receipt through the next provider, once per provider, saying it is a repeat', async () => {
    const { incidentId, deliveries } = await incidentAlerts();
    const { primary, secondary, deps } = twoProviders();
    const sms = deliveries.find((d) => d.channel === 'sms')!;
    const email = deliveries.find((d) => d.channel === 'email')!;
    expect(await processDelivery(deps, sms.id, 0, 12)).toBe('sent');
    expect(await processDelivery(deps, email.id, 0, 12)).toBe('sent');
    // The email's receipt came; the SMS's never did (accepted, never delivered).
    await t.db.pool.query(`update deliveries set carrier_status = 'delivered' where id = $1`, [email.id]);
    const receipts = { ...sweepDeps(t, clock), receipts: { providerCounts: { push: 1, sms: 2, email: 2 } } };
    const checked = async () => (await t.db.pool.query('select 1 from deliveries where id = any($1::uuid[]) and receipt_check_at is null', [[sms.id, email.id]])).rowCount;
    clock.add(1.9);
    await sweepOnce(receipts);
    expect(await checked()).toBe(0); // not yet
    clock.add(0.2);
    await sweepOnce(receipts);
    expect(await checked()).toBe(2);
    const { rows: copies } = await t.db.pool.query<{ id: string; repeat_of: string; copy_no: number; channel: string }>(
      'select id, repeat_of, copy_no, channel from deliveries where incident_id = $1 and copy_no > 0', [incidentId]);
    expect(copies).toEqual([{ id: expect.any(String), repeat_of: sms.id, copy_no: 1, channel: 'sms' }]);
    expect(await processDelivery(deps, copies[0]!.id, 0, 12)).toBe('sent');
    expect(primary.accepted(copies[0]!.id)).toBe(0);
    expect(secondary.accepted(copies[0]!.id)).toBe(1);
    const { rows: [outbox] } = await t.db.pool.query<{ body: string }>('select body from dev_outbox where delivery_id = $1', [copies[0]!.id]);
    expect(outbox!.body).toMatch(/^Pruuf \(sent again\): Ann missed a check-in/);
    // The alert page counts an alert and its repeat as one alert.
    const link = /\/a\/([\w-]+)/.exec(outbox!.body)![1]!;
    const page = await t.app.inject({ method: 'GET', url: `/a/${link}`, headers: { accept: 'text/html' } });
    expect(page.body).toContain('SMS: 1 sent, no delivery report yet');
    // The copy has no receipt either, but every provider has carried the alert: nothing more.
    clock.add(2.1);
    await sweepOnce(receipts);
    expect((await t.db.pool.query('select 1 from deliveries where incident_id = $1 and copy_no > 1', [incidentId])).rowCount).toBe(0);
    // A copy processed again (a duplicate job) sends nothing.
    expect(await processDelivery(deps, copies[0]!.id, 0, 12)).toBe('skipped');
    // With only providers that carried it left, a copy goes nowhere.
    const { rows: [stray] } = await t.db.pool.query<{ id: string }>(
      `insert into deliveries (member_id, contact_id, kind, channel, address, body, incident_id, step_no, repeat_of, copy_no)
       select member_id, contact_id, kind, channel, address, 'x', incident_id, step_no, id, 2 from deliveries where id = $1 returning id`, [sms.id]);
    expect(await processDelivery(deps, stray!.id, 0, 12)).toBe('skipped');
    expect(primary.calls(stray!.id) + secondary.calls(stray!.id)).toBe(0);
  });

  it('waits for no receipt from a provider whose receipts cannot reach us (its webhook is not configured)', async () => {
    const { deliveries } = await incidentAlerts();
    const { primary, secondary } = twoProviders();
    const deaf: Channel = { ...(primary.channels.sms as Channel), receipts: false };
    const channels: Channels = { push: deaf, sms: [deaf, secondary.channels.sms as Channel], email: [deaf, secondary.channels.sms as Channel] };
    for (const d of deliveries) expect(await processDelivery({ pool: t.db.pool, channels, clock: () => clock.now, log, receiptTimeoutMs: RECEIPT_MS }, d.id, 0, 12)).toBe('sent');
    const { rows } = await t.db.pool.query('select receipt_check_at from deliveries where id = any($1::uuid[])', [deliveries.map((d) => d.id)]);
    expect(rows.every((r) => r.receipt_check_at === null)).toBe(true);
  });

  it.each([
    ['resolved (the member checked in)', 'resolved'],
    ['acknowledged (someone is on it)', 'acknowledged'],
    ['open, but the carrier said the address cannot receive it', 'bounced'],
  ])('does not repeat an alert when the incident is %s', async (_what, how) => {
    const { m, incidentId, deliveries } = await incidentAlerts();
    const { deps } = twoProviders();
    for (const d of deliveries) await processDelivery(deps, d.id, 0, 12);
    if (how === 'resolved') expect((await t.app.inject({ method: 'POST', url: '/v1/check-ins', headers: m.headers, payload: {} })).statusCode).toBe(201);
    if (how === 'acknowledged') await t.db.pool.query(`update incidents set state = 'acknowledged', acknowledged_at = $2, ack_expires_at = $2::timestamptz + interval '1 hour' where id = $1`, [incidentId, clock.now]);
    if (how === 'bounced') await t.db.pool.query(`update deliveries set carrier_status = 'bounced' where incident_id = $1`, [incidentId]);
    clock.add(2.1);
    await sweepOnce({ ...sweepDeps(t, clock), receipts: { providerCounts: { push: 1, sms: 2, email: 2 } } });
    expect((await t.db.pool.query('select 1 from deliveries where incident_id = $1 and copy_no > 0', [incidentId])).rowCount).toBe(0);
    expect((await t.db.pool.query('select 1 from deliveries where incident_id = $1 and receipt_check_at is not null', [incidentId])).rowCount).toBe(0);
  });
});

describe('the provider order', () => {
  const base = { TWILIO_ACCOUNT_SID: 'AC1', TWILIO_AUTH_TOKEN: 't', TWILIO_FROM_NUMBER: '+15550000001', SENDGRID_API_KEY: 'SG.x', SENDGRID_FROM_EMAIL: 'a@example.test' };
  it('lists each channel\'s configured providers in the configured order, and only those configured', () => {
    // A Twilio number to call from makes calls possible too.
    expect(configuredProviders(loadConfig(base))).toEqual({ push: [], sms: ['twilio'], email: ['sendgrid'], voice: ['twilio-voice'] });
    expect(configuredProviders(loadConfig({ ...base, SMS_PROVIDERS: 'vonage, Twilio' }))).toEqual({ push: [], sms: ['twilio'], email: ['sendgrid'], voice: ['twilio-voice'] });
    expect(devOutboxChannels(loadConfig({}))).toEqual(['push', 'sms', 'email', 'voice']);
    const both = { ...base, POSTMARK_SERVER_TOKEN: 'pm', POSTMARK_FROM_EMAIL: 'a@example.test' };
    expect(configuredProviders(loadConfig(both)).email).toEqual(['sendgrid', 'postmark']);
    expect(configuredProviders(loadConfig({ ...both, EMAIL_PROVIDERS: 'postmark,sendgrid' })).email).toEqual(['postmark', 'sendgrid']);
    expect(devOutboxChannels(loadConfig({ POSTMARK_SERVER_TOKEN: 'pm', POSTMARK_FROM_EMAIL: 'a@example.test' }))).toEqual(['push', 'sms', 'voice']);
    const vonage = { VONAGE_API_KEY: 'k', VONAGE_API_SECRET: 's', VONAGE_FROM: 'Pruuf' };
    expect(configuredProviders(loadConfig({ ...base, ...vonage })).sms).toEqual(['twilio', 'vonage']);
    expect(configuredProviders(loadConfig({ ...base, ...vonage, SMS_PROVIDERS: 'vonage,twilio' })).sms).toEqual(['vonage', 'twilio']);
    expect(devOutboxChannels(loadConfig(vonage))).toEqual(['push', 'email', 'voice']);
  });
  it('refuses an order naming an unknown provider or one twice', () => {
    expect(() => loadConfig({ SMS_PROVIDERS: 'twilio,pigeon' })).toThrow(ConfigError);
    expect(() => loadConfig({ EMAIL_PROVIDERS: 'sendgrid,sendgrid' })).toThrow(/twice/);
    expect(() => loadConfig({ RECEIPT_TIMEOUT_SECONDS: '-1' })).toThrow(ConfigError);
  });
});
