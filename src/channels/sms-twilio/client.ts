import { AsyncLocalStorage } from 'node:async_hooks';
import twilio from 'twilio';
import type RequestClient from 'twilio/lib/base/RequestClient.js';
import type * as HttpResponse from 'twilio/lib/http/response.js';

/**
 * The Twilio SDK's own HTTP client (axios underneath), taught two things it lacks:
 *  - a different API origin (TWILIO_API_BASE: a proxy, or the local fake in tests), because the
 *    SDK builds absolute https://api.twilio.com URLs itself;
 *  - a per-call AbortSignal and the response headers of an error (Retry-After), which the SDK's
 *    request/exception path drops. Both travel in an AsyncLocalStorage scope opened by `call`,
 *    so concurrent sends never see each other's signal or headers.
 */

type CallScope = { signal: AbortSignal; headers?: Record<string, unknown> | undefined; status?: number | undefined };

const TWILIO_ORIGIN = /^https:\/\/[a-z0-9.-]+\.twilio\.com(?=\/|$)/i;

export class TwilioHttpClient extends twilio.RequestClient {
  private readonly scope = new AsyncLocalStorage<CallScope>();
  private readonly base: string | undefined;

  constructor(opts: { apiBase?: string | undefined; timeoutMs: number }) {
    // The SDK's own 429 auto-retry would sleep inside a delivery job; Retry-After goes back to the queue instead.
    super({ timeout: opts.timeoutMs, autoRetry: false, keepAlive: true });
    this.base = opts.apiBase?.replace(/\/+$/, '');
    this.axios.interceptors.request.use((config) => {
      const signal = this.scope.getStore()?.signal;
      if (signal !== undefined) config.signal = signal;
      return config;
    });
  }

  override async request<TData>(opts: RequestClient.RequestOptions<TData>): Promise<HttpResponse.default<TData>> {
    const uri = this.base === undefined ? opts.uri : opts.uri.replace(TWILIO_ORIGIN, this.base);
    const res = await super.request({ ...opts, uri });
    const store = this.scope.getStore();
    if (store !== undefined) {
      store.status = res.statusCode;
      store.headers = res.headers as Record<string, unknown> | undefined;
    }
    return res;
  }

  /**
   * Runs one SDK call under `signal`. On failure the error comes back together with the HTTP
   * status and headers of the response that caused it (none for a network failure).
   */
  async call<T>(signal: AbortSignal, fn: () => Promise<T>): Promise<T> {
    const store: CallScope = { signal };
    signal.throwIfAborted();
    // The SDK call itself may not notice an abort between its steps; the race answers on time regardless.
    let onAbort: (() => void) | undefined;
    const aborted = new Promise<never>((_, reject) => {
      onAbort = () => reject(signal.reason instanceof Error ? signal.reason : new DOMException('aborted', 'AbortError'));
      signal.addEventListener('abort', onAbort, { once: true });
    });
    try {
      return await Promise.race([this.scope.run(store, fn), aborted]);
    } catch (err) {
      throw new TwilioCallError(err, store.status, store.headers);
    } finally {
      if (onAbort !== undefined) signal.removeEventListener('abort', onAbort);
    }
  }
}

/** A failed SDK call with what the response said beyond the SDK's exception. */
export class TwilioCallError extends Error {
  constructor(readonly original: unknown, readonly httpStatus: number | undefined, readonly headers: Record<string, unknown> | undefined) {
    super(original instanceof Error ? original.message : String(original));
    this.name = 'TwilioCallError';
  }

  header(name: string): string | undefined {
    const v = this.headers?.[name.toLowerCase()];
    return typeof v === 'string' ? v : Array.isArray(v) && typeof v[0] === 'string' ? v[0] : undefined;
  }
}
