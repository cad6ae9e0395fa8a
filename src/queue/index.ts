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

export type Processor = (job: Job) => Promise<unknown>;
/* eslint-disable @typescript-eslint/no-explicit-any -- one type for queues on either backend */
export type AnyQueue = Queue<any, any, string, any, any, string, any, any>;
export type AnyWorker = Worker<any, any, string, any, any, any>;
/* eslint-enable @typescript-eslint/no-explicit-any */

export class QueueSystem {
  private readonly queues = new Map<QueueName, AnyQueue>();
  private readonly workers: AnyWorker[] = [];
  private readonly pgPool: pg.Pool | undefined;
  private readonly redis: RedisOptions | undefined;

  constructor(readonly settings: QueueSettings, private readonly log: Logger) {
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

  worker(name: QueueName, processor: Processor, opts: Omit<WorkerOptions, 'connection'> = {}): AnyWorker {
    const w: AnyWorker = this.pgPool !== undefined
      ? new Worker(name, processor, { ...opts, connection: this.pgPool }, createPostgresBackend)
      : new Worker(name, processor, { ...opts, connection: { ...this.redis!, maxRetriesPerRequest: null }, prefix: this.settings.prefix });
    w.on('error', (err: Error) => this.log.warn({ err: { message: err.message }, queue: name }, 'worker connection error'));
    w.on('failed', (job: Job | undefined, err: Error) => this.log.warn({ queue: name, job_id: job?.id, err: { message: err.message } }, 'job failed'));
    this.workers.push(w);
    return w;
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

  /** Stops taking new jobs, lets active ones finish (BullMQ's close waits for them), then disconnects. */
  async close(): Promise<void> {
    await Promise.allSettled(this.workers.map((w) => w.close()));
    await Promise.allSettled([...this.queues.values()].map((q) => q.close()));
    this.workers.length = 0;
    this.queues.clear();
    await this.pgPool?.end();
  }
}
