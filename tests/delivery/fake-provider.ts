import { createDevOutboxChannel } from '../../src/channels/dev-outbox/index.js';
import { ChannelError, type Channel, type Channels, type OutboundMessage } from '../../src/channels/types.js';
import type { Queryable } from '../../src/db/pool.js';

/**
 * A fake provider with "magic addresses", like a provider's test numbers. It fails as the
 * address asks, then hands the message to the real dev outbox:
 *   permanent@…         a permanent error, quoting the address as real providers do
 *   transient-<n>@…     a transient error on the first n tries
 *   crash-<n>@…         a plain Error (unclassified) on the first n tries
 *   anything else       accepted
 */
export type FakeProvider = { channels: Channels; calls: (deliveryId: string) => number };

export function createFakeProvider(pool: Queryable): FakeProvider {
  const outbox = createDevOutboxChannel(pool);
  const calls = new Map<string, number>();
  const channel: Channel = {
    provider: 'fake',
    async send(msg: OutboundMessage, signal: AbortSignal) {
      const n = (calls.get(msg.deliveryId) ?? 0) + 1;
      calls.set(msg.deliveryId, n);
      if (msg.to.startsWith('permanent@')) throw new ChannelError(`${msg.to} does not exist`, 'permanent');
      const transient = /^transient-(\d+)@/.exec(msg.to);
      if (transient !== null && n <= Number(transient[1])) throw new ChannelError('upstream 503', 'transient');
      const crash = /^crash-(\d+)@/.exec(msg.to);
      if (crash !== null && n <= Number(crash[1])) throw new Error('socket hang up');
      return outbox.send(msg, signal);
    },
  };
  return { channels: { push: channel, sms: channel, email: channel }, calls: (id) => calls.get(id) ?? 0 };
}

export async function waitFor<T>(fn: () => Promise<T | undefined>, timeoutMs = 15_000): Promise<T> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > until) throw new Error('timed out waiting');
    await new Promise((r) => setTimeout(r, 25));
  }
}

/**
 * A provider that is up or down as the test says: while down, every send fails with a
 * transient error (a 503), like a provider outage. `calls` counts the sends that reached it.
 */
export type OutageProvider = FakeProvider & { setDown: (down: boolean) => void; accepted: (deliveryId: string) => number };

export function createOutageProvider(pool: Queryable, provider = 'flaky'): OutageProvider {
  const outbox = createDevOutboxChannel(pool);
  const calls = new Map<string, number>();
  const accepted = new Map<string, number>();
  let down = false;
  const channel: Channel = {
    provider,
    async send(msg: OutboundMessage, signal: AbortSignal) {
      calls.set(msg.deliveryId, (calls.get(msg.deliveryId) ?? 0) + 1);
      if (down) throw new ChannelError(`${provider} upstream 503`, 'transient');
      const result = await outbox.send(msg, signal);
      accepted.set(msg.deliveryId, (accepted.get(msg.deliveryId) ?? 0) + 1);
      return { ...result, provider };
    },
  };
  return {
    channels: { push: channel, sms: channel, email: channel },
    calls: (id) => calls.get(id) ?? 0,
    accepted: (id) => accepted.get(id) ?? 0,
    setDown: (d) => { down = d; },
  };
}
