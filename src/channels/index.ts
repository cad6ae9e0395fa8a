import type { Config } from '../config.js';
import type { Queryable } from '../db/pool.js';
import type { Logger } from '../observability/logger.js';
import { coalesced } from './coalesce.js';
import { createDevOutboxChannel } from './dev-outbox/index.js';
import { postmarkChannelFromConfig } from './email-postmark/index.js';
import { sendGridChannelFromConfig } from './email-sendgrid/index.js';
import { fcmChannelFromConfig } from './push-fcm/index.js';
import { twilioChannelFromConfig } from './sms-twilio/index.js';
import { vonageChannelFromConfig } from './sms-vonage/index.js';
import { twilioVoiceChannelFromConfig, voiceFrom } from './voice-twilio/index.js';
import { vonageVoiceChannelFromConfig } from './voice-vonage/index.js';
import { CHANNEL_NAMES, providersOf, type Channel, type ChannelName, type Channels } from './types.js';

/** `linkSecret`: signs the URLs Twilio and Vonage fetch during a call; without it calls go to the dev outbox. */
export type ChannelDeps = { pool: Queryable; config?: Config; log?: Logger; linkSecret?: string };

export type ChannelSet = {
  channels: Channels;
  /** Channels whose messages go to the dev outbox (no provider configured). */
  devOutbox: ChannelName[];
  /** Releases provider clients (FCM's app and connections). */
  close: () => Promise<void>;
};

type Maker = () => Channel | undefined;

/** Says whether the provider's receipts can reach us (their webhook's secret is configured). */
const withReceipts = (c: Channel | undefined, receipts: boolean): Channel | undefined => (c === undefined ? undefined : { ...c, receipts });

/**
 * Each channel's providers in the configured order (SMS_PROVIDERS, EMAIL_PROVIDERS, VOICE_PROVIDERS),
 * among those whose credentials are set: push FCM; SMS Twilio, Vonage; email SendGrid, Postmark; voice
 * Twilio, Vonage. A channel with
 * none goes to the dev outbox. Unguarded: startWorker puts each provider behind its own circuit
 * breaker (delivery/breaker.ts), and a delivery fails over along the list (delivery/deliver.ts).
 * A provider with a bulk call (sendMany) is coalesced (coalesce.ts): the sends of one event-loop
 * turn go out as one provider request, each delivery still getting its own answer.
 */
export function createChannels(deps: ChannelDeps): ChannelSet {
  const devOutbox = createDevOutboxChannel(deps.pool);
  const { config, log } = deps;
  const push = config !== undefined && log !== undefined ? fcmChannelFromConfig(config, deps.pool, log) : undefined;
  const sms: Record<string, Maker> = {
    // Twilio's status callbacks are verified with the account's own token: always on.
    twilio: () => (config !== undefined && log !== undefined ? twilioChannelFromConfig(config, deps.pool, log) : undefined),
    vonage: () => (config !== undefined && log !== undefined
      ? withReceipts(vonageChannelFromConfig(config, log), config.VONAGE_SIGNATURE_SECRET !== undefined) : undefined),
  };
  const email: Record<string, Maker> = {
    sendgrid: () => (config !== undefined ? withReceipts(sendGridChannelFromConfig(config, log), config.SENDGRID_WEBHOOK_PUBLIC_KEY !== undefined) : undefined),
    postmark: () => (config !== undefined ? withReceipts(postmarkChannelFromConfig(config, log), config.POSTMARK_WEBHOOK_USER !== undefined) : undefined),
  };
  const voice: Record<string, Maker> = {
    'twilio-voice': () => (config !== undefined && log !== undefined ? twilioVoiceChannelFromConfig(config, deps.pool, log, deps.linkSecret) : undefined),
    'vonage-voice': () => (config !== undefined && log !== undefined ? vonageVoiceChannelFromConfig(config, deps.pool, log, deps.linkSecret) : undefined),
  };
  // Providers with a bulk call (SendGrid, Postmark, FCM) send the messages of one turn together.
  const ordered = (makers: Record<string, Maker>, order: readonly string[] | undefined): Channel[] =>
    (order ?? Object.keys(makers)).flatMap((name) => makers[name]?.() ?? []).map(coalesced);
  const orOutbox = (list: Channel[]): Channel | readonly Channel[] => (list.length === 0 ? devOutbox : list.length === 1 ? list[0]! : list);
  const channels: Channels = {
    push: push === undefined ? devOutbox : coalesced(push),
    sms: orOutbox(ordered(sms, config?.SMS_PROVIDERS)),
    email: orOutbox(ordered(email, config?.EMAIL_PROVIDERS)),
    voice: orOutbox(ordered(voice, config?.VOICE_PROVIDERS)),
  };
  return {
    channels,
    devOutbox: CHANNEL_NAMES.filter((name) => channels[name] === devOutbox),
    close: async () => {
      await push?.close();
    },
  };
}

/** Each channel's provider names, in the order they are tried ('dev_outbox' where none is configured). */
export function providerNames(channels: Channels): Record<ChannelName, string[]> {
  return Object.fromEntries(CHANNEL_NAMES.map((name) => [name, providersOf(channels[name]).map((c) => c.provider)])) as Record<ChannelName, string[]>;
}

type ProviderConfig = Pick<Config, 'FIREBASE_SERVICE_ACCOUNT_JSON' | 'FIREBASE_SERVICE_ACCOUNT_PATH' | 'TWILIO_ACCOUNT_SID' | 'SENDGRID_API_KEY'>
  & Partial<Pick<Config, 'POSTMARK_SERVER_TOKEN' | 'VONAGE_API_KEY'>>
  & Partial<Pick<Config, 'SMS_PROVIDERS' | 'EMAIL_PROVIDERS' | 'TWILIO_VOICE_FROM' | 'TWILIO_FROM_NUMBER'>>
  & Partial<Pick<Config, 'VOICE_PROVIDERS' | 'VONAGE_APPLICATION_ID' | 'VONAGE_VOICE_FROM'>>;

/**
 * Each channel's providers whose credentials are configured, in the order they are tried (the same
 * order createChannels builds): what /readyz shows and what decides the dev outbox.
 */
export function configuredProviders(config: ProviderConfig): Record<ChannelName, string[]> {
  const has: Record<string, boolean> = {
    fcm: config.FIREBASE_SERVICE_ACCOUNT_JSON !== undefined || config.FIREBASE_SERVICE_ACCOUNT_PATH !== undefined,
    twilio: config.TWILIO_ACCOUNT_SID !== undefined,
    sendgrid: config.SENDGRID_API_KEY !== undefined,
    postmark: config.POSTMARK_SERVER_TOKEN !== undefined,
    vonage: config.VONAGE_API_KEY !== undefined,
    // Calls need a number to call from (a messaging service cannot).
    'twilio-voice': config.TWILIO_ACCOUNT_SID !== undefined && voiceFrom(config) !== undefined,
    // Config makes sure the private key and the signature secret come with the application id.
    'vonage-voice': config.VONAGE_APPLICATION_ID !== undefined && config.VONAGE_VOICE_FROM !== undefined,
  };
  const pick = (order: readonly string[]) => order.filter((name) => has[name] === true);
  return {
    push: pick(['fcm']),
    sms: pick(config.SMS_PROVIDERS ?? ['twilio', 'vonage']),
    email: pick(config.EMAIL_PROVIDERS ?? ['sendgrid', 'postmark']),
    voice: pick(config.VOICE_PROVIDERS ?? ['twilio-voice', 'vonage-voice']),
  };
}

/** Channels with no real provider configured, whose messages go to the dev outbox. */
export function devOutboxChannels(config: ProviderConfig): ChannelName[] {
  const providers = configuredProviders(config);
  return CHANNEL_NAMES.filter((name) => providers[name].length === 0);
}
