import type { Queryable } from '../db/pool.js';
import { createDevOutboxChannel } from './dev-outbox/index.js';
import { CHANNEL_NAMES, type ChannelName, type Channels } from './types.js';

export type ChannelDeps = { pool: Queryable };

/**
 * The channel for each of push, SMS and email. Real providers (FCM, Twilio, SendGrid) replace
 * the dev outbox per channel once they exist and are configured; until then every channel is it.
 * Unguarded: startWorker puts them behind one circuit breaker per provider (delivery/breaker.ts).
 */
export function createChannels(deps: ChannelDeps): Channels {
  const devOutbox = createDevOutboxChannel(deps.pool);
  return { push: devOutbox, sms: devOutbox, email: devOutbox };
}

/** Channels with no real provider configured, whose messages go to the dev outbox. */
export function devOutboxChannels(): ChannelName[] {
  return [...CHANNEL_NAMES];
}
