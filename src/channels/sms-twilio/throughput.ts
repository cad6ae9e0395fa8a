import type { Queryable } from '../../db/pool.js';

/**
 * Per-sender SMS throughput shared by every worker process: a GCRA (generic cell rate algorithm)
 * row per sender in PostgreSQL. `tat` is when the next message is due if messages left at exactly
 * the rate; a send is allowed when tat is not later than now (plus the burst tolerance), and
 * moves tat one interval on. One statement takes or refuses a slot, so concurrent workers never
 * both take the same one.
 *
 * Time is the database's clock_timestamp(), not the process clock: the budget is shared across
 * machines, and one clock for all of them keeps the spacing true whatever the hosts' drift.
 */

export type SlotAnswer = { ok: true } | { ok: false; retryAfterMs: number };

export async function takeSendSlot(db: Queryable, sender: string, ratePerSecond: number, burst = 1): Promise<SlotAnswer> {
  const intervalMs = 1000 / ratePerSecond;
  const toleranceMs = intervalMs * Math.max(0, burst - 1);
  const { rows } = await db.query<{ granted: boolean; wait_ms: number | null }>(
    `with now as (select clock_timestamp() as t),
     prev as (
       select tat from sms_sender_rate where sender = $1 for update
     ),
     upd as (
       insert into sms_sender_rate as r (sender, tat)
       select $1, t + make_interval(secs => $2 / 1000.0) from now
       on conflict (sender) do update
         set tat = greatest(r.tat, (select t from now)) + make_interval(secs => $2 / 1000.0)
         where r.tat <= (select t from now) + make_interval(secs => $3 / 1000.0)
       returning tat
     )
     select exists (select 1 from upd) as granted,
            (select extract(epoch from (p.tat - n.t)) * 1000 - $3 from prev p, now n)::float8 as wait_ms`,
    [sender, intervalMs, toleranceMs],
  );
  const r = rows[0]!;
  if (r.granted) return { ok: true };
  // No earlier row in this statement's snapshot: another worker created it just now and holds the slot.
  return { ok: false, retryAfterMs: Math.max(1, Math.ceil(r.wait_ms ?? intervalMs)) };
}
