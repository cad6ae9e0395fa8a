import { alertAt, mergeIntervals, nextDeadline, previousDeadline, type Interval, type ScheduleRule } from './deadline.js';

/** The stored timer columns of a schedule, derived from its rule, pauses and the member's last check-in. */
export type Timers = {
  next_deadline_at: Date | null;
  alert_at: Date | null;
  window_start_at: Date;
  following_deadline_at: Date | null;
};

export type ScheduleShape = {
  kind: 'daily' | 'once';
  local_time: string | null;
  days: number[];
  due_at: Date | null;
  time_zone: string | null;
  grace_minutes: number;
};

export function ruleOf(s: ScheduleShape, memberTimeZone: string): ScheduleRule {
  return s.kind === 'daily'
    ? { kind: 'daily', localTime: s.local_time!, days: s.days, timeZone: s.time_zone ?? memberTimeZone }
    : { kind: 'once', dueAt: s.due_at! };
}

/**
 * Timers from scratch (create, edit, time zone change, pause change): the first deadline after
 * `now`, never an earlier one, so an edit never alerts retroactively. A daily schedule's window
 * starts at its previous deadline, so a check-in made earlier in that window already counts.
 */
export function computeTimers(s: ScheduleShape, memberTimeZone: string, now: Date, pauses: Interval[], lastCheckInAt: Date | null): Timers {
  const rule = ruleOf(s, memberTimeZone);
  const merged = mergeIntervals(pauses);
  let windowStart = s.kind === 'daily' ? (previousDeadline(rule, now) ?? now) : now;
  let next = nextDeadline(rule, now, merged);
  if (next !== null && lastCheckInAt !== null && lastCheckInAt > windowStart) {
    windowStart = next;
    next = nextDeadline(rule, next, merged);
  }
  const following = next !== null && s.kind === 'daily' ? nextDeadline(rule, next, merged) : null;
  return {
    next_deadline_at: next,
    alert_at: next === null ? null : alertAt(next, s.grace_minutes),
    window_start_at: windowStart,
    following_deadline_at: following,
  };
}

/** The deadline after `next`, to refill a schedule a check-in advanced. */
export function followingDeadline(s: ScheduleShape, memberTimeZone: string, next: Date, pauses: Interval[]): Date | null {
  if (s.kind !== 'daily') return null;
  return nextDeadline(ruleOf(s, memberTimeZone), next, mergeIntervals(pauses));
}
