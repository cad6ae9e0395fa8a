import { Queue, Worker, createPostgresBackend, type Job, type JobsOptions, type WorkerOptions } from 'bullmq';
import pg from 'pg';
import { survivesRestarts } from '../db/pool.js';
import type { Logger } from '../observability/logger.js';

/**
 * BullMQ moves work, it never owns it: every job can be rebuilt from PostgreSQL.
 * Redis when REDIS_URL is set, otherwise BullMQ's PostgreSQL backend in our own database.
 * The same Queue/Worker code runs on both.
 */

export const QUEUE_NAMES = ['system', 'delivery', 'sweep'] as const;
export type QueueName = (typeof QUEUE_NAMES)[number];

export const POSTGRES_QUEUE_SCHEMA = 'bullmq';

export type QueueSettings = {
  backend: 'redis' | 'postgres';
  redisUrl?: string | undefined;
  databaseUrl: string;
  /** Namespaces queues: a Redis key prefix (tests use a fresh one per file). */
  prefix: string;
  /** See checkStalls (defaults STALL_AFTER_MS, HUNG_AFTER_MS). */
  stallAfterMs?: number;
  hungAfterMs?: number;
};

type RedisOptions = { host: string; port: number; username?: string; password?: string; db?: number; tls?: object };

export function redisOptionsFromUrl(url: string): RedisOptions {
  const u = new URL(url);
  const opts: RedisOptions = { host: u.hostname || '127.0.0.1', port: u.port === '' ? 6379 : Number(u.port) };
  if (u.username !== '') opts.username = decodeURIComponent(u.username);
  if (u.password !== '') opts.password = decodeURIComponent(u.password);
  const db = u.pathname.replace('/', '');
  if (db !== '') opts.db = Number(db);
  if (u.protocol === 'rediss:') opts.tls = {};
  return opts;
}

export type Processor = (job: Job, token?: string) => Promise<unknown>;
/* eslint-disable @typescript-eslint/no-explicit-any -- one type for queues on either backend */
export type AnyQueue = Queue<any, any, string, any, any, string, any, any>;
export type AnyWorker = Worker<any, any, string, any, any, any>;
/* eslint-enable @typescript-eslint/no-explicit-any */

type Supervised = {
  name: QueueName;
  opts: Omit<WorkerOptions, 'connection'>;
  processor: (job: Job, token?: string) => Promise<unknown>;
  current: AnyWorker;
  inFlight: number;
  /** The jobs in hand and when each started. */
  running: Map<object, number>;
  lastStart: number;
  suspect: number;
};

/** A worker idle this long while jobs wait in its queue is suspect (see checkStalls). */
export const STALL_AFTER_MS = 10_000;
/**
 * A job in hand this long has hung: longer than any job may take (a send's 15 s timeout, the
 * 30 s record retry, a sweep batch), so replacing its worker cannot cut a live send short.
 */
export const HUNG_AFTER_MS = 90_000;

export class QueueSystem {
  private readonly queues = new Map<QueueName, AnyQueue>();
  private readonly supervised: Supervised[] = [];
  private supervisor: NodeJS.Timeout | undefined;
  private checking = false;
  private closing = false;
  private replaced = 0;
  private closed: Promise<void> | undefined;
  private readonly closingHooks: (() => void)[] = [];
  private readonly closedHooks: (() => void | Promise<void>)[] = [];
  private readonly stallAfterMs: number;
  private readonly hungAfterMs: number;
  private readonly pgPool: pg.Pool | undefined;
  private readonly redis: RedisOptions | undefined;

  constructor(readonly settings: QueueSettings, private readonly log: Logger) {
    this.stallAfterMs = settings.stallAfterMs ?? STALL_AFTER_MS;
    this.hungAfterMs = settings.hungAfterMs ?? HUNG_AFTER_MS;
    if (settings.backend === 'redis') {
      if (settings.redisUrl === undefined) throw new Error('redis queue backend needs a REDIS_URL');
      this.redis = redisOptionsFromUrl(settings.redisUrl);
    } else {
      // One pool for every queue and worker of this process; each worker also holds one LISTEN client.
      this.pgPool = new pg.Pool({
        connectionString: settings.databaseUrl,
        max: 10,
        options: `-c search_path=${POSTGRES_QUEUE_SCHEMA}`,
        connectionTimeoutMillis: 5000,
        keepAlive: true,
        application_name: 'pruuf-queue',
      });
      survivesRestarts(this.pgPool, log, 'queue database');
    }
  }

  get backend(): 'redis' | 'postgres' {
    return this.settings.backend;
  }

  /** A producer. On the request path it must fail fast rather than wait for a lost connection. */
  queue(name: QueueName): AnyQueue {
    let q = this.queues.get(name);
    if (q === undefined) {
      const created: AnyQueue = this.pgPool !== undefined
        ? new Queue(name, { connection: this.pgPool }, createPostgresBackend)
        : new Queue(name, { connection: { ...this.redis!, maxRetriesPerRequest: 1 }, prefix: this.settings.prefix });
      created.on('error', (err: Error) => this.log.warn({ err: { message: err.message }, queue: name }, 'queue connection error'));
      this.queues.set(name, created);
      q = created;
    }
    return q;
  }

  /**
   * A supervised worker: see checkStalls. Returns the BullMQ Worker running now; it may be
   * replaced later, so lifecycle hooks belong in beforeClose/afterClose, not on it.
   */
  worker(name: QueueName, processor: Processor, opts: Omit<WorkerOptions, 'connection'> = {}): AnyWorker {
    const entry: Supervised = { name, opts, current: undefined as unknown as AnyWorker, inFlight: 0, running: new Map(), lastStart: Date.now(), suspect: 0, processor: async () => undefined };
    entry.processor = async (job: Job, token?: string) => {
      const mine = {};
      entry.lastStart = Date.now();
      entry.running.set(mine, entry.lastStart);
      entry.inFlight = entry.running.size;
      try {
        return await processor(job, token);
      } finally {
        entry.running.delete(mine);
        entry.inFlight = entry.running.size;
      }
    };
    entry.current = this.createWorker(entry);
    this.supervised.push(entry);
    if (this.supervisor === undefined) {
      this.supervisor = setInterval(() => void this.checkStalls(), Math.max(50, Math.round(this.stallAfterMs / 2)));
      this.supervisor.unref();
    }
    return entry.current;
  }

  private createWorker(entry: Supervised): AnyWorker {
    const { name, opts } = entry;
    const w: AnyWorker = this.pgPool !== undefined
      ? new Worker(name, entry.processor, { ...opts, connection: this.pgPool }, createPostgresBackend)
      : new Worker(name, entry.processor, { ...opts, connection: { ...this.redis!, maxRetriesPerRequest: null }, prefix: this.settings.prefix });
    w.on('error', (err: Error) => this.log.warn({ err: { message: err.message }, queue: name }, 'worker connection error'));
    w.on('failed', (job: Job | undefined, err: Error) => this.log.warn({ queue: name, job_id: job?.id, err: { message: err.message } }, 'job failed'));
    return w;
  }

  /**
   * A BullMQ worker can stop taking jobs after its connection comes back (seen here after Redis
   * restarts; BullMQ issues #648, #2466, #2964), while the process looks healthy. A worker with
   * no job in hand that has started nothing for `stallAfterMs` while jobs wait in its (unpaused)
   * queue, twice in a row, is replaced by a fresh one.
   */
  private async checkStalls(): Promise<void> {
    if (this.checking || this.closing) return;
    this.checking = true;
    try {
      for (const entry of this.supervised) {
        // A job in hand for longer than any job may legitimately take has hung (on a connection
        // that never recovered): the worker is replaced at once. Otherwise only a worker with
        // nothing in hand: replacing one mid-send would let its job's lock lapse while the send
        // runs, and another worker send it again.
        const oldest = Math.min(...entry.running.values());
        if (entry.running.size > 0 && Date.now() - oldest > this.hungAfterMs) {
          this.replace(entry, { hung_ms: Date.now() - oldest });
          continue;
        }
        if (entry.inFlight > 0 || Date.now() - entry.lastStart < this.stallAfterMs) {
          entry.suspect = 0;
          continue;
        }
        const queue = this.queue(entry.name);
        // A job with a priority (every delivery job: delivery/priority.ts) waits as 'prioritized', not 'waiting'.
        const waiting = await queue.getJobCountByTypes('waiting', 'prioritized').catch(() => 0);
        if (waiting > 0 && (await queue.isPaused().catch(() => false))) continue;
        entry.suspect = waiting > 0 ? entry.suspect + 1 : 0;
        if (entry.suspect < 2 || this.closing) continue;
        this.replace(entry, { waiting, idle_ms: Date.now() - entry.lastStart });
      }
    } finally {
      this.checking = false;
    }
  }

  private replace(entry: Supervised, why: object): void {
    this.log.warn({ queue: entry.name, ...why }, 'worker takes no jobs although jobs are waiting, or a job of it hangs; replacing it');
    const stale = entry.current;
    entry.current = this.createWorker(entry);
    entry.lastStart = Date.now();
    entry.suspect = 0;
    // Its hung jobs are forgotten: their locks lapse and they come back as stalled jobs.
    entry.running.clear();
    entry.inFlight = 0;
    this.replaced += 1;
    void stale.close(true).catch(() => undefined);
  }

  /** Workers replaced by the stall check since this QueueSystem started. */
  get replacedWorkers(): number {
    return this.replaced;
  }

  /** Runs when close() begins (before the workers stop taking jobs). */
  beforeClose(hook: () => void): void {
    this.closingHooks.push(hook);
  }

  /** Runs after every worker finished its active jobs, before the connections close. */
  afterClose(hook: () => void | Promise<void>): void {
    this.closedHooks.push(hook);
  }

  async add(name: QueueName, jobName: string, data: object, opts: JobsOptions = {}): Promise<void> {
    await this.queue(name).add(jobName, data, opts);
  }

  /** Readiness: the backend answers within `timeoutMs`. */
  async ping(timeoutMs = 2000): Promise<void> {
    const check = this.queue('system').getJobCounts('waiting');
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`queue backend did not answer within ${timeoutMs} ms`)), timeoutMs);
    });
    try {
      await Promise.race([check, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** Stops taking new jobs, lets active ones finish (BullMQ's close waits for them), then disconnects. Idempotent. */
  close(): Promise<void> {
    this.closed ??= this.shutdown();
    return this.closed;
  }

  private async shutdown(): Promise<void> {
    this.closing = true;
    clearInterval(this.supervisor);
    for (const hook of this.closingHooks.splice(0)) hook();
    await Promise.allSettled(this.supervised.map((e) => e.current.close()));
    for (const hook of this.closedHooks.splice(0)) await Promise.resolve(hook()).catch(() => undefined);
    await Promise.allSettled([...this.queues.values()].map((q) => q.close()));
    this.supervised.length = 0;
    this.queues.clear();
    await this.pgPool?.end();
  }
}
