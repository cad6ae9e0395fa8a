import type pg from 'pg';
import { isDatabaseUnavailable } from '../db/pool.js';
import type { Logger } from '../observability/logger.js';

/**
 * Failure isolation for the sweep lanes. A claimed batch is processed set-based, as one unit,
 * under a savepoint. Only when that fails is it split in halves, each under its own savepoint,
 * down to the item that fails: the rest of the batch commits in the same transaction, the
 * culprit is recorded in sweep_failures (with its backoff) and left out of the lane's claims
 * until its retry time. A batch with one bad item costs about 2·log2(n) extra runs, not n.
 *
 * What does not isolate: the database being unreachable (the whole transaction is lost and
 * retried on the next tick, as before), and a failure to roll back to a savepoint (the
 * connection is gone): both are thrown to the caller.
 */

export const SWEEP_LANES_ALL = ['missed', 'reminders', 'steps', 'ack', 'refill', 'receipts'] as const;
export type SweepLane = (typeof SWEEP_LANES_ALL)[number];

/** Failures in a row after which an item counts as quarantined (metrics, auditor, runbook). */
export const QUARANTINE_AFTER = 3;
export const FAILURE_BACKOFF_BASE_MS = 5_000;
/** However often it failed, an item is tried again at least this often: a fixed row goes out by itself. */
export const FAILURE_BACKOFF_CAP_MS = 10 * 60_000;
const MAX_ERROR_LENGTH = 300;

export function failureBackoffMs(failures: number): number {
  return Math.min(FAILURE_BACKOFF_CAP_MS, FAILURE_BACKOFF_BASE_MS * 2 ** Math.max(0, failures - 1));
}

export type Item = { id: string; member_id: string | null };
export type Failed<T> = { item: T; error: string };
export type Isolated<T, R> = { results: R[]; done: T[]; failed: Failed<T>[] };

let savepoints = 0;

/** Runs fn under a savepoint; on failure rolls back to it and reports the error (or throws if the connection is gone). */
async function attempt<R>(tx: pg.PoolClient, fn: () => Promise<R>): Promise<{ ok: true; value: R } | { ok: false; err: unknown }> {
  savepoints += 1;
  const name = `sweep_item_${savepoints}`;
  await tx.query(`savepoint ${name}`);
  try {
    const value = await fn();
    await tx.query(`release savepoint ${name}`);
    return { ok: true, value };
  } catch (err) {
    if (isDatabaseUnavailable(err)) throw err;
    await tx.query(`rollback to savepoint ${name}`);
    return { ok: false, err };
  }
}

/**
 * Processes `items` with `run` (set-based over whatever subset it is given), isolating the ones
 * that fail. `run` must not touch anything outside the transaction: its results come back only
 * for the parts that committed. Items that failed are NOT recorded here: see recordFailures.
 */
export async function isolate<T extends Item, R>(tx: pg.PoolClient, items: T[], run: (items: T[]) => Promise<R>): Promise<Isolated<T, R>> {
  const out: Isolated<T, R> = { results: [], done: [], failed: [] };
  const go = async (part: T[]): Promise<void> => {
    if (part.length === 0) return;
    const r = await attempt(tx, () => run(part));
    if (r.ok) {
      out.results.push(r.value);
      out.done.push(...part);
      return;
    }
    if (part.length === 1) {
      out.failed.push({ item: part[0]!, error: errorText(r.err) });
      return;
    }
    const half = Math.ceil(part.length / 2);
    await go(part.slice(0, half));
    await go(part.slice(half));
  };
  await go(items);
  return out;
}

function errorText(err: unknown): string {
  const e = err as { message?: unknown; code?: unknown } | null;
  const message = typeof e?.message === 'string' ? e.message : String(err);
  const text = typeof e?.code === 'string' ? `${e.code}: ${message}` : message;
  return text.length > MAX_ERROR_LENGTH ? `${text.slice(0, MAX_ERROR_LENGTH - 1)}…` : text;
}

export type FailureMetrics = { itemFailure: (lane: SweepLane) => void };

/**
 * Records failed items in the caller's transaction (committed with the rest of the batch), and
 * logs each once: at its first failure and when it becomes quarantined, never at every retry.
 */
export async function recordFailures(
  tx: pg.PoolClient, lane: SweepLane, failed: Failed<Item>[], now: Date, log: Logger, metrics?: FailureMetrics,
): Promise<void> {
  if (failed.length === 0) return;
  const { rows } = await tx.query<{ item_id: string; member_id: string | null; failures: number; last_error: string }>(
    `insert into sweep_failures as f (lane, item_id, member_id, failures, first_failed_at, last_failed_at, retry_at, last_error)
     select $1, u.id, u.member_id, 1, $2, $2, $2::timestamptz + make_interval(secs => $5::float8 / 1000), u.error
       from unnest($3::uuid[], $4::uuid[], $6::text[]) as u(id, member_id, error)
     on conflict (lane, item_id) do update
        set failures = f.failures + 1, last_failed_at = $2, last_error = excluded.last_error, member_id = excluded.member_id,
            retry_at = $2::timestamptz + make_interval(secs => least($7::float8, $5::float8 * power(2, f.failures)) / 1000)
     returning item_id, member_id, failures, last_error`,
    [lane, now, failed.map((f) => f.item.id), failed.map((f) => f.item.member_id), FAILURE_BACKOFF_BASE_MS,
      failed.map((f) => f.error), FAILURE_BACKOFF_CAP_MS],
  );
  for (const r of rows) {
    metrics?.itemFailure(lane);
    const fields = { lane, item_id: r.item_id, member_id: r.member_id, failures: r.failures, error: r.last_error, retry_in_ms: failureBackoffMs(r.failures) };
    if (r.failures === 1) log.warn(fields, 'sweep item failed; set aside and retried with backoff, the rest of its batch went on');
    else if (r.failures === QUARANTINE_AFTER) log.error(fields, 'sweep item quarantined: it keeps failing (docs/runbooks.md "An item is quarantined")');
    else log.debug(fields, 'sweep item failed again');
  }
}

/** Items that went through clear their failure record (if they had one). */
export async function clearFailures(tx: pg.PoolClient, lane: SweepLane, ids: string[], log: Logger): Promise<void> {
  if (ids.length === 0) return;
  const { rows } = await tx.query<{ item_id: string; failures: number }>(
    'delete from sweep_failures where lane = $1 and item_id = any($2::uuid[]) returning item_id, failures',
    [lane, ids],
  );
  for (const r of rows) log.info({ lane, item_id: r.item_id, failures: r.failures }, 'sweep item recovered after failing');
}

/** SQL: true when the item is set aside for now (its lane's claim leaves it out). `alias.id` is the item. */
export const setAside = (lane: SweepLane, alias: string, nowParam: string) =>
  `exists (select 1 from sweep_failures f where f.lane = '${lane}' and f.item_id = ${alias}.id and f.retry_at > ${nowParam})`;

/** SQL: whether the claimed item had failed before (so a success clears its record). */
export const hadFailed = (lane: SweepLane, alias: string) =>
  `exists (select 1 from sweep_failures f where f.lane = '${lane}' and f.item_id = ${alias}.id)`;

export type QuarantineCount = { lane: SweepLane; failing: number; quarantined: number };

/** Per lane: items set aside after failing, and those failing QUARANTINE_AFTER times or more. */
export async function quarantineCounts(db: pg.Pool | pg.PoolClient): Promise<QuarantineCount[]> {
  const { rows } = await db.query<{ lane: SweepLane; failing: number; quarantined: number }>(
    `select lane, count(*)::int as failing, count(*) filter (where failures >= $1)::int as quarantined from sweep_failures group by lane`,
    [QUARANTINE_AFTER],
  );
  const by = new Map(rows.map((r) => [r.lane, r]));
  return SWEEP_LANES_ALL.map((lane) => ({ lane, failing: by.get(lane)?.failing ?? 0, quarantined: by.get(lane)?.quarantined ?? 0 }));
}
