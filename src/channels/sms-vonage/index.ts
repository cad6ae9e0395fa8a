import { Vonage } from '@vonage/server-sdk';
import type { Config } from '../../config.js';
import { isGsm } from '../../incidents/sms.js';
import { maskAddress, type Logger } from '../../observability/logger.js';
import { ChannelError, type Channel, type OutboundMessage, type SendResult } from '../types.js';
import { classifySendError } from './errors.js';

export const VONAGE_PROVIDER = 'vonage';
export const VONAGE_STATUS_PATH = '/webhooks/vonage/status';

export type VonageChannelOptions = {
  apiKey: string;
  apiSecret: string;
  /** An E.164 number (+447700900123) or an alphanumeric sender id. */
  from: string;
  /** The SDK's restHost. Default: Vonage's own (https://rest.nexmo.com). */
  apiBase?: string | undefined;
  /**
   * Where Vonage posts this message's delivery receipt (overrides the dashboard's URL). Only
   * with a signature secret: an unsigned receipt is refused, so asking for one would be noise.
   */
  statusCallbackUrl?: string | undefined;
  /** Vonage stops trying to deliver after this many seconds (its `ttl`). */
  validitySeconds: number;
  log: Logger;
  /**
   * The SDK's own request timeout: the backstop for a call whose AbortSignal never fires, and
   * what ends a request the signal gave up on (the SDK takes no signal). Default 20 s.
   */
  timeoutMs?: number;
};

/** Vonage wants numbers without the leading +; an alphanumeric sender goes as it is. */
const wireNumber = (n: string) => n.replace(/^\+(?=\d+$)/, '');

type SmsParams = NonNullable<Parameters<Vonage['sms']['send']>[0]>;

/**
 * SMS through Vonage's SMS API with the official SDK (@vonage/server-sdk 3, whose request code
 * does the HTTP: Basic auth, JSON body, status table). The SDK has no per-call AbortSignal: the
 * call races the signal, and the SDK's own timeout (timeoutMs) ends the request it leaves behind.
 */
export function createVonageChannel(opts: VonageChannelOptions): Channel {
  const vonage = new Vonage(
    { apiKey: opts.apiKey, apiSecret: opts.apiSecret },
    { timeout: opts.timeoutMs ?? 20_000, ...(opts.apiBase === undefined ? {} : { restHost: opts.apiBase.replace(/\/+$/, '') }) },
  );
  const from = wireNumber(opts.from);

  return {
    provider: VONAGE_PROVIDER,
    async send(msg: OutboundMessage, signal: AbortSignal): Promise<SendResult> {
      signal.throwIfAborted();
      let onAbort: (() => void) | undefined;
      const aborted = new Promise<never>((_, reject) => {
        onAbort = () => reject(signal.reason instanceof Error ? signal.reason : new DOMException('aborted', 'AbortError'));
        signal.addEventListener('abort', onAbort, { once: true });
      });
      try {
        const sent = vonage.sms.send({
          to: wireNumber(msg.to),
          from,
          text: msg.body,
          // Text that is not GSM-7 (emoji, most non-Latin scripts) must go as UCS-2, or it arrives as '?'.
          type: (isGsm(msg.body) ? 'text' : 'unicode') as SmsParams['type'],
          clientRef: msg.deliveryId,
          ttl: opts.validitySeconds * 1000,
          ...(opts.statusCallbackUrl === undefined ? {} : { callback: opts.statusCallbackUrl, statusReportReq: true }),
        });
        // Settled either way, so an abandoned call never surfaces as an unhandled rejection.
        sent.catch(() => undefined);
        const res = await Promise.race([sent, aborted]);
        // A long text is split into parts, each with its own id; receipts carry client-ref (our
        // delivery id), so the first part's id is the message's.
        const id = res.messages?.find((m) => m.status === '0')?.['message-id'];
        if (id === undefined || id === '') throw new ChannelError('Vonage answered without a message id', 'transient');
        return { provider: VONAGE_PROVIDER, providerMessageId: id };
      } catch (err) {
        const classified = classifySendError(err, msg.to);
        if (classified.errorClass === 'configuration') {
          opts.log.error({ delivery_id: msg.deliveryId, error: classified.message }, 'Vonage refused our credentials, account or sender');
        } else if (classified.errorClass === 'permanent' && classified.deadAddress === undefined) {
          opts.log.error({ delivery_id: msg.deliveryId, to: maskAddress(msg.to), error: classified.message }, 'Vonage refused an SMS for a reason on our side');
        }
        throw classified;
      } finally {
        if (onAbort !== undefined) signal.removeEventListener('abort', onAbort);
      }
    },
  };
}

/** The Vonage channel when VONAGE_API_KEY is set (config makes sure the secret and sender go with it). */
export function vonageChannelFromConfig(config: Config, log: Logger): Channel | undefined {
  if (config.VONAGE_API_KEY === undefined || config.VONAGE_API_SECRET === undefined || config.VONAGE_FROM === undefined) return undefined;
  return createVonageChannel({
    apiKey: config.VONAGE_API_KEY,
    apiSecret: config.VONAGE_API_SECRET,
    from: config.VONAGE_FROM,
    apiBase: config.VONAGE_API_BASE,
    statusCallbackUrl: config.VONAGE_SIGNATURE_SECRET === undefined ? undefined : `${config.publicBaseUrl}${VONAGE_STATUS_PATH}`,
    validitySeconds: config.SMS_VALIDITY_SECONDS,
    log,
  });
}
