import { Errors, Models, ServerClient } from 'postmark';
import type { Config } from '../../config.js';
import { maskAddress, type Logger } from '../../observability/logger.js';
import { ChannelError, type Channel, type OutboundMessage, type SendResult } from '../types.js';

/**
 * Email through Postmark's Email API with its official SDK (`postmark`, ServerClient.sendEmail).
 * A 200 means Postmark accepted the message; what happened next arrives later on the webhook
 * (webhook.ts), matched by the delivery id we put in Metadata.
 *
 * Error table (the SDK throws a PostmarkError with `statusCode` and Postmark's `code`):
 *   200                                   accepted; MessageID is the provider message id
 *   429                                   transient, waits Retry-After (or a second) without spending an attempt
 *   408, 5xx, timeout, reset, refused     transient (a 5xx's Retry-After is honoured too)
 *   401 / code 10                         configuration (POSTMARK_SERVER_TOKEN wrong or revoked)
 *   404                                   configuration (POSTMARK_API_BASE points somewhere wrong)
 *   422 code 406 (inactive recipient)     permanent, and the address is dead (email off for the contact)
 *   422 code 300 about the To address     permanent, and the address is dead
 *   422 code 300 about the From address  configuration (POSTMARK_FROM_EMAIL)
 *   422 code 400, 401 (sender signature)  configuration (POSTMARK_FROM_EMAIL is not a confirmed sender signature)
 *   422 code 405, 412, 413 (account)      configuration (the account may not send: credits, approval)
 *   422 about the message stream          configuration (POSTMARK_MESSAGE_STREAM)
 *   other 4xx / 422                       permanent
 *
 * Bulk (sendMany, issue 19): up to 500 messages in one POST /email/batch (the SDK's
 * sendEmailBatch), each the message `send` would send. Postmark answers 200 with one result per
 * message, in order, and takes or refuses each on its own: a non-zero ErrorCode is classified
 * for that message alone exactly as a 422 with that code from `send` (406 inactive recipient, 300
 * about the To address: the address is dead). A failure of the request itself (401, 404, 429,
 * 5xx, a 422 for the batch, no answer) is every message's, classified as `send` would.
 */

export const POSTMARK_PROVIDER = 'postmark';

export type PostmarkChannelOptions = {
  serverToken: string;
  /** POSTMARK_API_BASE: a proxy or a local fake; default Postmark's own host over HTTPS. */
  apiBase?: string | undefined;
  /** A confirmed sender signature (or an address on a verified domain). */
  from: { email: string; name: string };
  /** POSTMARK_MESSAGE_STREAM: a transactional stream; default 'outbound'. */
  messageStream?: string;
  /** The SDK's own deadline for one call, a backstop behind the caller's signal. */
  timeoutMs?: number;
  log?: Logger | undefined;
};

/** A 429 without a usable Retry-After still says "not now": this long, without spending an attempt. */
export const DEFAULT_RATE_LIMIT_WAIT_MS = 1000;
/** A Retry-After of 0 (or a date in the past) still waits a little rather than hammering a limit. */
export const MIN_RETRY_AFTER_MS = 500;
/** A Retry-After far ahead is retried after this, so an alert is never parked for hours. */
export const MAX_RETRY_AFTER_MS = 10 * 60_000;
export const DEFAULT_POSTMARK_TIMEOUT_MS = 30_000;
export const DEFAULT_MESSAGE_STREAM = 'outbound';

/** Postmark's API error codes that we tell apart (https://postmarkapp.com/developer/api/overview#error-codes). */
export const POSTMARK_ERROR_CODES = {
  badToken: 10,
  invalidEmailRequest: 300,
  senderSignatureNotFound: 400,
  senderSignatureNotConfirmed: 401,
  notAllowedToSend: 405,
  inactiveRecipient: 406,
  accountPending: 412,
  accountMayNotSend: 413,
} as const;

const SENDER_CODES = new Set<number>([POSTMARK_ERROR_CODES.senderSignatureNotFound, POSTMARK_ERROR_CODES.senderSignatureNotConfirmed]);
const ACCOUNT_CODES = new Set<number>([POSTMARK_ERROR_CODES.notAllowedToSend, POSTMARK_ERROR_CODES.accountPending, POSTMARK_ERROR_CODES.accountMayNotSend]);

const EMAIL_LIKE = /[^\s<>'"(),;:]+@[^\s<>'"(),;:]+[^\s<>'"(),;:.]/g;

/** Postmark's own words, one line, short, with the recipient and every address in them masked. */
function said(message: string, to?: string): string {
  const text = to === undefined || to === '' ? message : message.split(to).join(maskAddress(to));
  return text.replace(EMAIL_LIKE, (a) => (a.includes('***@') ? a : maskAddress(a))).replace(/\s+/g, ' ').trim().slice(0, 300);
}

/** Retry-After in seconds or as an HTTP date, clamped; undefined when absent or unreadable. */
export function retryAfterMs(value: string | null | undefined, nowMs: number): number | undefined {
  if (value === null || value === undefined || value.trim() === '') return undefined;
  const clamp = (ms: number) => Math.min(MAX_RETRY_AFTER_MS, Math.max(MIN_RETRY_AFTER_MS, Math.round(ms)));
  const seconds = Number(value);
  if (Number.isFinite(seconds) && seconds >= 0) return clamp(seconds * 1000);
  const at = Date.parse(value);
  return Number.isFinite(at) ? clamp(at - nowMs) : undefined;
}

/** Whether a code-300 message is about the recipient ("Invalid 'To' address", "Error parsing 'To'"). */
const ABOUT_TO = /'To'|\bTo\b address|recipient/i;
const ABOUT_FROM = /'From'|\bFrom\b address/i;

/**
 * Postmark's answer (or the lack of one) as a ChannelError; anything else is returned as it is.
 * `answer` is what the transport saw: the failing answer's Retry-After header (the SDK drops
 * headers from its errors) or the network error's code (the SDK keeps only its message).
 */
export function classifyPostmarkError(
  err: unknown, signal: AbortSignal, nowMs: number, answer: { retryAfter?: string | null; transportError?: string; to?: string } = {},
): unknown {
  const { retryAfter, transportError, to } = answer;
  if (signal.aborted) {
    const timedOut = (signal.reason as { name?: unknown } | undefined)?.name === 'TimeoutError';
    return new ChannelError(timedOut ? 'Postmark did not answer in time' : 'Postmark call aborted', 'transient');
  }
  if (!(err instanceof Errors.PostmarkError)) return err;
  const status = err.statusCode;
  const code = err.code;
  if (status === 0) {
    // No answer at all: refused, reset, DNS, or the SDK's own timeout (TimeoutError).
    return new ChannelError(`Postmark unreachable: ${transportError ?? said(err.message)}`, 'transient');
  }
  const text = `Postmark answered ${status}${code === 0 ? '' : ` (ErrorCode ${code})`}: ${said(err.message, to)}`;
  if (status === 429) return new ChannelError(text, 'transient', retryAfterMs(retryAfter, nowMs) ?? DEFAULT_RATE_LIMIT_WAIT_MS);
  if (status === 408 || status >= 500) return new ChannelError(text, 'transient', retryAfterMs(retryAfter, nowMs));
  if (status === 401 || code === POSTMARK_ERROR_CODES.badToken) return new ChannelError(`${text} (check POSTMARK_SERVER_TOKEN)`, 'configuration');
  if (status === 404) return new ChannelError(`${text} (check POSTMARK_API_BASE)`, 'configuration');
  if (code === POSTMARK_ERROR_CODES.inactiveRecipient) {
    return new ChannelError(text, 'permanent', undefined,
      'inactive recipient: Postmark stopped sending to this address after a hard bounce, a spam complaint or a manual suppression');
  }
  if (code === POSTMARK_ERROR_CODES.invalidEmailRequest) {
    if (ABOUT_TO.test(err.message)) return new ChannelError(text, 'permanent', undefined, `invalid address: ${said(err.message, to)}`.slice(0, 200));
    if (ABOUT_FROM.test(err.message)) return new ChannelError(`${text} (check POSTMARK_FROM_EMAIL)`, 'configuration');
    return new ChannelError(text, 'permanent');
  }
  if (SENDER_CODES.has(code)) return new ChannelError(`${text} (POSTMARK_FROM_EMAIL must be a confirmed sender signature)`, 'configuration');
  if (ACCOUNT_CODES.has(code)) return new ChannelError(`${text} (the Postmark account may not send)`, 'configuration');
  if (/message ?stream/i.test(err.message)) return new ChannelError(`${text} (check POSTMARK_MESSAGE_STREAM)`, 'configuration');
  return new ChannelError(text, 'permanent');
}

/** POSTMARK_API_BASE as the SDK's `useHttps` + `requestHost` (host, port and any path prefix). */
export function sdkHostOptions(apiBase: string | undefined): { useHttps: boolean; requestHost: string } | Record<string, never> {
  if (apiBase === undefined) return {};
  const url = new URL(apiBase);
  return { useHttps: url.protocol === 'https:', requestHost: `${url.host}${url.pathname.replace(/\/+$/, '')}` };
}

type Seen = { retryAfter: string | null; transportError?: string };

/**
 * The SDK's transport with the caller's signal added: an aborted send really ends the request
 * (the SDK's own timeout signal stays in force), and the failing answer's Retry-After is kept.
 * The SDK still builds, sends and reads every request itself.
 */
function fetchWith(signal: AbortSignal, seen: Seen): (input: Parameters<typeof fetch>[0], init?: RequestInit) => Promise<Response> {
  return async (input, init) => {
    const signals = init?.signal ? [init.signal, signal] : [signal];
    try {
      const res = await fetch(input, { ...init, signal: AbortSignal.any(signals) });
      seen.retryAfter = res.headers.get('retry-after');
      return res;
    } catch (err) {
      // The SDK keeps only the message ("fetch failed"); the cause says what happened.
      const e = err as { name?: unknown; cause?: { code?: unknown } };
      const code = e.cause?.code ?? e.name;
      if (typeof code === 'string') seen.transportError = code;
      throw err;
    }
  };
}

/** Rejects as soon as the signal aborts, whatever the call it races is doing. */
function abortion(signal: AbortSignal): { promise: Promise<never>; done: () => void } {
  let onAbort: () => void = () => undefined;
  const promise = new Promise<never>((_resolve, reject) => {
    onAbort = () => reject(signal.reason instanceof Error ? signal.reason : new Error('aborted'));
    signal.addEventListener('abort', onAbort, { once: true });
  });
  promise.catch(() => undefined);
  return { promise, done: () => signal.removeEventListener('abort', onAbort) };
}

/** Postmark's limit of messages in one /email/batch call. */
export const POSTMARK_MAX_BATCH = 500;

export function createPostmarkChannel(opts: PostmarkChannelOptions): Channel {
  const host = sdkHostOptions(opts.apiBase);
  const timeoutSeconds = (opts.timeoutMs ?? DEFAULT_POSTMARK_TIMEOUT_MS) / 1000;
  const from = `${JSON.stringify(opts.from.name.replace(/[\r\n]+/g, ' '))} <${opts.from.email}>`;
  const messageStream = opts.messageStream ?? DEFAULT_MESSAGE_STREAM;

  // One client per call: the SDK takes no per-call options, and the signal must reach fetch.
  const clientFor = (signal: AbortSignal, seen: Seen) => new ServerClient(opts.serverToken, { ...host, timeout: timeoutSeconds, fetch: fetchWith(signal, seen) });

  const build = (msg: OutboundMessage): Models.Message => ({
    From: from,
    To: msg.to,
    Subject: msg.subject ?? opts.from.name,
    TextBody: msg.body,
    ...(msg.html === null ? {} : { HtmlBody: msg.html }),
    MessageStream: messageStream,
    Metadata: { delivery_id: msg.deliveryId, kind: msg.kind, ...(msg.incidentId === null ? {} : { incident_id: msg.incidentId }) },
    // Link tracking rewrites links, and ours are signed acknowledgement links that must
    // arrive as written; an open pixel has no place in an alert.
    TrackOpens: false,
    TrackLinks: Models.LinkTrackingOptions.None,
  });

  /** Postmark's answer for one message: accepted (its MessageID), or the refusal `send` would throw. */
  const outcome = (msg: OutboundMessage, answer: Partial<Models.MessageSendingResponse> | undefined, signal: AbortSignal): SendResult => {
    // Postmark answers ErrorCode 0 for an accepted message; anything else is a refusal.
    if (typeof answer?.ErrorCode === 'number' && answer.ErrorCode !== 0) {
      throw classifyPostmarkError(new Errors.PostmarkError(String(answer.Message ?? 'refused'), answer.ErrorCode, 422), signal, Date.now(), { to: msg.to });
    }
    // Events carry our delivery id in Metadata, so a missing MessageID loses nothing.
    return { provider: POSTMARK_PROVIDER, providerMessageId: answer?.MessageID || msg.deliveryId };
  };

  const configurationError = (classified: unknown, fields: Record<string, unknown>): void => {
    if (classified instanceof ChannelError && classified.errorClass === 'configuration') {
      opts.log?.error({ provider: POSTMARK_PROVIDER, ...fields, error: classified.message }, 'Postmark refused our configuration; email cannot leave through it until an operator fixes it');
    }
  };

  const send = async (msg: OutboundMessage, signal: AbortSignal): Promise<SendResult> => {
    const seen: Seen = { retryAfter: null };
    const race = abortion(signal);
    try {
      signal.throwIfAborted();
      const answer = await Promise.race([clientFor(signal, seen).sendEmail(build(msg)), race.promise]);
      return outcome(msg, answer, signal);
    } catch (err) {
      const classified = err instanceof ChannelError ? err : classifyPostmarkError(err, signal, Date.now(), { ...seen, to: msg.to });
      configurationError(classified, { delivery_id: msg.deliveryId });
      throw classified;
    } finally {
      race.done();
    }
  };

  return {
    provider: POSTMARK_PROVIDER,
    maxBatch: POSTMARK_MAX_BATCH,
    send,
    async sendMany(msgs: readonly OutboundMessage[], signal: AbortSignal): Promise<readonly (SendResult | Error)[]> {
      const seen: Seen = { retryAfter: null };
      const race = abortion(signal);
      let answers: unknown;
      try {
        signal.throwIfAborted();
        answers = await Promise.race([clientFor(signal, seen).sendEmailBatch(msgs.map(build)), race.promise]);
      } catch (err) {
        if (!signal.aborted && err instanceof Errors.PostmarkError && (err.statusCode === 422 || err.statusCode === 413)) {
          // The batch itself was refused (nothing says which message, nor that any address is
          // bad): each message's own answer decides, as if it had been sent alone.
          return Promise.all(msgs.map((msg) => send(msg, signal).catch((e: unknown) => (e instanceof Error ? e : new ChannelError(String(e), 'transient')))));
        }
        // The request as a whole: every message failed alike. (Postmark's words are masked: every address in them.)
        const classified = classifyPostmarkError(err, signal, Date.now(), seen);
        configurationError(classified, { deliveries: msgs.length });
        throw classified;
      } finally {
        race.done();
      }
      if (!Array.isArray(answers) || answers.length !== msgs.length) {
        // Not knowing which were taken, retrying all risks a duplicate; losing an alert is worse.
        throw new ChannelError(`Postmark answered a batch of ${msgs.length} with ${Array.isArray(answers) ? answers.length : 'no'} results`, 'transient');
      }
      return msgs.map((msg, i) => {
        try {
          return outcome(msg, answers[i] as Partial<Models.MessageSendingResponse>, signal);
        } catch (err) {
          configurationError(err, { delivery_id: msg.deliveryId });
          return err as Error;
        }
      });
    },
  };
}

type PostmarkConfig = Pick<Config,
  'POSTMARK_SERVER_TOKEN' | 'POSTMARK_FROM_EMAIL' | 'POSTMARK_FROM_NAME' | 'POSTMARK_MESSAGE_STREAM' | 'POSTMARK_API_BASE'>;

/** The Postmark email channel when POSTMARK_SERVER_TOKEN is set; undefined when it is not. */
export function postmarkChannelFromConfig(config: PostmarkConfig, log?: Logger): Channel | undefined {
  if (config.POSTMARK_SERVER_TOKEN === undefined) return undefined;
  if (config.POSTMARK_FROM_EMAIL === undefined) throw new Error('POSTMARK_FROM_EMAIL is required when POSTMARK_SERVER_TOKEN is set');
  return createPostmarkChannel({
    serverToken: config.POSTMARK_SERVER_TOKEN,
    apiBase: config.POSTMARK_API_BASE,
    from: { email: config.POSTMARK_FROM_EMAIL, name: config.POSTMARK_FROM_NAME },
    messageStream: config.POSTMARK_MESSAGE_STREAM,
    log,
  });
}
