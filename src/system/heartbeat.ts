import type pg from 'pg';
import type { Clock } from '../clock.js';

/** Each worker process records that it is alive; operators read it in /readyz detail and metrics. */
export async function recordHeartbeat(pool: pg.Pool, workerId: string, backend: string, clock: Clock): Promise<Date> {
  const at = clock();
  await pool.query(
    `insert into worker_heartbeats (worker_id, queue_backend, beat_at) values ($1, $2, $3)
     on conflict (worker_id) do update set queue_backend = excluded.queue_backend, beat_at = excluded.beat_at`,
    [workerId, backend, at],
  );
  return at;
}

export async function latestHeartbeat(pool: pg.Pool): Promise<Date | null> {
  const { rows } = await pool.query<{ at: Date | null }>('select max(beat_at) as at from worker_heartbeats');
  return rows[0]?.at ?? null;
}
