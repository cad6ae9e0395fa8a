import type { Channel } from '../channels/types.js';
import type { Queryable } from '../db/pool.js';

/**
 * Which providers a delivery may go through, in order. A copy (a repeat after no receipt came) goes
 * only through providers that have not carried the message yet: never two copies through one
 * provider. The original and every copy count (repeat_of names the original).
 */
export async function providersFor(
  db: Queryable, row: { id: string; repeat_of: string | null }, configured: readonly Channel[],
): Promise<readonly Channel[]> {
  if (row.repeat_of === null) return configured;
  const { rows } = await db.query<{ provider: string }>(
    `select distinct a.provider from delivery_attempts a join deliveries d on d.id = a.delivery_id
      where a.outcome = 'accepted' and (d.id = $1 or d.repeat_of = $1)`,
    [row.repeat_of],
  );
  const used = new Set(rows.map((r) => r.provider));
  return configured.filter((c) => !used.has(c.provider));
}

/**
 * The incident timeline says when an alert moved from one provider to the next: which delivery,
 * which channel, from and to whom, and why (the error, cleaned of addresses).
 */
export async function recordProviderFailover(
  db: Queryable, d: { id: string; incident_id: string | null; contact_id: string | null; channel: string }, from: string, to: string, reason: string, now: Date,
): Promise<void> {
  if (d.incident_id === null) return;
  await db.query(
    `insert into incident_events (incident_id, at, type, contact_id, detail)
     values ($1, $2, 'provider_failover', $3, jsonb_build_object('delivery_id', $4::uuid, 'channel', $5::text, 'from', $6::text, 'to', $7::text, 'reason', left($8, 200)))`,
    [d.incident_id, now, d.contact_id, d.id, d.channel, from, to, reason],
  );
}
