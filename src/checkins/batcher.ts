import type pg from 'pg';
import * as repo from './repo.js';

type Waiting = { input: repo.CheckInInput; resolve: (r: repo.CheckInResult) => void; reject: (err: unknown) => void };

/**
 * Check-ins that arrive while others are being written share the next statement: one round
 * trip, one plan and one commit for all of them instead of one each, which is what bounds
 * check-ins per second (a commit waits for the WAL flush). Nothing waits for a timer: a check-in
 * goes out at once when a statement slot is free, and only queues while the slots are busy, so
 * an idle service answers as fast as before and a busy one writes bigger batches.
 *
 * A member is in at most one statement at a time (the statement needs distinct members, and
 * in-flight statements with disjoint members never wait on each other's row locks); a member's
 * later check-ins wait for the next statement, in order.
 * Each caller still gets its answer only after the commit of the statement holding its check-in.
 */
export class CheckInBatcher {
  private readonly queue: Waiting[] = [];
  private readonly busy = new Set<string>();
  private inFlight = 0;

  constructor(
    private readonly pool: pg.Pool,
    // One statement at a time: check-ins that arrive meanwhile make the next batch bigger, and a
    // bigger batch costs less per check-in (one plan, one commit), which on a busy database is
    // what keeps both throughput and latency (measured with bench:api: one slot beat two on both).
    private readonly slots = 1,
    private readonly maxBatch = 200,
    private readonly stallMs = 250,
  ) {}

  record(input: repo.CheckInInput): Promise<repo.CheckInResult> {
    return new Promise((resolve, reject) => {
      this.queue.push({ input, resolve, reject });
      this.pump();
    });
  }

  private pump(): void {
    while (this.inFlight < this.slots && this.queue.length > 0) {
      const batch = this.take();
      if (batch.length === 0) return;
      this.inFlight++;
      for (const w of batch) this.busy.add(w.input.memberId);
      // A statement stuck on a lock held elsewhere gives its slot up after a while, so it delays
      // its own check-ins only, not every check-in behind it.
      let holdsSlot = true;
      const release = () => {
        if (!holdsSlot) return;
        holdsSlot = false;
        this.inFlight--;
      };
      const stall = setTimeout(() => {
        release();
        this.pump();
      }, this.stallMs);
      void this.write(batch).finally(() => {
        clearTimeout(stall);
        release();
        for (const w of batch) this.busy.delete(w.input.memberId);
        this.pump();
      });
    }
  }

  /** The oldest waiting check-ins of distinct members not already being written; the rest keep their place. */
  private take(): Waiting[] {
    const batch: Waiting[] = [];
    const members = new Set<string>();
    let kept = 0;
    for (const w of this.queue) {
      const id = w.input.memberId;
      if (batch.length < this.maxBatch && !this.busy.has(id) && !members.has(id)) {
        batch.push(w);
        members.add(id);
      } else {
        this.queue[kept++] = w;
      }
    }
    this.queue.length = kept;
    return batch;
  }

  private async write(unordered: Waiting[]): Promise<void> {
    // In member order whatever the arrival order: statements that meet on the same rows (another
    // API process checking in the same member) lock them in the same order and queue instead of
    // deadlocking. Should one deadlock anyway, the fallback below retries each check-in alone.
    const batch = unordered.sort((a, b) => (a.input.memberId < b.input.memberId ? -1 : a.input.memberId > b.input.memberId ? 1 : 0));
    try {
      const results = await repo.recordCheckIns(this.pool, batch.map((w) => w.input));
      batch.forEach((w, i) => w.resolve(results[i]!));
    } catch (err) {
      if (batch.length === 1) return batch[0]!.reject(err);
      // The statement failed as a whole and wrote nothing: one bad check-in (or a deadlock
      // with another writer) must not fail its neighbours, so each is retried on its own.
      await Promise.all(batch.map((w) => repo.recordCheckIn(this.pool, w.input).then(w.resolve, w.reject)));
    }
  }
}
