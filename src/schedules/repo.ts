import type pg from 'pg';
import { withTransaction, type Queryable } from '../db/pool.js';
import { clearFailures, hadFailed, isolate, recordFailures, setAside, type FailureMetrics } from '../incidents/isolate.js';
import { createLogger, type Logger } from '../observability/logger.js';
import type { Interval } from './deadline.js';
import { computeTimers, followingDeadline, type ScheduleShape, type Timers } from './timers.js';

export type ScheduleRow = ScheduleShape & {
  id: string;
  member_id: string;
  reminder_minutes: number[];
  active: boolean;
  next_deadline_at: Date | null;
  alert_at: Date | null;
  window_start_at: Date;
  following_deadline_at: Date | null;
  created_at: Date;
  updated_at: Date;
  member_time_zone: string;
};

const silentLogger = createLogger('silent');

const COLUMNS = `s.id, s.member_id, s.kind, s.local_time, s.days::int[] as days, s.due_at, s.time_zone, s.grace_minutes,
  s.reminder_minutes, s.active, s.next_deadline_at, s.alert_at, s.window_start_at, s.following_deadline_at,
  s.created_at, s.updated_at, m.time_zone as member_time_zone`;

export async function listSchedules(db: Queryable, memberId: string): Promise<ScheduleRow[]> {
  const { rows } = await db.query<ScheduleRow>(
    `select ${COLUMNS} from schedules s join members m on m.id = s.member_id where s.member_id = $1 order by s.created_at, s.id`,
    [memberId],
  );
  return rows;
}

export async function getSchedule(db: Queryable, memberId: string, id: string, lock = false): Promise<ScheduleRow | undefined> {
  const { rows } = await db.query<ScheduleRow>(
    `select ${COLUMNS} from schedules s join members m on m.id = s.member_id where s.member_id = $1 and s.id = $2${lock ? ' for update of s' : ''}`,
    [memberId, id],
  );
  return rows[0];
}

/**
 * What timers depend on besides the schedule itself: pauses still to come and the last check-in
 * that can count for a deadline. A check-in that resolved an incident for a missed deadline
 * answered that deadline and is left out (recomputing must not count it for the next one).
 */
export type TimerContext = { pauses: Interval[]; lastCheckInAt: Date | null; timeZone: string };

export async function timerContext(db: Queryable, memberId: string, now: Date): Promise<TimerContext> {
  return (await timerContexts(db, [memberId], now)).get(memberId) ?? { pauses: [], lastCheckInAt: null, timeZone: 'UTC' };
}

/** timerContext of many members in ONE query. */
export async function timerContexts(db: Queryable, memberIds: string[], now: Date): Promise<Map<string, TimerContext>> {
  const { rows } = await db.query<{ id: string; pauses: { from: string; until: string }[] | null; last: Date | null; tz: string }>(
    `select m.id, m.time_zone as tz,
       (select json_agg(json_build_object('from', starts_at, 'until', ends_at)) from pauses p where p.member_id = m.id and p.ends_at > $2) as pauses,
       (select c.checked_in_at from check_ins c where c.member_id = m.id
          and not exists (select 1 from incidents i where i.member_id = m.id and i.resolved_by_check_in = c.id and i.kind = 'missed')
        order by c.checked_in_at desc limit 1) as last
     from members m where m.id = any($1::uuid[])`,
    [memberIds, now],
  );
  return new Map(rows.map((r) => [r.id, {
    pauses: (r.pauses ?? []).map((p) => ({ from: new Date(p.from), until: new Date(p.until) })),
    lastCheckInAt: r.last,
    // A zone luxon does not know (stored around the API) is computed in UTC: ruleOf in timers.ts.
    timeZone: r.tz ?? 'UTC',
  }]));
}

export type ScheduleInput = ScheduleShape & { reminder_minutes: number[]; active: boolean };

export async function insertSchedule(db: Queryable, memberId: string, s: ScheduleInput, t: Timers, now: Date): Promise<string> {
  const { rows } = await db.query<{ id: string }>(
    `insert into schedules (member_id, kind, local_time, days, due_at, time_zone, grace_minutes, reminder_minutes, active,
       next_deadline_at, alert_at, window_start_at, following_deadline_at, created_at, updated_at)
     values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $14) returning id`,
    [memberId, s.kind, s.local_time, s.days, s.due_at, s.time_zone, s.grace_minutes, s.reminder_minutes, s.active,
      s.active ? t.next_deadline_at : null, s.active ? t.alert_at : null, t.window_start_at, s.active ? t.following_deadline_at : null, now],
  );
  return rows[0]!.id;
}

export async function updateSchedule(db: Queryable, id: string, s: ScheduleInput, t: Timers, now: Date): Promise<void> {
  await db.query(
    `update schedules set kind = $2, local_time = $3, days = $4, due_at = $5, time_zone = $6, grace_minutes = $7,
       reminder_minutes = $8, active = $9, next_deadline_at = $10, alert_at = $11, window_start_at = $12,
       following_deadline_at = $13, updated_at = $14
     where id = $1`,
    [id, s.kind, s.local_time, s.days, s.due_at, s.time_zone, s.grace_minutes, s.reminder_minutes, s.active,
      s.active ? t.next_deadline_at : null, s.active ? t.alert_at : null, t.window_start_at, s.active ? t.following_deadline_at : null, now],
  );
}

export async function deleteSchedule(db: Queryable, memberId: string, id: string): Promise<boolean> {
  const { rowCount } = await db.query('delete from schedules where member_id = $1 and id = $2', [memberId, id]);
  return (rowCount ?? 0) > 0;
}

/**
 * Recomputes every active schedule of a member from scratch (after a pause or time zone change).
 * Deadlines already past stay as they are: an alert in flight is not withdrawn by an edit.
 */
export async function recomputeMemberSchedules(db: Queryable, memberId: string, now: Date): Promise<void> {
  const { rows } = await db.query<ScheduleRow>(
    `select ${COLUMNS} from schedules s join members m on m.id = s.member_id
     where s.member_id = $1 and s.active and (s.next_deadline_at is null or s.next_deadline_at > $2) for update of s`,
    [memberId, now],
  );
  if (rows.length === 0) return;
  const ctx = await timerContext(db, memberId, now);
  for (const s of rows) {
    if (s.kind === 'once' && s.next_deadline_at === null) continue; // a past once stays done
    const t = computeTimers(s, ctx.timeZone, now, ctx.pauses, ctx.lastCheckInAt);
    await db.query(
      `update schedules set next_deadline_at = $2, alert_at = $3, window_start_at = $4, following_deadline_at = $5, updated_at = $6 where id = $1`,
      [s.id, t.next_deadline_at, t.alert_at, t.window_start_at, t.following_deadline_at, now],
    );
  }
}

/**
 * Fills following_deadline_at for schedules a check-in advanced (off the check-in's hot path).
 * One transaction; a schedule that cannot be refilled is set aside with backoff (lane 'refill',
 * see src/incidents/isolate.ts) instead of failing the job and starving every schedule after it.
 */
export async function refillFollowing(
  pool: pg.Pool, now: Date, opts: { memberId?: string; limit?: number; log?: Logger; failures?: FailureMetrics } = {},
): Promise<number> {
  const log = opts.log ?? silentLogger;
  return withTransaction(pool, async (tx) => {
    const { rows } = await tx.query<ScheduleRow & { had_failed: boolean }>(
      `select ${COLUMNS}, ${hadFailed('refill', 's')} as had_failed from schedules s join members m on m.id = s.member_id
       where s.active and s.next_deadline_at is not null and s.following_deadline_at is null and s.kind = 'daily'
         and ($1::uuid is null or s.member_id = $1) and not ${setAside('refill', 's', '$3')}
       order by s.id limit $2 for update of s skip locked`,
      [opts.memberId ?? null, opts.limit ?? 500, now],
    );
    const r = await isolate(tx, rows, async (part) => {
      for (const s of part) {
        const ctx = await timerContext(tx, s.member_id, now);
        const following = followingDeadline(s, ctx.timeZone, s.next_deadline_at!, ctx.pauses);
        await tx.query('update schedules set following_deadline_at = $2 where id = $1 and following_deadline_at is null', [s.id, following]);
      }
    });
    await recordFailures(tx, 'refill', r.failed, now, log, opts.failures);
    const bad = new Set(r.failed.map((f) => f.item.id));
    await clearFailures(tx, 'refill', rows.filter((s) => s.had_failed && !bad.has(s.id)).map((s) => s.id), log);
    return rows.length;
  });
}
