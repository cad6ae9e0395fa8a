import { IANAZone } from 'luxon';

/**
 * Pure deadline arithmetic. A daily deadline is a wall-clock time in an IANA zone; every result is
 * a UTC instant. Instants are always passed in by the caller, so this module never reads the clock.
 */

export type DailyRule = {
  kind: 'daily';
  /** "HH:MM", 24h, local to `timeZone`. */
  localTime: string;
  /** ISO weekdays of the LOCAL date, 1 = Monday .. 7 = Sunday; non-empty. */
  days: number[];
  /** IANA zone name. */
  timeZone: string;
};
export type OnceRule = { kind: 'once'; dueAt: Date };
export type ScheduleRule = DailyRule | OnceRule;
/** Half-open: [from, until). */
export type Interval = { from: Date; until: Date };

const MINUTE = 60_000;
const DAY = 86_400_000;

/**
 * No deadline at or after this instant: 2200-01-01 (the bound on every stored instant) less the
 * longest grace (720 minutes), so a deadline's alert always falls before 2200 too. A daily rule
 * whose next occurrence lies beyond (after a pause ending in 2199) simply has none.
 */
export const DEADLINE_HORIZON = Date.parse('2200-01-01T00:00:00Z') - 720 * MINUTE;

/** IANA names only: fixed offsets like "UTC+2" are not places and would silently ignore DST. */
// luxon builds an Intl.DateTimeFormat for every check; zones in use are few. Only valid names are
// remembered, so junk input cannot grow the set.
const validZones = new Set<string>();

export function isValidTimeZone(zone: string): boolean {
  if (typeof zone !== 'string' || zone === '' || /^(UTC|GMT)?[+-]\d/i.test(zone)) return false;
  if (validZones.has(zone)) return true;
  const ok = IANAZone.isValidZone(zone);
  if (ok && validZones.size < 1000) validZones.add(zone);
  return ok;
}

export function isValidLocalTime(s: string): boolean {
  return typeof s === 'string' && /^([01]\d|2[0-3]):[0-5]\d$/.test(s);
}

/** Sorted, non-overlapping; touching intervals merge so a deadline at the seam cannot slip through. */
export function mergeIntervals(intervals: Interval[]): Interval[] {
  const valid = intervals
    .map((i) => ({ from: i.from.getTime(), until: i.until.getTime() }))
    .filter((i) => Number.isFinite(i.from) && Number.isFinite(i.until) && i.from < i.until)
    .sort((a, b) => a.from - b.from);
  const out: { from: number; until: number }[] = [];
  for (const i of valid) {
    const last = out[out.length - 1];
    if (last !== undefined && i.from <= last.until) last.until = Math.max(last.until, i.until);
    else out.push({ ...i });
  }
  return out.map((i) => ({ from: new Date(i.from), until: new Date(i.until) }));
}

type Resolved = { zone: IANAZone; minuteOfDay: number; days: ReadonlySet<number> };

/** Throws rather than loops: a bad zone or empty mask would otherwise never yield a deadline. */
function resolveDaily(rule: DailyRule): Resolved {
  if (!isValidTimeZone(rule.timeZone)) throw new Error(`invalid schedule time zone: ${JSON.stringify(rule.timeZone)}`);
  if (!isValidLocalTime(rule.localTime)) throw new Error(`invalid schedule local time (want HH:MM): ${JSON.stringify(rule.localTime)}`);
  if (!Array.isArray(rule.days) || rule.days.length === 0) throw new Error('schedule days must be a non-empty list of ISO weekdays');
  for (const d of rule.days) {
    if (!Number.isInteger(d) || d < 1 || d > 7) throw new Error(`invalid ISO weekday in schedule days: ${JSON.stringify(d)}`);
  }
  const [h, m] = rule.localTime.split(':').map(Number) as [number, number];
  return { zone: IANAZone.create(rule.timeZone), minuteOfDay: h * 60 + m, days: new Set(rule.days) };
}

function assertInstant(d: Date, what: string): number {
  const t = d instanceof Date ? d.getTime() : NaN;
  if (!Number.isFinite(t)) throw new Error(`${what} must be a valid Date`);
  return t;
}

/** Wall-clock milliseconds (local time written as if it were UTC) of instant `t` in `zone`. */
function wallOf(zone: IANAZone, t: number): number {
  return t + zone.offset(t) * MINUTE;
}

/**
 * The instant for wall-clock `wall`. Overlap (fall back): the FIRST occurrence, so one deadline
 * fires once. Gap (spring forward): the first instant after the gap, i.e. the transition itself
 * (02:30 on a 02:00→03:00 day fires at 03:00, not at luxon's shifted 03:30).
 */
function instantOfWall(zone: IANAZone, wall: number): number {
  // A day either side brackets any transition near `wall` (the same window Temporal uses).
  const before = zone.offset(wall - DAY);
  const after = zone.offset(wall + DAY);
  if (!Number.isFinite(before) || !Number.isFinite(after)) return NaN;
  const tries = before === after ? [wall - before * MINUTE] : [wall - before * MINUTE, wall - after * MINUTE];
  const valid = tries.filter((t) => wallOf(zone, t) === wall);
  if (valid.length > 0) return Math.min(...valid);
  // In a gap: binary-search the first instant whose wall clock reaches `wall`.
  let lo = Math.min(wall - before * MINUTE, wall - after * MINUTE);
  let hi = Math.max(wall - before * MINUTE, wall - after * MINUTE);
  if (!(wallOf(zone, lo) < wall && wallOf(zone, hi) >= wall)) return wall - before * MINUTE;
  while (hi - lo > 1) {
    const mid = Math.floor((lo + hi) / 2);
    if (wallOf(zone, mid) >= wall) hi = mid;
    else lo = mid;
  }
  return hi;
}

/** Deadline on local calendar day `dayNum` (days since 1970-01-01), or null if the mask skips it. */
function deadlineOnDay(r: Resolved, dayNum: number): number | null {
  const isoWeekday = (((dayNum + 3) % 7) + 7) % 7 + 1; // 1970-01-01 was a Thursday
  if (!r.days.has(isoWeekday)) return null;
  return instantOfWall(r.zone, dayNum * DAY + r.minuteOfDay * MINUTE);
}

function localDayNum(r: Resolved, t: number): number {
  return Math.floor(wallOf(r.zone, t) / DAY);
}

/**
 * First daily deadline strictly after `t`. The local date of `t` ± 1 absorbs midnight-adjacent
 * transitions; 8 days ahead always contains every weekday at least once.
 */
function dailyAfter(r: Resolved, t: number): number | null {
  const start = localDayNum(r, t);
  if (!Number.isFinite(start)) return null;
  for (let day = start - 1; day <= start + 8; day++) {
    const d = deadlineOnDay(r, day);
    if (d === null) continue;
    if (!Number.isFinite(d)) return null; // beyond the representable range
    if (d > t) return d;
  }
  return null;
}

export function nextDeadline(rule: ScheduleRule, after: Date, pauses: Interval[] = []): Date | null {
  const t = assertInstant(after, 'after');
  const merged = mergeIntervals(pauses).map((p) => ({ from: p.from.getTime(), until: p.until.getTime() }));
  const pausedBy = (x: number) => merged.find((p) => p.from <= x && x < p.until);

  if (rule.kind === 'once') {
    const due = assertInstant(rule.dueAt, 'once rule dueAt');
    return due > t && due < DEADLINE_HORIZON && pausedBy(due) === undefined ? new Date(due) : null;
  }

  const r = resolveDaily(rule);
  let cursor = t;
  // Each paused candidate jumps straight to its pause's end, so a one-year pause costs one step.
  // Candidates only move forward, so each merged pause can stop at most one of them.
  for (let i = 0; i <= merged.length; i++) {
    const candidate = dailyAfter(r, cursor);
    if (candidate === null || candidate >= DEADLINE_HORIZON) return null;
    const pause = pausedBy(candidate);
    if (pause === undefined) return new Date(candidate);
    cursor = pause.until - 1; // strictly after until - 1ms ⇔ at or after until (half-open pause)
  }
  throw new Error('nextDeadline: pause scan did not converge'); // unreachable unless the logic above breaks
}

export function previousDeadline(rule: ScheduleRule, at: Date): Date | null {
  const t = assertInstant(at, 'at');
  if (rule.kind === 'once') {
    const due = assertInstant(rule.dueAt, 'once rule dueAt');
    return due <= t ? new Date(due) : null;
  }
  const r = resolveDaily(rule);
  const start = localDayNum(r, t);
  if (!Number.isFinite(start)) return null;
  for (let day = start + 1; day >= start - 8; day--) {
    const d = deadlineOnDay(r, day);
    if (d !== null && Number.isFinite(d) && d <= t) return new Date(d);
  }
  return null;
}

/** Grace is a real duration: added to the UTC instant, so a DST change inside it does not stretch it. */
export function alertAt(deadline: Date, graceMinutes: number): Date {
  const t = assertInstant(deadline, 'deadline');
  if (!Number.isFinite(graceMinutes) || graceMinutes < 0) throw new Error(`graceMinutes must be a non-negative number: ${graceMinutes}`);
  return new Date(t + graceMinutes * MINUTE);
}
