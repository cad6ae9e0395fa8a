import { afterAll, beforeAll, beforeEach, describe, expect, it } from '@jest/globals';
import { randomUUID } from 'node:crypto';
import { createSendGridChannel, MAX_SUBSTITUTION_BYTES, SENDGRID_MAX_BATCH } from '../../src/channels/email-sendgrid/index.js';
import { ChannelError, type Channel, type OutboundMessage, type SendResult } from '../../src/channels/types.js';
import { startFakeSendGrid, type FakeSendGrid } from '../fakes/sendgrid.js';

/** sendMany: many messages in one v3 Mail Send request (one personalization each), each keeping its own outcome. */

const NOW_MS = Date.parse('2026-11-23T10:00:00Z');
const FROM = { email: 'alerts@pruuf.test', name: 'Pruuf Alerts' };

let n = 0;
const message = (extra: Partial<OutboundMessage> = {}): OutboundMessage => {
  n += 1;
  return {
    deliveryId: randomUUID(),
    channel: 'email',
    to: `contact-${n}@example.test`,
    subject: `Member ${n} missed a check-in`,
    body: `Member ${n} missed the 09:30 check-in. I am on it: https://pruuf.test/a/tok.en-${n}`,
    html: `<p>Member ${n} missed the 09:30 check-in. <a href="https://pruuf.test/a/tok.en-${n}">I am on it</a></p>`,
    kind: 'alert',
    incidentId: randomUUID(),
    ...extra,
  };
};

const timeout = (ms = 5000) => AbortSignal.timeout(ms);
const results = (out: readonly (SendResult | Error)[]) => out.map((o) => (o instanceof Error ? 'error' : 'sent'));

describe('SendGrid sendMany against a SendGrid v3 server', () => {
  let fake: FakeSendGrid;
  let channel: Channel;
  let sendMany: NonNullable<Channel['sendMany']>;

  beforeAll(async () => {
    fake = await startFakeSendGrid();
    channel = createSendGridChannel({ apiKey: fake.apiKey, baseUrl: fake.url, from: FROM, now: () => NOW_MS });
    sendMany = channel.sendMany!.bind(channel);
  });
  beforeEach(() => fake.reset());
  afterAll(() => fake.close());

  it('declares SendGrid’s own limit of 1000 personalizations per request', () => {
    expect(channel.maxBatch).toBe(SENDGRID_MAX_BATCH);
    expect(SENDGRID_MAX_BATCH).toBe(1000);
  });

  it('sends many messages in one request, each recipient getting its own subject, text, HTML and custom args', async () => {
    const msgs = [message(), message({ incidentId: null, kind: 'invitation' }), message()];
    const out = await sendMany(msgs, timeout());
    expect(fake.requests).toEqual([{ messageId: expect.any(String), personalizations: 3 }]);
    const id = fake.requests[0]!.messageId;
    expect(out).toEqual(msgs.map(() => ({ provider: 'sendgrid', providerMessageId: id })));
    for (const msg of msgs) {
      const [sent] = fake.acceptedFor(msg.deliveryId);
      expect(sent).toMatchObject({
        messageId: id, to: [msg.to], subject: msg.subject, from: { email: FROM.email, name: FROM.name },
        content: [{ type: 'text/plain', value: msg.body }, { type: 'text/html', value: msg.html }],
        customArgs: { delivery_id: msg.deliveryId, kind: msg.kind, ...(msg.incidentId === null ? {} : { incident_id: msg.incidentId }) },
        trackingSettings: { click_tracking: { enable: false, enable_text: false }, open_tracking: { enable: false }, subscription_tracking: { enable: false } },
      });
    }
    // Exactly what `send` puts in custom_args: nothing else, no request-level args leaking in.
    const body = fake.requests.length === 1 ? fake.accepted[0]!.body : {};
    expect(body.custom_args).toBeUndefined();
  });

  it('refuses a message for its bad address alone: the others are accepted in a second request, each with its id', async () => {
    const good1 = message();
    const bad = message({ to: 'nobody@example' }); // no dot: SendGrid refuses it, naming the personalization
    const good2 = message();
    const out = await sendMany([good1, bad, good2], timeout());
    expect(results(out)).toEqual(['sent', 'error', 'sent']);
    const err = out[1] as ChannelError;
    expect(err).toBeInstanceOf(ChannelError);
    // The error `send` gives that message alone: permanent, the address dead, the field as if alone, the address masked.
    expect(err).toMatchObject({ errorClass: 'permanent', deadAddress: 'invalid address: Does not contain a valid address.' });
    expect(err.message).toBe('SendGrid answered 400: personalizations.0.to.0.email: Does not contain a valid address.');
    const alone = await channel.send(bad, timeout()).then(() => undefined, (e: unknown) => e as ChannelError);
    expect({ message: alone!.message, deadAddress: alone!.deadAddress, errorClass: alone!.errorClass })
      .toEqual({ message: err.message, deadAddress: err.deadAddress, errorClass: err.errorClass });

    expect(fake.outcomes).toMatchObject({ bad_request: 2, accepted: 1 });
    expect(fake.requests).toEqual([{ messageId: expect.any(String), personalizations: 2 }]);
    expect(out[0]).toEqual({ provider: 'sendgrid', providerMessageId: fake.requests[0]!.messageId });
    expect(out[2]).toEqual({ provider: 'sendgrid', providerMessageId: fake.requests[0]!.messageId });
    expect(fake.acceptedFor(good1.deliveryId)).toHaveLength(1);
    expect(fake.acceptedFor(good2.deliveryId)).toHaveLength(1);
    expect(fake.acceptedFor(bad.deliveryId)).toHaveLength(0);
  });

  it('fails every message of a request alike on a 429 (waiting until X-RateLimit-Reset) or a 5xx', async () => {
    const reset = NOW_MS / 1000 + 7;
    fake.respondNext({ status: 429, headers: { 'x-ratelimit-reset': String(reset) }, body: { errors: [{ message: 'too many requests', field: null }] } });
    const limited = await sendMany([message(), message(), message()], timeout());
    for (const e of limited) expect(e).toMatchObject({ name: 'ChannelError', errorClass: 'transient', retryAfterMs: 7000 });
    expect(fake.outcomes.scripted).toBe(1);

    fake.respondNext({ status: 503, body: { errors: [{ message: 'unavailable', field: null }] } });
    const down = await sendMany([message(), message()], timeout());
    for (const e of down) expect(e).toMatchObject({ name: 'ChannelError', errorClass: 'transient', retryAfterMs: undefined });
    expect(fake.accepted).toHaveLength(0);
  });

  it('fails every message as configuration on a 401, and as transient when the call is aborted or gets no answer', async () => {
    const wrongKey = createSendGridChannel({ apiKey: 'SG.wrong.key', baseUrl: fake.url, from: FROM });
    const out = await wrongKey.sendMany!([message(), message()], timeout());
    for (const e of out) expect(e).toMatchObject({ errorClass: 'configuration' });

    const ctl = new AbortController();
    ctl.abort();
    for (const e of await sendMany([message(), message()], ctl.signal)) expect(e).toMatchObject({ errorClass: 'transient', message: 'SendGrid call aborted' });

    fake.respondNext('hang');
    for (const e of await sendMany([message(), message()], AbortSignal.timeout(300))) {
      expect(e).toMatchObject({ errorClass: 'transient', message: 'SendGrid did not answer in time' });
    }
    expect(fake.accepted).toHaveLength(0);
  });

  it('puts an address at most once in a request, and text-only mail apart from HTML mail', async () => {
    const a1 = message({ to: 'same@example.test' });
    const a2 = message({ to: 'SAME@example.test' });
    const textOnly = message({ html: null });
    const other = message();
    const out = await sendMany([a1, a2, textOnly, other], timeout());
    expect(results(out)).toEqual(['sent', 'sent', 'sent', 'sent']);
    expect(fake.outcomes.bad_request ?? 0).toBe(0);
    // [a1, other] share a request; a2 (the same address) and textOnly go alone, as plain sends.
    expect(fake.requests.map((r) => r.personalizations).sort()).toEqual([1, 1, 2]);
    expect(fake.acceptedFor(textOnly.deliveryId)[0]!.content).toEqual([{ type: 'text/plain', value: textOnly.body }]);
    expect(fake.acceptedFor(a2.deliveryId)[0]!.to).toEqual(['SAME@example.test']);
  });

  it('sends a message whose texts exceed SendGrid’s substitution limit, or that carry a tag, alone', async () => {
    const big = message({ body: 'x'.repeat(MAX_SUBSTITUTION_BYTES) });
    const tagged = message({ body: 'Reply {{pruuf_text}} here' });
    const small = [message(), message()];
    const out = await sendMany([big, ...small, tagged], timeout());
    expect(results(out)).toEqual(['sent', 'sent', 'sent', 'sent']);
    expect(fake.requests.map((r) => r.personalizations).sort()).toEqual([1, 1, 2]);
    expect(fake.acceptedFor(big.deliveryId)[0]!.content[0]!.value).toBe(big.body);
    expect(fake.acceptedFor(tagged.deliveryId)[0]!.content[0]!.value).toBe('Reply {{pruuf_text}} here');
  });

  it('sends each message alone when a 400 names no personalization: each message’s own answer decides', async () => {
    fake.respondNext({ status: 400, body: { errors: [{ message: 'The content value must be a string at least one character in length.', field: 'content.0.value' }] } });
    const msgs = [message(), message(), message()];
    const out = await sendMany(msgs, timeout());
    expect(results(out)).toEqual(['sent', 'sent', 'sent']);
    expect(fake.requests.map((r) => r.personalizations)).toEqual([1, 1, 1]);
  });
});
