import { Client } from '@sendgrid/client';
import type { ClientRequest } from '@sendgrid/client/src/request.js';
import { MailService } from '@sendgrid/mail';
import type { Config } from '../../config.js';
import { maskAddress, type Logger } from '../../observability/logger.js';
import { ChannelError, type Channel, type OutboundMessage, type SendResult } from '../types.js';

/**
 * Email through SendGrid's v3 Mail Send API (@sendgrid/mail). 202 means SendGrid accepted the
 * message; what happened next arrives later on the signed event webhook (webhook.ts), matched by
 * the delivery id we put in custom_args.
 *
 * Error table:
 *   202 (any 2xx)                     accepted; X-Message-Id is the provider message id
 *   429                               transient, waits until X-RateLimit-Reset (epoch seconds)
 *   408, 5xx, timeout, reset, refused transient
 *   401, 403                          configuration (API key wrong, revoked or without Mail Send)
 *   404                               configuration (SENDGRID_API_BASE points somewhere wrong)
 *   400 on personalizations.*.to      permanent, and the address is dead (email off for the contact)
 *   400, 413, other 4xx               permanent
 */

export const SENDGRID_PROVIDER = 'sendgrid';

export type SendGridChannelOptions = {
  apiKey: string;
  /** SENDGRID_API_BASE: a proxy or a local fake; default SendGrid's own host. */
  baseUrl?: string | undefined;
  from: { email: string; name: string };
  log?: Logger | undefined;
  /** Epoch milliseconds, to turn X-RateLimit-Reset into a wait. */
  now?: () => number;
};

/** A 429 without a usable reset header still says "not now": this long, without spending an attempt. */
export const DEFAULT_RATE_LIMIT_WAIT_MS = 1000;
/** Clock skew can put the reset in the past; waiting a little beats hammering a limit that still holds. */
export const MIN_RATE_LIMIT_WAIT_MS = 500;
/** A reset far ahead (a daily quota) is retried after this, so an alert is never parked for hours. */
export const MAX_RATE_LIMIT_WAIT_MS = 10 * 60_000;

type SendGridErrorBody = { errors?: { message?: unknown; field?: unknown }[] };
type ResponseErrorLike = { code: number; message?: string; response?: { headers?: Record<string, unknown>; body?: unknown } };

function isResponseError(err: unknown): err is ResponseErrorLike {
  return typeof err === 'object' && err !== null && typeof (err as { code?: unknown }).code === 'number'
    && typeof (err as { response?: unknown }).response === 'object';
}

function header(headers: Record<string, unknown> | undefined, name: string): string | undefined {
  const v = headers?.[name] ?? headers?.[name.toLowerCase()];
  return typeof v === 'string' ? v : typeof v === 'number' ? String(v) : undefined;
}

function rateLimitWaitMs(headers: Record<string, unknown> | undefined, nowMs: number): number {
  const clamp = (ms: number) => Math.min(MAX_RATE_LIMIT_WAIT_MS, Math.max(MIN_RATE_LIMIT_WAIT_MS, Math.round(ms)));
  const reset = Number(header(headers, 'x-ratelimit-reset'));
  if (Number.isFinite(reset) && reset > 0) return clamp(reset * 1000 - nowMs);
  const retryAfter = Number(header(headers, 'retry-after'));
  if (Number.isFinite(retryAfter) && retryAfter >= 0) return clamp(retryAfter * 1000);
  return DEFAULT_RATE_LIMIT_WAIT_MS;
}

const RECIPIENT_FIELD = /^personalizations\.\d+\.to(\.\d+\.email)?$/;

/** SendGrid's own words ("Does not contain a valid address."), short, with the recipient masked. */
function describeErrors(body: unknown, to: string): { text: string; recipientError: string | undefined } {
  const list = Array.isArray((body as SendGridErrorBody | undefined)?.errors) ? (body as SendGridErrorBody).errors! : [];
  const items = list.slice(0, 3).map((e) => ({
    field: typeof e.field === 'string' ? e.field : '',
    message: (typeof e.message === 'string' ? e.message : 'error').split(to).join(maskAddress(to)),
  }));
  const text = items.map((e) => (e.field === '' ? e.message : `${e.field}: ${e.message}`)).join('; ').slice(0, 300);
  return { text, recipientError: items.find((e) => RECIPIENT_FIELD.test(e.field))?.message };
}

/** SendGrid's answer (or the lack of one) as a ChannelError; anything else is returned as it is. */
export function classifySendGridError(err: unknown, msg: OutboundMessage, signal: AbortSignal, nowMs: number): unknown {
  if (signal.aborted) {
    const timedOut = (signal.reason as { name?: unknown } | undefined)?.name === 'TimeoutError';
    return new ChannelError(timedOut ? 'SendGrid did not answer in time' : 'SendGrid call aborted', 'transient');
  }
  if (isResponseError(err)) {
    const status = err.code;
    const { text, recipientError } = describeErrors(err.response?.body, msg.to);
    const said = `SendGrid answered ${status}${text === '' ? '' : `: ${text}`}`;
    if (status === 429) return new ChannelError(said, 'transient', rateLimitWaitMs(err.response?.headers, nowMs));
    if (status === 408 || status >= 500) return new ChannelError(said, 'transient');
    if (status === 401 || status === 403) return new ChannelError(`${said} (check SENDGRID_API_KEY and its Mail Send permission)`, 'configuration');
    if (status === 404) return new ChannelError(`${said} (check SENDGRID_API_BASE)`, 'configuration');
    if (status === 400 && recipientError !== undefined) {
      return new ChannelError(said, 'permanent', undefined, `invalid address: ${recipientError}`.slice(0, 200));
    }
    return new ChannelError(said, 'permanent');
  }
  if ((err as { isAxiosError?: unknown } | null)?.isAxiosError === true) {
    // No answer at all: refused, reset, DNS. axios messages carry host and port, never the recipient.
    const e = err as { code?: unknown; message?: unknown };
    return new ChannelError(`SendGrid unreachable: ${typeof e.code === 'string' ? e.code : String(e.message)}`, 'transient');
  }
  return err;
}

/**
 * Each send gets its own Client: the SDK passes no per-call options to axios, and the caller's
 * AbortSignal has to reach axios so a timed-out call really ends instead of running on.
 */
function clientFor(apiKey: string, baseUrl: string | undefined, signal: AbortSignal): Client {
  const client = new Client();
  client.setApiKey(apiKey);
  // setApiKey resets baseUrl to SendGrid's host, so ours must come after it.
  if (baseUrl !== undefined) client.setDefaultRequest('baseUrl', baseUrl);
  // The typings list a few axios options only; the client hands every default to axios as is.
  client.setDefaultRequest({ signal } as unknown as ClientRequest);
  return client;
}

export function createSendGridChannel(opts: SendGridChannelOptions): Channel {
  const now = opts.now ?? Date.now;
  const baseUrl = opts.baseUrl?.replace(/\/+$/, '');
  return {
    provider: SENDGRID_PROVIDER,
    async send(msg: OutboundMessage, signal: AbortSignal): Promise<SendResult> {
      const mail = new MailService();
      mail.setClient(clientFor(opts.apiKey, baseUrl, signal));
      try {
        signal.throwIfAborted();
        const [response] = await mail.send({
          to: msg.to,
          from: { email: opts.from.email, name: opts.from.name },
          subject: msg.subject ?? opts.from.name,
          text: msg.body,
          ...(msg.html === null ? {} : { html: msg.html }),
          customArgs: { delivery_id: msg.deliveryId, kind: msg.kind, ...(msg.incidentId === null ? {} : { incident_id: msg.incidentId }) },
          // Click tracking rewrites links, and ours are signed acknowledgement links that must
          // arrive as written; open pixels and unsubscribe footers have no place in an alert.
          trackingSettings: {
            clickTracking: { enable: false, enableText: false },
            openTracking: { enable: false },
            subscriptionTracking: { enable: false },
          },
        });
        const messageId = header(response.headers as Record<string, unknown> | undefined, 'x-message-id');
        // Events carry our delivery id in custom_args, so a missing header loses nothing.
        return { provider: SENDGRID_PROVIDER, providerMessageId: messageId ?? msg.deliveryId };
      } catch (err) {
        const classified = classifySendGridError(err, msg, signal, now());
        if (classified instanceof ChannelError && classified.errorClass === 'configuration') {
          opts.log?.error({ provider: SENDGRID_PROVIDER, delivery_id: msg.deliveryId, error: classified.message }, 'SendGrid refused our configuration; email cannot leave until an operator fixes it');
        }
        throw classified;
      }
    },
  };
}

type SendGridConfig = Pick<Config, 'SENDGRID_API_KEY' | 'SENDGRID_API_BASE' | 'SENDGRID_FROM_EMAIL' | 'SENDGRID_FROM_NAME'>;

/** The email channel when SENDGRID_API_KEY is set; undefined leaves email to the dev outbox. */
export function sendGridChannelFromConfig(config: SendGridConfig, log?: Logger): Channel | undefined {
  if (config.SENDGRID_API_KEY === undefined) return undefined;
  if (config.SENDGRID_FROM_EMAIL === undefined) throw new Error('SENDGRID_FROM_EMAIL is required when SENDGRID_API_KEY is set');
  return createSendGridChannel({
    apiKey: config.SENDGRID_API_KEY,
    baseUrl: config.SENDGRID_API_BASE,
    from: { email: config.SENDGRID_FROM_EMAIL, name: config.SENDGRID_FROM_NAME },
    log,
  });
}
