import { afterAll, beforeAll, beforeEach, describe, expect, it } from '@jest/globals';
import { randomUUID } from 'node:crypto';
import { coalesced } from '../../src/channels/coalesce.js';
import { createSendGridChannel } from '../../src/channels/email-sendgrid/index.js';
import { createPostmarkChannel } from '../../src/channels/email-postmark/index.js';
import { ChannelError, type Channel, type OutboundMessage, type SendResult } from '../../src/channels/types.js';
import { withBreakers, type BreakerOptions } from '../../src/delivery/breaker.js';
import { startFakePostmark, type FakePostmark } from '../fakes/postmark.js';
import { startFakeSendGrid, type FakeSendGrid } from '../fakes/sendgrid.js';

/** coalesced(channel): the sends of one event-loop turn as one bulk call, each caller answered on its own. */

let n = 0;
const message = (extra: Partial<OutboundMessage> = {}): OutboundMessage => {
  n += 1;
  return {
    deliveryId: randomUUID(), channel: 'email', to: `c${n}@example.test`, subject: `Alert ${n}`, body: `Body ${n}`, html: null,
    kind: 'alert', incidentId: null, ...extra,
  };
};
const timeout = (ms = 5000) => AbortSignal.timeout(ms);

/** A provider that records its calls; `answer` decides each message's outcome in a bulk call. */
function stub(opts: { maxBatch?: number; answer?: (m: OutboundMessage) => SendResult | Error; failRequest?: () => Error | undefined } = {}) {
  const calls: { kind: 'send' | 'sendMany'; ids: string[]; signal: AbortSignal }[] = [];
  const answer = opts.answer ?? ((m: OutboundMessage) => ({ provider: 'stub', providerMessageId: `id-${m.deliveryId}` }));
  const channel: Channel = {
    provider: 'stub',
    receipts: false,
    maxBatch: opts.maxBatch ?? 100,
    async send(msg, signal) {
      calls.push({ kind: 'send', ids: [msg.deliveryId], signal });
      signal.throwIfAborted();
      const a = answer(msg);
      if (a instanceof Error) throw a;
      return a;
    },
    async sendMany(msgs, signal) {
      calls.push({ kind: 'sendMany', ids: msgs.map((m) => m.deliveryId), signal });
      await new Promise((r) => setTimeout(r, 5));
      const whole = opts.failRequest?.();
      if (whole !== undefined) throw whole;
      return msgs.map(answer);
    },
  };
  return { channel, calls };
}

describe('coalesced(channel)', () => {
  it('leaves a channel without a bulk call as it is', () => {
    const plain: Channel = { provider: 'plain', send: async () => ({ provider: 'plain', providerMessageId: 'x' }) };
    expect(coalesced(plain)).toBe(plain);
  });

  it('sends a lone message with the plain send', async () => {
    const s = stub();
    const c = coalesced(s.channel);
    const msg = message();
    await expect(c.send(msg, timeout())).resolves.toEqual({ provider: 'stub', providerMessageId: `id-${msg.deliveryId}` });
    expect(s.calls.map((x) => x.kind)).toEqual(['send']);
    expect(c).toMatchObject({ provider: 'stub', receipts: false });
  });

  it('sends the messages of one turn in one bulk call, in order, each caller getting its own answer', async () => {
    const s = stub();
    const c = coalesced(s.channel);
    const msgs = [message(), message(), message(), message()];
    const out = await Promise.all(msgs.map((m) => c.send(m, timeout())));
    expect(s.calls).toEqual([{ kind: 'sendMany', ids: msgs.map((m) => m.deliveryId), signal: expect.any(AbortSignal) }]);
    expect(out).toEqual(msgs.map((m) => ({ provider: 'stub', providerMessageId: `id-${m.deliveryId}` })));
    // A later turn is a call of its own.
    await c.send(message(), timeout());
    expect(s.calls.map((x) => x.kind)).toEqual(['sendMany', 'send']);
  });

  it('never gives the provider more than maxBatch messages in one call', async () => {
    const s = stub({ maxBatch: 2 });
    const c = coalesced(s.channel);
    await Promise.all([message(), message(), message(), message(), message()].map((m) => c.send(m, timeout())));
    expect(s.calls.map((x) => [x.kind, x.ids.length])).toEqual([['sendMany', 2], ['sendMany', 2], ['send', 1]]);
  });

  it('rejects only the caller whose message was refused, with its own error', async () => {
    const bad = message();
    const refused = new ChannelError('bad address', 'permanent', undefined, 'invalid address');
    const s = stub({ answer: (m) => (m.deliveryId === bad.deliveryId ? refused : { provider: 'stub', providerMessageId: m.deliveryId }) });
    const c = coalesced(s.channel);
    const out = await Promise.allSettled([message(), bad, message()].map((m) => c.send(m, timeout())));
    expect(out.map((o) => o.status)).toEqual(['fulfilled', 'rejected', 'fulfilled']);
    expect((out[1] as PromiseRejectedResult).reason).toBe(refused);
  });

  it('rejects every caller alike when the request as a whole fails', async () => {
    const down = new ChannelError('provider answered 503', 'transient', 2000);
    const s = stub({ failRequest: () => down });
    const c = coalesced(s.channel);
    const out = await Promise.allSettled([message(), message(), message()].map((m) => c.send(m, timeout())));
    for (const o of out) expect(o).toEqual({ status: 'rejected', reason: down });
  });

  it('cuts a bulk call short at the first of its messages’ deadlines, and keeps an already aborted message out of it', async () => {
    const s = stub();
    const c = coalesced(s.channel);
    const early = new AbortController();
    const gone = new AbortController();
    gone.abort();
    const out = await Promise.allSettled([
      c.send(message(), timeout()), c.send(message(), early.signal), c.send(message(), gone.signal), c.send(message(), timeout()),
    ]);
    const bulk = s.calls.find((x) => x.kind === 'sendMany')!;
    expect(bulk.ids).toHaveLength(3);
    expect(bulk.signal.aborted).toBe(false);
    early.abort();
    expect(bulk.signal.aborted).toBe(true);
    // The aborted one went through the plain send, which refused it without calling the provider's bulk call.
    expect(s.calls.filter((x) => x.kind === 'send')).toHaveLength(1);
    expect(out.map((o) => o.status)).toEqual(['fulfilled', 'fulfilled', 'rejected', 'fulfilled']);
  });
});

describe('circuit breakers over a coalesced channel', () => {
  const opts: BreakerOptions = { timeoutMs: 2000, errorThresholdPercentage: 50, resetTimeoutMs: 60_000, volumeThreshold: 3, rollingCountTimeout: 60_000 };

  it('count one call per provider request: a failed bulk request counts once however many messages it carried, refused addresses not at all', async () => {
    let failing = false;
    const bad = new Set<string>();
    const s = stub({
      failRequest: () => (failing ? new ChannelError('503', 'transient') : undefined),
      answer: (m) => (bad.has(m.deliveryId) ? new ChannelError('bad address', 'permanent') : { provider: 'stub', providerMessageId: m.deliveryId }),
    });
    const set = withBreakers({ push: coalesced(s.channel), sms: coalesced(s.channel), email: coalesced(s.channel) }, opts);
    try {
      const email = set.channels.email as Channel;
      const breaker = set.breakers.get('stub')!;
      const msgs = [message(), message(), message(), message()];
      for (const m of msgs.slice(0, 3)) bad.add(m.deliveryId);
      const first = await Promise.allSettled(msgs.map((m) => email.send(m, timeout())));
      // One request that the provider answered: one call, no failure; each refused address is its message's own error.
      expect(first.map((o) => o.status)).toEqual(['rejected', 'rejected', 'rejected', 'fulfilled']);
      expect(breaker.stats).toMatchObject({ fires: 1, failures: 0 });

      failing = true;
      const out = await Promise.allSettled([message(), message(), message(), message(), message()].map((m) => email.send(m, timeout())));
      for (const o of out) expect(o.status).toBe('rejected');
      expect(s.calls.at(-1)).toMatchObject({ kind: 'sendMany', ids: expect.any(Array) });
      expect(s.calls.at(-1)!.ids).toHaveLength(5);
      // Five messages, one failed request: one failure (counted per message it opened the breaker here).
      expect(breaker.stats).toMatchObject({ fires: 2, failures: 1 });
      expect(breaker.closed).toBe(true);
      // The provider stays down: the next failed request (2 of 3 calls) opens it.
      await Promise.allSettled([message(), message()].map((m) => email.send(m, timeout())));
      expect(breaker.stats).toMatchObject({ fires: 3, failures: 2 });
      expect(breaker.opened).toBe(true);
    } finally {
      set.shutdown();
    }
  });
});

describe('coalesced providers against their fakes', () => {
  let sendgrid: FakeSendGrid;
  let postmark: FakePostmark;
  beforeAll(async () => {
    sendgrid = await startFakeSendGrid();
    postmark = await startFakePostmark();
  });
  beforeEach(() => {
    sendgrid.reset();
    postmark.reset();
  });
  afterAll(async () => {
    await sendgrid.close();
    await postmark.close();
  });

  it('SendGrid: N concurrent sends are one request; a lone send is a plain one', async () => {
    const c = coalesced(createSendGridChannel({ apiKey: sendgrid.apiKey, baseUrl: sendgrid.url, from: { email: 'alerts@pruuf.test', name: 'Pruuf' } }));
    const msgs = Array.from({ length: 25 }, () => message());
    const out = await Promise.all(msgs.map((m) => c.send(m, timeout())));
    expect(sendgrid.requests).toEqual([{ messageId: expect.any(String), personalizations: 25 }]);
    for (const [i, m] of msgs.entries()) {
      expect(sendgrid.acceptedFor(m.deliveryId)).toHaveLength(1);
      expect(out[i]).toEqual({ provider: 'sendgrid', providerMessageId: sendgrid.requests[0]!.messageId });
    }
    await c.send(message(), timeout());
    expect(sendgrid.requests.map((r) => r.personalizations)).toEqual([25, 1]);
    expect(sendgrid.accepted.at(-1)!.body.personalizations).toHaveLength(1);
    expect(sendgrid.accepted.at(-1)!.body.content).toEqual([{ type: 'text/plain', value: expect.stringMatching(/^Body /) }]);
  });

  it('Postmark: N concurrent sends are one batch request; a lone send goes to /email', async () => {
    const c = coalesced(createPostmarkChannel({ serverToken: postmark.serverToken, apiBase: postmark.url, from: { email: 'alerts@pruuf.test', name: 'Pruuf' } }));
    const bad = message({ to: 'nope' });
    const msgs = [message(), bad, message()];
    const out = await Promise.allSettled(msgs.map((m) => c.send(m, timeout())));
    expect(out.map((o) => o.status)).toEqual(['fulfilled', 'rejected', 'fulfilled']);
    expect((out[1] as PromiseRejectedResult).reason).toMatchObject({ errorClass: 'permanent', deadAddress: expect.stringMatching(/^invalid address/) });
    expect(postmark.outcomes).toEqual({ accepted: 1 });
    expect(postmark.accepted.map((m) => m.viaBatch)).toEqual([true, true]);
    await c.send(message(), timeout());
    expect(postmark.outcomes).toEqual({ accepted: 2 });
    expect(postmark.accepted.map((m) => m.viaBatch)).toEqual([true, true, false]);
  });
});
