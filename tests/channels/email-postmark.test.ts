import { afterAll, beforeAll, beforeEach, describe, expect, it } from '@jest/globals';
import { randomUUID } from 'node:crypto';
import {
  createPostmarkChannel, DEFAULT_RATE_LIMIT_WAIT_MS, MAX_RETRY_AFTER_MS, POSTMARK_PROVIDER, postmarkChannelFromConfig, sdkHostOptions,
} from '../../src/channels/email-postmark/index.js';
import { ChannelError, type Channel, type OutboundMessage } from '../../src/channels/types.js';
import { ConfigError, loadConfig } from '../../src/config.js';
import { seededRandom, startFakePostmark, type FakePostmark } from '../fakes/postmark.js';

/** Contract tests: the real `postmark` SDK's request code against a local Postmark Email API. */

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

describe('the Postmark email channel against a Postmark Email API', () => {
  let fake: FakePostmark;
  let channel: Channel;

  beforeAll(async () => {
    fake = await startFakePostmark({ senderSignatures: [FROM.email] });
    channel = createPostmarkChannel({ serverToken: fake.serverToken, apiBase: fake.url, from: FROM });
  });
  beforeEach(() => fake.reset());
  afterAll(() => fake.close());

  it('sends text and HTML with our metadata and tracking off, and returns Postmark\'s MessageID', async () => {
    const msg = message();
    const result = await channel.send(msg, timeout());
    expect(fake.accepted).toHaveLength(1);
    const sent = fake.accepted[0]!;
    expect(result).toEqual({ provider: POSTMARK_PROVIDER, providerMessageId: sent.messageId });
    expect(sent.messageId).toMatch(/^[0-9a-f-]{36}$/);
    expect(sent.serverToken).toBe(fake.serverToken);
    expect(sent.from).toBe('"Pruuf Alerts" <alerts@pruuf.test>');
    expect(sent.to).toBe('ann.contact@example.test');
    expect(sent.subject).toBe('Ann missed her check-in');
    expect(sent.textBody).toBe(msg.body);
    expect(sent.htmlBody).toBe(msg.html);
    expect(sent.messageStream).toBe('outbound');
    expect(sent.metadata).toEqual({ delivery_id: msg.deliveryId, kind: 'alert', incident_id: msg.incidentId });
    expect(sent.trackOpens).toBe(false);
    expect(sent.trackLinks).toBe('None');
  });

  it('sends text only when there is no HTML, leaves incident_id out without an incident, and uses the configured stream', async () => {
    const fake2 = await startFakePostmark({ messageStreams: ['outbound', 'alerts'] });
    try {
      const c = createPostmarkChannel({ serverToken: fake2.serverToken, apiBase: fake2.url, from: FROM, messageStream: 'alerts' });
      const msg = message({ html: null, incidentId: null, kind: 'invitation', subject: null });
      await c.send(msg, timeout());
      const [sent] = fake2.acceptedFor(msg.deliveryId);
      expect(sent).toMatchObject({ textBody: msg.body, htmlBody: undefined, messageStream: 'alerts', subject: 'Pruuf Alerts' });
      expect('HtmlBody' in sent!.body).toBe(false);
      expect(sent!.metadata).toEqual({ delivery_id: msg.deliveryId, kind: 'invitation' });
    } finally {
      await fake2.close();
    }
  });

  it('waits as long as Retry-After says on a 429, as a transient error, and a second without one', async () => {
    fake.respondNext({ status: 429, headers: { 'retry-after': '7' }, body: { ErrorCode: 429, Message: 'Rate limit exceeded.' } });
    const err = await failure(channel.send(message(), timeout()));
    expect(err).toMatchObject({ errorClass: 'transient', retryAfterMs: 7000 });
    expect(err.message).toContain('429');
    fake.respondNext({ status: 429, body: { ErrorCode: 429, Message: 'Rate limit exceeded.' } });
    expect((await failure(channel.send(message(), timeout()))).retryAfterMs).toBe(DEFAULT_RATE_LIMIT_WAIT_MS);
    fake.respondNext({ status: 429, headers: { 'retry-after': new Date(Date.now() + 86_400_000).toUTCString() }, body: { ErrorCode: 429, Message: 'slow down' } });
    expect((await failure(channel.send(message(), timeout()))).retryAfterMs).toBe(MAX_RETRY_AFTER_MS);
    expect(fake.accepted).toHaveLength(0);
  });

  it('treats 500 and 503 as transient, honouring a 503\'s Retry-After', async () => {
    fake.respondNext({ status: 500, body: { ErrorCode: 0, Message: 'Internal server error.' } });
    const e500 = await failure(channel.send(message(), timeout()));
    expect(e500).toMatchObject({ errorClass: 'transient', retryAfterMs: undefined });
    expect(e500.message).toContain('500');
    fake.respondNext({ status: 503, headers: { 'retry-after': '30' }, body: { ErrorCode: 100, Message: 'Maintenance' } });
    expect(await failure(channel.send(message(), timeout()))).toMatchObject({ errorClass: 'transient', retryAfterMs: 30_000 });
  });

  it('treats an inactive recipient (406) as a dead address, without quoting the address', async () => {
    fake.deactivate('ann.contact@example.test');
    const err = await failure(channel.send(message(), timeout()));
    expect(err.errorClass).toBe('permanent');
    expect(err.deadAddress).toMatch(/^inactive recipient: /);
    expect(err.message).toContain('ErrorCode 406');
    expect(err.message).not.toContain('ann.contact@example.test');
    expect(err.message).toContain('a***@example.test');
    expect(fake.accepted).toHaveLength(0);
  });

  it('treats an invalid To address (300) as a dead address, and other invalid requests (300) as permanent only', async () => {
    const dead = await failure(channel.send(message({ to: 'ann.contact-at-example.test' }), timeout()));
    expect(dead).toMatchObject({ errorClass: 'permanent', deadAddress: expect.stringMatching(/^invalid address: Error parsing 'To'/) });
    expect(dead.message).toContain('ErrorCode 300');
    expect(`${dead.message} ${dead.deadAddress}`).not.toContain('ann.contact-at-example.test');

    fake.respondNext({ status: 422, body: { ErrorCode: 300, Message: 'Provide either email TextBody or HtmlBody or both.' } });
    const bad = await failure(channel.send(message(), timeout()));
    expect(bad).toMatchObject({ errorClass: 'permanent', deadAddress: undefined });
    expect(fake.accepted).toHaveLength(0);
  });

  it('treats a wrong server token (401, ErrorCode 10) as a configuration error naming the setting', async () => {
    const wrong = createPostmarkChannel({ serverToken: 'not-the-token', apiBase: fake.url, from: FROM });
    const err = await failure(wrong.send(message(), timeout()));
    expect(err.errorClass).toBe('configuration');
    expect(err.message).toContain('401');
    expect(err.message).toContain('POSTMARK_SERVER_TOKEN');
  });

  it('treats a From that is not a confirmed sender signature, a missing stream and a blocked account as configuration errors', async () => {
    const stranger = createPostmarkChannel({ serverToken: fake.serverToken, apiBase: fake.url, from: { email: 'someone@else.test', name: 'X' } });
    const sender = await failure(stranger.send(message(), timeout()));
    expect(sender.errorClass).toBe('configuration');
    expect(sender.message).toContain('ErrorCode 400');
    expect(sender.message).toContain('POSTMARK_FROM_EMAIL');

    const noStream = createPostmarkChannel({ serverToken: fake.serverToken, apiBase: fake.url, from: FROM, messageStream: 'broadcast-x' });
    const stream = await failure(noStream.send(message(), timeout()));
    expect(stream.errorClass).toBe('configuration');
    expect(stream.message).toContain('POSTMARK_MESSAGE_STREAM');

    fake.respondNext({ status: 422, body: { ErrorCode: 405, Message: 'Your account has run out of credits.' } });
    expect((await failure(channel.send(message(), timeout()))).errorClass).toBe('configuration');
    fake.respondNext({ status: 422, body: { ErrorCode: 300, Message: "Invalid 'From' address: 'alerts@pruuf'." } });
    expect((await failure(channel.send(message(), timeout()))).errorClass).toBe('configuration');
    expect(fake.accepted).toHaveLength(0);
  });

  it('treats a 404 (POSTMARK_API_BASE pointing somewhere wrong) as configuration, and other 422s as permanent', async () => {
    const lost = createPostmarkChannel({ serverToken: fake.serverToken, apiBase: `${fake.url}/not-postmark`, from: FROM });
    const err = await failure(lost.send(message(), timeout()));
    expect(err.errorClass).toBe('configuration');
    expect(err.message).toContain('POSTMARK_API_BASE');
    fake.respondNext({ status: 422, body: { ErrorCode: 411, Message: 'Forbidden attachment type.' } });
    expect(await failure(channel.send(message(), timeout()))).toMatchObject({ errorClass: 'permanent', deadAddress: undefined });
  });

  it('ends a call that gets no answer when the signal times out, as a transient error', async () => {
    fake.respondNext('hang');
    const started = Date.now();
    const err = await failure(channel.send(message(), AbortSignal.timeout(300)));
    expect(Date.now() - started).toBeLessThan(2000);
    expect(err).toMatchObject({ errorClass: 'transient', message: 'Postmark did not answer in time' });
  });

  it('ends a call at the SDK\'s own timeout when the caller\'s signal is longer', async () => {
    const short = createPostmarkChannel({ serverToken: fake.serverToken, apiBase: fake.url, from: FROM, timeoutMs: 300 });
    fake.respondNext('hang');
    const started = Date.now();
    const err = await failure(short.send(message(), timeout(10_000)));
    expect(Date.now() - started).toBeLessThan(2000);
    expect(err.errorClass).toBe('transient');
    expect(err.message).toBe('Postmark unreachable: TimeoutError');
  });

  it('stops at once when the signal is already aborted or aborts mid-call, without waiting for Postmark', async () => {
    const ctl = new AbortController();
    ctl.abort();
    expect(await failure(channel.send(message(), ctl.signal))).toMatchObject({ errorClass: 'transient', message: 'Postmark call aborted' });
    expect(fake.outcomes.accepted ?? 0).toBe(0);

    fake.setLatency(5000);
    try {
      const mid = new AbortController();
      setTimeout(() => mid.abort(), 100);
      const started = Date.now();
      expect(await failure(channel.send(message(), mid.signal))).toMatchObject({ errorClass: 'transient', message: 'Postmark call aborted' });
      expect(Date.now() - started).toBeLessThan(2000);
    } finally {
      fake.setLatency(undefined);
    }
  });

  it('treats a connection reset and a refused connection as transient', async () => {
    fake.respondNext('reset');
    const reset = await failure(channel.send(message(), timeout()));
    expect(reset.errorClass).toBe('transient');
    expect(reset.message).toMatch(/^Postmark unreachable: (ECONNRESET|UND_ERR_SOCKET|EPIPE)$/);
    expect(fake.outcomes.reset).toBe(1);

    const closed = await startFakePostmark();
    const url = closed.url;
    await closed.close();
    const refused = await failure(createPostmarkChannel({ serverToken: fake.serverToken, apiBase: url, from: FROM }).send(message(), timeout()));
    expect(refused).toMatchObject({ errorClass: 'transient', message: 'Postmark unreachable: ECONNREFUSED' });
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

describe('the Postmark channel against a faulty Postmark', () => {
  it('classifies every injected fault as transient, and Postmark keeps exactly the messages it accepted', async () => {
    const fake = await startFakePostmark({
      random: seededRandom(7), latencyMs: { min: 0, max: 5 }, retryAfterSeconds: 2,
      faults: { serverErrorPct: 30, rateLimitPct: 10, hangPct: 5, resetPct: 5 },
    });
    try {
      const channel = createPostmarkChannel({ serverToken: fake.serverToken, apiBase: fake.url, from: FROM });
      const msgs = Array.from({ length: 60 }, () => message());
      // Long enough that every request reaches the fake on a loaded machine (the hung ones end at it).
      const results = await Promise.allSettled(msgs.map((m) => channel.send(m, AbortSignal.timeout(3000))));
      const failed = results.filter((r) => r.status === 'rejected').map((r) => (r as PromiseRejectedResult).reason as unknown);
      for (const err of failed) expect(err).toMatchObject({ name: 'ChannelError', errorClass: 'transient' });
      const waits = failed.filter((e) => (e as ChannelError).retryAfterMs !== undefined);
      expect(waits).toHaveLength(fake.outcomes.rate_limited ?? 0);
      for (const e of waits) expect((e as ChannelError).retryAfterMs).toBe(2000);
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

describe('Postmark configuration', () => {
  const base = { NODE_ENV: 'test' };
  const problems = (env: Record<string, string>) => {
    try {
      loadConfig({ ...base, ...env });
      return [];
    } catch (err) {
      if (err instanceof ConfigError) return err.problems;
      throw err;
    }
  };

  it('is off without a server token, and has the documented defaults with one', () => {
    expect(postmarkChannelFromConfig(loadConfig(base))).toBeUndefined();
    const config = loadConfig({ ...base, POSTMARK_SERVER_TOKEN: 'tok', POSTMARK_FROM_EMAIL: 'alerts@pruuf.test' });
    expect(config).toMatchObject({ POSTMARK_FROM_NAME: 'Pruuf', POSTMARK_MESSAGE_STREAM: 'outbound' });
    expect(config.POSTMARK_API_BASE).toBeUndefined();
    expect(postmarkChannelFromConfig(config)?.provider).toBe('postmark');
  });

  it('refuses to start with a token but no sender, half the webhook credentials, a short password or a bad base URL', () => {
    expect(problems({ POSTMARK_SERVER_TOKEN: 'tok' })).toEqual([expect.stringMatching(/^POSTMARK_FROM_EMAIL: is required when POSTMARK_SERVER_TOKEN is set/)]);
    expect(problems({ POSTMARK_WEBHOOK_USER: 'postmark' })).toEqual([expect.stringMatching(/^POSTMARK_WEBHOOK_PASSWORD: POSTMARK_WEBHOOK_USER and POSTMARK_WEBHOOK_PASSWORD go together/)]);
    expect(problems({ POSTMARK_WEBHOOK_PASSWORD: 'a-long-enough-password' })).toEqual([expect.stringMatching(/^POSTMARK_WEBHOOK_USER: /)]);
    expect(problems({ POSTMARK_WEBHOOK_USER: 'postmark', POSTMARK_WEBHOOK_PASSWORD: 'short' })).toEqual([expect.stringMatching(/^POSTMARK_WEBHOOK_PASSWORD: must be at least 16 characters \(value hidden\)/)]);
    expect(problems({ POSTMARK_WEBHOOK_USER: 'post:mark', POSTMARK_WEBHOOK_PASSWORD: 'a-long-enough-password' })).toEqual([expect.stringMatching(/^POSTMARK_WEBHOOK_USER: must not contain ":"/)]);
    expect(problems({ POSTMARK_API_BASE: 'not a url' })).toHaveLength(1);
    expect(problems({ POSTMARK_FROM_EMAIL: 'nobody' })).toHaveLength(1);
    expect(problems({ POSTMARK_MESSAGE_STREAM: 'two words' })).toHaveLength(1);
  });

  it('turns POSTMARK_API_BASE into the SDK\'s host options', () => {
    expect(sdkHostOptions(undefined)).toEqual({});
    expect(sdkHostOptions('http://127.0.0.1:4010/')).toEqual({ useHttps: false, requestHost: '127.0.0.1:4010' });
    expect(sdkHostOptions('https://proxy.internal/postmark')).toEqual({ useHttps: true, requestHost: 'proxy.internal/postmark' });
  });
});
