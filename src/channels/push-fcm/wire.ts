import { AsyncLocalStorage } from 'node:async_hooks';
import type { ClientRequest, IncomingMessage } from 'node:http';
import https from 'node:https';
import type { Duplex } from 'node:stream';

/**
 * What one FCM call saw on the wire, and the means to cut it short.
 *
 * firebase-admin 13 gives neither: its FirebaseMessagingError keeps only a code and a message
 * (no HTTP status, no Retry-After, no error details), and its HTTP client takes no AbortSignal
 * (it retries 503s and connection resets on its own, for up to a minute). So the channel's own
 * agent watches every request the SDK makes inside a call: the call is found through
 * AsyncLocalStorage, because Node calls `agent.addRequest` synchronously from the ClientRequest
 * constructor, inside the SDK promise chain that the call started.
 */

/** One HTTP response the SDK received. `errorCode`: the FcmError detail, else the Google status. */
export type WireResponse = { status: number; retryAfterMs?: number; errorCode?: string };

/** Error bodies are small JSON documents; anything longer is not worth reading. */
const MAX_ERROR_BODY_BYTES = 16 * 1024;

const FCM_ERROR_TYPE = 'type.googleapis.com/google.firebase.fcm.v1.FcmError';

export function parseRetryAfterMs(value: string | undefined, now = Date.now()): number | undefined {
  if (value === undefined || value.trim() === '') return undefined;
  if (/^\d+$/.test(value.trim())) return Number(value.trim()) * 1000;
  const at = Date.parse(value);
  return Number.isNaN(at) ? undefined : Math.max(0, at - now);
}

export function googleErrorCode(body: string): string | undefined {
  try {
    const error = (JSON.parse(body) as { error?: { status?: unknown; details?: unknown } }).error;
    if (error === undefined || error === null) return undefined;
    if (Array.isArray(error.details)) {
      for (const d of error.details as Array<{ '@type'?: unknown; errorCode?: unknown }>) {
        if (d?.['@type'] === FCM_ERROR_TYPE && typeof d.errorCode === 'string') return d.errorCode;
      }
    }
    return typeof error.status === 'string' ? error.status : undefined;
  } catch {
    return undefined;
  }
}

export class CallWire {
  readonly responses: WireResponse[] = [];
  private readonly live = new Set<ClientRequest>();
  private stopped: Error | undefined;

  /** Every request of this call, now and later (the SDK's own retries), fails with `reason`. */
  abort(reason: Error): void {
    this.stopped = reason;
    for (const req of this.live) req.destroy(reason);
    this.live.clear();
  }

  /** The longest Retry-After the provider asked for in this call. */
  retryAfterMs(): number | undefined {
    const waits = this.responses.map((r) => r.retryAfterMs).filter((ms): ms is number => ms !== undefined);
    return waits.length === 0 ? undefined : Math.max(...waits);
  }

  /** The provider answered with this error code (FcmError detail or Google status) at least once. */
  saw(errorCode: string): boolean {
    return this.responses.some((r) => r.errorCode === errorCode);
  }

  track(req: ClientRequest): void {
    if (this.stopped !== undefined) {
      req.destroy(this.stopped);
      return;
    }
    this.live.add(req);
    req.once('close', () => this.live.delete(req));
    // Registered after the SDK's own response callback, so the SDK reads the body as usual.
    req.once('response', (res: IncomingMessage) => this.observe(res));
  }

  private observe(res: IncomingMessage): void {
    const seen: WireResponse = { status: res.statusCode ?? 0 };
    const retryAfter = res.headers['retry-after'];
    const retryAfterMs = parseRetryAfterMs(Array.isArray(retryAfter) ? retryAfter[0] : retryAfter);
    if (retryAfterMs !== undefined) seen.retryAfterMs = retryAfterMs;
    this.responses.push(seen);
    if (seen.status < 400) return;
    const chunks: Buffer[] = [];
    let size = 0;
    res.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size <= MAX_ERROR_BODY_BYTES) chunks.push(chunk);
    });
    // Runs in the same 'end' emit as the SDK's handler, before its promise continuations.
    res.on('end', () => {
      const code = size <= MAX_ERROR_BODY_BYTES ? googleErrorCode(Buffer.concat(chunks).toString('utf8')) : undefined;
      if (code !== undefined) seen.errorCode = code;
    });
  }
}

const calls = new AsyncLocalStorage<CallWire>();

/** Runs `fn` (which makes the SDK call) with `wire` watching the requests it makes through an FcmAgent. */
export function withWire<T>(wire: CallWire, fn: () => Promise<T>): Promise<T> {
  return calls.run(wire, fn);
}

type AgentInternals = { addRequest(this: https.Agent, req: ClientRequest, options: unknown): void };

/**
 * The HTTP/1.1 agent of one FCM channel: keep-alive TLS to fcm.googleapis.com, or, when
 * `connect` is given (tests, benchmarks), a plain connection to a local fake that speaks the
 * FCM v1 wire format. It stays an https.Agent because the SDK builds `https:` requests.
 */
export class FcmAgent extends https.Agent {
  constructor(private readonly connect?: () => Duplex) {
    super({ keepAlive: true, maxSockets: 64 });
  }

  override createConnection(...args: Parameters<https.Agent['createConnection']>): ReturnType<https.Agent['createConnection']> {
    return this.connect === undefined ? super.createConnection(...args) : this.connect();
  }

  addRequest(req: ClientRequest, options: unknown): void {
    calls.getStore()?.track(req);
    (https.Agent.prototype as unknown as AgentInternals).addRequest.call(this, req, options);
  }
}
