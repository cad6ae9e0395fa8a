import { afterAll, beforeAll, beforeEach, describe, expect, it } from '@jest/globals';
import { createDevOutboxChannel } from '../../src/channels/dev-outbox/index.js';
import { createSendGridChannel } from '../../src/channels/email-sendgrid/index.js';
import type { Channels } from '../../src/channels/types.js';
import { systemClock } from '../../src/clock.js';
import { withTransaction } from '../../src/db/pool.js';
import { DeliveryDeferredError, processDelivery, type DeliveryDeps } from '../../src/delivery/deliver.js';
import { insertDeliveries, type NewDelivery } from '../../src/delivery/outbox.js';
import { createLogger } from '../../src/observability/logger.js';
import { startTestApp, type TestApp } from '../helpers/app.js';
import { memberWithContacts } from '../incidents/helpers.js';
import { startFakeSendGrid, type FakeSendGrid } from '../fakes/sendgrid.js';

/** The real delivery job sending through the SendGrid channel to a SendGrid v3 server. */

type Row = { status: string; attempts: number; provider: string | null; provider_message_id: string | null; error_class: string | null; last_error: string | null };

describe('delivering email through SendGrid', () => {
  let t: TestApp;
  let fake: FakeSendGrid;
  let deps: DeliveryDeps;

  beforeAll(async () => {
    t = await startTestApp({ env: { FREE_PLAN_CHANNELS: 'push,sms,email' } });
    fake = await startFakeSendGrid();
    const outbox = createDevOutboxChannel(t.db.pool);
    const email = createSendGridChannel({ apiKey: fake.apiKey, baseUrl: fake.url, from: { email: 'alerts@pruuf.test', name: 'Pruuf' } });
    const channels: Channels = { push: outbox, sms: outbox, email };
    deps = { pool: t.db.pool, channels, clock: systemClock, log: createLogger('silent'), sendTimeoutMs: 2000 };
  });
  beforeEach(() => fake.reset());
  afterAll(async () => {
    await fake.close();
    await t.close();
  });

  const insert = (d: Partial<NewDelivery> = {}) => withTransaction(t.db.pool, async (tx) => (await insertDeliveries(tx, [{
    memberId: null, contactId: null, kind: 'alert', channel: 'email', address: 'bea@example.test',
    subject: 'Check on Ann', body: 'Ann missed her check-in: https://pruuf.test/a/tok', html: '<p>Ann missed her check-in</p>', ...d,
  }]))[0]!);
  const row = async (id: string) =>
    (await t.db.pool.query<Row>('select status, attempts, provider, provider_message_id, error_class, last_error from deliveries where id = $1', [id])).rows[0]!;

  it('marks the row sent with provider sendgrid and the X-Message-Id, and SendGrid got it once', async () => {
    const id = await insert();
    expect(await processDelivery(deps, id, 0, 3)).toBe('sent');
    const sent = fake.acceptedFor(id);
    expect(sent).toHaveLength(1);
    expect(await row(id)).toMatchObject({ status: 'sent', attempts: 1, provider: 'sendgrid', provider_message_id: sent[0]!.messageId, error_class: null });
    expect(sent[0]!.customArgs).toMatchObject({ delivery_id: id, kind: 'alert' });
    // Done is done: the job running again sends nothing.
    expect(await processDelivery(deps, id, 1, 3)).toBe('skipped');
    expect(fake.acceptedFor(id)).toHaveLength(1);
  });

  it('defers a rate-limited send without failing it, and sends it on the next try', async () => {
    const id = await insert();
    fake.respondNext({ status: 429, headers: { 'x-ratelimit-reset': String(Math.ceil(Date.now() / 1000) + 2) } });
    const deferred = await processDelivery(deps, id, 2, 3).then(() => undefined, (e: unknown) => e);
    expect(deferred).toBeInstanceOf(DeliveryDeferredError);
    expect((deferred as DeliveryDeferredError).retryAfterMs).toBeGreaterThanOrEqual(1000);
    expect(await row(id)).toMatchObject({ status: 'pending', error_class: 'transient' });
    expect(await processDelivery(deps, id, 2, 3)).toBe('sent');
    expect(fake.acceptedFor(id)).toHaveLength(1);
  });

  it('fails a send SendGrid refuses for the address and turns email off for that contact', async () => {
    const m = await memberWithContacts(t, [1]);
    const contact = m.contacts[0]!;
    const id = await insert({ contactId: contact.id, memberId: m.sub, address: contact.email });
    fake.respondNext({ status: 400, body: { errors: [{ message: 'Does not contain a valid address.', field: 'personalizations.0.to.0.email', help: null }] } });
    expect(await processDelivery(deps, id, 0, 3)).toBe('failed');
    const r = await row(id);
    expect(r).toMatchObject({ status: 'failed', attempts: 1, error_class: 'permanent' });
    const shown = (await t.app.inject({ method: 'GET', url: `/v1/contacts/${contact.id}`, headers: m.headers })).json();
    expect(shown).toMatchObject({ email_disabled: true, email_disabled_reason: 'invalid address: Does not contain a valid address.' });
    expect(shown.channels).not.toContain('email');
  });

  it('retries a send that timed out and records the try as transient', async () => {
    const id = await insert();
    fake.respondNext('hang');
    await expect(processDelivery({ ...deps, sendTimeoutMs: 200 }, id, 0, 3)).rejects.toThrow('SendGrid did not answer in time');
    expect(await row(id)).toMatchObject({ status: 'pending', attempts: 1, error_class: 'transient' });
    expect(await processDelivery(deps, id, 1, 3)).toBe('sent');
  });
});
