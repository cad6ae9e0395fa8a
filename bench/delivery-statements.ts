// bench:delivery-statements — the database side of sending alerts, alone: batch jobs read and lease
// their rows, "send" each through a channel that answers at once (no provider, no HTTP), and record
// it (sent record + try, shared per turn) — the statements every delivery of a burst makes, and only
// those. Run twice over the same kind of rows, interleaved in quarters so both see the same machine:
//   - named: the hot statements as named prepared statements (src/db/pool.ts `prepared`): each
//     connection parses and plans them once;
//   - baseline: the same code with the statement names stripped (parsed and planned every time,
//     as before 2026-12-07).
// Prints PostgreSQL backend CPU and this process's CPU per delivery, and wall time, for both.
//   npm run bench:delivery-statements -- [--deliveries=40000] [--pending=100000] [--jobs=20]
// Needs PostgreSQL (TEST_PG_ADMIN_URL, default postgres://postgres@127.0.0.1:5432/postgres).
import type pg from 'pg';
import { Limiter } from '../src/batcher.js';
import type { Channel, Channels } from '../src/channels/types.js';
import { withTransaction } from '../src/db/pool.js';
import { processDeliveryBatch } from '../src/delivery/deliver.js';
import { insertDeliveries, type NewDelivery } from '../src/delivery/outbox.js';
import { createLogger } from '../src/observability/logger.js';
import { processCpuMs } from './lib/cpu.js';
import { arg, createBenchDatabase } from './lib/env.js';
import { machine, printSummary, writeResults, type Figure } from './lib/report.js';

const DELIVERIES = Number(arg('deliveries', '40000'));
/** Other pending rows in the table meanwhile (a burst's backlog): the indexes the statements walk. */
const BACKLOG = Number(arg('pending', '100000'));
/** Batch jobs in hand at once (the worker's BullMQ concurrency). */
const JOBS = Number(arg('jobs', '20'));
const POOL = 10;
const log = (msg: string) => process.stderr.write(`[bench:delivery-statements] ${msg}\n`);

/** Every send accepted at once: what is left is our own reads and writes. */
const instant: Channel = { provider: 'instant', send: async (msg) => ({ provider: 'instant', providerMessageId: `m-${msg.deliveryId}` }) };
const channels: Channels = { push: instant, sms: instant, email: instant };

/** The same pool with the statement names taken off: every statement parsed and planned each time. */
function unnamed(pool: pg.Pool): pg.Pool {
  const query = (q: string | pg.QueryConfig, values?: unknown[]) =>
    pool.query(typeof q === 'string' ? q : { text: q.text, ...(q.values === undefined ? {} : { values: q.values }) }, values as unknown[]);
  return new Proxy(pool, { get: (target, prop) => (prop === 'query' ? query : Reflect.get(target, prop)) });
}

async function rows(pool: pg.Pool, n: number, tag: string): Promise<string[]> {
  const keys: string[] = [];
  for (let from = 0; from < n; from += 5000) {
    const batch: NewDelivery[] = Array.from({ length: Math.min(5000, n - from) }, (_, i) => ({
      memberId: null, contactId: null, kind: 'reminder', channel: 'email', address: `${tag}-${from + i}@example.test`, subject: 'Time to check in', body: 'Check in by 09:30.',
    }));
    const ids = await withTransaction(pool, (tx) => insertDeliveries(tx, batch));
    const { rows: k } = await pool.query<{ job_key: string }>(`select distinct job_key from deliveries where id = any($1::uuid[])`, [ids]);
    keys.push(...k.map((r) => r.job_key));
  }
  return keys;
}

async function backends(pool: pg.Pool): Promise<number[]> {
  const held = await Promise.all(Array.from({ length: POOL }, () => pool.connect()));
  const pids = await Promise.all(held.map(async (c) => (await c.query<{ pid: number }>('select pg_backend_pid() as pid')).rows[0]!.pid));
  for (const c of held) c.release();
  return pids;
}

type Tally = { deliveries: number; pgMs: number; selfMs: number; wallMs: number };

async function quarter(pool: pg.Pool, pids: number[], keys: string[], tally: Tally): Promise<void> {
  const pg0 = pids.reduce((s, p) => s + processCpuMs(p), 0);
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  const limit = new Limiter(100);
  const deps = { pool, channels, clock: () => new Date(), log: createLogger('silent') };
  let next = 0;
  await Promise.all(Array.from({ length: JOBS }, async () => {
    for (let i = next++; i < keys.length; i = next++) {
      await processDeliveryBatch(deps, keys[i]!, { attemptsMade: 0, maxAttempts: 12, limit });
    }
  }));
  tally.wallMs += performance.now() - t0;
  const cpu = process.cpuUsage(cpu0);
  tally.selfMs += (cpu.user + cpu.system) / 1000;
  tally.pgMs += pids.reduce((s, p) => s + processCpuMs(p), 0) - pg0;
  const { rows: [r] } = await pool.query<{ n: number }>(`select count(*)::int as n from deliveries where job_key = any($1::uuid[]) and status = 'sent'`, [keys]);
  tally.deliveries += r!.n;
}

async function main(): Promise<void> {
  const db = await createBenchDatabase('redis', POOL);
  try {
    (db.pool.options as { idleTimeoutMillis?: number }).idleTimeoutMillis = 0;
    log(`seeding ${BACKLOG.toLocaleString('en-US')} pending rows beside ${DELIVERIES.toLocaleString('en-US')} to send`);
    await rows(db.pool, BACKLOG, 'backlog');
    const keys = await rows(db.pool, DELIVERIES, 'send');
    await db.pool.query('analyze deliveries');
    const pids = await backends(db.pool);
    const plain = unnamed(db.pool);
    const named: Tally = { deliveries: 0, pgMs: 0, selfMs: 0, wallMs: 0 };
    const base: Tally = { deliveries: 0, pgMs: 0, selfMs: 0, wallMs: 0 };
    // Warm both (plans, caches), then four quarters, alternating which goes first.
    const q = Math.floor(keys.length / 4);
    const parts = [0, 1, 2, 3].map((i) => keys.slice(i * q, i === 3 ? keys.length : (i + 1) * q));
    await quarter(plain, pids, parts[0]!.splice(0, 10), { deliveries: 0, pgMs: 0, selfMs: 0, wallMs: 0 });
    await quarter(db.pool, pids, parts[1]!.splice(0, 10), { deliveries: 0, pgMs: 0, selfMs: 0, wallMs: 0 });
    await quarter(plain, pids, parts[0]!, base);
    await quarter(db.pool, pids, parts[1]!, named);
    await quarter(db.pool, pids, parts[2]!, named);
    await quarter(plain, pids, parts[3]!, base);
    const per = (t: Tally, ms: number) => (1000 * ms) / t.deliveries;
    const figures: Figure[] = [
      { name: 'named.deliveries', value: named.deliveries, unit: 'count' },
      { name: 'named.postgres_cpu', value: per(named, named.pgMs), unit: 'µs/delivery', digits: 0 },
      { name: 'named.process_cpu', value: per(named, named.selfMs), unit: 'µs/delivery', digits: 0 },
      { name: 'named.throughput', value: named.deliveries / (named.wallMs / 1000), unit: 'deliveries/s', digits: 0 },
      { name: 'baseline.deliveries', value: base.deliveries, unit: 'count' },
      { name: 'baseline.postgres_cpu', value: per(base, base.pgMs), unit: 'µs/delivery', digits: 0 },
      { name: 'baseline.process_cpu', value: per(base, base.selfMs), unit: 'µs/delivery', digits: 0 },
      { name: 'baseline.throughput', value: base.deliveries / (base.wallMs / 1000), unit: 'deliveries/s', digits: 0 },
      { name: 'ratio.postgres_cpu_named_over_baseline', value: per(named, named.pgMs) / per(base, base.pgMs), unit: 'ratio' },
    ];
    printSummary(figures);
    log(`results in ${writeResults('delivery-statements', { deliveries: DELIVERIES, backlog: BACKLOG, jobs: JOBS, machine: machine(), figures })}`);
  } finally {
    await db.drop();
  }
}

await main();
