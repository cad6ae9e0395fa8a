import type pg from 'pg';
import type { ChannelName } from '../channels/types.js';
import { withTransaction } from '../db/pool.js';
import { clearFailures, hadFailed, isolate, recordFailures, setAside, type FailureMetrics } from '../incidents/isolate.js';
import type { Logger } from '../observability/logger.js';
import type { Metrics } from '../observability/metrics.js';

/**
 * The receipts lane of the sweep: an SMS or email alert that its provider accepted but that has no
 * "delivered" receipt RECEIPT_TIMEOUT_SECONDS later (a provider that silently does not deliver) is
 * sent again, as a copy through the next provider of its channel that has not carried it
 * (src/delivery/providers.ts), saying it is a repeat. A receipt that came, an incident that is
 * over, or no provider left: nothing more is sent. Each row is looked at once (receipt_check_at is
 * cleared); a copy gets its own check, so a third provider can follow a second.
 */
export type ReceiptDeps = {
  pool: pg.Pool;
  log: Logger;
  /** How many providers each channel has: a copy is made only while one has not carried the alert. */
  providerCounts: Partial<Record<ChannelName, number>>;
  batchSize?: number;
  failures?: FailureMetrics;
  metrics?: Pick<Metrics, 'receiptTimeouts'>;
};

type Due = {
  id: string; member_id: string | null; channel: ChannelName; provider: string | null; carrier_status: string | null;
  copy_no: number; incident_state: string; had_failed: boolean;
};

export type ReceiptAction = 'repeated' | 'delivered' | 'none_left' | 'not_open' | 'dead_address';

function actionFor(d: Due, counts: ReceiptDeps['providerCounts']): ReceiptAction {
  if (d.carrier_status === 'delivered') return 'delivered';
  // Over, or someone said they are on it: no copy (an acknowledgement that lapses resumes escalation anyway).
  if (d.incident_state !== 'open') return 'not_open';
  // The carrier said it cannot be delivered there: the contact's other channels carry it, not a copy to the same address.
  if (d.carrier_status !== null && ['bounced', 'dropped', 'failed'].includes(d.carrier_status)) return 'dead_address';
  return d.copy_no + 1 < (counts[d.channel] ?? 1) ? 'repeated' : 'none_left';
}

export async function sweepReceipts(deps: ReceiptDeps, now: Date, out: string[]): Promise<number> {
  return withTransaction(deps.pool, async (tx) => {
    const { rows } = await tx.query<Due>(
      // The incident is share-locked: a resolve (or an "I'm on it") waits for this transaction and then
      // cancels the copies it made, or commits first and is seen here; no copy follows an all clear.
      `select d.id, d.member_id, d.channel, d.provider, d.carrier_status, d.copy_no, i.state as incident_state, ${hadFailed('receipts', 'd')} as had_failed
         from deliveries d join incidents i on i.id = d.incident_id
        where d.receipt_check_at <= $1 and not ${setAside('receipts', 'd', '$1')}
        order by d.receipt_check_at limit $2 for update of d skip locked for share of i skip locked`,
      [now, deps.batchSize ?? 200],
    );
    if (rows.length === 0) return 0;
    const r = await isolate(tx, rows, async (part) => {
      await tx.query('update deliveries set receipt_check_at = null where id = any($1::uuid[])', [part.map((d) => d.id)]);
      const repeat = part.filter((d) => actionFor(d, deps.providerCounts) === 'repeated').map((d) => d.id);
      // (A contact removed since the alert has contact_id null: no copy goes to them.)
      if (repeat.length === 0) return [];
      // The copy is the same message to the same address; the worker marks it a repeat and picks a provider that has not carried it.
      const { rows: copies } = await tx.query<{ id: string }>(
        `insert into deliveries (member_id, contact_id, kind, channel, address, subject, body, html, incident_id, step_no, data, render, repeat_of, copy_no, created_at, updated_at)
         select member_id, contact_id, kind, channel, address, subject, body, html, incident_id, step_no, data, render, coalesce(repeat_of, id), copy_no + 1, $2, $2
           from deliveries where id = any($1::uuid[]) and contact_id is not null
         on conflict do nothing
         returning id`,
        [repeat, now],
      );
      return copies.map((c) => c.id);
    });
    await recordFailures(tx, 'receipts', r.failed, now, deps.log, deps.failures);
    const bad = new Set(r.failed.map((f) => f.item.id));
    await clearFailures(tx, 'receipts', rows.filter((d) => d.had_failed && !bad.has(d.id)).map((d) => d.id), deps.log);
    for (const d of r.done) {
      const action = actionFor(d, deps.providerCounts);
      if (action === 'delivered') continue;
      deps.metrics?.receiptTimeouts.inc({ provider: d.provider ?? 'unknown', channel: d.channel, action });
      if (action === 'repeated') deps.log.info({ delivery_id: d.id, channel: d.channel, provider: d.provider, carrier_status: d.carrier_status }, 'no delivery receipt in time; sending a copy through the next provider');
    }
    for (const ids of r.results) out.push(...ids);
    return rows.length;
  });
}
