import type { ChannelName } from '../channels/types.js';
import type { Queryable } from '../db/pool.js';

/**
 * What providers tell us after a message left: status webhooks (SendGrid events, Twilio status
 * callbacks) and permanent send errors. Shared by every provider's webhook and by the delivery
 * job, so "this address is dead" means the same thing whichever way we learn it. The statuses
 * themselves are recorded by carrier-status.ts.
 */

/**
 * Claims a provider event id: true the first time, false for a replay (already applied).
 * Call inside the transaction that applies the event, so a failure mid-way frees the id again.
 */
export async function claimProviderEvent(db: Queryable, provider: string, eventId: string, now: Date): Promise<boolean> {
  const { rowCount } = await db.query(
    'insert into provider_events (provider, event_id, received_at) values ($1, $2, $3) on conflict do nothing',
    [provider, eventId, now],
  );
  return (rowCount ?? 0) > 0;
}

export type DeliveryRef = {
  id: string;
  member_id: string | null;
  contact_id: string | null;
  incident_id: string | null;
  channel: ChannelName;
  kind: string;
  address: string;
};

export type DisabledChannel = 'email' | 'sms';

/**
 * Turns a channel off for a contact because its address can never work (hard bounce, invalid
 * number, landline), with the reason the member sees on the contact. Future alerts skip it;
 * alerts in flight keep their other channels. Returns true when it was on.
 */
export async function disableContactChannel(
  db: Queryable, contactId: string, channel: DisabledChannel, reason: string, now: Date, address?: string,
): Promise<boolean> {
  // With `address`: only while it is still the contact's address (a late bounce for an old
  // address must not turn off the new one).
  const sql = channel === 'email'
    ? `update contacts set email_disabled = true, email_disabled_reason = left($2, 200), updated_at = $3
        where id = $1 and not email_disabled and ($4::text is null or lower(email) = lower($4))`
    : `update contacts set sms_disabled = true, sms_disabled_reason = left($2, 200), updated_at = $3
        where id = $1 and not sms_disabled and ($4::text is null or phone = $4)`;
  const { rowCount } = await db.query(sql, [contactId, reason, now, address ?? null]);
  return (rowCount ?? 0) > 0;
}

/**
 * The incident timeline says that one channel of a contact is down for this alert and which of
 * the contact's channels still carry it (empty: none; the escalation's next tier is the backstop).
 * Its message channels: a call is an escalation action of its own (src/incidents/calls.ts), not
 * a channel of the alert's messages.
 */
export async function recordFailover(
  db: Queryable, d: Pick<DeliveryRef, 'id' | 'incident_id' | 'contact_id' | 'channel'>, reason: string, now: Date,
): Promise<void> {
  if (d.incident_id === null || d.contact_id === null) return;
  await db.query(
    `insert into incident_events (incident_id, at, type, contact_id, detail)
     select $1, $3, 'failover', $2, jsonb_build_object(
       'delivery_id', $5::uuid, 'channel', $4::text, 'reason', left($6, 200),
       'carried_by', coalesce((select jsonb_agg(distinct o.channel) from deliveries o
                                where o.incident_id = $1 and o.contact_id = $2 and o.channel <> $4 and o.channel <> 'voice'
                                  and o.kind = 'alert' and o.status in ('pending', 'sent')), '[]'::jsonb))
     where not exists (select 1 from incident_events e where e.incident_id = $1 and e.type = 'failover'
                         and e.contact_id = $2 and e.detail->>'channel' = $4)`,
    [d.incident_id, d.contact_id, now, d.channel, d.id, reason],
  );
}
