import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { createTwilioChannel, twilioChannelFromConfig, type TwilioChannelOptions } from '../../src/channels/sms-twilio/index.js';
import { ChannelError, ThrottledError, type Channel, type OutboundMessage } from '../../src/channels/types.js';
import { withTransaction } from '../../src/db/pool.js';
import { processDelivery } from '../../src/delivery/deliver.js';
import { insertDeliveries } from '../../src/delivery/outbox.js';
import { systemClock } from '../../src/clock.js';
import { createLogger } from '../../src/observability/logger.js';
import { testConfig } from '../helpers/app.js';
import { createTestDatabase, type TestDatabase } from '../helpers/db.js';
import { waitFor } from '../delivery/fake-provider.js';
import { startFakeTwilio, TWILIO_TEST_NUMBERS, type FakeTwilio } from '../fakes/twilio.js';

const log = createLogger('silent');
const FROM = '+15005550006';
const CALLBACK = 'http://pruuf.test/webhooks/twilio/status';

describe('the Twilio SMS channel against a local Twilio Messages API', () => {
  let db: TestDatabase;
  let fake: FakeTwilio;

  beforeAll(async () => {
    db = await createTestDatabase();
    fake = await startFakeTwilio();
  });
  afterAll(async () => {
    await fake.close();
    await db.drop();
  });

  // Each channel gets its own sender, so one test's throughput budget never slows another's.
  let senders = 0;
  const channel = (over: Partial<TwilioChannelOptions> = {}): Channel => createTwilioChannel({
    accountSid: fake.accountSid, authToken: fake.authToken, apiBase: fake.url, from: `+1500555${String(1000 + senders++).padStart(4, '0')}`,
    validitySeconds: 1800, statusCallbackUrl: CALLBACK, ratePerSecond: 1000, pool: db.pool, log, ...over,
  });
  const msg = (to: string, body = 'Ann missed her 09:30 check-in. Open https://pruuf.test/a/x'): OutboundMessage => ({
    deliveryId: randomUUID(), channel: 'sms', to, subject: null, body, html: null, kind: 'alert', incidentId: null,
  });
  const failure = async (p: Promise<unknown>): Promise<ChannelError> => {
    try {
      await p;
    } catch (err) {
      if (err instanceof ChannelError) return err;
      throw err;
    }
    throw new Error('expected the send to fail');
  };
  const seconds = (ms: number) => AbortSignal.timeout(ms);

  it('hands the message to Twilio and returns its message sid', async () => {
    const before = fake.accepted.length;
    const result = await channel({ from: FROM }).send(msg('+447700900123'), seconds(5000));
    expect(result.provider).toBe('twilio');
    expect(result.providerMessageId).toMatch(/^SM[0-9a-f]{32}$/);
    expect(fake.accepted).toHaveLength(before + 1);
    const sent = fake.accepted.at(-1)!;
    expect(sent).toMatchObject({ sid: result.providerMessageId, to: '+447700900123', from: FROM, messagingServiceSid: null });
    expect(sent.body).toContain('https://pruuf.test/a/x');
  });

  it('asks Twilio to drop a stale message and to call back with its status', async () => {
    await channel({ validitySeconds: 900 }).send(msg('+447700900124'), seconds(5000));
    const sent = fake.accepted.at(-1)!;
    expect(sent.validityPeriod).toBe('900');
    expect(sent.statusCallback).toBe(CALLBACK);
  });

  it('sends through a messaging service instead of a number when one is configured', async () => {
    await channel({ from: undefined, messagingServiceSid: 'MG0123456789abcdef0123456789abcdef' }).send(msg('+447700900125'), seconds(5000));
    const sent = fake.accepted.at(-1)!;
    expect(sent).toMatchObject({ from: null, messagingServiceSid: 'MG0123456789abcdef0123456789abcdef' });
  });

  it.each([
    ['an invalid number (21211)', TWILIO_TEST_NUMBERS.invalid, /not a valid phone number/],
    ['a landline (21614)', TWILIO_TEST_NUMBERS.notMobile, /not a mobile number/],
    ['a number SMS cannot reach (21612)', TWILIO_TEST_NUMBERS.unroutable, /cannot receive SMS/],
  ])('fails %s permanently and names the address dead', async (_name, to, reason) => {
    const err = await failure(channel().send(msg(to), seconds(5000)));
    expect(err.errorClass).toBe('permanent');
    expect(err.deadAddress).toMatch(reason);
  });

  it('fails a request Twilio refuses for our own reasons (21408 region not enabled) permanently without blaming the address', async () => {
    const err = await failure(channel().send(msg(TWILIO_TEST_NUMBERS.noInternationalPermission), seconds(5000)));
    expect(err.errorClass).toBe('permanent');
    expect(err.deadAddress).toBeUndefined();
    expect(err.message).toContain('21408');
  });

  it('fails a too long body (21617) permanently', async () => {
    const err = await failure(channel().send(msg('+447700900126', 'x'.repeat(1601)), seconds(5000)));
    expect(err).toMatchObject({ errorClass: 'permanent', deadAddress: undefined });
    expect(err.message).toContain('21617');
  });

  it('fails a recipient who texted STOP (21610) permanently and opts every contact with that number out of SMS', async () => {
    // The number is a member's own phone and a contact of two other members.
    const [memberId, a, b] = [randomUUID(), randomUUID(), randomUUID()];
    await db.pool.query('insert into members (id, phone) values ($1, $4), ($2, null), ($3, null)', [memberId, a, b, TWILIO_TEST_NUMBERS.optedOut]);
    const { rows } = await db.pool.query<{ id: string }>(
      `insert into contacts (member_id, name, phone) values ($1, 'Bo', $3), ($2, 'Cy', $3), ($2, 'Di', '+447700900999') returning id`,
      [a, b, TWILIO_TEST_NUMBERS.optedOut],
    );
    const err = await failure(channel().send(msg(TWILIO_TEST_NUMBERS.optedOut), seconds(5000)));
    expect(err).toMatchObject({ errorClass: 'permanent', deadAddress: undefined });
    const after = await db.pool.query<{ id: string; sms_opted_out: boolean }>('select id, sms_opted_out from contacts where id = any($1) order by name', [rows.map((r) => r.id)]);
    expect(after.rows.map((r) => r.sms_opted_out)).toEqual([true, true, false]);
    const member = await db.pool.query('select sms_opted_out from members where id = $1', [memberId]);
    expect(member.rows[0].sms_opted_out).toBe(true);
  });

  it('reports wrong credentials as a configuration error', async () => {
    const err = await failure(channel({ authToken: 'not-the-token' }).send(msg('+447700900127'), seconds(5000)));
    expect(err.errorClass).toBe('configuration');
    expect(err.message).toContain('20003');
  });

  it('reports an API base with no such account resource as a configuration error', async () => {
    const err = await failure(channel({ apiBase: `${fake.url}/wrong-prefix` }).send(msg('+447700900128'), seconds(5000)));
    expect(err.errorClass).toBe('configuration');
  });

  it('treats a 500 as transient', async () => {
    fake.setFaults({ error500: 1 });
    try {
      const err = await failure(channel().send(msg('+447700900129'), seconds(5000)));
      expect(err.errorClass).toBe('transient');
    } finally {
      fake.setFaults({});
    }
  });

  it("treats a 429 (20429) as transient and passes on Twilio's Retry-After", async () => {
    fake.setFaults({ tooMany: 1, retryAfterSeconds: 7 });
    try {
      const err = await failure(channel().send(msg('+447700900130'), seconds(5000)));
      expect(err).toMatchObject({ errorClass: 'transient', retryAfterMs: 7000 });
    } finally {
      fake.setFaults({});
    }
  });

  it('gives up on a Twilio that never answers when the signal fires, as a transient error', async () => {
    fake.setFaults({ hang: 1 });
    try {
      const started = Date.now();
      const abandoned = fake.outcomes.abandoned ?? 0;
      const err = await failure(channel().send(msg('+447700900131'), seconds(300)));
      expect(err.errorClass).toBe('transient');
      expect(Date.now() - started).toBeLessThan(2000);
      // The SDK's request itself was cancelled: its connection closed, nothing left dangling.
      await waitFor(async () => ((fake.outcomes.abandoned ?? 0) > abandoned ? true : undefined), 2000);
    } finally {
      fake.setFaults({});
    }
  });

  it('treats a reset connection as transient', async () => {
    fake.setFaults({ reset: 1 });
    try {
      const err = await failure(channel().send(msg('+447700900132'), seconds(5000)));
      expect(err.errorClass).toBe('transient');
    } finally {
      fake.setFaults({});
    }
  });

  it('sends nothing when the signal has already fired', async () => {
    const before = fake.requests();
    const aborted = AbortSignal.abort();
    await expect(channel().send(msg('+447700900133'), aborted)).rejects.toThrow();
    expect(fake.requests()).toBe(before);
  });

  it('throttles a sender over its rate before calling Twilio, with the wait until its next slot', async () => {
    const slow = channel({ ratePerSecond: 1 });
    await slow.send(msg('+447700900134'), seconds(5000));
    const before = fake.requests();
    let thrown: unknown;
    try {
      await slow.send(msg('+447700900135'), seconds(5000));
    } catch (err) {
      thrown = err;
    }
    expect(thrown).toBeInstanceOf(ThrottledError);
    expect((thrown as ThrottledError).retryAfterMs).toBeGreaterThan(500);
    expect((thrown as ThrottledError).retryAfterMs).toBeLessThanOrEqual(1000);
    expect(fake.requests()).toBe(before);
  });

  it('is not configured without TWILIO_ACCOUNT_SID, and is with it', () => {
    expect(twilioChannelFromConfig(testConfig('redis', 'postgres://x/y'), db.pool, log)).toBeUndefined();
    const configured = twilioChannelFromConfig(testConfig('redis', 'postgres://x/y', {
      TWILIO_ACCOUNT_SID: fake.accountSid, TWILIO_AUTH_TOKEN: fake.authToken, TWILIO_FROM_NUMBER: FROM, TWILIO_API_BASE: fake.url,
    }), db.pool, log);
    expect(configured?.provider).toBe('twilio');
  });

  describe('on the real delivery path', () => {
    const deps = (c: Channel) => ({ pool: db.pool, channels: { push: c, sms: c, email: c }, clock: systemClock, log });
    const insert = (to: string, contactId: string | null = null) => withTransaction(db.pool, (tx) => insertDeliveries(tx, [{
      memberId: null, contactId, kind: 'alert', channel: 'sms', address: to, body: 'Ann missed her check-in.',
    }]));

    it('marks an SMS delivery sent with provider twilio and the message sid', async () => {
      const [id] = await insert('+447700900140');
      expect(await processDelivery(deps(channel()), id!, 0, 3)).toBe('sent');
      const { rows: [row] } = await db.pool.query('select status, provider, provider_message_id, attempts from deliveries where id = $1', [id]);
      expect(row).toMatchObject({ status: 'sent', provider: 'twilio', attempts: 1 });
      expect(fake.accepted.find((m) => m.sid === row.provider_message_id)?.to).toBe('+447700900140');
    });

    it('fails a delivery to a landline at once and turns SMS off for that contact with the reason', async () => {
      const memberId = randomUUID();
      await db.pool.query('insert into members (id) values ($1)', [memberId]);
      const { rows: [contact] } = await db.pool.query<{ id: string }>(`insert into contacts (member_id, name, phone) values ($1, 'Ed', $2) returning id`, [memberId, TWILIO_TEST_NUMBERS.notMobile]);
      const [id] = await insert(TWILIO_TEST_NUMBERS.notMobile, contact!.id);
      expect(await processDelivery(deps(channel()), id!, 0, 3)).toBe('failed');
      const { rows: [row] } = await db.pool.query('select status, error_class, last_error from deliveries where id = $1', [id]);
      expect(row).toMatchObject({ status: 'failed', error_class: 'permanent' });
      expect(row.last_error).not.toContain(TWILIO_TEST_NUMBERS.notMobile);
      const { rows: [c] } = await db.pool.query('select sms_disabled, sms_disabled_reason from contacts where id = $1', [contact!.id]);
      expect(c).toMatchObject({ sms_disabled: true, sms_disabled_reason: expect.stringContaining('not a mobile number') });
    });
  });
});
