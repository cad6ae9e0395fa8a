import type { Config } from '../config.js';
import type { Queryable } from '../db/pool.js';
import type { Logger } from '../observability/logger.js';
import { createDevOutboxChannel } from './dev-outbox/index.js';
import { sendGridChannelFromConfig } from './email-sendgrid/index.js';
import { fcmChannelFromConfig } from './push-fcm/index.js';
import { twilioChannelFromConfig } from './sms-twilio/index.js';
import { CHANNEL_NAMES, type ChannelName, type Channels } from './types.js';

export type ChannelDeps = { pool: Queryable; config?: Config; log?: Logger };

export type ChannelSet = {
  channels: Channels;
  /** Channels whose messages go to the dev outbox (no provider configured). */
  devOutbox: ChannelName[];
  /** Releases provider clients (FCM's app and connections). */
  close: () => Promise<void>;
};

/**
 * The channel for each of push, SMS and email: the real provider (FCM, Twilio, SendGrid) where
 * its credentials are configured, the dev outbox where they are not. Unguarded: startWorker puts
 * them behind one circuit breaker per provider (delivery/breaker.ts).
 */
export function createChannels(deps: ChannelDeps): ChannelSet {
  const devOutbox = createDevOutboxChannel(deps.pool);
  const { config, log } = deps;
  const push = config !== undefined && log !== undefined ? fcmChannelFromConfig(config, deps.pool, log) : undefined;
  const sms = config !== undefined && log !== undefined ? twilioChannelFromConfig(config, deps.pool, log) : undefined;
  const email = config !== undefined ? sendGridChannelFromConfig(config, log) : undefined;
  const channels: Channels = { push: push ?? devOutbox, sms: sms ?? devOutbox, email: email ?? devOutbox };
  return {
    channels,
    devOutbox: CHANNEL_NAMES.filter((name) => channels[name] === devOutbox),
    close: async () => {
      await push?.close();
    },
  };
}

/** Channels with no real provider configured, whose messages go to the dev outbox. */
export function devOutboxChannels(config: Pick<Config,
  'FIREBASE_SERVICE_ACCOUNT_JSON' | 'FIREBASE_SERVICE_ACCOUNT_PATH' | 'TWILIO_ACCOUNT_SID' | 'SENDGRID_API_KEY'>): ChannelName[] {
  const configured: Record<ChannelName, boolean> = {
    push: config.FIREBASE_SERVICE_ACCOUNT_JSON !== undefined || config.FIREBASE_SERVICE_ACCOUNT_PATH !== undefined,
    sms: config.TWILIO_ACCOUNT_SID !== undefined,
    email: config.SENDGRID_API_KEY !== undefined,
  };
  return CHANNEL_NAMES.filter((name) => !configured[name]);
}
