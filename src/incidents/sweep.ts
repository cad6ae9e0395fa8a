import { entitlementsFor } from '../billing/entitlements.js';
import type pg from 'pg';
import type { Clock } from '../clock.js';
import { withTransaction } from '../db/pool.js';
import { enqueueDeliveries, insertDeliveries, type DeliveryJobSettings, type NewDelivery } from '../delivery/outbox.js';
import { checkInLinkExtra } from '../links/check-in-link.js';
import { signLink } from '../links/tokens.js';
import type { Logger } from '../observability/logger.js';
import type { QueueSystem } from '../queue/index.js';
import type { Interval } from '../schedules/deadline.js';
import { computeTimers, followingDeadline, withUsableZone, type ScheduleShape } from '../schedules/timers.js';
import { ackTimedOut, escalate, openIncidents, type IncidentSettings, type OpenIncident } from './engine.js';
import { renderReminder } from './messages.js';
import { pushAddress } from './plan.js';
import { sweepReceipts, type ReceiptDeps } from '../delivery/receipts.js';
import { clearFailures, hadFailed, isolate, recordFailures, setAside, type Failed, type FailureMetrics, type Item, type SweepLane } from './isolate.js';
import { claimIncidents } from './repo.js';

/**
 * One sweep: claim every due timer from PostgreSQL in batches (FOR UPDATE SKIP LOCKED, so any
 * number of sweepers run side by side without processing a row twice), change state and write
 * the outbox rows in the same transaction, enqueue after commit.
 */
export type SweepDeps = {
  pool: pg.Pool;
  queues: QueueSystem;
  log: Logger;
  clock: Clock;
  settings: IncidentSettings;
  batchSize?: number;
  /** Transactions sweeping missed deadlines side by side in this process. */
  lanes?: number;
  deliveryJobs?: DeliveryJobSettings;
  /** pruuf_sweep_item_failures_total and pruuf_sweep_lane_errors_total (the worker passes them). */
  failures?: FailureMetrics & { laneError: (lane: SweepLane) => void };
  /** The receipts lane (RECEIPT_TIMEOUT_SECONDS): how many providers each channel has, and its metric. Absent: the lane does not run. */
  receipts?: Pick<ReceiptDeps, 'providerCounts' | 'metrics'>;
};

export const SWEEP_LANES = 3;
/** Missed deadlines claimed per transaction: big enough that a burst is a few big writes, small enough that the first alerts leave within a second. */
export const MISSED_BATCH = 500;

export type SweepResult = {
  missed: number; skippedPaused: number; steps: number; ackTimeouts: number; reminders: number; deliveries: number;
  /** Alerts looked at for a missing delivery receipt (some repeated through another provider). */
  receipts: number;
  /** Lanes that failed as a whole this tick (logged and counted; the others ran). */
  failedLanes: SweepLane[];
};

/** What a claimed schedule brings: its rule, its timers, its member's zone and pauses not over yet. */
type DueSchedule = ScheduleShape & {
  id: string; member_id: string; next_deadline_at: Date; alert_at: Date; following_deadline_at: Date | null;
  member_time_zone: string; pauses: { from: string; until: string }[] | null;
};

type MissedOutcome = { deliveryIds: string[]; missed: number; paused: number };

/**
 * Deadlines whose grace has run out: an incident each (unless paused), and the schedule moves on.
 * A claimed batch costs a fixed number of statements (claim with pauses, entitlements, plans,
 * incidents, outbox, timeline, schedule moves), not a number per schedule: a burst of misses is a
 * few big writes. The alerts' text is left to the worker that sends them (render 'at_send').
 * A schedule that makes the batch fail is isolated and set aside (see isolate.ts); the others commit.
 */
/** The instants every version writes fall in [1970, 2200): the database's own rule (data_rules migration). */
const SANE_FROM = `'1970-01-01T00:00:00Z'::timestamptz`;
const SANE_UNTIL = `'2200-01-01T00:00:00Z'::timestamptz`;

async function sweepMissed(deps: SweepDeps, now: Date, out: string[]): Promise<{ missed: number; paused: number; claimed: number }> {
  return withTransaction(deps.pool, async (tx) => {
    // A batch's statements are small and planned from estimates: with statistics behind a burst of
    // new rows (contacts added since the last analyze), one looks costly enough to JIT-compile, and
    // compiling took 250-300 ms of each batch (more than everything else in it). Never worth it here.
    await tx.query('set local jit = off');
    const { rows } = await tx.query<DueSchedule & { had_failed: boolean }>(
      // Instants outside what any version writes (1970..2200: 'infinity', year 9999, written
      // straight into the table) are not trusted: the deadline is the one the alert time implies,
      // an odd following deadline is computed again. The alert goes out either way.
      `select s.id, s.member_id, s.kind, s.local_time, s.days::int[] as days, s.due_at, s.time_zone, s.grace_minutes,
              case when s.next_deadline_at >= ${SANE_FROM} and s.next_deadline_at < ${SANE_UNTIL} and s.next_deadline_at <= s.alert_at then s.next_deadline_at
                   else s.alert_at - make_interval(mins => s.grace_minutes) end as next_deadline_at,
              s.alert_at,
              case when s.following_deadline_at >= ${SANE_FROM} and s.following_deadline_at < ${SANE_UNTIL} then s.following_deadline_at end as following_deadline_at,
              m.time_zone as member_time_zone,
              (select json_agg(json_build_object('from', p.starts_at, 'until', p.ends_at)) from pauses p
                where p.member_id = s.member_id and p.ends_at > $1) as pauses,
              ${hadFailed('missed', 's')} as had_failed
         from schedules s join members m on m.id = s.member_id
        where s.active and s.alert_at <= $1 and not ${setAside('missed', 's', '$1')}
        order by s.alert_at limit $2 for update of s skip locked`,
      [now, deps.batchSize ?? MISSED_BATCH],
    );
    if (rows.length === 0) return { missed: 0, paused: 0, claimed: 0 };
    const following = followingDeadlines();
    const r = await isolate(tx, rows, (part) => openMissed(tx, deps, part, now, following));
    await settle(tx, deps, 'missed', rows, r.failed, now);
    for (const o of r.results) out.push(...o.deliveryIds);
    return { missed: sum(r.results, (o) => o.missed), paused: sum(r.results, (o) => o.paused), claimed: rows.length };
  });
}

const sum = <T>(list: T[], f: (x: T) => number) => list.reduce((n, x) => n + f(x), 0);

/** Records the items that failed and clears the record of those that had failed before and went through now. */
async function settle(tx: pg.PoolClient, deps: SweepDeps, lane: SweepLane, claimed: (Item & { had_failed: boolean })[], failed: Failed<Item>[], now: Date): Promise<void> {
  await recordFailures(tx, lane, failed, now, deps.log, deps.failures);
  const bad = new Set(failed.map((f) => f.item.id));
  await clearFailures(tx, lane, claimed.filter((c) => c.had_failed && !bad.has(c.id)).map((c) => c.id), deps.log);
}

/** The set-based work of sweepMissed for some of its claimed schedules (all of them, unless one fails). */
async function openMissed(tx: pg.PoolClient, deps: SweepDeps, rows: DueSchedule[], now: Date, following: ReturnType<typeof followingDeadlines>): Promise<MissedOutcome> {
  const toOpen: OpenIncident[] = [];
  const moves: { id: string; next: Date | null; following: Date | null; fallback: boolean }[] = [];
  const restarts: { id: string; t: ReturnType<typeof computeTimers>; fallback: boolean }[] = [];
  for (const s of rows) {
    const pauses = (s.pauses ?? []).map((p) => ({ from: new Date(p.from), until: new Date(p.until) }));
    const deadline = s.next_deadline_at;
    // A zone the time zone database does not know: deadlines in UTC, and the row says so (runbook).
    const { fallback } = withUsableZone(s, s.member_time_zone);
    const inPause = pauses.some((p) => (p.from <= deadline && deadline < p.until) || (p.from <= now && now < p.until));
    if (inPause) {
      // Paused after the deadline was set: no miss; the schedule starts again after the pause.
      restarts.push({ id: s.id, t: computeTimers(s, s.member_time_zone, now, pauses, null), fallback });
      continue;
    }
    toOpen.push({ member_id: s.member_id, schedule_id: s.id, kind: 'missed', deadline_at: deadline, alert_at: s.alert_at });
    // The next deadline is the one after the missed one (never one already past: those were real misses too,
    // but each sweep takes the oldest first, so a long outage alerts them in order).
    const next = s.kind === 'daily' ? (s.following_deadline_at ?? following(s, s.member_time_zone, deadline, pauses)) : null;
    moves.push({ id: s.id, next, following: next === null ? null : following(s, s.member_time_zone, next, pauses), fallback });
  }
  const opened = await openIncidents(tx, deps.settings, toOpen, now, 'at_send');
  if (moves.length > 0) {
    await tx.query(
      `update schedules s set window_start_at = s.next_deadline_at, next_deadline_at = u.next,
         alert_at = u.next + make_interval(mins => s.grace_minutes), following_deadline_at = u.following, updated_at = $4,
         zone_fallback_at = case when u.fallback then coalesce(s.zone_fallback_at, $4) end
         from unnest($1::uuid[], $2::timestamptz[], $3::timestamptz[], $5::boolean[]) as u(id, next, following, fallback)
        where s.id = u.id`,
      [moves.map((m) => m.id), moves.map((m) => m.next), moves.map((m) => m.following), now, moves.map((m) => m.fallback)],
    );
  }
  if (restarts.length > 0) {
    await tx.query(
      `update schedules s set next_deadline_at = u.next, alert_at = u.alert, window_start_at = u.window_start, following_deadline_at = u.following, updated_at = $6,
         zone_fallback_at = case when u.fallback then coalesce(s.zone_fallback_at, $6) end
         from unnest($1::uuid[], $2::timestamptz[], $3::timestamptz[], $4::timestamptz[], $5::timestamptz[], $7::boolean[]) as u(id, next, alert, window_start, following, fallback)
        where s.id = u.id`,
      [restarts.map((r) => r.id), restarts.map((r) => r.t.next_deadline_at), restarts.map((r) => r.t.alert_at),
        restarts.map((r) => r.t.window_start_at), restarts.map((r) => r.t.following_deadline_at), now, restarts.map((r) => r.fallback)],
    );
  }
  const fallbacks = [...moves, ...restarts].filter((m) => m.fallback).map((m) => m.id);
  if (fallbacks.length > 0) deps.log.warn({ schedule_ids: fallbacks }, 'schedules with a time zone the time zone database does not know: deadlines computed in UTC (docs/runbooks.md)');
  return { deliveryIds: opened.deliveryIds, missed: opened.incidentIds.length, paused: restarts.length };
}

/**
 * followingDeadline, remembered for one batch: the deadline after an instant depends only on the
 * rule and the pauses, and a burst of misses shares a few rules (same time, days and zone) and a
 * few instants. Computing it is a time-zone calculation (luxon); looking it up is not.
 */
function followingDeadlines(): (s: ScheduleShape, memberTimeZone: string, after: Date, pauses: Interval[]) => Date | null {
  const seen = new Map<string, Date | null>();
  return (s, memberTimeZone, after, pauses) => {
    if (pauses.length > 0 || s.kind !== 'daily') return followingDeadline(s, memberTimeZone, after, pauses);
    const key = `${s.local_time}|${s.days.join(',')}|${s.time_zone ?? memberTimeZone}|${after.getTime()}`;
    const hit = seen.get(key);
    if (hit !== undefined) return hit;
    const at = followingDeadline(s, memberTimeZone, after, pauses);
    seen.set(key, at);
    return at;
  };
}

async function sweepIncidents(deps: SweepDeps, now: Date, out: string[], kind: 'steps' | 'ack'): Promise<number> {
  return withTransaction(deps.pool, async (tx) => {
    const where = kind === 'steps'
      ? `state = 'open' and next_step_at is not null and next_step_at <= $1`
      : `state = 'acknowledged' and ack_expires_at <= $1`;
    const due = await claimIncidents(tx, `${where} and not ${setAside(kind, 'incidents', '$1')}`, now, deps.batchSize ?? 200, hadFailed(kind, 'incidents'));
    if (due.length === 0) return 0;
    const r = await isolate(tx, due, async (part) => {
      const ids: string[] = [];
      for (const inc of part) {
        ids.push(...(kind === 'steps' ? await escalate(tx, deps.settings, inc, now, 'escalation', 'at_send') : await ackTimedOut(tx, deps.settings, inc, now, 'at_send')));
      }
      return ids;
    });
    await settle(tx, deps, kind, due, r.failed, now);
    for (const ids of r.results) out.push(...ids);
    return due.length;
  });
}

/**
 * Which kinds of timer have anything due: ONE round trip, each part answered by the partial index
 * its sweep uses. Most ticks find nothing, and cost only this. Items set aside after failing
 * (sweep_failures) do not count until their retry time.
 */
async function dueTimers(pool: pg.Pool, now: Date): Promise<{ missed: boolean; steps: boolean; ack: boolean; reminders: boolean; receipts: boolean }> {
  const { rows } = await pool.query<{ missed: boolean; steps: boolean; ack: boolean; reminders: boolean; receipts: boolean }>(
    `select exists (select 1 from schedules s where active and alert_at <= $1 and not ${setAside('missed', 's', '$1')}) as missed,
            exists (select 1 from incidents i where state = 'open' and next_step_at <= $1 and not ${setAside('steps', 'i', '$1')}) as steps,
            exists (select 1 from incidents i where state = 'acknowledged' and ack_expires_at <= $1 and not ${setAside('ack', 'i', '$1')}) as ack,
            exists (select 1 from schedules s where active and next_reminder_at <= $1 and not ${setAside('reminders', 's', '$1')}) as reminders,
            exists (select 1 from deliveries d where receipt_check_at <= $1 and not ${setAside('receipts', 'd', '$1')}) as receipts`,
    [now],
  );
  return rows[0]!;
}

/**
 * One lane of the sweep, on its own: its failure (the database gone mid-batch, or a bug that
 * isolation cannot pin on one item) is logged and counted, and the other lanes still run.
 */
async function runLane(deps: SweepDeps, lane: SweepLane, result: SweepResult, fn: () => Promise<void>): Promise<void> {
  try {
    await fn();
  } catch (err) {
    result.failedLanes.push(lane);
    deps.failures?.laneError(lane);
    deps.log.error({ lane, err: { message: (err as Error).message, code: (err as { code?: string }).code } }, 'sweep lane failed; the other lanes went on, this one runs again next tick');
  }
}

export async function sweepOnce(deps: SweepDeps): Promise<SweepResult> {
  const now = deps.clock();
  const limit = deps.batchSize ?? 200;
  const out: string[] = [];
  const result: SweepResult = { missed: 0, skippedPaused: 0, steps: 0, ackTimeouts: 0, reminders: 0, receipts: 0, deliveries: 0, failedLanes: [] };
  // Batches until nothing is due (after an outage a schedule comes round once per missed
  // deadline); each batch commits, and is enqueued, on its own, so the first alerts leave while
  // later ones are still being written. A few lanes work side by side (SKIP LOCKED keeps them
  // apart, as it keeps other sweeper processes apart). Bounded, whatever happens.
  const due = await dueTimers(deps.pool, now);
  const lane = async () => {
    for (let i = 0; due.missed && i < 1000; i += 1) {
      const batch: string[] = [];
      const m = await sweepMissed(deps, now, batch);
      result.missed += m.missed;
      result.skippedPaused += m.paused;
      await enqueueDeliveries(deps.pool, deps.queues, batch, deps.log, deps.deliveryJobs);
      out.push(...batch);
      if (m.claimed === 0) break;
    }
  };
  await runLane(deps, 'missed', result, async () => {
    const lanes = await Promise.allSettled(Array.from({ length: deps.lanes ?? SWEEP_LANES }, lane));
    const failed = lanes.find((l): l is PromiseRejectedResult => l.status === 'rejected');
    if (failed !== undefined) throw failed.reason;
  });
  for (const kind of ['ack', 'steps'] as const) {
    await runLane(deps, kind, result, async () => {
      while (due[kind]) {
        const batch: string[] = [];
        const n = await sweepIncidents(deps, now, batch, kind);
        if (kind === 'ack') result.ackTimeouts += n;
        else result.steps += n;
        await enqueueDeliveries(deps.pool, deps.queues, batch, deps.log, deps.deliveryJobs);
        out.push(...batch);
        if (n < limit) break;
      }
    });
  }
  await runLane(deps, 'reminders', result, async () => {
    while (due.reminders) {
      const batch: string[] = [];
      const n = await sweepReminders(deps, now, batch);
      result.reminders += n;
      await enqueueDeliveries(deps.pool, deps.queues, batch, deps.log, deps.deliveryJobs);
      out.push(...batch);
      if (n < limit) break;
    }
  });
  const receipts = deps.receipts;
  if (receipts !== undefined) {
    await runLane(deps, 'receipts', result, async () => {
      while (due.receipts) {
        const batch: string[] = [];
        const n = await sweepReceipts({ ...receipts, pool: deps.pool, log: deps.log, batchSize: limit, failures: deps.failures }, now, batch);
        result.receipts += n;
        await enqueueDeliveries(deps.pool, deps.queues, batch, deps.log, deps.deliveryJobs);
        out.push(...batch);
        if (n < limit) break;
      }
    });
  }
  result.deliveries = out.length;
  return result;
}

type DueReminder = {
  id: string; member_id: string; next_deadline_at: Date; alert_at: Date | null; grace_minutes: number; reminder_minutes: number[]; email: string | null;
  phone: string | null; sms_opted_out: boolean; member_name: string | null; time_zone: string; has_devices: boolean; had_failed: boolean;
  /** How often this member id was deleted before (a profile re-created since): see members/deleted-accounts.ts. */
  link_generation: number;
};

/**
 * Reminders to the member before a deadline (reminder_minutes before it), with a signed check-in
 * link. One reminder per sweep per schedule: the latest offset already due; then the next offset.
 * A reminder is sent until the alert is due: the sweep always runs a little after the instant a
 * reminder falls on, so the 0-minute one (the default [30, 0]) lands just after the deadline,
 * while a check-in still stops the alert.
 */
export async function sweepReminders(deps: SweepDeps, now: Date, out: string[]): Promise<number> {
  return withTransaction(deps.pool, async (tx) => {
    const { rows } = await tx.query<DueReminder>(
      // Only a verified phone gets SMS reminders: an unverified one may be anybody's number.
      `select s.id, s.member_id, s.next_deadline_at, s.alert_at, s.grace_minutes, s.reminder_minutes, m.email,
         case when m.phone_verified_at is not null then m.phone end as phone, m.sms_opted_out, m.display_name as member_name, m.time_zone,
         exists (select 1 from devices d where d.member_id = s.member_id) as has_devices, ${hadFailed('reminders', 's')} as had_failed,
         coalesce((select da.deletions from deleted_accounts da where da.member_id = s.member_id), 0) as link_generation
       from schedules s join members m on m.id = s.member_id
       where s.active and s.next_reminder_at <= $1 and not ${setAside('reminders', 's', '$1')}
       order by s.next_reminder_at limit $2 for update of s skip locked`,
      [now, deps.batchSize ?? 200],
    );
    if (rows.length === 0) return 0;
    const r = await isolate(tx, rows, async (part) => {
      const ids: string[] = [];
      for (const s of part) ids.push(...(await remind(tx, deps, s, now)));
      return ids;
    });
    await settle(tx, deps, 'reminders', rows, r.failed, now);
    for (const ids of r.results) out.push(...ids);
    return rows.length;
  });
}

async function remind(tx: pg.PoolClient, deps: SweepDeps, s: DueReminder, now: Date): Promise<string[]> {
  const deadline = s.next_deadline_at.getTime();
  const later = s.reminder_minutes.map((o) => deadline - o * 60_000).filter((at) => at > now.getTime());
  const nextAt = later.length === 0 ? null : new Date(Math.min(...later));
  await tx.query('update schedules set next_reminder_at = $2 where id = $1', [s.id, nextAt]);
  // Too late to remind once the alert is due: the incident is opening (the member hears nothing, their contacts do).
  const alertAt = s.alert_at?.getTime() ?? deadline + s.grace_minutes * 60_000;
  if (alertAt <= now.getTime()) return [];
  // The link names the deadline it answers (tapped again, it checks in once: src/checkins/service.ts) and the
  // member's link generation (it dies if the account is deleted): src/links/check-in-link.ts.
  const token = signLink(deps.settings.links.linkSecret, 'checkin', s.member_id, new Date(deadline + (s.grace_minutes + 12 * 60) * 60_000), checkInLinkExtra(deadline, s.link_generation));
  const link = `${deps.settings.links.publicBaseUrl}/c/${token}`;
  const r = renderReminder({ memberName: s.member_name ?? 'there', deadlineAt: s.next_deadline_at, timeZone: s.time_zone, checkInUrl: link, minutesLeft: Math.max(0, Math.round((deadline - now.getTime()) / 60_000)) });
  const rowsOut: NewDelivery[] = [];
  const base = { memberId: s.member_id, contactId: null, kind: 'reminder' as const };
  if (s.has_devices) rowsOut.push({ ...base, channel: 'push', address: pushAddress(s.member_id), subject: r.push.title, body: r.push.body, data: r.push.data });
  if (s.email !== null) rowsOut.push({ ...base, channel: 'email', address: s.email, subject: r.email.subject, body: r.email.text, html: r.email.html });
  // An SMS reminder the member can answer with "OK" (webhooks/twilio/inbound), on plans with SMS.
  if (s.phone !== null && !s.sms_opted_out && (await entitlementsFor(tx, s.member_id, deps.settings.plans, now)).channels.includes('sms')) {
    rowsOut.push({ ...base, channel: 'sms', address: s.phone, subject: null, body: r.sms });
  }
  return insertDeliveries(tx, rowsOut);
}
