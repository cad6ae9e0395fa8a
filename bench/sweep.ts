// bench:sweep — the sweeper against a large table of schedules.
//  1. Idle tick: ACTIVE schedules (default 1,000,000), none due; the time of one sweepOnce()
//     (every timer lane looks and finds nothing). Target < 5 ms. Baseline: one round trip
//     (`select 1`) on the same pool.
//  2. Claim rate: DUE of them (default 100,000, 2 contacts each on email) due at once; one
//     sweepOnce() opens every incident, writes its outbox rows and enqueues their jobs.
//     Target (issue 19) ≥ 10,000 incidents/s and ≥ 0.4 × the bare claim. Baseline: the bare claim — the same rows claimed in batches
//     of the same size (FOR UPDATE SKIP LOCKED) and moved on in one UPDATE each, nothing else.
//     What bounds it: CPU spent per incident by this process (claim + enqueue), by its PostgreSQL
//     backends (read from /proc: PostgreSQL must be local) and by Redis (INFO; Redis is shared,
//     so that figure includes whatever else used it meanwhile).
//   npm run bench:sweep -- [--schedules=1000000] [--due=100000] [--backend=redis|postgres] [--batch=250] [--lanes=3]
//                          [--statement-cpu] (PostgreSQL CPU per statement of the claim, the top 15 printed)
// Needs PostgreSQL (TEST_PG_ADMIN_URL, default postgres://postgres@127.0.0.1:5432/postgres) and,
// for the redis backend, Redis (TEST_REDIS_URL, default redis://127.0.0.1:6379).
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { Redis } from 'ioredis';
import type pg from 'pg';
import { loadConfig } from '../src/config.js';
import { incidentSettings } from '../src/incidents/settings.js';
import { MISSED_BATCH, SWEEP_LANES, sweepOnce, type SweepDeps } from '../src/incidents/sweep.js';
import { createLogger } from '../src/observability/logger.js';
import { QueueSystem } from '../src/queue/index.js';
import { arg, createBenchDatabase, dropRedisPrefix, flag, REDIS_URL } from './lib/env.js';
import { machine, printSummary, writeResults, type Figure } from './lib/report.js';
import { statementCpu } from './lib/statement-cpu.js';
import { summarize } from './lib/stats.js';

const SCHEDULES = Number(arg('schedules', '1000000'));
const DUE = Math.min(SCHEDULES, Number(arg('due', '100000')));
const IDLE_TICKS = Number(arg('ticks', '200'));
const BATCH = Number(arg('batch', String(MISSED_BATCH)));
const LANES = Number(arg('lanes', String(SWEEP_LANES)));
const backend = arg('backend', 'redis') as 'redis' | 'postgres';
const STATEMENTS = flag('statement-cpu') ? statementCpu() : undefined;
const SECRET = 'bench-link-secret-of-at-least-32-characters';

const log = (msg: string) => process.stderr.write(`[bench:sweep] ${msg}\n`);

async function seed(pool: pg.Pool, now: Date): Promise<void> {
  const far = new Date(now.getTime() + 86_400_000);
  // Members and schedules in chunks, so no single statement holds a million rows in memory.
  const CHUNK = 100_000;
  for (let from = 1; from <= SCHEDULES; from += CHUNK) {
    const to = Math.min(SCHEDULES, from + CHUNK - 1);
    await pool.query(
      `with m as (
         insert into members (id, display_name, time_zone)
         select gen_random_uuid(), 'Member ' || g, 'UTC' from generate_series($1::int, $2::int) g returning id
       )
       insert into schedules (member_id, kind, local_time, time_zone, grace_minutes, reminder_minutes, next_deadline_at, alert_at, window_start_at, following_deadline_at)
       select id, 'daily', '09:30', 'UTC', 30, '{}', $3::timestamptz - interval '30 minutes', $3, $3::timestamptz - interval '1 day 30 minutes', $3::timestamptz + interval '1 day' from m`,
      [from, to, far],
    );
    log(`seeded ${to.toLocaleString('en-US')} schedules`);
  }
  await pool.query('vacuum analyze members');
  await pool.query('vacuum analyze schedules');
}

/** DUE schedules become due now (deadline an hour ago, grace over), each with two active email contacts. */
async function makeDue(pool: pg.Pool, now: Date, withContacts: boolean): Promise<void> {
  await pool.query(
    `with due as (select id, member_id from schedules where active order by id limit $1),
     c as (
       insert into contacts (member_id, name, email, status, responded_at)
       select d.member_id, 'Contact ' || i, d.member_id || '-' || i || '@example.test', 'active', now()
         from due d cross join generate_series(1, 2) i where $3
     )
     update schedules s set next_deadline_at = $2::timestamptz - interval '60 minutes', alert_at = $2::timestamptz - interval '30 minutes',
       following_deadline_at = $2::timestamptz + interval '23 hours'
       from due where s.id = due.id`,
    [DUE, now, withContacts],
  );
  await pool.query('analyze schedules');
}

/** CPU seconds used so far by the PostgreSQL backends behind the pool's connections (null: not readable here). */
async function backendCpu(pool: pg.Pool, size: number): Promise<() => number | null> {
  const clients = await Promise.all(Array.from({ length: size }, () => pool.connect()));
  const pids = await Promise.all(clients.map(async (c) => (await c.query<{ pid: number }>('select pg_backend_pid() as pid')).rows[0]!.pid));
  for (const c of clients) c.release();
  return () => {
    try {
      // utime + stime, fields 14 and 15 of /proc/<pid>/stat (counted after the command's closing parenthesis).
      return pids.reduce((sum, pid) => {
        const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
        return sum + Number(f[11]) + Number(f[12]);
      }, 0) / 100;
    } catch {
      return null;
    }
  };
}

async function redisCpu(redis: Redis): Promise<number> {
  const info = await redis.info('cpu');
  return Number(/used_cpu_user:([\d.]+)/.exec(info)?.[1] ?? 0) + Number(/used_cpu_sys:([\d.]+)/.exec(info)?.[1] ?? 0);
}

async function main(): Promise<void> {
  const POOL = 10;
  const db = await createBenchDatabase(backend, POOL);
  const { pool, url } = db;
  // Connections stay open for the whole run, so the backends measured are the ones that sweep.
  (pool.options as { idleTimeoutMillis?: number }).idleTimeoutMillis = 0;
  const redis = backend === 'redis' ? new Redis(REDIS_URL) : undefined;
  const prefix = `bench${randomBytes(3).toString('hex')}`;
  const config = loadConfig({ NODE_ENV: 'test', DATABASE_URL: url, ...(backend === 'redis' ? { REDIS_URL } : {}), LINK_SIGNING_SECRET: SECRET, PUBLIC_BASE_URL: 'https://pruuf.example' });
  const queues = new QueueSystem({ backend, redisUrl: config.REDIS_URL, databaseUrl: url, prefix }, createLogger('warn'));
  const figures: Figure[] = [];
  try {
    const now = new Date();
    const t0 = performance.now();
    await seed(pool, now);
    log(`seeded ${SCHEDULES.toLocaleString('en-US')} schedules in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    const deps: SweepDeps = { pool, queues, log: createLogger('warn'), clock: () => now, settings: incidentSettings(config, SECRET), batchSize: BATCH, lanes: LANES };

    // 1. Idle ticks, with a baseline round trip interleaved so both see the same machine.
    for (let i = 0; i < 10; i++) await sweepOnce(deps); // warm the pool and plans
    const idle: number[] = [];
    const trip: number[] = [];
    for (let i = 0; i < IDLE_TICKS; i++) {
      let t = performance.now();
      const r = await sweepOnce(deps);
      idle.push(performance.now() - t);
      if (r.missed + r.steps + r.reminders + r.ackTimeouts !== 0) throw new Error('an idle tick found work');
      t = performance.now();
      await pool.query('select 1');
      trip.push(performance.now() - t);
    }
    const idleS = summarize(idle);
    const tripS = summarize(trip);
    figures.push(
      { name: 'idle_tick.p50', value: idleS.p50, unit: 'ms', target: '< 5', met: idleS.p50 < 5 },
      { name: 'idle_tick.p99', value: idleS.p99, unit: 'ms' },
      { name: 'baseline.round_trip.p50', value: tripS.p50, unit: 'ms' },
    );

    // 2. Baseline claim: the same number of rows claimed and moved on in batches, nothing else.
    await makeDue(pool, now, true);
    let claimed = 0;
    const b0 = performance.now();
    for (;;) {
      const { rowCount } = await pool.query(
        `with c as (select id from schedules where active and alert_at <= $1 order by alert_at limit $2 for update skip locked)
         update schedules s set alert_at = s.alert_at + interval '1 day' from c where s.id = c.id`,
        [now, BATCH],
      );
      claimed += rowCount ?? 0;
      if ((rowCount ?? 0) === 0) break;
    }
    const baselineS = (performance.now() - b0) / 1000;

    // 3. The real sweep of the same number of due schedules.
    await makeDue(pool, now, false);
    const pgCpu = await backendCpu(pool, POOL);
    const pg0 = pgCpu();
    const redis0 = redis === undefined ? 0 : await redisCpu(redis);
    const cpu0 = process.cpuUsage();
    STATEMENTS?.start();
    const s0 = performance.now();
    const result = await sweepOnce(deps);
    const sweepS = (performance.now() - s0) / 1000;
    for (const st of STATEMENTS?.stop().slice(0, 15) ?? []) {
      log(`${st.cpuMs.toFixed(0).padStart(6)} ms ${String(st.calls).padStart(5)} × ${st.usPerCall.toFixed(0).padStart(6)} µs  ${st.statement}`);
    }
    const cpu = process.cpuUsage(cpu0);
    const pg1 = pgCpu();
    const redisS = redis === undefined ? null : (await redisCpu(redis)) - redis0;
    const perIncident = (seconds: number) => (seconds * 1e6) / Math.max(1, result.missed);
    const cpuFigures: Figure[] = [{ name: 'cpu.sweeper_us_per_incident', value: perIncident((cpu.user + cpu.system) / 1e6), unit: 'us' }];
    if (pg0 !== null && pg1 !== null) cpuFigures.push({ name: 'cpu.postgres_us_per_incident', value: perIncident(pg1 - pg0), unit: 'us' });
    if (redisS !== null) cpuFigures.push({ name: 'cpu.redis_us_per_incident', value: perIncident(redisS), unit: 'us' });
    const { rows } = await pool.query<{ incidents: number; deliveries: number }>(
      `select (select count(*)::int from incidents) as incidents, (select count(*)::int from deliveries where kind = 'alert') as deliveries`,
    );
    const jobs = await queues.queue('delivery').count();
    figures.push(
      { name: 'claim.incidents_per_s', value: result.missed / sweepS, unit: 'incidents/s', target: '>= 10000', met: result.missed / sweepS >= 10_000 },
      { name: 'claim.sweep_seconds', value: sweepS, unit: 's' },
      { name: 'claim.incidents', value: rows[0]!.incidents, unit: 'count' },
      { name: 'claim.deliveries_written', value: rows[0]!.deliveries, unit: 'count' },
      { name: 'claim.delivery_jobs_enqueued', value: jobs, unit: 'count' },
      { name: 'baseline.bare_claim_per_s', value: claimed / baselineS, unit: 'rows/s' },
      { name: 'ratio.sweep_vs_bare_claim', value: result.missed / sweepS / (claimed / baselineS), unit: 'ratio', target: '>= 0.4', met: result.missed / sweepS / (claimed / baselineS) >= 0.4 },
      ...cpuFigures,
    );
    if (rows[0]!.incidents !== DUE) throw new Error(`expected ${DUE} incidents, found ${rows[0]!.incidents}`);
    printSummary(figures);
    const file = writeResults('sweep', { backend, schedules: SCHEDULES, due: DUE, batch: BATCH, lanes: LANES, machine: machine(), figures, idleTick: idleS, baselineRoundTrip: tripS });
    log(`results in ${file}`);
  } finally {
    await queues.close();
    if (redis !== undefined) {
      await dropRedisPrefix(redis, prefix); // 2 jobs per incident otherwise stay in the shared Redis
      redis.disconnect();
    }
    await db.drop();
  }
}

await main();
