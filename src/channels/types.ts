/** The seam between delivery (what to send, when, how often) and a provider (how it leaves). */

/**
 * 'voice' is a phone call (src/channels/voice-twilio, voice-vonage): not part of a step's messages, but its own
 * escalation action (src/incidents/calls.ts). The message channels carry texts: alerts, notices,
 * invitations, reminders.
 */
export type ChannelName = 'push' | 'sms' | 'email' | 'voice';
export const CHANNEL_NAMES: readonly ChannelName[] = ['push', 'sms', 'email', 'voice'];
export type MessageChannelName = Exclude<ChannelName, 'voice'>;
export const MESSAGE_CHANNELS: readonly MessageChannelName[] = ['push', 'sms', 'email'];

/** A rendered message. `to` is an email address, an E.164 phone number or a device token. A call's body is what it says. */
export type OutboundMessage = {
  deliveryId: string;
  channel: ChannelName;
  to: string;
  subject: string | null;
  body: string;
  html: string | null;
  kind: string;
  incidentId: string | null;
  /** Push only: the rendered data payload (the link to open, the incident), when there is one. */
  data?: Record<string, string> | null;
};

/** What the provider said about the message in its answer to the send (FCM), recorded as a carrier status. */
export type SendStatus = { status: string; errorCode: string | null };

export type SendResult = { provider: string; providerMessageId: string; status?: SendStatus };

/**
 * permanent: this address will never work (bad number, dead token); retrying is pointless.
 * transient: try again later (5xx, timeout, 429).
 * configuration: our side is broken (bad credentials); an operator must act, keep retrying.
 */
export type ErrorClass = 'permanent' | 'transient' | 'configuration';

/**
 * `retryAfterMs` on a transient or configuration error is the provider's own "come back in"
 * (Retry-After, X-RateLimit-Reset): the delivery waits that long without spending an attempt.
 */
export class ChannelError extends Error {
  constructor(
    message: string,
    readonly errorClass: ErrorClass,
    readonly retryAfterMs?: number,
    /**
     * A permanent error that says the address itself is dead (an invalid or landline number, an
     * email that bounced): the contact's channel is turned off with this reason, shown to the
     * member. Push tokens are the push channel's own business (it deletes dead devices).
     */
    readonly deadAddress?: string,
    /** A permanent error that is the provider's word on the message (FCM: every token dead), recorded as a carrier status. */
    readonly sendStatus?: SendStatus,
  ) {
    super(message);
    this.name = 'ChannelError';
  }
}

/**
 * Not tried at all: a local throughput limit (SMS per-sender rate) says "not yet". The delivery
 * job comes back after `retryAfterMs` without recording a try or spending an attempt.
 */
export class ThrottledError extends ChannelError {
  constructor(message: string, retryAfterMs: number) {
    super(message, 'transient', retryAfterMs);
    this.name = 'ThrottledError';
  }
}

export interface Channel {
  readonly provider: string;
  /**
   * false: this provider cannot tell us a message arrived (its receipt webhook is not configured),
   * so a missing receipt means nothing and its alerts are not repeated for want of one.
   */
  readonly receipts?: boolean;
  /** Resolves once the provider accepted the message; throws ChannelError (or anything: treated as transient). */
  send(msg: OutboundMessage, signal: AbortSignal): Promise<SendResult>;
  /**
   * Optional bulk call (issue 19): many messages in ONE provider request, each keeping its own
   * outcome, in input order: a SendResult, or the ChannelError that `send` would have thrown for
   * it alone. Throws only when the request as a whole failed (every message failed alike).
   * Never given more than `maxBatch` messages.
   */
  sendMany?(msgs: readonly OutboundMessage[], signal: AbortSignal): Promise<readonly (SendResult | Error)[]>;
  /** The most messages one sendMany call takes (the provider's own limit). */
  readonly maxBatch?: number;
}

/**
 * Each channel's providers, in the order they are tried: a delivery goes to the first, and moves to
 * the next at once when one fails transiently or its breaker is open (src/delivery/deliver.ts). A
 * single Channel is a list of one.
 */
export type Channels = Record<MessageChannelName, Channel | readonly Channel[]> & {
  /** Phone calls. Absent (a worker built for messages only): calls are cancelled, saying so (delivery/deliver.ts). */
  voice?: Channel | readonly Channel[];
};

export const providersOf = (c: Channel | readonly Channel[] | undefined): readonly Channel[] => (c === undefined ? [] : Array.isArray(c) ? c : [c as Channel]);
