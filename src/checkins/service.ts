import { createHash } from 'node:crypto';
import type pg from 'pg';
import { withTransaction } from '../db/pool.js';
import { conflict } from '../http/errors.js';
import { enqueueDeliveries } from '../delivery/outbox.js';
import { resolveMemberIncidents } from '../incidents/engine.js';
import type { Logger } from '../observability/logger.js';
import type { QueueSystem } from '../queue/index.js';
import * as schedules from '../schedules/repo.js';
import { followingDeadline } from '../schedules/timers.js';
import { CheckInBatcher } from './batcher.js';
import { Bookkeeper } from './bookkeeping.js';
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
        `update schedules set window_start_at = next_deadline_at + make_interval(mins => grace_minutes), next_deadline_at = $2::timestamptz,
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

type Shared = { batcher: CheckInBatcher; bookkeeper: Bookkeeper };
// One batcher and bookkeeper per database pool: every route that checks in (app, link, SMS
// reply) shares them without being handed them.
const shared = new WeakMap<pg.Pool, Shared>();
function sharedOf(deps: CheckInDeps): Shared {
  let s = shared.get(deps.pool);
  if (s === undefined) {
    s = { batcher: new CheckInBatcher(deps.pool), bookkeeper: new Bookkeeper(deps) };
    shared.set(deps.pool, s);
  }
  return s;
}

/** An earlier check-in's answer, again (its next deadline is stored by the bookkeeping, or computed). */
async function replay(deps: CheckInDeps, memberId: string, prior: repo.CheckInRow): Promise<CheckInAnswer> {
  if (prior.next_deadline_at === null) prior.next_deadline_at = await nextDeadlineOf(deps.pool, memberId, prior.checked_in_at);
  return answer(prior);
}

/**
 * A check-in through a reminder's link (/c/:token). The link names the deadline it reminds of
 * (`deadlineMs`), and counts once for it: tapped again, or after another check-in already answered
 * that deadline, it records nothing (no check-in, no note, no schedule moved) and answers as the
 * first time. Concurrent taps meet on the check-ins' idempotency index (a key with a space, which
 * no Idempotency-Key header can carry). Links made before links named a deadline check in plainly.
 */
export async function checkInByLink(deps: CheckInDeps, memberId: string, deadlineMs: string | undefined, at: Date): Promise<CheckInAnswer> {
  const input = { memberId, email: null, at, source: 'link' as const, note: null, location: null, requestHash: null };
  if (deadlineMs === undefined || !/^\d{1,15}$/.test(deadlineMs)) return checkIn(deps, { ...input, idempotencyKey: null });
  const key = `link ${deadlineMs}`;
  const prior = await repo.findByIdempotencyKey(deps.pool, memberId, key) ?? await repo.checkInCovering(deps.pool, memberId, new Date(Number(deadlineMs)));
  if (prior !== undefined) return replay(deps, memberId, prior);
  return checkIn(deps, { ...input, idempotencyKey: key });
}

/** Resolves once the bookkeeping of every check-in answered so far on this pool is done. */
export function checkInsSettled(pool: pg.Pool): Promise<void> {
  return shared.get(pool)?.bookkeeper.idle() ?? Promise.resolve();
}

export async function checkIn(deps: CheckInDeps, input: repo.CheckInInput): Promise<CheckInAnswer> {
  const { batcher, bookkeeper } = sharedOf(deps);
  const result = await batcher.record(input);
  if (result.created === null) {
    // The key was used before: same request, same answer; another request under the same key is a mistake.
    const prior = await repo.findByIdempotencyKey(deps.pool, input.memberId, input.idempotencyKey!);
    if (prior === undefined) throw new Error('idempotent check-in vanished');
    if (prior.request_hash !== input.requestHash) throw conflict('this Idempotency-Key was used for a different request');
    return replay(deps, input.memberId, prior);
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
    await enqueueDeliveries(deps.pool, deps.queues, deliveryIds, deps.log);
    created.resolved_incident_ids = resolved;
  }
  // Off the hot path: remember the answer for replays, precompute the deadlines after the new
  // ones, and send the "checked in" notes to the contacts who asked for them.
  bookkeeper.add({ checkInId: created.id, memberId: input.memberId, at: input.at, nextDeadlineAt: created.next_deadline_at, resolved: created.resolved_incident_ids.length > 0 });
  return answer(created);
}
