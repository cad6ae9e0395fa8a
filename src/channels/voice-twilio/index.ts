import twilio from 'twilio';
import { systemClock, type Clock } from '../../clock.js';
import type { Config } from '../../config.js';
import type { Queryable } from '../../db/pool.js';
import { AppError } from '../../http/errors.js';
import { LinkError, signLink, verifyLink } from '../../links/tokens.js';
import { maskAddress, type Logger } from '../../observability/logger.js';
import { TwilioHttpClient } from '../sms-twilio/client.js';
import { classifySendError } from '../sms-twilio/errors.js';
import { takeSendSlot } from '../sms-twilio/throughput.js';
import { ThrottledError, type Channel, type OutboundMessage, type SendResult } from '../types.js';

/**
 * Phone calls through Twilio's Calls API (POST /2010-04-01/Accounts/{sid}/Calls.json), through the
 * same SDK seam as SMS (TwilioHttpClient: TWILIO_API_BASE, per-call AbortSignal, Retry-After).
 * "Sent" means Twilio queued the call; what happened then comes by status callback
 * (routes.ts → status.ts). While the call is up Twilio fetches what to say from our TwiML URL and
 * posts the key pressed. Every URL names the delivery in a signed `call` token, so a URL cannot be
 * made for another call, and each request is also signed by Twilio (X-Twilio-Signature).
 * Errors are classified as for SMS (sms-twilio/errors.ts): 4xx permanent, 401/403/404
 * configuration, 429/5xx/network transient.
 */
export const TWILIO_VOICE_PROVIDER = 'twilio-voice';
export const VOICE_TWIML_PATH = '/webhooks/twilio/voice/twiml';
export const VOICE_GATHER_PATH = '/webhooks/twilio/voice/gather';
export const VOICE_STATUS_PATH = '/webhooks/twilio/voice/status';
/** How long a call's URLs work: ringing, the conversation and its last status callback fit well within. */
export const CALL_TOKEN_TTL_MS = 24 * 60 * 60_000;
/** The statuses Twilio reports (completed, busy, no-answer, failed, canceled come in any case). */
export const STATUS_EVENTS = ['initiated', 'ringing', 'answered', 'completed'];

/** One of the call's URLs: `${base}${path}?d=<signed token naming the delivery>`. */
export function callUrl(publicBaseUrl: string, linkSecret: string, path: string, deliveryId: string, now: Date): string {
  return `${publicBaseUrl}${path}?d=${signLink(linkSecret, 'call', deliveryId, new Date(now.getTime() + CALL_TOKEN_TTL_MS))}`;
}

/** The delivery a call URL's `d` token names (whichever provider placed the call); 404 for a token we did not sign. */
export function callDelivery(linkSecret: string, token: string, now: Date): string {
  try {
    return verifyLink(linkSecret, 'call', token, now).s;
  } catch (err) {
    if (err instanceof LinkError) throw new AppError(404, 'NOT_FOUND', 'this call is not known');
    throw err;
  }
}

export type TwilioVoiceOptions = {
  accountSid: string;
  authToken: string;
  apiBase?: string | undefined;
  /** The caller id (E.164). */
  from: string;
  publicBaseUrl: string;
  linkSecret: string;
  /** Seconds the phone rings before Twilio gives up (no-answer). */
  timeoutSeconds: number;
  /** Calls per second, shared by every worker through `pool`. */
  callsPerSecond: number;
  pool: Queryable;
  log: Logger;
  timeoutMs?: number;
  clock?: Clock;
};

export function createTwilioVoiceChannel(opts: TwilioVoiceOptions): Channel {
  const http = new TwilioHttpClient({ apiBase: opts.apiBase, timeoutMs: opts.timeoutMs ?? 30_000 });
  const client = twilio(opts.accountSid, opts.authToken, { httpClient: http });
  const clock = opts.clock ?? systemClock;
  return {
    provider: TWILIO_VOICE_PROVIDER,
    async send(msg: OutboundMessage, signal: AbortSignal): Promise<SendResult> {
      signal.throwIfAborted();
      const slot = await takeSendSlot(opts.pool, `voice:${opts.from}`, opts.callsPerSecond);
      if (!slot.ok) throw new ThrottledError(`calls over ${opts.callsPerSecond}/s`, slot.retryAfterMs);
      const url = (path: string) => callUrl(opts.publicBaseUrl, opts.linkSecret, path, msg.deliveryId, clock());
      try {
        const call = await http.call(signal, () => client.calls.create({
          to: msg.to,
          from: opts.from,
          url: url(VOICE_TWIML_PATH),
          method: 'POST',
          statusCallback: url(VOICE_STATUS_PATH),
          statusCallbackMethod: 'POST',
          statusCallbackEvent: STATUS_EVENTS,
          // A voicemail is hung up on and recorded as such: it cannot press 1.
          machineDetection: 'Enable',
          timeout: opts.timeoutSeconds,
        }));
        return { provider: TWILIO_VOICE_PROVIDER, providerMessageId: call.sid };
      } catch (err) {
        const classified = classifySendError(err);
        const error = classified.message.split(msg.to).join(maskAddress(msg.to));
        if (classified.errorClass === 'configuration') {
          opts.log.error({ delivery_id: msg.deliveryId, error }, 'Twilio refused our credentials or account (calls)');
        } else if (classified.errorClass === 'permanent') {
          opts.log.warn({ delivery_id: msg.deliveryId, to: maskAddress(msg.to), error }, 'Twilio refused a call');
        }
        throw classified;
      }
    },
  };
}

/** The caller id calls use: TWILIO_VOICE_FROM, else the SMS number. */
export const voiceFrom = (config: Pick<Config, 'TWILIO_VOICE_FROM' | 'TWILIO_FROM_NUMBER'>): string | undefined =>
  config.TWILIO_VOICE_FROM ?? config.TWILIO_FROM_NUMBER;

/** The voice channel when Twilio is configured with a number to call from; it signs its URLs with the link secret. */
export function twilioVoiceChannelFromConfig(config: Config, pool: Queryable, log: Logger, linkSecret: string | undefined): Channel | undefined {
  const from = voiceFrom(config);
  if (config.TWILIO_ACCOUNT_SID === undefined || config.TWILIO_AUTH_TOKEN === undefined || from === undefined || linkSecret === undefined) return undefined;
  return createTwilioVoiceChannel({
    accountSid: config.TWILIO_ACCOUNT_SID,
    authToken: config.TWILIO_AUTH_TOKEN,
    apiBase: config.TWILIO_API_BASE,
    from,
    publicBaseUrl: config.publicBaseUrl,
    linkSecret,
    timeoutSeconds: config.VOICE_CALL_TIMEOUT_SECONDS,
    callsPerSecond: config.VOICE_CALLS_PER_SECOND,
    pool,
    log,
  });
}
