import { CHANNEL_NAMES, type ChannelName } from '../channels/types.js';
import type { Queryable } from '../db/pool.js';
import { escapeHtml } from '../http/html.js';

/**
 * How this incident's alerts reached people so far, per channel, from what the carriers said
 * (carrier_status): counts only, never who or which address. Shown on the contact's alert page,
 * so a contact can tell whether the others are likely to know.
 */

export type ChannelReach = { channel: ChannelName; delivered: number; undelivered: number; unconfirmed: number };

const LABEL: Record<ChannelName, string> = { push: 'Push', sms: 'SMS', email: 'Email', voice: 'Calls' };

export async function alertReach(db: Queryable, incidentId: string): Promise<ChannelReach[]> {
  // One bucket per alert: confirmed delivered, else known not to have arrived (the carrier said
  // so, or the send failed for good), else sent with no word yet (push never gets one).
  const { rows } = await db.query<ChannelReach>(
    `select channel,
            count(*) filter (where b = 'delivered')::int as delivered,
            count(*) filter (where b = 'undelivered')::int as undelivered,
            count(*) filter (where b = 'unconfirmed')::int as unconfirmed
       -- An alert and its repeats (copies through another provider) are one alert: delivered if any copy was.
       from (select channel,
                    case when bool_or(carrier_status = 'delivered') then 'delivered'
                         when bool_and(carrier_status in ('undelivered', 'bounced', 'dropped', 'failed') or status = 'failed') then 'undelivered'
                         else 'unconfirmed' end as b
               from deliveries where incident_id = $1 and kind = 'alert' and status in ('sent', 'failed')
              group by channel, coalesce(repeat_of, id)) x
      group by channel`,
    [incidentId],
  );
  return CHANNEL_NAMES.map((c) => rows.find((r) => r.channel === c)).filter((r): r is ChannelReach => r !== undefined);
}

/** "SMS: 2 delivered, 1 undelivered. Email: 1 delivered." as a paragraph; empty when nothing was sent yet. */
export function alertReachHtml(reach: ChannelReach[]): string {
  if (reach.length === 0) return '';
  const parts = reach.map((r) => {
    const counts = [
      r.delivered > 0 ? `${r.delivered} delivered` : '',
      r.undelivered > 0 ? `${r.undelivered} undelivered` : '',
      r.unconfirmed > 0 ? `${r.unconfirmed} sent, no delivery report yet` : '',
    ].filter((x) => x !== '');
    return `${LABEL[r.channel]}: ${counts.join(', ')}`;
  });
  return `<p class="muted" id="alert-reach">Alerts so far: ${escapeHtml(parts.join('. '))}.</p>`;
}
