import CircuitBreaker from 'opossum';
import { coalesced, uncoalesced } from '../channels/coalesce.js';
import { CHANNEL_NAMES, ChannelError, providersOf, ThrottledError, type Channel, type Channels, type OutboundMessage, type SendResult } from '../channels/types.js';
import type { Metrics } from '../observability/metrics.js';

/**
 * One circuit breaker per provider, between the delivery job and the provider's API.
 *
 * When a provider is down, an open breaker makes every send fail fast with a *transient*
 * CircuitOpenError: the delivery records a failed try and is retried once the breaker lets a
 * trial call through. It never turns an outage into a permanent failure, so no alert is dropped.
 * Permanent errors (a bad number, a dead token) say nothing about the provider's health: they
 * pass through unchanged and do not count toward opening the breaker.
 */

export type BreakerOptions = {
  /** Each call's own deadline (an AbortSignal.timeout per call). The breaker's timeout is this plus BREAKER_TIMEOUT_SLACK_MS. */
  timeoutMs: number;
  /** Failure percentage within the rolling window above which the breaker opens. */
  errorThresholdPercentage: number;
  /** How long an open breaker fails fast before it lets one trial call through (half-open). */
  resetTimeoutMs: number;
  /** Calls within the rolling window before the breaker may open at all. */
  volumeThreshold: number;
  /** Length of the rolling statistics window, in ms. */
  rollingCountTimeout: number;
};

/**
 * Alerts are rare, so the window is a minute rather than opossum's 10 s: ten calls in 10 s
 * would only happen at peak times, and the breaker would never open on a quiet outage.
 */
export const DEFAULT_BREAKER_OPTIONS: Readonly<BreakerOptions> = Object.freeze({
  timeoutMs: 15_000,
  errorThresholdPercentage: 50,
  resetTimeoutMs: 30_000,
  volumeThreshold: 10,
  rollingCountTimeout: 60_000,
});

/**
 * opossum's timeout does not cancel the call; the per-call AbortSignal does. The breaker's own
 * timeout is a backstop a little later, for a provider client that ignores the signal.
 */
export const BREAKER_TIMEOUT_SLACK_MS = 1000;

/** Thrown by a wrapped channel while its provider's breaker is open: transient, retry after `retryAfterMs`. */
export class CircuitOpenError extends ChannelError {
  constructor(readonly provider: string, retryAfterMs: number) {
    super(`${provider} circuit open`, 'transient', retryAfterMs);
    this.name = 'CircuitOpenError';
  }
}

/** One call to the provider: a send, or a bulk request (sendMany) that the breaker counts once. */
type Call = () => Promise<unknown>;
export type ProviderBreaker = CircuitBreaker<[Call], unknown>;

export type BreakerState = 'closed' | 'half_open' | 'open';
const STATE_VALUE: Record<BreakerState, number> = { closed: 0, half_open: 1, open: 2 };

/** downSince: when the breaker first opened after being closed (half-open trials that fail keep it). */
type Circuit = { provider: string; breaker: ProviderBreaker; openedAt: number; downSince: number | undefined; resetTimeoutMs: number };

/** The wrapped channel → its provider's circuit, for circuitRetryAfterMs. */
const circuits = new WeakMap<Channel, Circuit>();

function retryAfter(c: Circuit): number {
  if (c.breaker.opened) return Math.max(0, c.openedAt + c.resetTimeoutMs - Date.now());
  // Half-open: one trial call is in flight; its outcome decides. Come back a little later.
  return Math.ceil(c.resetTimeoutMs / 10);
}

/**
 * How long until the breaker of this (wrapped) channel's provider lets a call through again:
 * a number while it is open or half-open, undefined while closed (or for a channel without a
 * breaker). A failed try made while this is defined is an outage, not the delivery's own fault.
 */
export function circuitRetryAfterMs(channel: Channel): number | undefined {
  const c = circuits.get(channel);
  if (c === undefined || c.breaker.closed || c.breaker.isShutdown) return undefined;
  return retryAfter(c);
}

/** How long this (wrapped) channel's provider has been down (open or half-open since it last closed); undefined while closed. */
export function circuitDownForMs(channel: Channel): number | undefined {
  const c = circuits.get(channel);
  if (c === undefined || c.downSince === undefined || c.breaker.closed) return undefined;
  return Date.now() - c.downSince;
}

export function breakerState(breaker: ProviderBreaker): BreakerState {
  if (breaker.opened) return 'open';
  if (breaker.halfOpen) return 'half_open';
  return 'closed';
}

function translate(err: unknown, c: Circuit, breakerTimeoutMs: number): unknown {
  if (err instanceof ChannelError || !(err instanceof Error) || !CircuitBreaker.isOurError(err)) return err;
  const code = (err as Error & { code?: string }).code;
  if (code === 'EOPENBREAKER') return new CircuitOpenError(c.provider, retryAfter(c));
  if (code === 'ETIMEDOUT') return new ChannelError(`${c.provider} did not answer within ${breakerTimeoutMs} ms`, 'transient');
  if (code === 'ESHUTDOWN') return new ChannelError(`${c.provider} circuit breaker is shut down`, 'transient');
  return new ChannelError(`${c.provider} circuit breaker: ${err.message}`, 'transient');
}

/** A permanent error is about one address; a throttle never reached the provider: neither counts. */
const notTheProvidersFault = (err: unknown): boolean => err instanceof ThrottledError || (err instanceof ChannelError && err.errorClass === 'permanent');

/** A bulk request the provider answered with a failure for every message: counted, then its answers returned. */
class RequestFailed extends Error {
  constructor(readonly answers: readonly (SendResult | Error)[]) {
    super('every message of the request failed');
  }
}

export type BreakerSet = {
  /** The same channels, each provider sending through its own breaker. */
  channels: Channels;
  /** provider → breaker; channels that share a provider share one. */
  breakers: Map<string, ProviderBreaker>;
  /** Stops every breaker's timers; later sends fail with a transient ChannelError. Idempotent. */
  shutdown(): void;
};

export function withBreakers(
  channels: Channels, opts: BreakerOptions = DEFAULT_BREAKER_OPTIONS, metrics?: Pick<Metrics, 'breakerState'>,
): BreakerSet {
  const breakerTimeoutMs = opts.timeoutMs + BREAKER_TIMEOUT_SLACK_MS;
  const byProvider = new Map<string, Circuit>();

  const circuitFor = (provider: string): Circuit => {
    const existing = byProvider.get(provider);
    if (existing !== undefined) return existing;
    const breaker: ProviderBreaker = new CircuitBreaker<[Call], unknown>(
      (call) => call(),
      {
        name: provider,
        timeout: breakerTimeoutMs,
        errorThresholdPercentage: opts.errorThresholdPercentage,
        resetTimeout: opts.resetTimeoutMs,
        volumeThreshold: opts.volumeThreshold,
        rollingCountTimeout: opts.rollingCountTimeout,
        // A permanent error is about one address, not about the provider.
        // A throttled send never reached the provider.
        errorFilter: notTheProvidersFault,
      },
    );
    const c: Circuit = { provider, breaker, openedAt: 0, downSince: undefined, resetTimeoutMs: opts.resetTimeoutMs };
    const report = (state: BreakerState) => metrics?.breakerState.set({ provider }, STATE_VALUE[state]);
    breaker.on('open', () => {
      c.openedAt = Date.now();
      c.downSince ??= c.openedAt;
      report('open');
    });
    breaker.on('halfOpen', () => report('half_open'));
    breaker.on('close', () => {
      c.downSince = undefined;
      report('closed');
    });
    report('closed');
    byProvider.set(provider, c);
    return c;
  };

  const wrapped = new Map<Channel, Channel>();
  const wrap = (channel: Channel): Channel => {
    const done = wrapped.get(channel);
    if (done !== undefined) return done;
    const c = circuitFor(channel.provider);
    // A coalesced channel: the breaker goes around the provider's own calls, and the guarded
    // provider is coalesced again, so one bulk request is one call to the breaker (coalesce.ts).
    const provider = uncoalesced(channel) ?? channel;
    const fire = async <T>(call: (signal: AbortSignal) => Promise<T>, signal: AbortSignal): Promise<T> => {
      // The call's own deadline, even when the caller's signal is longer or never fires.
      const callSignal = AbortSignal.any([signal, AbortSignal.timeout(opts.timeoutMs)]);
      try {
        return await c.breaker.fire(() => call(callSignal)) as T;
      } catch (err) {
        throw translate(err, c, breakerTimeoutMs);
      }
    };
    const { sendMany } = provider;
    const guardedProvider: Channel = {
      provider: channel.provider,
      ...(channel.receipts === undefined ? {} : { receipts: channel.receipts }),
      send: (msg: OutboundMessage, signal: AbortSignal) => fire((s) => provider.send(msg, s), signal),
      ...(sendMany === undefined ? {} : {
        // Providers answer a failed request (a 5xx, a timeout) with the same error for each of its
        // messages rather than throw: a request whose every message failed for the provider's
        // reasons is one failure for the breaker, and each message still gets its own answer.
        async sendMany(msgs: readonly OutboundMessage[], signal: AbortSignal) {
          try {
            return await fire(async (s) => {
              const answers = await sendMany.call(provider, msgs, s);
              if (answers.length > 0 && answers.every((a) => a instanceof Error && !notTheProvidersFault(a))) throw new RequestFailed(answers);
              return answers;
            }, signal);
          } catch (err) {
            if (err instanceof RequestFailed) return err.answers;
            throw err;
          }
        },
        ...(provider.maxBatch === undefined ? {} : { maxBatch: provider.maxBatch }),
      }),
    };
    const guarded = provider === channel ? guardedProvider : coalesced(guardedProvider);
    circuits.set(guarded, c);
    wrapped.set(channel, guarded);
    return guarded;
  };

  const out = Object.fromEntries(CHANNEL_NAMES.map((name) => {
    const list = providersOf(channels[name]).map(wrap);
    return [name, list.length === 1 ? list[0]! : list];
  })) as Channels;
  return {
    channels: out,
    breakers: new Map([...byProvider].map(([provider, c]) => [provider, c.breaker])),
    shutdown: () => {
      for (const c of byProvider.values()) if (!c.breaker.isShutdown) c.breaker.shutdown();
    },
  };
}
