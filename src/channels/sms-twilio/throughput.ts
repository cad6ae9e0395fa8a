import { Batcher } from '../../batcher.js';
import { prepared, type Queryable } from '../../db/pool.js';

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

/**
 * `count` slots at once (a burst's sends of one turn, issue 19): one statement grants as many as
 * the budget allows now, in order, and tells each refused one when its turn comes. Same GCRA row
 * and rule as takeSendSlot. The row is locked for the statement, so concurrent workers queue on
 * it once per batch instead of once per message. A sender's very first batches, racing to create
 * its row, may each be granted (once, by at most their size).
 */
export async function takeSendSlots(db: Queryable, sender: string, ratePerSecond: number, count: number, burst = 1): Promise<SlotAnswer[]> {
  const intervalMs = 1000 / ratePerSecond;
  const toleranceMs = intervalMs * Math.max(0, burst - 1);
  const { rows } = await db.query<{ granted: number; wait_ms: number }>(prepared(
    'sms.take-send-slots',
    `with now as (select clock_timestamp() as t),
     prev as (select tat from sms_sender_rate where sender = $1 for update),
     base as (select n.t, greatest(coalesce((select tat from prev), n.t), n.t) as b from now n),
     g as (
       select t, b, (case when extract(epoch from (t - b)) * 1000 + $3 >= 0
                          then least($4::int, floor((extract(epoch from (t - b)) * 1000 + $3) / $2)::int + 1) else 0 end) as granted
         from base
     ),
     upd as (
       insert into sms_sender_rate as r (sender, tat)
       select $1, b + make_interval(secs => granted * $2 / 1000.0) from g
       on conflict (sender) do update set tat = excluded.tat
       returning tat
     )
     select g.granted, (extract(epoch from ((select tat from upd) - g.t)) * 1000 - $3)::float8 as wait_ms from g`,
    [sender, intervalMs, toleranceMs, count],
  ));
  const { granted, wait_ms: waitMs } = rows[0]!;
  return Array.from({ length: count }, (_, i) =>
    i < granted ? { ok: true } : { ok: false, retryAfterMs: Math.max(1, Math.ceil(waitMs + (i - granted) * intervalMs)) });
}

/** A sender's slots, taken together for the sends of one turn (takeSendSlots). */
export function sendSlots(db: Queryable, sender: string, ratePerSecond: number, burst = 1): () => Promise<SlotAnswer> {
  const batcher = new Batcher<null, SlotAnswer>((items) => takeSendSlots(db, sender, ratePerSecond, items.length, burst), 500);
  return () => batcher.run(null);
}
