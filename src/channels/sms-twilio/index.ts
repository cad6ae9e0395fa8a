import twilio from 'twilio';
import { systemClock, type Clock } from '../../clock.js';
import type { Config } from '../../config.js';
import type { Queryable } from '../../db/pool.js';
import { maskAddress, type Logger } from '../../observability/logger.js';
import { ThrottledError, type Channel, type OutboundMessage, type SendResult } from '../types.js';
import { TwilioHttpClient } from './client.js';
import { classifySendError, TwilioOptedOutError } from './errors.js';
import { setSmsOptOut } from './opt-out.js';
import { sendSlots } from './throughput.js';

export const TWILIO_PROVIDER = 'twilio';
export const STATUS_CALLBACK_PATH = '/webhooks/twilio/status';
export const INBOUND_PATH = '/webhooks/twilio/inbound';

export type TwilioChannelOptions = {
  accountSid: string;
  authToken: string;
  /** Default: Twilio's own API host. */
  apiBase?: string | undefined;
  /** The sender: a number, or a messaging service (which then picks the number). One is required. */
  from?: string | undefined;
  messagingServiceSid?: string | undefined;
  /** Twilio drops the message if it cannot hand it to the carrier within this many seconds. */
  validitySeconds: number;
  statusCallbackUrl: string;
  /** Messages per second for this sender, shared by every worker through `pool`. */
  ratePerSecond: number;
  pool: Queryable;
  log: Logger;
  /** Backstop for a call whose AbortSignal never fires. */
  timeoutMs?: number;
  clock?: Clock;
};

export function createTwilioChannel(opts: TwilioChannelOptions): Channel {
  const sender = opts.messagingServiceSid ?? opts.from;
  if (sender === undefined) throw new Error('Twilio needs a from number or a messaging service sid');
  const http = new TwilioHttpClient({ apiBase: opts.apiBase, timeoutMs: opts.timeoutMs ?? 30_000 });
  const client = twilio(opts.accountSid, opts.authToken, { httpClient: http });
  const senderParam = opts.messagingServiceSid !== undefined ? { messagingServiceSid: opts.messagingServiceSid } : { from: opts.from! };
  // Up to a tenth of a second's worth may leave together (one at a time below 20/s): a sender rated
  // in the hundreds per second is not held to one message per few milliseconds at a burst.
  const takeSlot = sendSlots(opts.pool, sender, opts.ratePerSecond, Math.max(1, Math.floor(opts.ratePerSecond / 10)));

  return {
    provider: TWILIO_PROVIDER,
    async send(msg: OutboundMessage, signal: AbortSignal): Promise<SendResult> {
      signal.throwIfAborted();
      const slot = await takeSlot();
      if (!slot.ok) throw new ThrottledError(`SMS sender over ${opts.ratePerSecond}/s`, slot.retryAfterMs);
      try {
        const message = await http.call(signal, () => client.messages.create({
          to: msg.to,
          body: msg.body,
          ...senderParam,
          validityPeriod: opts.validitySeconds,
          statusCallback: opts.statusCallbackUrl,
        }));
        return { provider: TWILIO_PROVIDER, providerMessageId: message.sid };
      } catch (err) {
        const classified = classifySendError(err);
        if (classified instanceof TwilioOptedOutError) {
          // Twilio will refuse this number until it texts START: stop offering it SMS everywhere.
          const changed = await setSmsOptOut(opts.pool, msg.to, true, (opts.clock ?? systemClock)()).catch((e: Error) => {
            opts.log.error({ err: { message: e.message }, to: maskAddress(msg.to) }, 'could not record an SMS opt-out reported by Twilio');
            return undefined;
          });
          opts.log.info({ delivery_id: msg.deliveryId, to: maskAddress(msg.to), ...changed }, 'Twilio says the recipient opted out of SMS');
        } else if (classified.errorClass === 'permanent' && classified.deadAddress === undefined) {
          // Neither the address nor Twilio's health: our request or account setup is wrong.
          opts.log.error({ delivery_id: msg.deliveryId, to: maskAddress(msg.to), error: classified.message.split(msg.to).join(maskAddress(msg.to)) }, 'Twilio refused an SMS for a reason on our side');
        } else if (classified.errorClass === 'configuration') {
          opts.log.error({ delivery_id: msg.deliveryId, error: classified.message }, 'Twilio refused our credentials or account');
        }
        throw classified;
      }
    },
  };
}

/** The Twilio channel when TWILIO_ACCOUNT_SID is set (config makes sure the rest goes with it). */
export function twilioChannelFromConfig(config: Config, pool: Queryable, log: Logger): Channel | undefined {
  if (config.TWILIO_ACCOUNT_SID === undefined || config.TWILIO_AUTH_TOKEN === undefined) return undefined;
  return createTwilioChannel({
    accountSid: config.TWILIO_ACCOUNT_SID,
    authToken: config.TWILIO_AUTH_TOKEN,
    apiBase: config.TWILIO_API_BASE,
    from: config.TWILIO_FROM_NUMBER,
    messagingServiceSid: config.TWILIO_MESSAGING_SERVICE_SID,
    validitySeconds: config.SMS_VALIDITY_SECONDS,
    statusCallbackUrl: `${config.publicBaseUrl}${STATUS_CALLBACK_PATH}`,
    ratePerSecond: config.SMS_RATE_PER_SECOND,
    pool,
    log,
  });
}
