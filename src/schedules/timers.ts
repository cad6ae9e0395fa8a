import { IANAZone } from 'luxon';
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

// luxon checks a zone by building an Intl formatter (tens of µs); a burst of misses asks about a
// few zones thousands of times. Bounded, so junk rows cannot grow it.
const zoneKnown = new Map<string, boolean>();
function knownZone(zone: string): boolean {
  const hit = zoneKnown.get(zone);
  if (hit !== undefined) return hit;
  const ok = IANAZone.isValidZone(zone);
  if (zoneKnown.size < 1000) zoneKnown.set(zone, ok);
  return ok;
}

/**
 * The schedule as the deadline maths can use it: a daily schedule whose zone the time zone
 * database does not know (a row written by an older version, or straight into the table) is
 * computed in UTC rather than not at all, and `fallback` says so (the sweeper flags the row).
 */
export function withUsableZone<S extends ScheduleShape>(s: S, memberTimeZone: string): { s: S; memberTimeZone: string; fallback: boolean } {
  if (s.kind !== 'daily') return { s, memberTimeZone, fallback: false };
  const zone = s.time_zone ?? memberTimeZone;
  if (typeof zone === 'string' && knownZone(zone)) return { s, memberTimeZone, fallback: false };
  return { s: { ...s, time_zone: 'UTC' }, memberTimeZone: 'UTC', fallback: true };
}

export function ruleOf(schedule: ScheduleShape, memberZone: string): ScheduleRule {
  const { s, memberTimeZone } = withUsableZone(schedule, memberZone);
  return s.kind === 'daily'
    ? { kind: 'daily', localTime: s.local_time!, days: s.days, timeZone: s.time_zone ?? memberTimeZone }
    : { kind: 'once', dueAt: s.due_at! };
}

/**
 * Timers from scratch (create, edit, time zone change, pause change): the first deadline after
 * `now`, never an earlier one, so an edit never alerts retroactively. A daily schedule's window
 * starts at its previous deadline, so a check-in made earlier in that window already counts,
 * except one in that deadline's grace: it belongs to that deadline, as on the check-in path
 * (`lastCheckInAt` leaves out check-ins that answered a missed deadline: see timerContexts).
 */
export function computeTimers(s: ScheduleShape, memberTimeZone: string, now: Date, pauses: Interval[], lastCheckInAt: Date | null): Timers {
  const rule = ruleOf(s, memberTimeZone);
  const merged = mergeIntervals(pauses);
  const previous = s.kind === 'daily' ? previousDeadline(rule, now) : null;
  let windowStart = previous ?? now;
  let next = nextDeadline(rule, now, merged);
  if (next !== null && lastCheckInAt !== null && lastCheckInAt > windowStart) {
    if (previous !== null && lastCheckInAt <= alertAt(previous, s.grace_minutes)) {
      windowStart = alertAt(previous, s.grace_minutes);
    } else {
      windowStart = alertAt(next, s.grace_minutes);
      next = nextDeadline(rule, next, merged);
    }
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
