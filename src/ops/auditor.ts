import type pg from 'pg';
import type { Clock } from '../clock.js';
import type { Config } from '../config.js';
import type { Logger } from '../observability/logger.js';
import type { Metrics } from '../observability/metrics.js';
import { hadFailed, quarantineCounts, SWEEP_LANES_ALL, type SweepLane } from '../incidents/isolate.js';

/**
 * The auditor: every minute, is every due timer on schedule? It does not fix anything (the
 * sweeper and the reconciler do); it tells the operator, through metrics, /readyz detail and an
 * outside heartbeat, when alerting has stalled.
 *
 * Timers (deadlines, escalation steps, acknowledgement expiries, reminders) are computed with
 * the service clock, so they are judged by it. Deliveries are stamped by the database clock
 * (created_at defaults to now()), so their age is measured by it too.
 *
 * Pending deliveries: the whole retry plan (12 tries, 1 s·2^n backoff capped at 30 s, 15 s send
 * timeout) fits in about 7 minutes; an open circuit or a provider's Retry-After defers a try
 * without spending it, so an outage can hold a delivery longer. AUDITOR_DELIVERY_MAX_MINUTES
 * (default 15) is the bound past which a pending delivery is late whatever the reason: during a
 * provider outage it should be flagged.
 */

export const AUDIT_JOB_NAME = 'audit';
export const AUDIT_EVERY_MS = 60_000;
/** An audit older than this means no auditor runs at all (no worker, or its queue is stuck). */
export const AUDIT_STALE_MS = 3 * AUDIT_EVERY_MS;
export const HEARTBEAT_TIMEOUT_MS = 5000;

export const TIMER_KINDS = ['missed_deadline', 'escalation_step', 'ack_expiry', 'reminder', 'pending_delivery'] as const;
export type TimerKind = (typeof TIMER_KINDS)[number];

export type AuditorSettings = {
  /** A timer this late is overdue (AUDITOR_LATE_SECONDS). */
  lateSeconds: number;
  /** A delivery pending this long is overdue (AUDITOR_DELIVERY_MAX_MINUTES). */
  deliveryMaxSeconds: number;
  heartbeatUrl?: string | undefined;
  heartbeatTimeoutMs?: number;
};

export function auditorSettings(config: Config): AuditorSettings {
  return {
    lateSeconds: config.AUDITOR_LATE_SECONDS,
    deliveryMaxSeconds: config.AUDITOR_DELIVERY_MAX_MINUTES * 60,
    heartbeatUrl: config.HEARTBEAT_URL,
  };
}

export const DEFAULT_AUDITOR_SETTINGS: AuditorSettings = { lateSeconds: 30, deliveryMaxSeconds: 15 * 60 };

export type Overdue = { count: number; oldest_seconds: number };
export type AuditResult = {
  ok: boolean;
  checked_at: string;
  overdue: Record<TimerKind, Overdue>;
  oldest_pending_delivery_seconds: number;
  /**
   * Per sweep lane: items set aside after failing (retried with backoff), and those quarantined
   * (failed QUARANTINE_AFTER times in a row). Not part of `ok`: they do not stop anyone else's
   * alerts, and pruuf_sweep_quarantined_items pages on its own (docs/runbooks.md).
   */
  sweep_failures?: Record<SweepLane, { failing: number; quarantined: number }>;
};

type Row = { kind: TimerKind; n: number; oldest: number | null };

/** One round trip; each part is answered by the partial index its sweep (or the reconciler) uses. */
export async function checkTimers(db: pg.Pool, now: Date, s: AuditorSettings): Promise<AuditResult> {
  const cutoff = new Date(now.getTime() - s.lateSeconds * 1000);
  // Items the sweeper set aside after failing are not "the sweeper is stalled": they are counted
  // apart (sweep_failures), so one bad row does not hide whether everyone else is on time.
  const { rows } = await db.query<Row>(
    `select 'missed_deadline' as kind, count(*)::int as n, extract(epoch from $2::timestamptz - min(alert_at))::float8 as oldest
       from schedules s where active and alert_at <= $1 and not ${hadFailed('missed', 's')}
     union all
     select 'escalation_step', count(*)::int, extract(epoch from $2::timestamptz - min(next_step_at))::float8
       from incidents i where state = 'open' and next_step_at is not null and next_step_at <= $1 and not ${hadFailed('steps', 'i')}
     union all
     select 'ack_expiry', count(*)::int, extract(epoch from $2::timestamptz - min(ack_expires_at))::float8
       from incidents i where state = 'acknowledged' and ack_expires_at <= $1 and not ${hadFailed('ack', 'i')}
     union all
     select 'reminder', count(*)::int, extract(epoch from $2::timestamptz - min(next_reminder_at))::float8
       from schedules s where active and next_reminder_at <= $1 and not ${hadFailed('reminders', 's')}
     union all
     select 'pending_delivery', count(*) filter (where created_at <= now() - make_interval(secs => $3))::int,
            extract(epoch from now() - min(created_at))::float8
       from deliveries where status = 'pending' and created_at is not null -- (deliveries_pending_idx says so too)
    `,
    [cutoff, now, s.deliveryMaxSeconds],
  );
  const overdue = Object.fromEntries(TIMER_KINDS.map((k) => [k, { count: 0, oldest_seconds: 0 }])) as Record<TimerKind, Overdue>;
  let oldestPending = 0;
  for (const r of rows) {
    const age = Math.max(0, Math.round(r.oldest ?? 0));
    if (r.kind === 'pending_delivery') {
      oldestPending = age;
      overdue.pending_delivery = { count: r.n, oldest_seconds: r.n > 0 ? age : 0 };
    } else {
      overdue[r.kind] = { count: r.n, oldest_seconds: r.n > 0 ? age : 0 };
    }
  }
  const ok = TIMER_KINDS.every((k) => overdue[k].count === 0);
  const failing = Object.fromEntries((await quarantineCounts(db)).map((q) => [q.lane, { failing: q.failing, quarantined: q.quarantined }])) as AuditResult['sweep_failures'];
  return { ok, checked_at: now.toISOString(), overdue, oldest_pending_delivery_seconds: oldestPending, sweep_failures: failing };
}

export type AuditorMetrics = Pick<Metrics, 'sweepFailing' | 'sweepQuarantined' | 'overdueTimers' | 'oldestOverdueSeconds' | 'oldestPendingDelivery' | 'auditorOk' | 'auditorLastRun' | 'auditorLastSuccess'>;

export type AuditorState = { result: AuditResult | null; checkedAt: Date | null; lastSuccessAt: Date | null };

export function applyAuditorState(metrics: AuditorMetrics, state: AuditorState): void {
  if (state.result !== null) {
    for (const k of TIMER_KINDS) {
      metrics.overdueTimers.set({ kind: k }, state.result.overdue[k].count);
      metrics.oldestOverdueSeconds.set({ kind: k }, state.result.overdue[k].oldest_seconds);
    }
    metrics.oldestPendingDelivery.set(state.result.oldest_pending_delivery_seconds);
    for (const lane of SWEEP_LANES_ALL) {
      metrics.sweepFailing.set({ lane }, state.result.sweep_failures?.[lane]?.failing ?? 0);
      metrics.sweepQuarantined.set({ lane }, state.result.sweep_failures?.[lane]?.quarantined ?? 0);
    }
    metrics.auditorOk.set(state.result.ok ? 1 : 0);
  }
  if (state.checkedAt !== null) metrics.auditorLastRun.set(state.checkedAt.getTime() / 1000);
  if (state.lastSuccessAt !== null) metrics.auditorLastSuccess.set(state.lastSuccessAt.getTime() / 1000);
}

export async function readAuditorState(db: pg.Pool): Promise<AuditorState> {
  const { rows } = await db.query<{ result: AuditResult | null; checked_at: Date | null; last_success_at: Date | null }>(
    'select result, checked_at, last_success_at from auditor_state',
  );
  const r = rows[0];
  return { result: r?.result ?? null, checkedAt: r?.checked_at ?? null, lastSuccessAt: r?.last_success_at ?? null };
}

async function saveAuditorState(db: pg.Pool, result: AuditResult, at: Date): Promise<AuditorState> {
  const { rows } = await db.query<{ last_success_at: Date | null }>(
    `update auditor_state set checked_at = $1, ok = $2, result = $3,
            last_success_at = case when $2 then $1 else last_success_at end
      returning last_success_at`,
    [at, result.ok, JSON.stringify(result)],
  );
  return { result, checkedAt: at, lastSuccessAt: rows[0]?.last_success_at ?? null };
}

/**
 * First alerts of incidents sent since the last run, into pruuf_deadline_to_delivery_seconds.
 * The window ends 10 s back, so a row whose sent_at was stamped just before a slow commit is
 * still ahead of the watermark when it becomes visible.
 */
export async function observeAlertLatency(db: pg.Pool, metrics: Pick<Metrics, 'deadlineToDelivery'>): Promise<number> {
  const client = await db.connect();
  try {
    await client.query('begin');
    const { rows: [w] } = await client.query<{ since: Date; upto: Date }>(
      `select coalesce(latency_watermark, now() - interval '1 hour') as since, now() - interval '10 seconds' as upto
         from auditor_state for update`,
    );
    if (w === undefined || w.upto <= w.since) {
      await client.query('commit');
      return 0;
    }
    const { rows } = await client.query<{ channel: string; seconds: number }>(
      `select d.channel, extract(epoch from d.sent_at - coalesce(i.alert_at, i.opened_at))::float8 as seconds
         from deliveries d join incidents i on i.id = d.incident_id
        where d.kind = 'alert' and d.step_no = 1 and d.sent_at > $1 and d.sent_at <= $2`,
      [w.since, w.upto],
    );
    await client.query('update auditor_state set latency_watermark = $1', [w.upto]);
    await client.query('commit');
    for (const r of rows) metrics.deadlineToDelivery.observe({ channel: r.channel }, Math.max(0, r.seconds));
    return rows.length;
  } catch (err) {
    await client.query('rollback').catch(() => undefined);
    throw err;
  } finally {
    client.release();
  }
}

/** The outside dead man's switch: only a passing audit reaches it. Never throws. */
export async function callHeartbeat(url: string, timeoutMs: number, log: Logger, metrics: Pick<Metrics, 'heartbeatCalls'>): Promise<boolean> {
  // The URL usually carries the monitor's secret check id: log its host only.
  const host = new URL(url).host;
  try {
    const res = await fetch(url, { method: 'GET', signal: AbortSignal.timeout(timeoutMs) });
    await res.body?.cancel();
    if (!res.ok) throw new Error(`status ${res.status}`);
    metrics.heartbeatCalls.inc({ outcome: 'ok' });
    return true;
  } catch (err) {
    metrics.heartbeatCalls.inc({ outcome: 'failed' });
    log.warn({ heartbeat_host: host, err: { message: (err as Error).message } }, 'auditor heartbeat call failed');
    return false;
  }
}

export type AuditDeps = { pool: pg.Pool; clock: Clock; log: Logger; metrics: Metrics; settings: AuditorSettings };

export async function runAudit(deps: AuditDeps): Promise<AuditResult> {
  const now = deps.clock();
  const result = await checkTimers(deps.pool, now, deps.settings);
  const state = await saveAuditorState(deps.pool, result, now);
  applyAuditorState(deps.metrics, state);
  if (!result.ok) {
    const late = Object.fromEntries(TIMER_KINDS.filter((k) => result.overdue[k].count > 0).map((k) => [k, result.overdue[k]]));
    deps.log.error({ overdue: late }, 'auditor: timers are overdue; alerting may be stalled (docs/runbooks.md)');
  }
  const quarantined = Object.entries(result.sweep_failures ?? {}).filter(([, q]) => q.quarantined > 0);
  if (quarantined.length > 0) {
    deps.log.error({ quarantined: Object.fromEntries(quarantined.map(([lane, q]) => [lane, q.quarantined])) },
      'auditor: sweep items are quarantined (select * from sweep_failures; docs/runbooks.md "An item is quarantined")');
  }
  try {
    await observeAlertLatency(deps.pool, deps.metrics);
  } catch (err) {
    deps.log.warn({ err: { message: (err as Error).message } }, 'auditor: reading alert latency failed');
  }
  if (result.ok && deps.settings.heartbeatUrl !== undefined) {
    await callHeartbeat(deps.settings.heartbeatUrl, deps.settings.heartbeatTimeoutMs ?? HEARTBEAT_TIMEOUT_MS, deps.log, deps.metrics);
  }
  return result;
}
