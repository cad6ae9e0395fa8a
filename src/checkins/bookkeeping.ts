import { DateTime } from 'luxon';
import type pg from 'pg';
import { withTransaction } from '../db/pool.js';
import { enqueueDeliveries, insertDeliveries, type NewDelivery } from '../delivery/outbox.js';
import { renderCheckInNote, type Locale } from '../incidents/messages.js';
import { pushAddress } from '../incidents/plan.js';
import type { Logger } from '../observability/logger.js';
import type { QueueSystem } from '../queue/index.js';
import type { Interval } from '../schedules/deadline.js';
import { followingDeadline, type ScheduleShape } from '../schedules/timers.js';

/** `resolved`: the check-in resolved an incident (its contacts get the all clear, nobody a note). */
export type Answered = { checkInId: string; memberId: string; at: Date; nextDeadlineAt: Date | null; resolved: boolean };
type Deps = { pool: pg.Pool; queues: QueueSystem; log: Logger };

/**
 * What a check-in leaves to do after its answer: remember the answer for replays, precompute
 * the deadline after the new one, and send the "checked in" notes to contacts who asked for
 * them. Check-ins answered while a round runs are done together in the next round, in one read
 * and one write however many it holds (plus one insert when notes are due). A failure only
 * costs time: replays recompute the answer, the worker refills deadlines.
 */
export class Bookkeeper {
  private pending: Answered[] = [];
  private running = false;
  private waiting: (() => void)[] = [];

  constructor(private readonly deps: Deps, private readonly maxBatch = 500) {}

  add(a: Answered): void {
    this.pending.push(a);
    if (this.running) return;
    this.running = true;
    setImmediate(() => void this.drain());
  }

  private async drain(): Promise<void> {
    while (this.pending.length > 0) {
      const batch = this.pending.splice(0, this.maxBatch);
      await round(this.deps, batch).catch((err: Error) =>
        this.deps.log.warn({ err: { message: err.message } }, 'post-check-in bookkeeping failed; the worker will refill'));
    }
    this.running = false;
    for (const done of this.waiting.splice(0)) done();
  }

  /** Resolves once every check-in added so far has been done (a graceful stop, and tests, wait on it). */
  idle(): Promise<void> {
    if (!this.running && this.pending.length === 0) return Promise.resolve();
    return new Promise((done) => this.waiting.push(done));
  }
}

/** The earliest check-in per member: what "now" is for that member's pauses. */
function firstAt(batch: Answered[]): Map<string, Date> {
  const at = new Map<string, Date>();
  for (const a of batch) if ((at.get(a.memberId)?.getTime() ?? Infinity) > a.at.getTime()) at.set(a.memberId, a.at);
  return at;
}

// Calendar arithmetic in a zone costs a few hundred microseconds (luxon), and every check-in
// that advances a daily schedule needs it. Without pauses the answer depends only on the rule,
// the zone and the deadline, which members with the same daily time share all day (everyone at
// 09:30 in Europe/London): a bounded memo of that pure function.
const MEMO_MAX = 20_000;
const followingMemo = new Map<string, Date | null>();
function sharedFollowing(s: ScheduleShape, memberTimeZone: string, next: Date): Date | null {
  const key = `${s.kind}|${s.local_time}|${s.days.join(',')}|${s.time_zone ?? memberTimeZone}|${next.getTime()}`;
  let f = followingMemo.get(key);
  if (f === undefined) {
    f = followingDeadline(s, memberTimeZone, next, []);
    if (followingMemo.size >= MEMO_MAX) followingMemo.clear();
    followingMemo.set(key, f);
  }
  return f === null ? null : new Date(f);
}

type Stale = Omit<ScheduleShape, 'due_at'> & { id: string; member_id: string; due_at: string | null; next_deadline_at: string; member_time_zone: string; pauses: { from: string; until: string }[] | null };
type NoteContact = { id: string; member_id: string; name: string; email: string | null; email_disabled: boolean; linked_user_id: string | null; member_name: string | null; time_zone: string; locale: Locale };

async function round(deps: Deps, batch: Answered[]): Promise<void> {
  const at = firstAt(batch);
  const earliest = new Date(Math.min(...[...at.values()].map((d) => d.getTime())));
  // The daily schedules these check-ins advanced (following deadline not computed yet), with
  // zone and pauses to come, and the contacts who want a note.
  const { rows: [found] } = await deps.pool.query<{ stale: Stale[] | null; contacts: NoteContact[] | null }>(
    `select
       (select json_agg(json_build_object('id', s.id, 'member_id', s.member_id, 'kind', s.kind, 'local_time', s.local_time, 'days', s.days,
           'due_at', s.due_at, 'time_zone', s.time_zone, 'grace_minutes', s.grace_minutes, 'next_deadline_at', s.next_deadline_at,
           'member_time_zone', m.time_zone,
           'pauses', (select json_agg(json_build_object('from', p.starts_at, 'until', p.ends_at)) from pauses p where p.member_id = s.member_id and p.ends_at > $2)))
        from schedules s join members m on m.id = s.member_id
        where s.member_id = any($1::uuid[]) and s.active and s.next_deadline_at is not null and s.following_deadline_at is null and s.kind = 'daily') as stale,
       (select json_agg(json_build_object('id', c.id, 'member_id', c.member_id, 'name', c.name, 'email', c.email, 'email_disabled', c.email_disabled,
           'linked_user_id', c.linked_user_id, 'member_name', coalesce(nullif(btrim(m.display_name), ''), m.email), 'time_zone', m.time_zone, 'locale', c.locale))
        from contacts c join members m on m.id = c.member_id
        where c.member_id = any($1::uuid[]) and c.notify_on_check_in and c.status = 'active') as contacts`,
    [[...at.keys()], earliest.toISOString()],
  );
  // In id order, like every multi-row writer of these tables here, so two writers wait for each other instead of deadlocking.
  const stale = (found?.stale ?? []).sort((a, b) => (a.id < b.id ? -1 : 1));
  const answered = [...batch].sort((a, b) => (a.checkInId < b.checkInId ? -1 : 1));
  const following = stale.map((s) => {
    // JSON carries instants as text.
    const shape: ScheduleShape = { kind: s.kind, local_time: s.local_time, days: s.days, due_at: s.due_at === null ? null : new Date(s.due_at), time_zone: s.time_zone, grace_minutes: s.grace_minutes };
    const now = at.get(s.member_id)!.getTime();
    const next = new Date(s.next_deadline_at);
    const pauses: Interval[] = (s.pauses ?? []).map((p) => ({ from: new Date(p.from), until: new Date(p.until) })).filter((p) => p.until.getTime() > now);
    const zone = s.member_time_zone ?? 'UTC';
    const f = pauses.length > 0 ? followingDeadline(shape, zone, next, pauses) : sharedFollowing(shape, zone, next);
    return f === null ? null : f.toISOString();
  });
  // Answers for replays, and following deadlines only where the schedule still has the deadline they were computed from.
  await deps.pool.query(
    `with outcome as (
       update check_ins c set next_deadline_at = o.next_deadline_at
       from unnest($1::uuid[], $2::timestamptz[]) as o(id, next_deadline_at) where c.id = o.id
     )
     update schedules s set following_deadline_at = f.following
     from unnest($3::uuid[], $4::timestamptz[], $5::timestamptz[]) as f(id, next, following)
     where s.id = f.id and s.following_deadline_at is null and s.next_deadline_at = f.next`,
    [answered.map((a) => a.checkInId), answered.map((a) => a.nextDeadlineAt?.toISOString() ?? null),
      stale.map((s) => s.id), stale.map((s) => s.next_deadline_at), following],
  );
  const contacts = found?.contacts ?? [];
  if (contacts.length > 0) await sendCheckInNotes(deps, batch, contacts);
}

/** The member's calendar date of an instant (UTC for a zone the time zone database does not know). */
function localDay(at: Date, zone: string): string {
  const d = DateTime.fromJSDate(at, { zone });
  return (d.isValid ? d : DateTime.fromJSDate(at, { zone: 'UTC' })).toISODate()!;
}

/**
 * A short "checked in at 09:12" to contacts with notify_on_check_in: email or push, never SMS.
 * At most one a day per member (their local day): the day's first check-in claims the day in
 * check_in_note_days (one upsert, so check-ins racing in two API processes cannot both send), and
 * sends the notes unless it resolved an incident: then its contacts hear the all clear, nobody
 * a note, and the day has had its check-in. The claim and the notes commit together.
 */
async function sendCheckInNotes(deps: Deps, batch: Answered[], contacts: NoteContact[]): Promise<void> {
  // Each member's earliest check-in of this round (a round rarely holds two of one member).
  const first = new Map<string, Answered>();
  for (const a of batch) if ((first.get(a.memberId)?.at.getTime() ?? Infinity) > a.at.getTime()) first.set(a.memberId, a);
  const zoneOf = new Map(contacts.map((c) => [c.member_id, c.time_zone]));
  const claims = [...first.values()].filter((a) => zoneOf.has(a.memberId)).sort((a, b) => (a.memberId < b.memberId ? -1 : 1));
  if (claims.length === 0) return;
  const ids = await withTransaction(deps.pool, async (tx) => {
    const { rows } = await tx.query<{ check_in_id: string }>(
      `insert into check_in_note_days as n (member_id, day, check_in_id, updated_at)
       select c.member_id, c.day, c.check_in_id, now() from unnest($1::uuid[], $2::date[], $3::uuid[]) as c(member_id, day, check_in_id)
       on conflict (member_id) do update set day = excluded.day, check_in_id = excluded.check_in_id, updated_at = excluded.updated_at
         where n.day < excluded.day
       returning n.check_in_id`,
      [claims.map((a) => a.memberId), claims.map((a) => localDay(a.at, zoneOf.get(a.memberId)!)), claims.map((a) => a.checkInId)],
    );
    const claimed = new Set(rows.map((r) => r.check_in_id));
    return insertDeliveries(tx, notesFor(claims.filter((a) => claimed.has(a.checkInId) && !a.resolved), contacts));
  });
  await enqueueDeliveries(deps.pool, deps.queues, ids, deps.log);
}

function notesFor(checkIns: Answered[], contacts: NoteContact[]): NewDelivery[] {
  return checkIns.flatMap(({ memberId, at }) => contacts.filter((c) => c.member_id === memberId).flatMap((c) => {
    const r = renderCheckInNote({ memberName: c.member_name ?? '', contactName: c.name, at, timeZone: c.time_zone, locale: c.locale });
    const base = { memberId, contactId: c.id, kind: 'check_in_note' as const };
    const out: NewDelivery[] = [];
    if (c.linked_user_id !== null) out.push({ ...base, channel: 'push', address: pushAddress(c.linked_user_id), subject: r.push.title, body: r.push.body });
    if (c.email !== null && !c.email_disabled) out.push({ ...base, channel: 'email', address: c.email, subject: r.email.subject, body: r.email.text, html: r.email.html });
    return out;
  }));
}
