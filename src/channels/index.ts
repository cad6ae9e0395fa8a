import type { Config } from '../config.js';
import type { Queryable } from '../db/pool.js';
import type { Logger } from '../observability/logger.js';
import { createDevOutboxChannel } from './dev-outbox/index.js';
import { sendGridChannelFromConfig } from './email-sendgrid/index.js';
import { fcmChannelFromConfig } from './push-fcm/index.js';
import { twilioChannelFromConfig } from './sms-twilio/index.js';
import { twilioVoiceChannelFromConfig, voiceFrom } from './voice-twilio/index.js';
import { CHANNEL_NAMES, providersOf, type Channel, type ChannelName, type Channels } from './types.js';

/** `linkSecret`: signs the URLs Twilio fetches during a call; without it calls go to the dev outbox. */
export type ChannelDeps = { pool: Queryable; config?: Config; log?: Logger; linkSecret?: string };

export type ChannelSet = {
  channels: Channels;
  /** Channels whose messages go to the dev outbox (no provider configured). */
  devOutbox: ChannelName[];
  /** Releases provider clients (FCM's app and connections). */
  close: () => Promise<void>;
};

type Maker = () => Channel | undefined;

/**
 * Each channel's providers in the configured order (SMS_PROVIDERS, EMAIL_PROVIDERS), among those
 * whose credentials are set: push FCM; SMS Twilio, Vonage; email SendGrid, Postmark; voice Twilio. A channel with
 * none goes to the dev outbox. Unguarded: startWorker puts each provider behind its own circuit
 * breaker (delivery/breaker.ts), and a delivery fails over along the list (delivery/deliver.ts).
 */
export function createChannels(deps: ChannelDeps): ChannelSet {
  const devOutbox = createDevOutboxChannel(deps.pool);
  const { config, log } = deps;
  const push = config !== undefined && log !== undefined ? fcmChannelFromConfig(config, deps.pool, log) : undefined;
  const sms: Record<string, Maker> = {
    twilio: () => (config !== undefined && log !== undefined ? twilioChannelFromConfig(config, deps.pool, log) : undefined),
  };
  const email: Record<string, Maker> = {
    sendgrid: () => (config !== undefined ? sendGridChannelFromConfig(config, log) : undefined),
  };
  const ordered = (makers: Record<string, Maker>, order: readonly string[] | undefined): Channel[] =>
    (order ?? Object.keys(makers)).flatMap((name) => makers[name]?.() ?? []);
  const orOutbox = (list: Channel[]): Channel | readonly Channel[] => (list.length === 0 ? devOutbox : list.length === 1 ? list[0]! : list);
  const channels: Channels = {
    push: push ?? devOutbox,
    sms: orOutbox(ordered(sms, config?.SMS_PROVIDERS)),
    email: orOutbox(ordered(email, config?.EMAIL_PROVIDERS)),
    voice: (config !== undefined && log !== undefined ? twilioVoiceChannelFromConfig(config, deps.pool, log, deps.linkSecret) : undefined) ?? devOutbox,
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

/** Channels with no real provider configured, whose messages go to the dev outbox. */
export function devOutboxChannels(config: Pick<Config,
  'FIREBASE_SERVICE_ACCOUNT_JSON' | 'FIREBASE_SERVICE_ACCOUNT_PATH' | 'TWILIO_ACCOUNT_SID' | 'SENDGRID_API_KEY' | 'TWILIO_VOICE_FROM' | 'TWILIO_FROM_NUMBER'>): ChannelName[] {
  const configured: Record<ChannelName, boolean> = {
    push: config.FIREBASE_SERVICE_ACCOUNT_JSON !== undefined || config.FIREBASE_SERVICE_ACCOUNT_PATH !== undefined,
    sms: config.TWILIO_ACCOUNT_SID !== undefined,
    email: config.SENDGRID_API_KEY !== undefined,
    // Calls need a number to call from (a messaging service cannot).
    voice: config.TWILIO_ACCOUNT_SID !== undefined && voiceFrom(config) !== undefined,
  };
  return CHANNEL_NAMES.filter((name) => !configured[name]);
}
