import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { ChannelError, ThrottledError, type Channel, type Channels, type OutboundMessage } from '../../src/channels/types.js';
import { withTransaction } from '../../src/db/pool.js';
import { withBreakers } from '../../src/delivery/breaker.js';
import { DeliveryDeferredError, processDelivery, type DeliveryDeps } from '../../src/delivery/deliver.js';
import { recordStatus } from '../../src/delivery/carrier-status.js';
import { createLogger } from '../../src/observability/logger.js';
import { startTestApp, type TestApp } from '../helpers/app.js';
import { memberWithContacts } from '../incidents/helpers.js';

/**
 * What happens after a provider answers: dead addresses turn a contact's channel off, the incident
 * timeline records which channels still carry an alert, provider statuses are stored in order,
 * and "wait" answers (throttling, Retry-After) never spend an attempt.
 */

const log = createLogger('silent');
type Send = (msg: OutboundMessage) => Promise<{ provider: string; providerMessageId: string }>;
const channelOf = (provider: string, send: Send): Channel => ({ provider, send: (msg) => send(msg) });
const allOf = (c: Channel): Channels => ({ push: c, sms: c, email: c });

describe('provider feedback on deliveries', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await startTestApp({ env: { FREE_PLAN_CHANNELS: 'push,sms,email' } });
  });
  afterAll(() => t.close());

  const deps = (channels: Channels, extra: Partial<DeliveryDeps> = {}): DeliveryDeps => ({ pool: t.db.pool, channels, clock: () => new Date(), log, ...extra });

  /** An SOS: alert rows for every contact on email and SMS, none sent yet (no worker runs here). */
  async function sos(tiers = [1]) {
    const m = await memberWithContacts(t, tiers);
    const res = await t.app.inject({ method: 'POST', url: '/v1/sos', headers: m.headers, payload: {} });
    expect(res.statusCode).toBe(201);
    const incidentId = res.json().id as string;
    const { rows } = await t.db.pool.query<{ id: string; channel: string; contact_id: string }>(
      `select id, channel, contact_id from deliveries where incident_id = $1 and kind = 'alert' order by channel`, [incidentId],
    );
    const byChannel = (ch: string) => rows.find((r) => r.channel === ch)!;
    return { m, incidentId, rows, byChannel };
  }
  const failovers = async (incidentId: string) =>
    (await t.db.pool.query<{ contact_id: string; detail: { channel: string; carried_by: string[]; reason: string } }>(
      `select contact_id, detail from incident_events where incident_id = $1 and type = 'failover' order by id`, [incidentId],
    )).rows;
  const delivery = async (id: string) =>
    (await t.db.pool.query<{ status: string; attempts: number; provider_status: string | null; provider_error_code: string | null }>(
      'select status, attempts, provider_status, provider_error_code from deliveries where id = $1', [id],
    )).rows[0]!;

  it('turns email off for a contact whose address is dead, says why, and records that SMS still carries the alert', async () => {
    const { m, incidentId, byChannel } = await sos();
    const dead = channelOf('mailer', async () => { throw new ChannelError('550 user unknown', 'permanent', undefined, 'bounced: 550 5.1.1 user unknown'); });
    expect(await processDelivery(deps(allOf(dead)), byChannel('email').id, 0, 5)).toBe('failed');

    const contact = await t.app.inject({ method: 'GET', url: `/v1/contacts/${m.contacts[0]!.id}`, headers: m.headers });
    expect(contact.json()).toMatchObject({ email_disabled: true, email_disabled_reason: 'bounced: 550 5.1.1 user unknown' });
    expect(contact.json().channels).not.toContain('email');
    const events = await failovers(incidentId);
    expect(events).toHaveLength(1);
    expect(events[0]).toMatchObject({ contact_id: m.contacts[0]!.id, detail: { channel: 'email', carried_by: ['sms'] } });
  });

  it('leaves a changed address on when a failure for the old address comes in late', async () => {
    const { m, byChannel } = await sos();
    await t.app.inject({ method: 'PATCH', url: `/v1/contacts/${m.contacts[0]!.id}`, headers: m.headers, payload: { email: 'new-address@example.test' } });
    const dead = channelOf('mailer', async () => { throw new ChannelError('550 user unknown', 'permanent', undefined, 'bounced'); });
    expect(await processDelivery(deps(allOf(dead)), byChannel('email').id, 0, 5)).toBe('failed');
    const contact = (await t.app.inject({ method: 'GET', url: `/v1/contacts/${m.contacts[0]!.id}`, headers: m.headers })).json();
    expect(contact).toMatchObject({ email: 'new-address@example.test', email_disabled: false, email_disabled_reason: null });
  });

  it('keeps the address on for a permanent error that does not say the address is dead, and records no second failover', async () => {
    const { m, incidentId, byChannel } = await sos();
    const broken = channelOf('texter', async () => { throw new ChannelError('body too long', 'permanent'); });
    expect(await processDelivery(deps(allOf(broken)), byChannel('sms').id, 0, 5)).toBe('failed');
    const contact = (await t.app.inject({ method: 'GET', url: `/v1/contacts/${m.contacts[0]!.id}`, headers: m.headers })).json();
    expect(contact).toMatchObject({ sms_disabled: false, email_disabled: false });
    const events = await failovers(incidentId);
    expect(events.map((e) => e.detail)).toEqual([expect.objectContaining({ channel: 'sms', carried_by: ['email'] })]);
  });

  it('says no channel carries the alert any more when the last one fails', async () => {
    const { incidentId, byChannel } = await sos();
    const down = channelOf('all', async () => { throw new ChannelError('gone', 'permanent'); });
    await processDelivery(deps(allOf(down)), byChannel('email').id, 0, 5);
    await processDelivery(deps(allOf(down)), byChannel('sms').id, 0, 5);
    const events = await failovers(incidentId);
    expect(events.map((e) => [e.detail.channel, e.detail.carried_by])).toEqual([['email', ['sms']], ['sms', []]]);
  });

  it('defers a throttled send without recording a try or spending an attempt', async () => {
    const { byChannel } = await sos();
    let calls = 0;
    const throttled = channelOf('texter', async () => { calls++; throw new ThrottledError('sender over 1 msg/s', 700); });
    const err = await processDelivery(deps(allOf(throttled)), byChannel('sms').id, 4, 5).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DeliveryDeferredError);
    expect((err as DeliveryDeferredError).retryAfterMs).toBe(700);
    expect(calls).toBe(1);
    expect(await delivery(byChannel('sms').id)).toMatchObject({ status: 'pending', attempts: 0 });
  });

  it("honours the provider's Retry-After on what would be the last try: the alert waits, it is not failed", async () => {
    const { byChannel } = await sos();
    const busy = channelOf('mailer', async () => { throw new ChannelError('429 too many requests', 'transient', 30_000); });
    const err = await processDelivery(deps(allOf(busy)), byChannel('email').id, 4, 5).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DeliveryDeferredError);
    expect((err as DeliveryDeferredError).retryAfterMs).toBe(30_000);
    expect(await delivery(byChannel('email').id)).toMatchObject({ status: 'pending', attempts: 1 });
  });

  it('records a failover once when a provider has been down longer than the failover time', async () => {
    const { incidentId, byChannel } = await sos();
    const outage = channelOf('mailer', async () => { throw new ChannelError('503', 'transient'); });
    const guarded = withBreakers(allOf(outage), { timeoutMs: 1000, errorThresholdPercentage: 50, resetTimeoutMs: 60_000, volumeThreshold: 1, rollingCountTimeout: 10_000 });
    try {
      const d = deps(guarded.channels, { failoverAfterMs: 0 });
      for (let i = 0; i < 3; i++) await processDelivery(d, byChannel('email').id, i, 5).catch(() => undefined);
      const events = await failovers(incidentId);
      expect(events).toHaveLength(1);
      expect(events[0]!.detail).toMatchObject({ channel: 'email', carried_by: ['sms'] });
      expect(events[0]!.detail.reason).toMatch(/mailer down/);
      expect(await delivery(byChannel('email').id)).toMatchObject({ status: 'pending' });
    } finally {
      guarded.shutdown();
    }
  });

  it('applies each provider event once, and never lets an older status overwrite a newer one', async () => {
    const { byChannel } = await sos();
    const id = byChannel('email').id;
    await t.db.pool.query(`update deliveries set status = 'sent', provider = 'mailer', provider_message_id = 'msg-1' where id = $1`, [id]);
    const apply = (eventId: string, status: string, at: string, ref: { deliveryId?: string; providerMessageId?: string }) =>
      withTransaction(t.db.pool, (tx) => recordStatus(tx, { provider: 'mailer', eventId, status, errorCode: null, occurredAt: new Date(at), ...ref }, new Date()));

    expect(await apply('e1', 'delivered', '2026-11-23T10:00:05Z', { providerMessageId: 'msg-1' })).toMatchObject({ outcome: 'applied', ref: { id, channel: 'email', kind: 'alert' } });
    expect((await apply('e1', 'delivered', '2026-11-23T10:00:05Z', { providerMessageId: 'msg-1' })).outcome).toBe('duplicate');
    expect((await apply('e0', 'processed', '2026-11-23T10:00:01Z', { deliveryId: id })).outcome).toBe('stale');
    expect(await delivery(id)).toMatchObject({ status: 'sent', provider_status: 'delivered' });
    expect((await apply('e2', 'delivered', '2026-11-23T10:00:05Z', { providerMessageId: 'no-such-message' })).outcome).toBe('unknown');
    expect((await apply('e3', 'delivered', '2026-11-23T10:00:05Z', { deliveryId: 'not-a-uuid' })).outcome).toBe('unknown');
  });
});
