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
 *
 * Bulk (sendMany, issue 19): one Mail Send request carries up to 1000 messages, one
 * personalization each: its own `to`, `subject` and `custom_args` (delivery_id, kind,
 * incident_id, exactly as `send` sets them, so every event maps back to its delivery), its
 * own text and HTML as substitutions into the shared content ({{pruuf_text}}, {{pruuf_html}}).
 * The request's X-Message-Id is every message's provider message id (events carry our
 * delivery_id, and the webhook tells messages of one request apart by address otherwise).
 * What cannot share a request goes in another: text-only and HTML mail apart (the content
 * types are shared), an address at most once per request (SendGrid refuses repeats); a message
 * whose texts exceed SendGrid's 10,000 bytes of substitutions per personalization, or that
 * contains a tag itself, goes alone through `send`.
 * SendGrid checks the whole request before taking any of it: a 400 naming personalizations
 * (a bad address) refuses those messages alone, each with the error `send` gives it, and the
 * rest go again in a new request. Any other 400 or a 413 sends each message alone (its own
 * answer decides); every other failure (429, 5xx, 401/403/404, no answer) is every message's.
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

const errorList = (body: unknown): { message?: unknown; field?: unknown }[] =>
  (Array.isArray((body as SendGridErrorBody | undefined)?.errors) ? (body as SendGridErrorBody).errors! : []);

/** SendGrid's own words ("Does not contain a valid address."), short, with the recipients masked. */
function describeErrors(body: unknown, recipients: readonly string[]): { text: string; recipientError: string | undefined } {
  const mask = (text: string) => recipients.reduce((t, to) => (to === '' ? t : t.split(to).join(maskAddress(to))), text);
  const items = errorList(body).slice(0, 3).map((e) => ({
    field: typeof e.field === 'string' ? e.field : '',
    message: mask(typeof e.message === 'string' ? e.message : 'error'),
  }));
  const text = items.map((e) => (e.field === '' ? e.message : `${e.field}: ${e.message}`)).join('; ').slice(0, 300);
  return { text, recipientError: items.find((e) => RECIPIENT_FIELD.test(e.field))?.message };
}

/** SendGrid's answer (or the lack of one) as a ChannelError; anything else is returned as it is. */
export function classifySendGridError(err: unknown, msg: OutboundMessage, signal: AbortSignal, nowMs: number): unknown {
  return classify(err, [msg.to], signal, nowMs);
}

function classify(err: unknown, recipients: readonly string[], signal: AbortSignal, nowMs: number): unknown {
  if (signal.aborted) {
    const timedOut = (signal.reason as { name?: unknown } | undefined)?.name === 'TimeoutError';
    return new ChannelError(timedOut ? 'SendGrid did not answer in time' : 'SendGrid call aborted', 'transient');
  }
  if (isResponseError(err)) {
    const status = err.code;
    const { text, recipientError } = describeErrors(err.response?.body, recipients);
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

/** SendGrid's limit of personalizations (and of recipients) in one Mail Send request. */
export const SENDGRID_MAX_BATCH = 1000;
/** "The total collective size of your substitutions may not exceed 10,000 bytes per personalization object." */
export const MAX_SUBSTITUTION_BYTES = 10_000;
/** Substitution keys; the SDK wraps them in {{ }}, which is what the shared content carries. */
const TEXT_KEY = 'pruuf_text';
const HTML_KEY = 'pruuf_html';
const TEXT_TAG = `{{${TEXT_KEY}}}`;
const HTML_TAG = `{{${HTML_KEY}}}`;

const customArgsOf = (msg: OutboundMessage): Record<string, string> =>
  ({ delivery_id: msg.deliveryId, kind: msg.kind, ...(msg.incidentId === null ? {} : { incident_id: msg.incidentId }) });

// Click tracking rewrites links, and ours are signed acknowledgement links that must arrive as
// written; open pixels and unsubscribe footers have no place in an alert.
const TRACKING_OFF = {
  clickTracking: { enable: false, enableText: false },
  openTracking: { enable: false },
  subscriptionTracking: { enable: false },
};

const substitutionsOf = (msg: OutboundMessage): Record<string, string> =>
  ({ [TEXT_KEY]: msg.body, ...(msg.html === null ? {} : { [HTML_KEY]: msg.html }) });

/** Whether the message can be a personalization of a shared request (else it goes alone). */
function fitsBatch(msg: OutboundMessage): boolean {
  const texts = [msg.subject ?? '', msg.body, msg.html ?? ''];
  if (texts.some((t) => t.includes(TEXT_TAG) || t.includes(HTML_TAG))) return false;
  const wrapped = Object.fromEntries(Object.entries(substitutionsOf(msg)).map(([k, v]) => [`{{${k}}}`, v]));
  return Buffer.byteLength(JSON.stringify(wrapped)) <= MAX_SUBSTITUTION_BYTES;
}

/**
 * The messages split into requests that SendGrid takes: text-only and HTML mail apart, each
 * address at most once per request; `alone` are those that cannot share a request at all.
 */
export function planBatch(msgs: readonly OutboundMessage[]): { alone: number[]; requests: number[][] } {
  const alone: number[] = [];
  const open: { html: boolean; to: Set<string>; members: number[] }[] = [];
  msgs.forEach((msg, i) => {
    if (!fitsBatch(msg)) {
      alone.push(i);
      return;
    }
    const html = msg.html !== null;
    const to = msg.to.toLowerCase();
    let r = open.find((o) => o.html === html && !o.to.has(to) && o.members.length < SENDGRID_MAX_BATCH);
    if (r === undefined) {
      r = { html, to: new Set(), members: [] };
      open.push(r);
    }
    r.to.add(to);
    r.members.push(i);
  });
  return { alone, requests: open.map((o) => o.members) };
}

const PERSONALIZATION_FIELD = /^personalizations\.(\d+)(\..*)?$/;

/**
 * A 400's errors by the personalization they name (its position in the request, the field
 * renumbered as that message alone would have it), or undefined when any error names none: then
 * the request itself was refused, not some of its messages.
 */
function refusedPersonalizations(body: unknown, count: number): Map<number, { message?: unknown; field: string }[]> | undefined {
  const list = errorList(body);
  if (list.length === 0) return undefined;
  const out = new Map<number, { message?: unknown; field: string }[]>();
  for (const e of list) {
    const m = typeof e.field === 'string' ? PERSONALIZATION_FIELD.exec(e.field) : null;
    const at = m === null ? NaN : Number(m[1]);
    if (!(at >= 0 && at < count)) return undefined;
    out.set(at, [...(out.get(at) ?? []), { message: e.message, field: `personalizations.0${m![2] ?? ''}` }]);
  }
  return out;
}

export function createSendGridChannel(opts: SendGridChannelOptions): Channel {
  const now = opts.now ?? Date.now;
  const baseUrl = opts.baseUrl?.replace(/\/+$/, '');

  const configurationError = (classified: unknown, fields: Record<string, unknown>): void => {
    if (classified instanceof ChannelError && classified.errorClass === 'configuration') {
      opts.log?.error({ provider: SENDGRID_PROVIDER, ...fields, error: classified.message }, 'SendGrid refused our configuration; email cannot leave until an operator fixes it');
    }
  };

  const mailFor = (signal: AbortSignal): MailService => {
    const mail = new MailService();
    mail.setClient(clientFor(opts.apiKey, baseUrl, signal));
    return mail;
  };

  const send = async (msg: OutboundMessage, signal: AbortSignal): Promise<SendResult> => {
    const mail = mailFor(signal);
    try {
      signal.throwIfAborted();
      const [response] = await mail.send({
        to: msg.to,
        from: { email: opts.from.email, name: opts.from.name },
        subject: msg.subject ?? opts.from.name,
        text: msg.body,
        ...(msg.html === null ? {} : { html: msg.html }),
        customArgs: customArgsOf(msg),
        trackingSettings: TRACKING_OFF,
      });
      const messageId = header(response.headers as Record<string, unknown> | undefined, 'x-message-id');
      // Events carry our delivery id in custom_args, so a missing header loses nothing.
      return { provider: SENDGRID_PROVIDER, providerMessageId: messageId ?? msg.deliveryId };
    } catch (err) {
      const classified = classifySendGridError(err, msg, signal, now());
      configurationError(classified, { delivery_id: msg.deliveryId });
      throw classified;
    }
  };

  const settle = (p: Promise<SendResult>): Promise<SendResult | Error> =>
    p.catch((err: unknown) => (err instanceof Error ? err : new ChannelError(String(err), 'transient')));

  /** One request for `batch` (2 or more messages that fit together): fills `out` for each of them. */
  const sendRequest = async (batch: readonly OutboundMessage[], signal: AbortSignal): Promise<(SendResult | Error)[]> => {
    const out: (SendResult | Error | undefined)[] = new Array(batch.length);
    let left = batch.map((_, i) => i);
    while (left.length > 0) {
      if (left.length === 1) {
        out[left[0]!] = await settle(send(batch[left[0]!]!, signal));
        break;
      }
      const these = left.map((i) => batch[i]!);
      try {
        signal.throwIfAborted();
        const [response] = await mailFor(signal).send({
          from: { email: opts.from.email, name: opts.from.name },
          personalizations: these.map((msg) => ({
            to: msg.to,
            subject: msg.subject ?? opts.from.name,
            substitutions: substitutionsOf(msg),
            customArgs: customArgsOf(msg),
          })),
          content: [
            { type: 'text/plain', value: TEXT_TAG },
            ...(these[0]!.html === null ? [] : [{ type: 'text/html', value: HTML_TAG }]),
          ],
          trackingSettings: TRACKING_OFF,
        } as Parameters<MailService['send']>[0]);
        const messageId = header(response.headers as Record<string, unknown> | undefined, 'x-message-id');
        these.forEach((msg, k) => { out[left[k]!] = { provider: SENDGRID_PROVIDER, providerMessageId: messageId ?? msg.deliveryId }; });
        break;
      } catch (err) {
        const refused = !signal.aborted && isResponseError(err) && err.code === 400 ? refusedPersonalizations(err.response?.body, these.length) : undefined;
        if (refused !== undefined) {
          // Those messages alone are refused, each as `send` would refuse it; the rest go again.
          for (const [k, errors] of refused) {
            out[left[k]!] = classifySendGridError({ code: 400, response: { body: { errors } } }, these[k]!, signal, now()) as Error;
          }
          left = left.filter((_, k) => !refused.has(k));
          continue;
        }
        if (!signal.aborted && isResponseError(err) && (err.code === 400 || err.code === 413)) {
          // The request itself was refused (nothing names a message): each message's own answer decides.
          const alone = await Promise.all(these.map((msg) => settle(send(msg, signal))));
          alone.forEach((r, k) => { out[left[k]!] = r; });
          break;
        }
        const classified = classify(err, these.map((m) => m.to), signal, now());
        configurationError(classified, { deliveries: these.length });
        const error = classified instanceof Error ? classified : new ChannelError(String(classified), 'transient');
        for (const i of left) out[i] = error;
        break;
      }
    }
    return out as (SendResult | Error)[];
  };

  return {
    provider: SENDGRID_PROVIDER,
    maxBatch: SENDGRID_MAX_BATCH,
    send,
    async sendMany(msgs: readonly OutboundMessage[], signal: AbortSignal): Promise<readonly (SendResult | Error)[]> {
      const out: (SendResult | Error)[] = new Array(msgs.length);
      const { alone, requests } = planBatch(msgs);
      await Promise.all([
        ...alone.map(async (i) => { out[i] = await settle(send(msgs[i]!, signal)); }),
        ...requests.map(async (members) => {
          const answers = await sendRequest(members.map((i) => msgs[i]!), signal);
          answers.forEach((a, k) => { out[members[k]!] = a; });
        }),
      ]);
      return out;
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
