import { randomUUID } from 'node:crypto';
import type pg from 'pg';
import { prepared } from '../db/pool.js';
import type { Logger } from '../observability/logger.js';
import { HUNG_AFTER_MS } from '../queue/index.js';

/**
 * Who may send a delivery row right now (deliveries.lease_owner, lease_until).
 *
 * A row is sent only by the run that holds its lease, taken in the same statement that reads it
 * (deliver.ts). The owner names the job, the worker process and the run
 * (`<job id>@<process>.<run>`): the queue can run one job twice at once (Redis restarted empty or
 * the PostgreSQL queue tables emptied while a run goes on, and the reconciler re-adds the job; a
 * worker replaced while its job still runs; a stalled check that misjudged a busy worker). A second
 * run then finds the rows held and comes back when their lease ends instead of sending them again
 * (in the same process it is turned away before it reads anything: deliveryProcessor). A run lets
 * go of what it will not send itself (a row set aside, a single job's row to be tried again), so
 * the next run takes it at once; after an unreachable database it waits for the lease to lapse.
 *
 * A lease is short and renewed while its run lives: a worker that dies (SIGKILL, a lost machine)
 * frees its rows within LEASE_MS, and its jobs, run again elsewhere, send them then. A run that has
 * held rows longer than HUNG_AFTER_MS is taken for hung: no longer renewed.
 */
export const LEASE_MS = 20_000;
export const LEASE_RENEW_MS = 5_000;

/** The SQL test for "this run may take row d" (`owner`: the parameter holding the run's owner). */
export const leaseFree = (owner: string) => `(d.lease_until is null or d.lease_until < now() or d.lease_owner = ${owner})`;

/**
 * The rows this process holds, renewed until released: every LEASE_RENEW_MS the rows whose lease
 * has run down by more than one such period get LEASE_MS again (a held row is rewritten about once
 * per 10 s, not every 5 s: each renewal is a new row version).
 */
export class Leases {
  /** This process, in every owner it writes. */
  readonly instance = randomUUID().slice(0, 8);
  private readonly held = new Map<string, { owner: string; since: number }>();
  private timer: NodeJS.Timeout | undefined;
  private renewing = false;

  constructor(
    private readonly pool: pg.Pool,
    private readonly log: Logger,
    readonly leaseMs = LEASE_MS,
    private readonly renewMs = LEASE_RENEW_MS,
    private readonly hungAfterMs = HUNG_AFTER_MS,
  ) {}

  private runs = 0;

  /** A new owner for each run of a job. */
  owner(jobId: string): string {
    this.runs += 1;
    return `${jobId}@${this.instance}.${this.runs.toString(36)}`;
  }

  hold(ids: readonly string[], owner: string): void {
    const since = Date.now();
    for (const id of ids) this.held.set(id, { owner, since });
    if (this.timer === undefined && this.held.size > 0) {
      this.timer = setInterval(() => void this.renew(), this.renewMs);
      this.timer.unref();
    }
  }

  /** No longer renewed (the row is finished, set aside, or its run ended). */
  forget(ids: readonly string[]): void {
    for (const id of ids) this.held.delete(id);
    if (this.held.size === 0) this.stop();
  }

  get size(): number {
    return this.held.size;
  }

  /** One statement for every row held; rows finished meanwhile, or taken over, are left alone. */
  async renew(): Promise<number> {
    if (this.renewing) return 0;
    this.renewing = true;
    try {
      const cut = Date.now() - this.hungAfterMs;
      const ids: string[] = [];
      const owners: string[] = [];
      for (const [id, h] of this.held) {
        if (h.since < cut) { this.held.delete(id); continue; }
        ids.push(id);
        owners.push(h.owner);
      }
      if (ids.length === 0) { this.stop(); return 0; }
      const { rowCount } = await this.pool.query(prepared(
        'deliveries.renew-leases',
        `update deliveries d set lease_until = now() + make_interval(secs => $3)
           from unnest($1::uuid[], $2::text[]) as t(id, owner)
          where d.id = t.id and d.lease_owner = t.owner and d.status = 'pending'
            and d.lease_until < now() + make_interval(secs => $4)`,
        [ids, owners, this.leaseMs / 1000, Math.max(this.leaseMs / 2, this.leaseMs - this.renewMs) / 1000],
      ));
      return rowCount ?? 0;
    } catch (err) {
      // The database is away: the leases lapse after LEASE_MS, and each row's record, when it comes, still needs it pending.
      this.log.warn({ held: this.held.size, err: { message: (err as Error).message } }, 'could not renew the leases of deliveries in hand');
      return 0;
    } finally {
      this.renewing = false;
    }
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }
}
