import { afterAll, beforeAll, beforeEach, describe, expect, it } from '@jest/globals';
import { randomUUID } from 'node:crypto';
import { createSendGridChannel, DEFAULT_RATE_LIMIT_WAIT_MS, MAX_RATE_LIMIT_WAIT_MS, sendGridChannelFromConfig } from '../../src/channels/email-sendgrid/index.js';
import { ChannelError, type Channel, type OutboundMessage } from '../../src/channels/types.js';
import { loadConfig } from '../../src/config.js';
import { seededRandom, startFakeSendGrid, type FakeSendGrid } from '../fakes/sendgrid.js';

/** Contract tests: the real @sendgrid/mail request code against a local SendGrid v3 server. */

const NOW_MS = Date.parse('2026-11-23T10:00:00Z');
const FROM = { email: 'alerts@pruuf.test', name: 'Pruuf Alerts' };

const message = (extra: Partial<OutboundMessage> = {}): OutboundMessage => ({
  deliveryId: randomUUID(),
  channel: 'email',
  to: 'ann.contact@example.test',
  subject: 'Ann missed her check-in',
  body: 'Ann missed her 09:30 check-in. I am on it: https://pruuf.test/a/tok.en-1',
  html: '<p>Ann missed her 09:30 check-in. <a href="https://pruuf.test/a/tok.en-1">I am on it</a></p>',
  kind: 'alert',
  incidentId: randomUUID(),
  ...extra,
});

const timeout = (ms = 5000) => AbortSignal.timeout(ms);

async function failure(p: Promise<unknown>): Promise<ChannelError> {
  const err = await p.then(() => undefined, (e: unknown) => e);
  if (!(err instanceof ChannelError)) throw new Error(`expected a ChannelError, got ${String(err)}`);
  return err;
}

describe('the SendGrid email channel against a SendGrid v3 server', () => {
  let fake: FakeSendGrid;
  let channel: Channel;

  beforeAll(async () => {
    fake = await startFakeSendGrid();
    channel = createSendGridChannel({ apiKey: fake.apiKey, baseUrl: fake.url, from: FROM, now: () => NOW_MS });
  });
  beforeEach(() => fake.reset());
  afterAll(() => fake.close());

  it('sends text and HTML with our custom args and tracking off, and returns the X-Message-Id on 202', async () => {
    const msg = message();
    const result = await channel.send(msg, timeout());
    expect(fake.accepted).toHaveLength(1);
    const sent = fake.accepted[0]!;
    expect(result).toEqual({ provider: 'sendgrid', providerMessageId: sent.messageId });
    expect(sent.authorization).toBe(`Bearer ${fake.apiKey}`);
    expect(sent.to).toEqual(['ann.contact@example.test']);
    expect(sent.from).toEqual({ email: 'alerts@pruuf.test', name: 'Pruuf Alerts' });
    expect(sent.subject).toBe('Ann missed her check-in');
    expect(sent.content).toEqual([{ type: 'text/plain', value: msg.body }, { type: 'text/html', value: msg.html }]);
    expect(sent.customArgs).toEqual({ delivery_id: msg.deliveryId, kind: 'alert', incident_id: msg.incidentId });
    expect(sent.trackingSettings).toEqual({
      click_tracking: { enable: false, enable_text: false },
      open_tracking: { enable: false },
      subscription_tracking: { enable: false },
    });
  });

  it('sends text only when there is no HTML, and leaves incident_id out when there is no incident', async () => {
    const msg = message({ html: null, incidentId: null, kind: 'invitation' });
    await channel.send(msg, timeout());
    const sent = fake.acceptedFor(msg.deliveryId);
    expect(sent).toHaveLength(1);
    expect(sent[0]!.content).toEqual([{ type: 'text/plain', value: msg.body }]);
    expect(sent[0]!.customArgs).toEqual({ delivery_id: msg.deliveryId, kind: 'invitation' });
  });

  it('waits until X-RateLimit-Reset on a 429, as a transient error', async () => {
    const reset = NOW_MS / 1000 + 7;
    fake.respondNext({ status: 429, headers: { 'x-ratelimit-limit': '600', 'x-ratelimit-remaining': '0', 'x-ratelimit-reset': String(reset) }, body: { errors: [{ message: 'too many requests', field: null }] } });
    const err = await failure(channel.send(message(), timeout()));
    expect(err.errorClass).toBe('transient');
    expect(err.retryAfterMs).toBe(7000);
    expect(err.message).toContain('429');
    expect(fake.accepted).toHaveLength(0);
  });

  it('still waits on a 429 without a reset header, and never longer than the cap for a reset far ahead', async () => {
    fake.respondNext({ status: 429, body: { errors: [{ message: 'too many requests' }] } });
    expect((await failure(channel.send(message(), timeout()))).retryAfterMs).toBe(DEFAULT_RATE_LIMIT_WAIT_MS);
    fake.respondNext({ status: 429, headers: { 'x-ratelimit-reset': String(NOW_MS / 1000 + 86_400) } });
    expect((await failure(channel.send(message(), timeout()))).retryAfterMs).toBe(MAX_RATE_LIMIT_WAIT_MS);
  });

  it('treats 500 and 503 as transient, with no wait of their own', async () => {
    for (const status of [500, 503]) {
      fake.respondNext({ status, body: { errors: [{ message: 'internal error', field: null }] } });
      const err = await failure(channel.send(message(), timeout()));
      expect(err).toMatchObject({ errorClass: 'transient', retryAfterMs: undefined });
      expect(err.message).toContain(String(status));
    }
  });

  it('treats a 400 as permanent, and one about the recipient as a dead address, without quoting it', async () => {
    fake.respondNext({ status: 400, body: { errors: [{ message: 'The subject is required.', field: 'subject' }] } });
    const bad = await failure(channel.send(message(), timeout()));
    expect(bad).toMatchObject({ errorClass: 'permanent', deadAddress: undefined });
    expect(bad.message).toContain('subject: The subject is required.');

    const msg = message({ to: 'ann.contact@example' }); // the fake checks addresses as SendGrid does
    const dead = await failure(channel.send(msg, timeout()));
    expect(dead).toMatchObject({ errorClass: 'permanent', deadAddress: 'invalid address: Does not contain a valid address.' });
    expect(dead.message).toContain('personalizations.0.to.0.email');
    expect(dead.message).not.toContain('ann.contact@example');
    expect(fake.accepted).toHaveLength(0);
  });

  it('treats a wrong API key (401) and a key without permission (403) as configuration errors', async () => {
    const wrongKey = createSendGridChannel({ apiKey: 'SG.wrong.key', baseUrl: fake.url, from: FROM });
    const unauthorized = await failure(wrongKey.send(message(), timeout()));
    expect(unauthorized.errorClass).toBe('configuration');
    expect(unauthorized.message).toContain('401');
    expect(unauthorized.message).toContain('SENDGRID_API_KEY');
    fake.respondNext({ status: 403, body: { errors: [{ message: 'access forbidden', field: null }] } });
    expect((await failure(channel.send(message(), timeout()))).errorClass).toBe('configuration');
    expect(fake.accepted).toHaveLength(0);
  });

  it('treats 413 for a body that is too large as permanent', async () => {
    const small = await startFakeSendGrid({ maxBodyBytes: 4096 });
    try {
      const c = createSendGridChannel({ apiKey: small.apiKey, baseUrl: small.url, from: FROM });
      const err = await failure(c.send(message({ body: 'x'.repeat(10_000) }), timeout()));
      expect(err.errorClass).toBe('permanent');
      expect(err.message).toContain('413');
      expect(small.accepted).toHaveLength(0);
    } finally {
      await small.close();
    }
  });

  it('ends a call that gets no answer when the signal times out, as a transient error', async () => {
    fake.respondNext('hang');
    const started = Date.now();
    const err = await failure(channel.send(message(), AbortSignal.timeout(300)));
    expect(Date.now() - started).toBeLessThan(2000);
    expect(err).toMatchObject({ errorClass: 'transient', message: 'SendGrid did not answer in time' });
  });

  it('stops at once when the signal is already aborted, without calling SendGrid', async () => {
    const ctl = new AbortController();
    ctl.abort();
    const err = await failure(channel.send(message(), ctl.signal));
    expect(err).toMatchObject({ errorClass: 'transient', message: 'SendGrid call aborted' });
    expect(fake.outcomes.accepted ?? 0).toBe(0);
  });

  it('treats a connection reset and a refused connection as transient', async () => {
    fake.respondNext('reset');
    const reset = await failure(channel.send(message(), timeout()));
    expect(reset.errorClass).toBe('transient');
    expect(reset.message).toMatch(/^SendGrid unreachable: (ECONNRESET|ERR_NETWORK|EPIPE)/);
    expect(fake.outcomes.reset).toBe(1);

    const closed = await startFakeSendGrid();
    const url = closed.url;
    await closed.close();
    const refused = await failure(createSendGridChannel({ apiKey: fake.apiKey, baseUrl: url, from: FROM }).send(message(), timeout()));
    expect(refused).toMatchObject({ errorClass: 'transient', message: 'SendGrid unreachable: ECONNREFUSED' });
  });

  it('accepts again after failures: one accepted message per successful send', async () => {
    fake.respondNext({ status: 500 }, 'reset');
    const msg = message();
    await failure(channel.send(msg, timeout()));
    await failure(channel.send(msg, timeout()));
    await channel.send(msg, timeout());
    expect(fake.acceptedFor(msg.deliveryId)).toHaveLength(1);
  });
});

describe('the SendGrid channel against a faulty SendGrid', () => {
  it('classifies every injected fault as transient, and SendGrid keeps exactly the messages it accepted', async () => {
    const fake = await startFakeSendGrid({
      random: seededRandom(42), latencyMs: { min: 0, max: 5 },
      faults: { serverErrorPct: 30, rateLimitPct: 10, hangPct: 5, resetPct: 5 },
    });
    try {
      const channel = createSendGridChannel({ apiKey: fake.apiKey, baseUrl: fake.url, from: FROM });
      const msgs = Array.from({ length: 60 }, () => message());
      // Long enough that every request reaches the fake on a loaded machine (the hung ones end at it).
      const results = await Promise.allSettled(msgs.map((m) => channel.send(m, AbortSignal.timeout(3000))));
      const failed = results.filter((r) => r.status === 'rejected').map((r) => (r as PromiseRejectedResult).reason as unknown);
      for (const err of failed) expect(err).toMatchObject({ name: 'ChannelError', errorClass: 'transient' });
      const rateLimited = failed.filter((e) => (e as ChannelError).retryAfterMs !== undefined);
      expect(rateLimited).toHaveLength(fake.outcomes.rate_limited ?? 0);
      expect(failed.length).toBe((fake.outcomes.server_error ?? 0) + (fake.outcomes.rate_limited ?? 0) + (fake.outcomes.hang ?? 0) + (fake.outcomes.reset ?? 0));
      expect(failed.length).toBeGreaterThan(15);
      expect(fake.accepted).toHaveLength(60 - failed.length);
      const ok = results.flatMap((r, i) => (r.status === 'fulfilled' ? [msgs[i]!.deliveryId] : []));
      for (const id of ok) expect(fake.acceptedFor(id)).toHaveLength(1);
    } finally {
      await fake.close();
    }
  });
});

describe('the SendGrid channel from configuration', () => {
  it('is absent without SENDGRID_API_KEY, so email stays with the dev outbox', () => {
    expect(sendGridChannelFromConfig(loadConfig({ NODE_ENV: 'test' }))).toBeUndefined();
  });

  it('reaches SENDGRID_API_BASE with the configured sender', async () => {
    const fake = await startFakeSendGrid();
    try {
      const config = loadConfig({
        NODE_ENV: 'test', SENDGRID_API_KEY: fake.apiKey, SENDGRID_API_BASE: `${fake.url}/`,
        SENDGRID_FROM_EMAIL: 'alerts@pruuf.test', SENDGRID_FROM_NAME: 'Pruuf',
      });
      const channel = sendGridChannelFromConfig(config)!;
      expect(channel.provider).toBe('sendgrid');
      const msg = message();
      await channel.send(msg, timeout());
      expect(fake.acceptedFor(msg.deliveryId).map((m) => m.from)).toEqual([{ email: 'alerts@pruuf.test', name: 'Pruuf' }]);
    } finally {
      await fake.close();
    }
  });
});
