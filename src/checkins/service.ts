import { createHash } from 'node:crypto';
import type pg from 'pg';
import { withTransaction } from '../db/pool.js';
import { conflict } from '../http/errors.js';
import type { Logger } from '../observability/logger.js';
import * as schedules from '../schedules/repo.js';
import { followingDeadline } from '../schedules/timers.js';
import * as repo from './repo.js';

export type CheckInDeps = { pool: pg.Pool; log: Pick<Logger, 'warn' | 'error'> };

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
        `update schedules set window_start_at = next_deadline_at, next_deadline_at = $2,
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
  // Off the hot path: precompute the deadlines after the new ones, and remember the answer for replays.
  void Promise.all([
    schedules.refillFollowing(deps.pool, input.at, input.memberId),
    repo.storeOutcome(deps.pool, created.id, created.next_deadline_at),
  ]).catch((err: Error) => deps.log.warn({ err: { message: err.message } }, 'post-check-in bookkeeping failed; the worker will refill'));
  return answer(created);
}
