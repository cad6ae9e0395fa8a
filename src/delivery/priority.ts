import type { Queryable } from '../db/pool.js';
import type { Logger } from '../observability/logger.js';

/**
 * First alert first (issue 19). When many incidents open at once, the delivery queue holds
 * thousands of jobs; a worker takes them by BullMQ priority (lower number sooner, FIFO within a
 * number), so every contact's first alert of every incident leaves before anyone's second
 * channel, later step or routine message. Both queue backends honour it: Redis keeps prioritized
 * jobs in a sorted set (an add is O(log n) instead of O(1)), BullMQ's PostgreSQL backend claims
 * `order by priority, seq` from its (queue, priority, seq) index.
 *
 * 1  FIRST_ALERT    an incident's first alert: a step-1 alert (a missed check-in's tier 1, or an
 *                   SOS: every tier) of its first contact (the one whose id sorts first among the
 *                   contacts the step still reaches) on that contact's first channel: SMS if the
 *                   step has an SMS for them, else push, else email. SMS first: it reaches any
 *                   phone without the app, rings through unless the phone is silenced, and is
 *                   read within minutes; push needs the app installed, signed in and allowed to
 *                   notify, and a dead token fails silently; email is read last. An SMS throttled
 *                   for longer than a moment is set aside with a job of its own (deliver.ts), so
 *                   putting SMS first never holds push or email up behind the SMS sender's rate.
 *                   A channel whose row failed for good does not count: the next one is then the
 *                   contact's first. At a burst every incident gets one message out before any
 *                   incident gets a second (the time to first alert per incident, halved).
 * 2  CONTACT_FIRST_ALERT  the same for each of the step's other contacts: their first channel.
 *                   (Classes 1 and 2 both go before anyone's second channel.)
 * 3  FIRST_STEP     the other channels of that first step (and an SOS's phone calls), and repeat
 *                   copies of its alerts (no receipt came: that contact may not be reached yet).
 * 4  FOLLOW_UP      later steps (and their calls), repeat copies of their alerts,
 *                   "I'm on it" notices, lapse notices, all clears.
 * 5  MEMBER_WAITING reminders (a late one can turn into a false alarm) and phone verification
 *                   codes (the member is looking at the screen).
 * 6  ROUTINE        invitations and "checked in" notes.
 *
 * Priorities only order jobs that wait at the same time: with idle workers everything leaves at
 * once, as before. Every delivery job carries one (a job without a priority would go before all
 * of them).
 */
export const DELIVERY_PRIORITY = { FIRST_ALERT: 1, CONTACT_FIRST_ALERT: 2, FIRST_STEP: 3, FOLLOW_UP: 4, MEMBER_WAITING: 5, ROUTINE: 6 } as const;
export type DeliveryPriority = (typeof DELIVERY_PRIORITY)[keyof typeof DELIVERY_PRIORITY];
export const DELIVERY_PRIORITIES: readonly DeliveryPriority[] = Object.values(DELIVERY_PRIORITY);

/**
 * When the rows cannot be read (the lookup failed or took too long), every job goes out at the
 * top priority: the order of today without priorities (FIFO), never an alert held back.
 */
export const PRIORITY_UNKNOWN: DeliveryPriority = DELIVERY_PRIORITY.FIRST_ALERT;
/** An id with no row (gone since: the worker will skip it) has nothing to send. */
const PRIORITY_NO_ROW: DeliveryPriority = DELIVERY_PRIORITY.ROUTINE;
/** How long the lookup may take before the jobs go out at PRIORITY_UNKNOWN. */
export const PRIORITY_LOOKUP_TIMEOUT_MS = 1000;

const CHANNEL_RANK = (col: string) => `case ${col} when 'sms' then 0 when 'push' then 1 when 'email' then 2 else 3 end`;

/**
 * The rule, as a SQL expression over a `deliveries` row aliased `d`: the enqueue lookup and the
 * reconciler use this one text, so a re-enqueued row gets the priority it got the first time.
 * Siblings (the contact's other alerts of the same step) come from the step's unique index
 * (incident_id, step_no, contact_id, …): one index probe per step-1 alert, none for anything else.
 */
export const PRIORITY_SQL = `case
  when d.kind = 'alert' and d.step_no = 1 and d.copy_no = 0 and d.channel <> 'voice' then
    case when exists (
      select 1 from deliveries o
       where o.incident_id = d.incident_id and o.step_no = 1 and o.contact_id = d.contact_id and o.kind = 'alert'
         and o.copy_no = 0 and o.status <> 'failed' and ${CHANNEL_RANK('o.channel')} < ${CHANNEL_RANK('d.channel')}
    ) then ${DELIVERY_PRIORITY.FIRST_STEP}
    -- Another contact of the step comes first (its id sorts first): this one's first alert is the second class.
    when exists (
      select 1 from deliveries o
       where o.incident_id = d.incident_id and o.step_no = 1 and o.contact_id < d.contact_id and o.kind = 'alert'
         and o.copy_no = 0 and o.status <> 'failed' and o.channel <> 'voice'
    ) then ${DELIVERY_PRIORITY.CONTACT_FIRST_ALERT}
    else ${DELIVERY_PRIORITY.FIRST_ALERT} end
  -- A repeat of a first-step alert: that contact may not have been reached at all yet.
  when d.kind = 'alert' and d.step_no = 1 then ${DELIVERY_PRIORITY.FIRST_STEP}
  when d.kind in ('alert', 'ack_notice', 'ack_lapsed', 'all_clear') then ${DELIVERY_PRIORITY.FOLLOW_UP}
  when d.kind in ('reminder', 'verification') then ${DELIVERY_PRIORITY.MEMBER_WAITING}
  else ${DELIVERY_PRIORITY.ROUTINE}
end`;

/**
 * A delivery's queue job: its own (jobKey null: a row written before batches, a repeat copy, a row
 * taken out of its batch to be retried alone), or its batch's (outbox.ts).
 */
export type DeliveryJobRef = { id: string; priority: DeliveryPriority; jobKey?: string | null };

const rank = (channel: string) => ({ sms: 0, push: 1, email: 2 } as Record<string, number>)[channel] ?? 3;

type NewRow = { kind: string; stepNo?: number | null | undefined; channel: string; incidentId?: string | null | undefined; contactId: string | null };

/**
 * PRIORITY_SQL's rule over rows not written yet, with their siblings among the same rows (a step's
 * rows are written together), in input order: insertDeliveries groups rows of one priority into a
 * batch. One pass to find each contact's first channel of a first step, one to decide: a burst
 * writes thousands of rows at once. A job's priority is still the one PRIORITY_SQL gives its rows
 * once written (the most urgent of them).
 */
export function prioritiesOfNew(rows: readonly NewRow[]): DeliveryPriority[] {
  const firstStep = (r: NewRow) => r.kind === 'alert' && r.stepNo === 1 && r.channel !== 'voice';
  const key = (r: NewRow) => `${r.incidentId ?? ''} ${r.contactId ?? ''}`;
  const best = new Map<string, number>();
  // Each incident's first contact (PRIORITY_SQL's order: the smallest id).
  const firstContact = new Map<string, string>();
  for (const r of rows) {
    if (!firstStep(r)) continue;
    best.set(key(r), Math.min(best.get(key(r)) ?? Infinity, rank(r.channel)));
    const first = firstContact.get(r.incidentId ?? '');
    if (r.contactId !== null && (first === undefined || r.contactId < first)) firstContact.set(r.incidentId ?? '', r.contactId);
  }
  return rows.map((r) => {
    if (firstStep(r)) {
      if (rank(r.channel) > best.get(key(r))!) return DELIVERY_PRIORITY.FIRST_STEP;
      const first = firstContact.get(r.incidentId ?? '');
      return r.contactId !== null && first !== undefined && first < r.contactId ? DELIVERY_PRIORITY.CONTACT_FIRST_ALERT : DELIVERY_PRIORITY.FIRST_ALERT;
    }
    if (r.kind === 'alert' && r.stepNo === 1) return DELIVERY_PRIORITY.FIRST_STEP;
    if (['alert', 'ack_notice', 'ack_lapsed', 'all_clear'].includes(r.kind)) return DELIVERY_PRIORITY.FOLLOW_UP;
    if (r.kind === 'reminder' || r.kind === 'verification') return DELIVERY_PRIORITY.MEMBER_WAITING;
    return DELIVERY_PRIORITY.ROUTINE;
  });
}

/**
 * The priority of each id, in input order: ONE statement for the whole batch (a burst enqueues
 * thousands). Never throws: a lookup that fails or is slow gives PRIORITY_UNKNOWN, so the jobs
 * still go out at once.
 */
export async function deliveryPriorities(
  db: Queryable, ids: string[], log: Logger, timeoutMs = PRIORITY_LOOKUP_TIMEOUT_MS,
): Promise<DeliveryJobRef[]> {
  if (ids.length === 0) return [];
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`the priority lookup took over ${timeoutMs} ms`)), timeoutMs);
  });
  const lookup = db.query<{ id: string; priority: DeliveryPriority; job_key: string | null }>(
    `select d.id, d.job_key, (${PRIORITY_SQL}) as priority from deliveries d where d.id = any($1::uuid[])`, [ids],
  );
  lookup.catch(() => undefined); // a late failure after the timeout is already logged below
  try {
    const { rows } = await Promise.race([lookup, timeout]);
    const found = new Map(rows.map((r) => [r.id, r]));
    return ids.map((id) => ({ id, priority: found.get(id)?.priority ?? PRIORITY_NO_ROW, jobKey: found.get(id)?.job_key ?? null }));
  } catch (err) {
    log.warn({ err: { message: (err as Error).message }, deliveries: ids.length }, 'delivery priorities unknown; enqueued at the top priority, one job each');
    // Without the rows their batches are unknown: one job each (a batch's rows are then taken by
    // whichever job comes first; the reconciler adds the batch job for what is left).
    return ids.map((id) => ({ id, priority: PRIORITY_UNKNOWN }));
  } finally {
    clearTimeout(timer);
  }
}
