import { setMaxListeners } from 'node:events';
import { Batcher } from '../batcher.js';
import { ChannelError, type Channel, type OutboundMessage, type SendResult } from './types.js';

/**
 * A provider's sends of one event-loop turn, combined into its bulk call (issue 19).
 *
 * Every delivery keeps calling `send(msg, signal)` for its own message and gets its own answer:
 * its SendResult, or the error for that message alone. Underneath, the sends that arrive before
 * the next macrotask go out together: a lone message through the provider's plain `send`, several
 * through `sendMany` in chunks of at most `maxBatch` (see Batcher).
 *
 * Signals: a bulk request carries many deliveries' deadlines. It is cut short by the first of
 * them (AbortSignal.any): the deliveries of one turn were started together with the same send
 * timeout, so their deadlines are all but equal, and a request never runs on for a message whose
 * caller has already given up on it (that message would be retried, and sent twice). A message
 * whose signal is already aborted when the batch leaves does not join it: it goes through
 * `send`, which gives the provider's own "aborted" error without calling the provider.
 *
 * Circuit breakers (delivery/breaker.ts) go underneath, around the provider's own `send` and
 * `sendMany` (withBreakers takes the provider out with `uncoalesced` and coalesces its guarded
 * channel again): a bulk request is ONE call to its breaker, failed or not, as the provider saw it.
 * (Counted per message, one failed request of 50 weighed like 50 failures and opened the breaker
 * for everyone's email on a single 500 in a burst.) A message refused for its address inside a
 * request that succeeded is that message's permanent error, never the breaker's.
 */

const RAW = Symbol('uncoalesced');

/** The provider channel a coalesced channel sends through (undefined: not coalesced). */
export function uncoalesced(channel: Channel): Channel | undefined {
  return (channel as Channel & { [RAW]?: Channel })[RAW];
}

type Pending = { msg: OutboundMessage; signal: AbortSignal };

/** Anything a send threw, as an Error for that message alone (not an Error: transient, as deliver.ts treats it). */
const asError = (err: unknown): Error => (err instanceof Error ? err : new ChannelError(String(err), 'transient'));

export function coalesced(channel: Channel): Channel {
  const { sendMany } = channel;
  if (sendMany === undefined) return channel;
  const max = channel.maxBatch ?? 1;
  if (max <= 1) return channel;

  const one = (p: Pending): Promise<SendResult | Error> => channel.send(p.msg, p.signal).catch(asError);

  const batcher = new Batcher<Pending, SendResult>(async (items) => {
    // A lone message: the plain send, its outcome (whatever it threw) exactly as without batching.
    if (items.length === 1) return [await channel.send(items[0]!.msg, items[0]!.signal)];
    const out: (SendResult | Error)[] = new Array(items.length);
    const live: number[] = [];
    const early: Promise<void>[] = [];
    items.forEach((p, i) => {
      if (p.signal.aborted) early.push(one(p).then((r) => { out[i] = r; }));
      else live.push(i);
    });
    if (live.length === 1) {
      out[live[0]!] = await one(items[live[0]!]!);
    } else if (live.length > 1) {
      const signal = AbortSignal.any(live.map((i) => items[i]!.signal));
      // A bulk call listens on it once per message inside (FCM: each delivery's own deadline watch).
      setMaxListeners(0, signal);
      let answers: readonly (SendResult | Error)[];
      try {
        answers = await sendMany.call(channel, live.map((i) => items[i]!.msg), signal);
        if (answers.length !== live.length) throw new ChannelError(`${channel.provider}: a batch of ${live.length} got ${answers.length} answers`, 'transient');
      } catch (err) {
        // The request as a whole failed: every message of it, alike.
        const e = asError(err);
        answers = live.map(() => e);
      }
      answers.forEach((a, k) => { out[live[k]!] = a; });
    }
    await Promise.all(early);
    return out;
  }, max);

  const out: Channel & { [RAW]: Channel } = {
    provider: channel.provider,
    ...(channel.receipts === undefined ? {} : { receipts: channel.receipts }),
    send: (msg, signal) => batcher.run({ msg, signal }),
    [RAW]: channel,
  };
  return out;
}
