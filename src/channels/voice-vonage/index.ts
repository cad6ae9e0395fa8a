import { Vonage } from '@vonage/server-sdk';
import { systemClock, type Clock } from '../../clock.js';
import { privateKeyPem, type Config } from '../../config.js';
import type { Queryable } from '../../db/pool.js';
import { maskAddress, type Logger } from '../../observability/logger.js';
import { classifySendError } from '../sms-vonage/errors.js';
import { takeSendSlot } from '../sms-twilio/throughput.js';
import { callUrl } from '../voice-twilio/index.js';
import { ChannelError, ThrottledError, type Channel, type OutboundMessage, type SendResult } from '../types.js';

/**
 * Phone calls through Vonage's Voice API (POST /v1/calls on api.nexmo.com) with the official SDK
 * (@vonage/server-sdk 3: `voice.createOutboundCall`, authenticated by a JWT the SDK signs with the
 * application's private key). The second voice provider beside Twilio (VOICE_PROVIDERS): a call
 * Twilio cannot place goes through Vonage at once (delivery/deliver.ts).
 *
 * "Sent" means Vonage started the call. When it is answered Vonage fetches an NCCO (what to say,
 * and a one-key input) from our answer URL, posts the key pressed to the input's event URL, and
 * the call's progress to our event URL (routes.ts → status.ts). As for Twilio, every URL names the
 * delivery in a signed `call` token (voice-twilio's callUrl), and every request is signed by
 * Vonage (a JWT in Authorization, HS256 with the account's signature secret).
 *
 * A voicemail is hung up on (machine_detection: hangup): it cannot press 1. Errors are classified
 * as for Vonage SMS (sms-vonage/errors.ts): 401/403/404 configuration, 429/5xx/no answer
 * transient, other 4xx permanent. The SDK takes no AbortSignal: the call races the signal, and the
 * SDK's own timeout ends the request it leaves behind.
 */
export const VONAGE_VOICE_PROVIDER = 'vonage-voice';
export const VONAGE_ANSWER_PATH = '/webhooks/vonage/voice/answer';
export const VONAGE_INPUT_PATH = '/webhooks/vonage/voice/input';
export const VONAGE_EVENT_PATH = '/webhooks/vonage/voice/event';

export type VonageVoiceOptions = {
  applicationId: string;
  /** PEM text of the application's private key. */
  privateKey: string;
  /** The SDK's apiHost. Default: Vonage's own (https://api.nexmo.com). */
  apiBase?: string | undefined;
  /** The caller id (E.164). */
  from: string;
  publicBaseUrl: string;
  linkSecret: string;
  /** Seconds the phone rings before Vonage gives up (status timeout). */
  timeoutSeconds: number;
  /** Calls per second, shared by every worker through `pool`. */
  callsPerSecond: number;
  pool: Queryable;
  log: Logger;
  /** The SDK's request timeout (the backstop for a signal that never fires). Default 20 s. */
  timeoutMs?: number;
  clock?: Clock;
};

/** The SDK's call request (its enums are string enums: 'hangup' is MachineDetectionBehavior.HANGUP). */
type CallRequest = Parameters<Vonage['voice']['createOutboundCall']>[0];

/** Vonage wants numbers without the leading +. */
const wireNumber = (n: string) => n.replace(/^\+/, '');

export function createVonageVoiceChannel(opts: VonageVoiceOptions): Channel {
  const vonage = new Vonage(
    { applicationId: opts.applicationId, privateKey: opts.privateKey },
    { timeout: opts.timeoutMs ?? 20_000, ...(opts.apiBase === undefined ? {} : { apiHost: opts.apiBase.replace(/\/+$/, '') }) },
  );
  const clock = opts.clock ?? systemClock;
  const from = wireNumber(opts.from);
  return {
    provider: VONAGE_VOICE_PROVIDER,
    async send(msg: OutboundMessage, signal: AbortSignal): Promise<SendResult> {
      signal.throwIfAborted();
      const slot = await takeSendSlot(opts.pool, `voice:vonage:${opts.from}`, opts.callsPerSecond);
      if (!slot.ok) throw new ThrottledError(`calls over ${opts.callsPerSecond}/s`, slot.retryAfterMs);
      const url = (path: string) => callUrl(opts.publicBaseUrl, opts.linkSecret, path, msg.deliveryId, clock());
      let onAbort: (() => void) | undefined;
      const aborted = new Promise<never>((_, reject) => {
        onAbort = () => reject(signal.reason instanceof Error ? signal.reason : new DOMException('aborted', 'AbortError'));
        signal.addEventListener('abort', onAbort, { once: true });
      });
      try {
        const placed = vonage.voice.createOutboundCall({
          to: [{ type: 'phone', number: wireNumber(msg.to) }],
          from: { type: 'phone', number: from },
          answerUrl: [url(VONAGE_ANSWER_PATH)],
          eventUrl: [url(VONAGE_EVENT_PATH)],
          ringingTimer: opts.timeoutSeconds,
          // A voicemail cannot press 1: Vonage hangs up on it (status machine, then completed).
          machineDetection: 'hangup' as CallRequest['machineDetection'],
        });
        // Settled either way, so an abandoned call never surfaces as an unhandled rejection.
        placed.catch(() => undefined);
        const call = await Promise.race([placed, aborted]);
        if (typeof call.uuid !== 'string' || call.uuid === '') throw new ChannelError('Vonage answered without a call uuid', 'transient');
        return { provider: VONAGE_VOICE_PROVIDER, providerMessageId: call.uuid };
      } catch (err) {
        const classified = classifySendError(err, msg.to);
        if (classified.errorClass === 'configuration') {
          opts.log.error({ delivery_id: msg.deliveryId, error: classified.message }, 'Vonage refused our application, key or account (calls)');
        } else if (classified.errorClass === 'permanent') {
          opts.log.warn({ delivery_id: msg.deliveryId, to: maskAddress(msg.to), error: classified.message }, 'Vonage refused a call');
        }
        throw classified;
      } finally {
        if (onAbort !== undefined) signal.removeEventListener('abort', onAbort);
      }
    },
  };
}

/** The Vonage voice channel when an application, its key and a caller id are configured (config requires the signature secret with them). */
export function vonageVoiceChannelFromConfig(config: Config, pool: Queryable, log: Logger, linkSecret: string | undefined): Channel | undefined {
  if (config.VONAGE_APPLICATION_ID === undefined || config.VONAGE_PRIVATE_KEY === undefined || config.VONAGE_VOICE_FROM === undefined || linkSecret === undefined) {
    return undefined;
  }
  return createVonageVoiceChannel({
    applicationId: config.VONAGE_APPLICATION_ID,
    privateKey: privateKeyPem(config.VONAGE_PRIVATE_KEY),
    apiBase: config.VONAGE_VOICE_API_BASE,
    from: config.VONAGE_VOICE_FROM,
    publicBaseUrl: config.publicBaseUrl,
    linkSecret,
    timeoutSeconds: config.VOICE_CALL_TIMEOUT_SECONDS,
    callsPerSecond: config.VOICE_CALLS_PER_SECOND,
    pool,
    log,
  });
}
