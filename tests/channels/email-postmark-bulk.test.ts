import { afterAll, beforeAll, beforeEach, describe, expect, it } from '@jest/globals';
import { randomUUID } from 'node:crypto';
import { createPostmarkChannel, POSTMARK_MAX_BATCH, POSTMARK_PROVIDER } from '../../src/channels/email-postmark/index.js';
import { ChannelError, type Channel, type OutboundMessage, type SendResult } from '../../src/channels/types.js';
import { startFakePostmark, type FakePostmark } from '../fakes/postmark.js';

/** sendMany: many messages in one POST /email/batch through the SDK's sendEmailBatch, each keeping its own outcome. */

const FROM = { email: 'alerts@pruuf.test', name: 'Pruuf Alerts' };

let n = 0;
const message = (extra: Partial<OutboundMessage> = {}): OutboundMessage => {
  n += 1;
  return {
    deliveryId: randomUUID(), channel: 'email', to: `contact-${n}@example.test`, subject: `Member ${n} missed a check-in`,
    body: `Member ${n} missed the 09:30 check-in.`, html: `<p>Member ${n} missed the 09:30 check-in.</p>`, kind: 'alert', incidentId: randomUUID(),
    ...extra,
  };
};

const timeout = (ms = 5000) => AbortSignal.timeout(ms);
const kinds = (out: readonly (SendResult | Error)[]) => out.map((o) => (o instanceof Error ? 'error' : 'sent'));

async function thrown(p: Promise<unknown>): Promise<ChannelError> {
  const err = await p.then(() => undefined, (e: unknown) => e);
  if (!(err instanceof ChannelError)) throw new Error(`expected a ChannelError, got ${String(err)}`);
  return err;
}

describe('Postmark sendMany against a Postmark Email API', () => {
  let fake: FakePostmark;
  let channel: Channel;
  let sendMany: NonNullable<Channel['sendMany']>;

  beforeAll(async () => {
    fake = await startFakePostmark({ senderSignatures: [FROM.email] });
    channel = createPostmarkChannel({ serverToken: fake.serverToken, apiBase: fake.url, from: FROM });
    sendMany = channel.sendMany!.bind(channel);
  });
  beforeEach(() => fake.reset());
  afterAll(() => fake.close());

  it('declares Postmark’s own limit of 500 messages per batch', () => {
    expect(channel.maxBatch).toBe(POSTMARK_MAX_BATCH);
    expect(POSTMARK_MAX_BATCH).toBe(500);
  });

  it('sends many messages in one batch request, each the message send would send, each with its own MessageID', async () => {
    const msgs = [message(), message({ html: null, incidentId: null, kind: 'invitation' }), message()];
    const out = await sendMany(msgs, timeout());
    expect(fake.outcomes).toEqual({ accepted: 1 });
    expect(fake.accepted).toHaveLength(3);
    msgs.forEach((msg, i) => {
      const [sent] = fake.acceptedFor(msg.deliveryId);
      expect(out[i]).toEqual({ provider: POSTMARK_PROVIDER, providerMessageId: sent!.messageId });
      expect(sent).toMatchObject({
        from: '"Pruuf Alerts" <alerts@pruuf.test>', to: msg.to, subject: msg.subject, textBody: msg.body, htmlBody: msg.html ?? undefined,
        messageStream: 'outbound', metadata: { delivery_id: msg.deliveryId, kind: msg.kind, ...(msg.incidentId === null ? {} : { incident_id: msg.incidentId }) },
        trackOpens: false, trackLinks: 'None',
      });
    });
    expect(new Set(fake.accepted.map((m) => m.messageId)).size).toBe(3);
  });

  it('refuses a message for its address alone (inactive 406, invalid To 300): the others are accepted with their ids', async () => {
    const good1 = message();
    const inactive = message({ to: 'gone@example.test' });
    const invalid = message({ to: 'not-an-address' });
    const good2 = message();
    fake.deactivate('gone@example.test');
    const out = await sendMany([good1, inactive, invalid, good2], timeout());
    expect(kinds(out)).toEqual(['sent', 'error', 'error', 'sent']);
    expect(fake.outcomes).toEqual({ accepted: 1 });
    expect(out[0]).toEqual({ provider: POSTMARK_PROVIDER, providerMessageId: fake.acceptedFor(good1.deliveryId)[0]!.messageId });
    expect(out[3]).toEqual({ provider: POSTMARK_PROVIDER, providerMessageId: fake.acceptedFor(good2.deliveryId)[0]!.messageId });

    // Each refusal is the one `send` gives that message alone.
    const alone406 = await thrown(channel.send(inactive, timeout()));
    const alone300 = await thrown(channel.send(invalid, timeout()));
    for (const [inBatch, alone] of [[out[1], alone406], [out[2], alone300]] as const) {
      expect(inBatch).toBeInstanceOf(ChannelError);
      const e = inBatch as ChannelError;
      expect({ m: e.message, c: e.errorClass, d: e.deadAddress }).toEqual({ m: alone.message, c: alone.errorClass, d: alone.deadAddress });
    }
    expect(out[1]).toMatchObject({ errorClass: 'permanent', deadAddress: expect.stringMatching(/^inactive recipient: /) });
    expect(out[2]).toMatchObject({ errorClass: 'permanent', deadAddress: expect.stringMatching(/^invalid address: /) });
    expect((out[1] as Error).message).not.toContain('gone@example.test');
  });

  it('fails the whole batch alike on a 429 (with Retry-After) or a 5xx, and on a wrong token as configuration', async () => {
    fake.respondNext({ status: 429, headers: { 'retry-after': '7' }, body: { ErrorCode: 429, Message: 'Rate limit exceeded.' } });
    expect(await thrown(sendMany([message(), message()], timeout()))).toMatchObject({ errorClass: 'transient', retryAfterMs: 7000 });
    fake.respondNext({ status: 503, body: { ErrorCode: 0, Message: 'Service unavailable.' } });
    expect(await thrown(sendMany([message(), message()], timeout()))).toMatchObject({ errorClass: 'transient', retryAfterMs: undefined });
    const wrong = createPostmarkChannel({ serverToken: 'wrong-token', apiBase: fake.url, from: FROM });
    const err = await thrown(wrong.sendMany!([message(), message()], timeout()));
    expect(err.errorClass).toBe('configuration');
    expect(err.message).toContain('POSTMARK_SERVER_TOKEN');
    expect(fake.accepted).toHaveLength(0);
  });

  it('fails the whole batch as transient when the signal aborts, without waiting for Postmark', async () => {
    fake.respondNext('hang');
    const started = Date.now();
    const err = await thrown(sendMany([message(), message()], AbortSignal.timeout(300)));
    expect(Date.now() - started).toBeLessThan(2000);
    expect(err).toMatchObject({ errorClass: 'transient', message: 'Postmark did not answer in time' });
  });

  it('sends each message alone when Postmark refuses the batch itself (422 for the request), so no address is blamed for it', async () => {
    fake.respondNext({ status: 422, body: { ErrorCode: 402, Message: 'Received invalid JSON input.' } });
    const msgs = [message(), message()];
    const out = await sendMany(msgs, timeout());
    expect(kinds(out)).toEqual(['sent', 'sent']);
    expect(fake.outcomes).toEqual({ scripted: 1, accepted: 2 });
  });
});
