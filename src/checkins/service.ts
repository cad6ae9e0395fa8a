import { createHash } from 'node:crypto';
import type pg from 'pg';
import { withTransaction } from '../db/pool.js';
import { conflict } from '../http/errors.js';
import { enqueueDeliveries, insertDeliveries, type NewDelivery } from '../delivery/outbox.js';
import { renderCheckInNote } from '../incidents/messages.js';
import { pushAddress } from '../incidents/plan.js';
import { resolveMemberIncidents } from '../incidents/engine.js';
import type { Logger } from '../observability/logger.js';
import type { QueueSystem } from '../queue/index.js';
import * as schedules from '../schedules/repo.js';
import { followingDeadline } from '../schedules/timers.js';
import * as repo from './repo.js';

export type CheckInDeps = { pool: pg.Pool; queues: QueueSystem; log: Logger };

export type CheckInAnswer = { id: string; checked_in_at: string; next_deadline_at: string | null; resolved_incident_ids: string[] };

const answer = (r: repo.CheckInRow): CheckInAnswer => ({
  id: r.id,
  checked_in_at: r.checked_in_at.toISOString(),
  next_deadline_at: r.next_deadline_at === null ? null : r.next_deadline_at.toISOString(),
  resolved_incident_ids: r.resolved_incident_ids,
});

export function requestHash(body: unknown): string {
  return createHash('sha256').update(JSON.stringify(body ?? null)).digest('hex');
}

/** Rare path: schedules in the window whose following deadline was not computed yet. */
async function advanceStale(pool: pg.Pool, memberId: string, ids: string[], at: Date): Promise<void> {
  await withTransaction(pool, async (tx) => {
    const ctx = await schedules.timerContext(tx, memberId, at);
    for (const id of ids) {
      const s = await schedules.getSchedule(tx, memberId, id, true);
      if (s === undefined || !s.active || s.next_deadline_at === null || s.window_start_at >= at) continue;
      const next = followingDeadline(s, ctx.timeZone, s.next_deadline_at, ctx.pauses);
      await tx.query(
        `update schedules set window_start_at = next_deadline_at, next_deadline_at = $2::timestamptz,
           alert_at = $2 + make_interval(mins => grace_minutes), following_deadline_at = null, updated_at = $3
         where id = $1`,
        [id, next, at],
      );
    }
  });
}

async function nextDeadlineOf(pool: pg.Pool, memberId: string, at: Date): Promise<Date | null> {
  const { rows } = await pool.query<{ n: Date | null }>(
    'select min(next_deadline_at) as n from schedules where member_id = $1 and active and next_deadline_at > $2',
    [memberId, at],
  );
  return rows[0]?.n ?? null;
}

/** A short "checked in at 09:12" to contacts with notify_on_check_in: email or push, never SMS. */
async function sendCheckInNotes(deps: CheckInDeps, memberId: string, at: Date): Promise<void> {
  const { rows } = await deps.pool.query<{ id: string; name: string; email: string | null; email_disabled: boolean; linked_user_id: string | null; member_name: string | null; time_zone: string }>(
    `select c.id, c.name, c.email, c.email_disabled, c.linked_user_id, m.display_name as member_name, m.time_zone
     from contacts c join members m on m.id = c.member_id
     where c.member_id = $1 and c.notify_on_check_in and c.status = 'active'`,
    [memberId],
  );
  if (rows.length === 0) return;
  const notes: NewDelivery[] = rows.flatMap((c) => {
    const r = renderCheckInNote({ memberName: c.member_name ?? 'Your contact', contactName: c.name, at, timeZone: c.time_zone });
    const base = { memberId, contactId: c.id, kind: 'check_in_note' as const };
    const out: NewDelivery[] = [];
    if (c.linked_user_id !== null) out.push({ ...base, channel: 'push', address: pushAddress(c.linked_user_id), subject: r.push.title, body: r.push.body });
    if (c.email !== null && !c.email_disabled) out.push({ ...base, channel: 'email', address: c.email, subject: r.email.subject, body: r.email.text, html: r.email.html });
    return out;
  });
  await enqueueDeliveries(deps.queues, await insertDeliveries(deps.pool, notes), deps.log);
}

export async function checkIn(deps: CheckInDeps, input: repo.CheckInInput): Promise<CheckInAnswer> {
  const result = await repo.recordCheckIn(deps.pool, input);
  if (result.created === null) {
    // The key was used before: same request, same answer; another request under the same key is a mistake.
    const prior = await repo.findByIdempotencyKey(deps.pool, input.memberId, input.idempotencyKey!);
    if (prior === undefined) throw new Error('idempotent check-in vanished');
    if (prior.request_hash !== input.requestHash) throw conflict('this Idempotency-Key was used for a different request');
    if (prior.next_deadline_at === null) prior.next_deadline_at = await nextDeadlineOf(deps.pool, input.memberId, prior.checked_in_at);
    return answer(prior);
  }
  const created = result.created;
  if (result.needsRefill.length > 0) {
    await advanceStale(deps.pool, input.memberId, result.needsRefill, input.at);
    created.next_deadline_at = await nextDeadlineOf(deps.pool, input.memberId, input.at);
  }
  if (result.unresolvedIncidents.length > 0) {
    // The member turned up: every open incident is resolved and the contacts already alerted get the all clear.
    const { resolved, deliveryIds } = await resolveMemberIncidents(deps.pool, input.memberId, created.id, input.at);
    await repo.storeResolved(deps.pool, created.id, resolved);
    await enqueueDeliveries(deps.queues, deliveryIds, deps.log);
    created.resolved_incident_ids = resolved;
  }
  // Off the hot path: precompute the deadlines after the new ones, remember the answer for
  // replays, and send the "checked in" notes to the contacts who asked for them.
  void Promise.all([
    schedules.refillFollowing(deps.pool, input.at, input.memberId),
    repo.storeOutcome(deps.pool, created.id, created.next_deadline_at),
    sendCheckInNotes(deps, input.memberId, input.at),
  ]).catch((err: Error) => deps.log.warn({ err: { message: err.message } }, 'post-check-in bookkeeping failed; the worker will refill'));
  return answer(created);
}
