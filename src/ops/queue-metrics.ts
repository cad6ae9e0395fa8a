import type { Metrics } from '../observability/metrics.js';
import { DELIVERY_PRIORITIES } from '../delivery/priority.js';
import { QUEUE_NAMES, type QueueSystem } from '../queue/index.js';

export const QUEUE_STATES = ['waiting', 'active', 'delayed', 'failed', 'prioritized'] as const;

export type QueueSnapshot = { queue: string; counts: Record<(typeof QUEUE_STATES)[number], number>; oldestWaitingSeconds: number };

/**
 * Counts per queue and state, and how long the oldest waiting job has waited. Same calls on
 * both backends (BullMQ's Queue getters). A job that waited in `delayed` first (a backoff, a
 * deferral) counts from when its delay ended, not from its creation.
 * Jobs with a priority (every delivery job) wait as 'prioritized', ordered by priority and then
 * FIFO: the oldest of each priority is the first of its run, found from the counts per priority,
 * so a backlog of routine messages behind a stream of first alerts still shows its age.
 */
export async function queueSnapshot(queues: QueueSystem, nowMs = Date.now()): Promise<QueueSnapshot[]> {
  return Promise.all(QUEUE_NAMES.map(async (name) => {
    const q = queues.queue(name);
    const [raw, plain, perPriority] = await Promise.all([
      q.getJobCounts(...QUEUE_STATES), q.getJobs(['waiting'], 0, 0, true), q.getCountsPerPriority([...DELIVERY_PRIORITIES]),
    ]);
    const counts = Object.fromEntries(QUEUE_STATES.map((s) => [s, Number(raw[s] ?? 0)])) as QueueSnapshot['counts'];
    const firsts: number[] = [];
    let offset = 0;
    for (const p of DELIVERY_PRIORITIES) {
      const n = Number(perPriority[String(p)] ?? 0);
      if (n > 0) firsts.push(offset);
      offset += n;
    }
    const heads = await Promise.all(firsts.map((at) => q.getJobs(['prioritized'], at, at, true)));
    const since = [...plain, ...heads.flat()]
      .filter((job) => job !== undefined)
      .map((job) => job.timestamp + (job.delay ?? 0));
    const oldest = since.length === 0 ? nowMs : Math.min(...since);
    return { queue: name, counts, oldestWaitingSeconds: Math.max(0, (nowMs - oldest) / 1000) };
  }));
}

export function applyQueueSnapshot(metrics: Pick<Metrics, 'queueJobs' | 'queueOldestWaiting'>, snapshot: QueueSnapshot[]): void {
  for (const s of snapshot) {
    for (const state of QUEUE_STATES) metrics.queueJobs.set({ queue: s.queue, state }, s.counts[state]);
    metrics.queueOldestWaiting.set({ queue: s.queue }, s.oldestWaitingSeconds);
  }
}

/** For a scrape: bounded in time, and a queue backend that is down leaves the last values. */
export async function collectQueueMetrics(queues: QueueSystem, metrics: Pick<Metrics, 'queueJobs' | 'queueOldestWaiting'>, timeoutMs = 2000): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<undefined>((resolve) => {
    timer = setTimeout(() => resolve(undefined), timeoutMs);
  });
  const taking = queueSnapshot(queues);
  taking.catch(() => undefined);
  try {
    const snapshot = await Promise.race([taking, timeout]);
    if (snapshot === undefined) return false;
    applyQueueSnapshot(metrics, snapshot);
    return true;
  } catch {
    return false;
  } finally {
    clearTimeout(timer);
  }
}
