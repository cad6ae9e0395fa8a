import type { Queryable } from '../../db/pool.js';
import type { Channel, ChannelName, OutboundMessage, SendResult } from '../types.js';

/**
 * Stands in for a provider that is not configured: the message lands in `dev_outbox`, where a
 * person reads it at GET /dev/outbox. One row per delivery, so a retried send never shows twice.
 */
export const DEV_OUTBOX_PROVIDER = 'dev-outbox';

export function createDevOutboxChannel(pool: Queryable): Channel {
  return {
    provider: DEV_OUTBOX_PROVIDER,
    async send(msg: OutboundMessage, signal: AbortSignal): Promise<SendResult> {
      signal.throwIfAborted();
      // A retry after the insert committed (but before the delivery row was marked sent) finds its row.
      const { rows } = await pool.query<{ id: string }>(
        `insert into dev_outbox (delivery_id, channel, "to", subject, body, kind, incident_id)
         values ($1, $2, $3, $4, $5, $6, $7)
         on conflict (delivery_id) do nothing
         returning id`,
        [msg.deliveryId, msg.channel, msg.to, msg.subject, msg.body, msg.kind, msg.incidentId],
      );
      let id = rows[0]?.id;
      if (id === undefined) {
        const existing = await pool.query<{ id: string }>('select id from dev_outbox where delivery_id = $1', [msg.deliveryId]);
        id = existing.rows[0]?.id;
        if (id === undefined) throw new Error('dev outbox row vanished after a conflict');
      }
      return { provider: DEV_OUTBOX_PROVIDER, providerMessageId: id };
    },
  };
}

export type DevOutboxRow = {
  id: string;
  channel: ChannelName;
  to: string;
  subject: string | null;
  body: string;
  kind: string;
  incident_id: string | null;
  created_at: Date;
};

/** Newest first. */
export async function listDevOutbox(pool: Queryable, limit: number): Promise<DevOutboxRow[]> {
  const { rows } = await pool.query<DevOutboxRow>(
    `select id, channel, "to", subject, body, kind, incident_id, created_at
       from dev_outbox
      order by created_at desc, id desc
      limit $1`,
    [limit],
  );
  return rows;
}
