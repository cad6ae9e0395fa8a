/**
 * Calls made in the same turn of the event loop, combined into one (issue 19).
 *
 * A burst of alerts runs many deliveries at once in one worker: each wants to read its row, ask
 * its provider, record what happened. One call each is a round trip each; a Batcher lets every
 * caller keep its own simple `await batcher.run(item)` while the calls that arrive before the
 * next macrotask (setImmediate) go out together as one `flush(items)` (chunks of at most `max`).
 *
 * `flush` answers every item, in order: a value, or an Error for that item alone (a failing item
 * never fails its neighbours). A flush that throws fails every item of that chunk with the error.
 */
export type Flush<I, O> = (items: readonly I[]) => Promise<readonly (O | Error)[]>;

export class Batcher<I, O> {
  private pending: { item: I; resolve: (o: O) => void; reject: (e: unknown) => void }[] = [];
  private scheduled = false;

  constructor(private readonly flush: Flush<I, O>, private readonly max = 500) {
    if (!Number.isInteger(max) || max < 1) throw new Error(`batch size must be a positive integer, got ${max}`);
  }

  run(item: I): Promise<O> {
    return new Promise<O>((resolve, reject) => {
      this.pending.push({ item, resolve, reject });
      if (!this.scheduled) {
        this.scheduled = true;
        setImmediate(() => this.drain());
      }
    });
  }

  private drain(): void {
    this.scheduled = false;
    const all = this.pending;
    this.pending = [];
    for (let i = 0; i < all.length; i += this.max) void this.send(all.slice(i, i + this.max));
  }

  private async send(chunk: typeof this.pending): Promise<void> {
    let out: readonly (O | Error)[];
    try {
      out = await this.flush(chunk.map((c) => c.item));
      if (out.length !== chunk.length) throw new Error(`a batch of ${chunk.length} got ${out.length} answers`);
    } catch (err) {
      for (const c of chunk) c.reject(err);
      return;
    }
    chunk.forEach((c, i) => {
      const o = out[i]!;
      if (o instanceof Error) c.reject(o);
      else c.resolve(o);
    });
  }
}

/**
 * One Batcher per key (a database pool: the concurrent deliveries of one worker share it), made
 * the first time the key asks for it: `batcherPer((pool) => (items) => …)` then `per(pool).run(item)`.
 */
export function batcherPer<K extends object, I, O>(flush: (key: K) => Flush<I, O>, max?: number): (key: K) => Batcher<I, O> {
  const made = new WeakMap<K, Batcher<I, O>>();
  return (key) => {
    let b = made.get(key);
    if (b === undefined) {
      b = new Batcher(flush(key), max);
      made.set(key, b);
    }
    return b;
  };
}

/**
 * At most `max` at once: the rest wait their turn, the most urgent first (the lowest `priority`),
 * first come first served within one. A batch job's rows run under one worker's limit
 * (DELIVERY_CONCURRENCY) at their job's priority, so a burst never opens more provider calls and
 * database waits at once than the worker can answer before their deadlines, and a first alert
 * that arrives while thousands of later messages wait in the worker still goes next.
 */
export class Limiter {
  private active = 0;
  /** Waiting callers per priority; `levels` keeps the priorities in use, sorted. */
  private readonly waiting = new Map<number, (() => void)[]>();
  private levels: number[] = [];
  private opened = false;

  constructor(readonly max: number) {
    if (!Number.isInteger(max) || max < 1) throw new Error(`a limit must be a positive integer, got ${max}`);
  }

  /** No limit from now on: whatever waits starts at once (a worker shutting down lets its jobs end). */
  open(): void {
    this.opened = true;
    for (const level of this.levels) {
      for (const next of this.waiting.get(level)!.splice(0)) {
        this.active += 1;
        next();
      }
    }
  }

  async run<T>(work: () => Promise<T>, priority = 0): Promise<T> {
    if (this.active >= this.max && !this.opened) {
      await new Promise<void>((resolve) => {
        let queue = this.waiting.get(priority);
        if (queue === undefined) {
          queue = [];
          this.waiting.set(priority, queue);
          this.levels = [...this.levels, priority].sort((a, b) => a - b);
        }
        queue.push(resolve);
      });
    } else {
      this.active += 1;
    }
    try {
      return await work();
    } finally {
      const next = this.next();
      // The slot passes straight to the next in line.
      if (next !== undefined) next();
      else this.active -= 1;
    }
  }

  private next(): (() => void) | undefined {
    for (const level of this.levels) {
      const next = this.waiting.get(level)!.shift();
      if (next !== undefined) return next;
    }
    return undefined;
  }
}
