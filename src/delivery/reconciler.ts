import { randomUUID } from 'node:crypto';
import type pg from 'pg';
import type { Logger } from '../observability/logger.js';
import type { QueueSystem } from '../queue/index.js';
import { addDeliveryJobs, type DeliveryJobSettings } from './outbox.js';
import { PRIORITY_SQL, type DeliveryJobRef, type DeliveryPriority } from './priority.js';

export const RECONCILE_JOB_NAME = 'reconcile-deliveries';
export const RECONCILE_EVERY_MS = 60_000;
export const RECONCILE_BATCH = 500;

/**
 * Queue content can vanish (Redis flushed or restarted without persistence, an enqueue that
 * failed after commit). Every `pending` row older than `olderThanMs` gets its job (its batch's
 * job, when it has a job_key) re-added
 * under the same deterministic id: a job that still exists makes the add a no-op, and a row
 * already sent is skipped by the handler, so this never duplicates a message. Each job gets the
 * priority its row gives (priority.ts), in the same query: first alerts first here too.
 * Returns how many pending rows it looked at.
 */
export async function reconcileDeliveries(
  pool: pg.Pool, queues: QueueSystem, log: Logger, olderThanMs = 5000, settings: DeliveryJobSettings & { batchSize?: number } = {},
): Promise<number> {
  const batchSize = settings.batchSize ?? RECONCILE_BATCH;
  // created_at travels as text: a JS Date would drop the microseconds the keyset needs.
  let after: { createdAt: string; id: string } | undefined;
  let total = 0;
  const { rows: [cut] } = await pool.query<{ cutoff: string }>(
    `select (now() - make_interval(secs => $1::double precision / 1000))::text as cutoff`, [olderThanMs],
  );
  for (;;) {
    const { rows } = await pool.query<{ id: string; created_at: string; priority: DeliveryPriority; job_key: string | null }>(
      `select d.id, d.created_at::text as created_at, d.job_key, (${PRIORITY_SQL}) as priority
         from deliveries d
        where d.status = 'pending'
          and d.created_at < $1::timestamptz
          and ($2::timestamptz is null or (d.created_at, d.id) > ($2::timestamptz, $3::uuid))
        order by d.created_at, d.id
        limit $4`,
      [cut!.cutoff, after?.createdAt ?? null, after?.id ?? null, batchSize],
    );
    if (rows.length === 0) break;
    // A batch's rows re-add its one job (the same id: a no-op while it exists).
    await addDeliveryJobs(queues, await splitMixedBatches(pool, rows), settings);
    total += rows.length;
    const last = rows[rows.length - 1]!;
    after = { createdAt: last.created_at, id: last.id };
    if (rows.length < batchSize) break;
  }
  if (total > 0) log.info({ pending: total }, 'reconciler re-enqueued pending deliveries');
  return total;
}

/**
 * A batch whose rows no longer share a priority (a contact's first channel failed for good: their
 * next channel is now their first alert) would go out at its most urgent row's priority, ahead of
 * first alerts elsewhere. Its more urgent rows move to a batch of their own per priority (a new
 * job_key), so every job again carries one priority. Safe while the old batch's job runs: a row
 * is only ever sent under its lease (deliver.ts).
 */
async function splitMixedBatches(pool: pg.Pool, rows: { id: string; priority: DeliveryPriority; job_key: string | null }[]): Promise<DeliveryJobRef[]> {
  const refs: DeliveryJobRef[] = rows.map((r) => ({ id: r.id, priority: r.priority, jobKey: r.job_key }));
  const byKey = new Map<string, DeliveryJobRef[]>();
  for (const r of refs) if (r.jobKey !== null && r.jobKey !== undefined) byKey.set(r.jobKey, [...(byKey.get(r.jobKey) ?? []), r]);
  for (const [key, members] of byKey) {
    const least = Math.max(...members.map((m) => m.priority));
    for (const p of new Set(members.map((m) => m.priority).filter((p) => p < least))) {
      const moving = members.filter((m) => m.priority === p);
      const next = randomUUID();
      const { rows: moved } = await pool.query<{ id: string }>(
        `update deliveries set job_key = $1 where id = any($2::uuid[]) and job_key = $3 and status = 'pending' returning id`,
        [next, moving.map((m) => m.id), key],
      );
      const ids = new Set(moved.map((m) => m.id));
      for (const m of moving) if (ids.has(m.id)) m.jobKey = next;
    }
  }
  return refs;
}
