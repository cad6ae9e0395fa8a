// bench:alerts — an alert burst through the real sweeper, queue and channels to the provider
// fakes (FCM, SendGrid, Twilio speaking their wire formats, 20 ms each), which run in a process
// of their own (bench/lib/fakes-process.ts) so their CPU is not the bench's. N members (default
// 10,000) with two contacts on email + SMS, the first also on push, all due at the same instant:
// one incident per member, 5 deliveries each.
// Per backend, in one run:
//   - direct-send floor: the same messages (addresses, text) straight through the same channel
//     clients at the same concurrency, no database row, no queue: the providers' own ceiling here;
//   - pipeline: alert_at → last provider acceptance, and its throughput as a share of the floor's;
//   - time to first alert per incident (alert_at → first acceptance among its deliveries) and
//     alert_at → acceptance of every delivery, p50/p99/max;
//   - lost (never accepted) and duplicated (accepted more than once, or accepted with no row);
//   - CPU per delivery of this process, the fakes, PostgreSQL and Redis, and the machine's load.
// Targets (issue 19, Redis, 10,000 members): first alert per incident p99 ≤ 30 s; pipeline ≥ 0.8 ×
// floor throughput; 0 lost, 0 duplicated.
//   npm run bench:alerts -- [--members=10000] [--backend=redis|postgres|both] [--concurrency=100] [--workers=1] [--latency=20]
//                           [--cpu-prof]   (this process's CPU profile of each pipeline and floor phase in
//                                           bench/results/profiles; read with npm run bench:profile)
//                           [--statement-cpu] (PostgreSQL CPU per statement during the pipeline, the top 15 printed)
// Needs PostgreSQL (TEST_PG_ADMIN_URL) and, for the redis backend, Redis (TEST_REDIS_URL).
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { Session } from 'node:inspector/promises';
import os from 'node:os';
import path from 'node:path';
import type { EventLoopUtilization } from 'node:perf_hooks';
import { Redis } from 'ioredis';
import type pg from 'pg';
import { coalesced } from '../src/channels/coalesce.js';
import { createSendGridChannel } from '../src/channels/email-sendgrid/index.js';
import { createFcmChannel } from '../src/channels/push-fcm/index.js';
import { createTwilioChannel } from '../src/channels/sms-twilio/index.js';
import { providersOf, ThrottledError, type Channels, type OutboundMessage } from '../src/channels/types.js';
import { loadConfig } from '../src/config.js';
import { incidentSettings } from '../src/incidents/settings.js';
import { createLogger } from '../src/observability/logger.js';
import { createMetrics } from '../src/observability/metrics.js';
import { QueueSystem } from '../src/queue/index.js';
import { startWorker } from '../src/worker.js';
import { machineCpuMs, processCpuMs } from './lib/cpu.js';
import { arg, createBenchDatabase, flag, numberArg, REDIS_URL, serviceVersions } from './lib/env.js';
import { startFakesProcess, type AcceptedRecord, type FakeChannel, type FakesProcess, type SampleMessage } from './lib/fakes-process.js';
import { machine, printSummary, RESULTS_DIR, writeResults, type Figure } from './lib/report.js';
import { ALERT_BURST } from './lib/scenarios.js';
import { statementCpu } from './lib/statement-cpu.js';
import { summarize, type LatencySummary } from './lib/stats.js';

const MEMBERS = numberArg('members', ALERT_BURST.members);
const CONCURRENCY = numberArg('concurrency', 100);
const WORKERS = numberArg('workers', 1);
const LATENCY_MS = Number(arg('latency', '20'));
const backendArg = arg('backend', 'both');
if (!['redis', 'postgres', 'both'].includes(backendArg)) throw new Error('--backend must be redis, postgres or both');
const backends = (backendArg === 'both' ? ['redis', 'postgres'] : [backendArg]) as ('redis' | 'postgres')[];
const CPU_PROF = flag('cpu-prof');
const STATEMENTS = flag('statement-cpu') ? statementCpu() : undefined;
const SECRET = 'bench-link-secret-of-at-least-32-characters';
const log = (msg: string) => process.stderr.write(`[bench:alerts] ${msg}\n`);
const silent = createLogger('warn');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function channelsFor(fakes: FakesProcess, pool: pg.Pool): { channels: Channels; close: () => Promise<void> } {
  const { sendgrid, twilio, fcm: fcmAt } = fakes.endpoints;
  const fcm = createFcmChannel({ pool, log: silent, projectId: fcmAt.projectId, credential: fakes.fcmCredential(), connect: fakes.fcmConnect });
  // Coalesced as createChannels does (src/channels/coalesce.ts): sends of one turn go out as the
  // provider's bulk call, in the pipeline and in the floor alike.
  return {
    channels: {
      push: coalesced(fcm),
      email: coalesced(createSendGridChannel({ apiKey: sendgrid.apiKey, baseUrl: sendgrid.url, from: { email: 'alerts@pruuf.example', name: 'Pruuf' }, log: silent })),
      // A messaging service with many numbers: the per-sender budget is not what this bench measures.
      sms: createTwilioChannel({
        accountSid: twilio.accountSid, authToken: twilio.authToken, apiBase: twilio.url, messagingServiceSid: 'MGbench',
        validitySeconds: 1800, statusCallbackUrl: 'https://pruuf.example/webhooks/twilio/status', ratePerSecond: 100_000, pool, log: silent,
      }),
    },
    close: () => fcm.close(),
  };
}

async function seed(pool: pg.Pool, alertAt: Date): Promise<void> {
  const deadline = new Date(alertAt.getTime() - 30 * 60_000);
  // No reminders: theirs would be an hour overdue at seed time and go out with the burst, which a
  // real burst (reminders 30 min before the deadline) does not carry.
  await pool.query(
    `with m as (
       insert into members (id, display_name, time_zone) select gen_random_uuid(), 'Member ' || g, 'UTC' from generate_series(1, $1) g returning id
     ), w as (
       insert into members (id, display_name) select gen_random_uuid(), 'Watcher of ' || id from m returning id, display_name
     ), d as (
       insert into devices (member_id, token, platform) select id, 'token-' || id, 'android' from w
     ), pairs as (
       select m.id as member_id, w.id as watcher_id, row_number() over () as n
         from (select id, row_number() over () as n from m) m join (select id, row_number() over () as n from w) w using (n)
     ), c as (
       insert into contacts (member_id, name, email, phone, tier, status, linked_user_id, responded_at)
       select member_id, 'Ann', 'ann-' || n || '@example.test', '+1555' || lpad((2 * n)::text, 7, '0'), 1, 'active', watcher_id, now() from pairs
       union all
       select member_id, 'Bob', 'bob-' || n || '@example.test', '+1555' || lpad((2 * n + 1)::text, 7, '0'), 1, 'active', null, now() from pairs
     )
     insert into schedules (member_id, kind, local_time, time_zone, grace_minutes, reminder_minutes, next_deadline_at, alert_at, window_start_at, following_deadline_at)
     select id, 'daily', '09:00', 'UTC', 30, '{}', $2, $3, $2::timestamptz - interval '1 day', $2::timestamptz + interval '1 day' from m`,
    [MEMBERS, deadline, alertAt],
  );
  await pool.query('vacuum analyze');
}

/** With --cpu-prof: profiles this process during a phase (V8's sampling profiler, as --cpu-prof does). */
async function profiled<T>(name: string, phase: () => Promise<T>): Promise<T> {
  if (!CPU_PROF) return phase();
  const session = new Session();
  session.connect();
  await session.post('Profiler.enable');
  await session.post('Profiler.start');
  try {
    return await phase();
  } finally {
    const { profile } = await session.post('Profiler.stop');
    const dir = path.join(RESULTS_DIR, 'profiles');
    mkdirSync(dir, { recursive: true });
    const file = path.join(dir, `alerts-${name}-${Date.now()}.cpuprofile`);
    writeFileSync(file, JSON.stringify(profile));
    session.disconnect();
    log(`profile of ${name}: ${file}`);
  }
}

// ---- CPU accounting over a phase: this process, the fakes, PostgreSQL's backends, Redis, the machine.

type CpuMark = { elu: EventLoopUtilization; syscalls: { reads: number; writes: number }; bench: number; fakes: number; pg: Map<number, number>; redis: number; machine: { busy: number; total: number }; db: DbCounts; redisCommands: number };
type DbCounts = { xacts: number; written: number; read: number; tables: Map<string, number> };

/** The bench database's own counters (pg_stat_database): a statement outside a transaction counts as one. */
async function dbCounts(pool: pg.Pool): Promise<DbCounts> {
  // Counters a backend has not flushed yet (at most a second's worth while busy) are missed.
  const { rows: [r] } = await pool.query<DbCounts>(
    `select (xact_commit + xact_rollback)::float8 as xacts, (tup_inserted + tup_updated + tup_deleted)::float8 as written, (tup_returned + tup_fetched)::float8 as read
       from pg_stat_database where datname = current_database()`,
  );
  // Where the rows go, table by table (inserted, updated, deleted).
  const { rows: tables } = await pool.query<{ t: string; n: number }>(
    `select schemaname || '.' || relname as t, (n_tup_ins + n_tup_upd + n_tup_del)::float8 as n from pg_stat_user_tables
     union all select schemaname || '.' || relname || ' (of them HOT updates)', n_tup_hot_upd::float8 from pg_stat_user_tables where n_tup_upd > 0`,
  );
  return { ...r!, tables: new Map(tables.map((t) => [t.t, t.n])) };
}

async function pgBackends(pool: pg.Pool): Promise<number[]> {
  // Client backends only: autovacuum cleaning up after the pipeline would be charged to the floor.
  const { rows } = await pool.query<{ pid: number }>(`select pid from pg_stat_activity where datname = current_database() and backend_type = 'client backend'`);
  return rows.map((r) => r.pid);
}

/** This process's read and write system calls so far (sockets included): Linux /proc, else NaN. */
function syscalls(): { reads: number; writes: number } {
  try {
    const io = readFileSync('/proc/self/io', 'utf8');
    const v = (k: string) => Number(new RegExp(`^${k}: (\\d+)`, 'm').exec(io)?.[1] ?? Number.NaN);
    return { reads: v('syscr'), writes: v('syscw') };
  } catch {
    return { reads: Number.NaN, writes: Number.NaN };
  }
}

/** The Redis server's CPU and commands so far: the whole server, other clients of it included. */
async function redisCounts(redis: Redis | undefined): Promise<{ cpuMs: number; commands: number }> {
  if (redis === undefined) return { cpuMs: 0, commands: 0 };
  const info = await redis.info();
  const v = (k: string) => Number(new RegExp(`${k}:([0-9.]+)`).exec(info)?.[1] ?? Number.NaN);
  return { cpuMs: (v('used_cpu_user') + v('used_cpu_sys')) * 1000, commands: v('total_commands_processed') };
}

async function cpuMark(pool: pg.Pool, fakes: FakesProcess, redis: Redis | undefined): Promise<CpuMark> {
  const elu = performance.eventLoopUtilization();
  const calls = syscalls();
  const u = process.cpuUsage();
  const pids = await pgBackends(pool);
  const r = await redisCounts(redis);
  return {
    elu,
    syscalls: calls,
    bench: (u.user + u.system) / 1000,
    fakes: processCpuMs(fakes.pid),
    pg: new Map(pids.map((p) => [p, processCpuMs(p)] as const).filter(([, ms]) => Number.isFinite(ms))),
    redis: r.cpuMs,
    machine: machineCpuMs(),
    db: await dbCounts(pool),
    redisCommands: r.commands,
  };
}

type CpuSpent = { eventLoopBusy: number; syscalls: { reads: number; writes: number }; bench: number; fakes: number; pg: number; redis: number; busyPct: number; otherPct: number; db: DbCounts; redisCommands: number };

function cpuSpent(a: CpuMark, b: CpuMark): CpuSpent {
  let pgMs = 0;
  // A backend first seen at the end started during the phase: all its CPU is the phase's. One that
  // ended during the phase is missed (pool connections live on while the phase keeps them busy).
  for (const [pid, ms] of b.pg) pgMs += ms - (a.pg.get(pid) ?? 0);
  const total = b.machine.total - a.machine.total;
  const busy = b.machine.busy - a.machine.busy;
  const bench = b.bench - a.bench;
  const fakes = b.fakes - a.fakes;
  const redis = b.redis - a.redis;
  return {
    eventLoopBusy: performance.eventLoopUtilization(b.elu, a.elu).utilization,
    syscalls: { reads: b.syscalls.reads - a.syscalls.reads, writes: b.syscalls.writes - a.syscalls.writes },
    bench, fakes, pg: pgMs, redis,
    busyPct: (100 * busy) / total,
    otherPct: (100 * (busy - bench - fakes - pgMs - redis)) / total,
    db: {
      xacts: b.db.xacts - a.db.xacts, written: b.db.written - a.db.written, read: b.db.read - a.db.read,
      tables: new Map([...b.db.tables].map(([t, n]) => [t, n - (a.db.tables.get(t) ?? 0)] as const).filter(([, n]) => n > 0)),
    },
    redisCommands: b.redisCommands - a.redisCommands,
  };
}

function cpuFigures(prefix: string, c: CpuSpent, messages: number): Figure[] {
  const per = (ms: number) => (1000 * ms) / messages;
  return [
    { name: `${prefix}.cpu.bench_process`, value: per(c.bench), unit: 'µs/msg', digits: 0 },
    // Share of the phase this process's event loop was running code: near 1, its one thread is what bounds the phase.
    { name: `${prefix}.bench_event_loop_busy`, value: c.eventLoopBusy, unit: 'ratio' },
    { name: `${prefix}.bench_syscalls.writes`, value: c.syscalls.writes / messages, unit: 'per msg', digits: 1 },
    { name: `${prefix}.bench_syscalls.reads`, value: c.syscalls.reads / messages, unit: 'per msg', digits: 1 },
    { name: `${prefix}.cpu.fakes_process`, value: per(c.fakes), unit: 'µs/msg', digits: 0 },
    { name: `${prefix}.cpu.postgres`, value: per(c.pg), unit: 'µs/msg', digits: 0 },
    { name: `${prefix}.cpu.redis_server`, value: per(c.redis), unit: 'µs/msg', digits: 0 },
    { name: `${prefix}.cpu.machine_busy`, value: c.busyPct, unit: '%', digits: 0 },
    { name: `${prefix}.cpu.other_work`, value: c.otherPct, unit: '%', digits: 0 },
    { name: `${prefix}.postgres.transactions`, value: c.db.xacts / messages, unit: 'per msg', digits: 1 },
    { name: `${prefix}.postgres.rows_written`, value: c.db.written / messages, unit: 'per msg', digits: 1 },
    { name: `${prefix}.redis.commands`, value: c.redisCommands / messages, unit: 'per msg', digits: 1 },
  ];
}

// ---- Matching what the fakes accepted with the delivery rows.

type Row = { id: string; incident_id: string; channel: FakeChannel; address: string };

type Matched = { deliveries: LatencySummary; firstPerIncident: LatencySummary; accepted: number; incidents: number; lastAt: number; lost: number; duplicated: number; unmatched: number };

/**
 * FCM and SendGrid requests carry our delivery id; Twilio's carries only the number, and every SMS
 * alert of this burst goes to a number of its own (one contact, one incident, one step). A row no
 * fake accepted is lost; a row accepted more than once, and an acceptance no row explains, is a
 * duplicate.
 */
function match(rows: Row[], records: AcceptedRecord[], alertAt: number, expected: number): Matched {
  const byKey = new Map<string, number[]>();
  const key = (channel: FakeChannel, deliveryId: string | null, to: string) => (channel === 'sms' ? `sms ${to}` : `${channel} ${deliveryId ?? `no-id ${to}`}`);
  for (const r of records) {
    const k = key(r.channel, r.deliveryId, r.to);
    const times = byKey.get(k);
    if (times === undefined) byKey.set(k, [r.at]);
    else times.push(r.at);
  }
  const lat: number[] = [];
  const first = new Map<string, number>();
  let lost = 0;
  let duplicated = 0;
  const used = new Set<string>();
  let lastAt = alertAt;
  for (const row of rows) {
    const k = key(row.channel, row.id, row.address);
    const times = byKey.get(k);
    if (times === undefined) {
      lost += 1;
      continue;
    }
    used.add(k);
    duplicated += times.length - 1;
    const at = Math.min(...times);
    lastAt = Math.max(lastAt, at);
    lat.push(at - alertAt);
    first.set(row.incident_id, Math.min(first.get(row.incident_id) ?? Number.POSITIVE_INFINITY, at));
  }
  lost += Math.max(0, expected - rows.length);
  // Sends no row names: duplicates too (a message went out that we have no record of wanting).
  let unmatched = 0;
  for (const [k, times] of byKey) if (!used.has(k)) unmatched += times.length;
  duplicated += unmatched;
  return {
    deliveries: summarize(lat),
    firstPerIncident: summarize([...first.values()].map((at) => at - alertAt)),
    accepted: lat.length,
    incidents: first.size,
    lastAt,
    lost,
    duplicated,
    unmatched,
  };
}

/** The direct-send floor: the same messages straight through the same channel clients, CONCURRENCY × WORKERS at a time. */
async function floor(fakes: FakesProcess, pool: pg.Pool, messages: OutboundMessage[]): Promise<number> {
  const { channels, close } = channelsFor(fakes, pool);
  let next = 0;
  const t0 = performance.now();
  await Promise.all(Array.from({ length: CONCURRENCY * WORKERS }, async () => {
    for (let i = next++; i < messages.length; i = next++) {
      const msg = messages[i]!;
      for (;;) {
        try {
          await providersOf(channels[msg.channel as FakeChannel])[0]!.send(msg, AbortSignal.timeout(15_000));
          break;
        } catch (err) {
          // The SMS sender's budget says "not yet", as it does to the worker.
          if (!(err instanceof ThrottledError)) throw err;
          await sleep(err.retryAfterMs ?? 100);
        }
      }
    }
  }));
  const ms = performance.now() - t0;
  await close();
  return ms / 1000;
}

async function run(backend: 'redis' | 'postgres', fakes: FakesProcess, figures: Figure[], notes: Record<string, unknown>): Promise<void> {
  const db = await createBenchDatabase(backend, 20);
  const { pool, url } = db;
  const config = loadConfig({ NODE_ENV: 'test', DATABASE_URL: url, ...(backend === 'redis' ? { REDIS_URL } : {}), LINK_SIGNING_SECRET: SECRET, PUBLIC_BASE_URL: 'https://pruuf.example', FREE_PLAN_CHANNELS: 'push,sms,email' });
  const prefix = `bench${randomBytes(3).toString('hex')}`;
  const queueSystems: QueueSystem[] = [];
  const closers: (() => Promise<void>)[] = [];
  const redis = backend === 'redis' ? new Redis(REDIS_URL, { maxRetriesPerRequest: 1 }) : undefined;
  try {
    notes.versions = await serviceVersions(pool, redis);
    const alertAt = new Date(Date.now() + 8000 + MEMBERS); // time to seed and start first
    await seed(pool, alertAt);
    const { rows: [counts] } = await pool.query<{ expected: number }>(
      `select count(*)::int * 2 + count(*) filter (where linked_user_id is not null)::int as expected from contacts`,
    );
    const expected = counts!.expected;
    log(`${backend}: ${MEMBERS.toLocaleString('en-US')} members seeded, ${expected.toLocaleString('en-US')} deliveries expected at ${alertAt.toISOString()}; load average ${os.loadavg().map((l) => l.toFixed(2)).join(' ')}`);
    for (let w = 0; w < WORKERS; w++) {
      const queues = new QueueSystem({ backend, redisUrl: config.REDIS_URL, databaseUrl: url, prefix }, silent);
      queueSystems.push(queues);
      const { channels, close } = channelsFor(fakes, pool);
      closers.push(close);
      await startWorker({ pool, queues, clock: () => new Date(), log: silent, metrics: createMetrics(), channels, incidents: incidentSettings(config, SECRET), sweepEveryMs: 1000, deliveryConcurrency: CONCURRENCY });
    }
    await fakes.take(); // nothing should be there; whatever is belongs to no phase
    const untilAlert = alertAt.getTime() - Date.now();
    if (untilAlert < 0) log(`${backend}: seeding took longer than planned: the burst started ${-untilAlert} ms before the CPU mark`);
    await sleep(Math.max(0, untilAlert));
    const before = await cpuMark(pool, fakes, redis);
    STATEMENTS?.start();
    const giveUp = alertAt.getTime() + 900_000;
    // When the sweeper had opened every incident (all alert rows committed), seen by this poll.
    let allOpenedAt = Number.NaN;
    await profiled(`${backend}-pipeline`, async () => {
      for (;;) {
        // Cheap polls (their CPU is the database's too): every row counted only until all are written, then the pending ones by their index.
        if (Number.isNaN(allOpenedAt)) {
          const { rows: [t] } = await pool.query<{ total: number }>(`select count(*)::int as total from deliveries where kind = 'alert'`);
          if (t!.total >= expected) allOpenedAt = Date.now();
        }
        const { rows: [r] } = await pool.query<{ pending: number }>(`select count(*)::int as pending from deliveries where status = 'pending' and created_at is not null and kind = 'alert'`);
        if (!Number.isNaN(allOpenedAt) && r!.pending === 0) break;
        if (Date.now() > giveUp) {
          log(`${backend}: gave up waiting 15 minutes after alert_at with ${r!.pending} deliveries pending${Number.isNaN(allOpenedAt) ? ', not all written yet' : ''}`);
          break;
        }
        await sleep(r!.pending > 5000 ? 1000 : 250); // the end is timed by the fakes' records, not by this poll
      }
    });
    const after = await cpuMark(pool, fakes, redis);
    const byStatement = STATEMENTS?.stop();
    if (byStatement !== undefined) {
      notes[`${backend}.pipeline.postgres_cpu_by_statement`] = byStatement.slice(0, 30);
      for (const st of byStatement.slice(0, 15)) log(`${backend}: ${st.cpuMs.toFixed(0).padStart(6)} ms ${String(st.calls).padStart(6)} × ${st.usPerCall.toFixed(0).padStart(6)} µs  ${st.statement}`);
    }
    const records = await fakes.take();
    const { rows } = await pool.query<Row>(`select id, incident_id, channel, address from deliveries where kind = 'alert' order by created_at, id`);
    const m = match(rows, records, alertAt.getTime(), expected);
    const pipelineSeconds = (m.lastAt - alertAt.getTime()) / 1000;
    const pipelineRate = m.accepted / pipelineSeconds;
    // Stop the pipeline before the floor runs, so the floor has the machine the pipeline had.
    await Promise.allSettled(queueSystems.map((q) => q.close()));
    queueSystems.length = 0;

    const sample = await fakes.sample();
    const text = (c: FakeChannel): SampleMessage => sample[c] ?? { subject: 'Pruuf alert', body: 'Alert', html: null, data: null };
    const messages: OutboundMessage[] = rows.map((r) => {
      const t = text(r.channel);
      return { deliveryId: randomUUID(), channel: r.channel, to: r.address, subject: t.subject, body: t.body, html: t.html, data: t.data, kind: 'alert', incidentId: r.incident_id };
    });
    const floorBefore = await cpuMark(pool, fakes, redis);
    const floorSeconds = await profiled(`${backend}-floor`, () => floor(fakes, pool, messages));
    const floorAfter = await cpuMark(pool, fakes, redis);
    const floorAccepted = (await fakes.take()).length;
    const floorRate = floorAccepted / floorSeconds;
    const ratio = pipelineRate / floorRate;

    const b = backend;
    const pipelineCpu = cpuSpent(before, after);
    const isRedis = backend === 'redis';
    const s = (v: number) => v / 1000;
    figures.push(
      { name: `${b}.floor.messages`, value: floorAccepted, unit: 'count' },
      { name: `${b}.floor.seconds`, value: floorSeconds, unit: 's' },
      { name: `${b}.floor.throughput`, value: floorRate, unit: 'msgs/s', digits: 0 },
      { name: `${b}.pipeline.deliveries`, value: m.accepted, unit: 'count' },
      { name: `${b}.pipeline.seconds`, value: pipelineSeconds, unit: 's' },
      { name: `${b}.pipeline.throughput`, value: pipelineRate, unit: 'msgs/s', digits: 0 },
      { name: `${b}.pipeline.all_incidents_opened_after`, value: (allOpenedAt - alertAt.getTime()) / 1000, unit: 's' },
      { name: `${b}.pipeline_over_floor`, value: ratio, unit: 'ratio', target: `>= ${ALERT_BURST.minFloorRatio}`, met: ratio >= ALERT_BURST.minFloorRatio },
      { name: `${b}.first_alert_per_incident.incidents`, value: m.incidents, unit: 'count' },
      { name: `${b}.first_alert_per_incident.p50`, value: s(m.firstPerIncident.p50), unit: 's' },
      { name: `${b}.first_alert_per_incident.p99`, value: s(m.firstPerIncident.p99), unit: 's', ...(isRedis ? { target: `<= ${ALERT_BURST.p99Seconds}`, met: m.firstPerIncident.p99 <= ALERT_BURST.p99Seconds * 1000 } : {}) },
      { name: `${b}.first_alert_per_incident.max`, value: s(m.firstPerIncident.max), unit: 's' },
      { name: `${b}.all_deliveries.p50`, value: s(m.deliveries.p50), unit: 's' },
      { name: `${b}.all_deliveries.p99`, value: s(m.deliveries.p99), unit: 's' },
      { name: `${b}.all_deliveries.max`, value: s(m.deliveries.max), unit: 's' },
      { name: `${b}.lost`, value: m.lost, unit: 'count', target: '= 0', met: m.lost === 0 },
      { name: `${b}.duplicated`, value: m.duplicated, unit: 'count', target: '= 0', met: m.duplicated === 0 },
      ...cpuFigures(`${b}.pipeline`, pipelineCpu, m.accepted),
      ...cpuFigures(`${b}.floor`, cpuSpent(floorBefore, floorAfter), floorAccepted),
    );
    notes[`${b}.unmatched_acceptances`] = m.unmatched;
    const byTable = [...pipelineCpu.db.tables].sort((x, y) => y[1] - x[1]).map(([t, n]) => `${t.replace(/^public\./, '')} ${(n / m.accepted).toFixed(2)}`);
    notes[`${b}.pipeline.rows_written_per_msg_by_table`] = byTable;
    log(`${b}: rows written per message, by table: ${byTable.join(', ')}`);
  } finally {
    await Promise.allSettled(queueSystems.map((q) => q.close()));
    await Promise.allSettled(closers.map((c) => c()));
    redis?.disconnect();
    await db.drop();
  }
}

const figures: Figure[] = [];
const notes: Record<string, unknown> = { machineAtStart: machine() };
const fakes = await startFakesProcess({ latencyMs: LATENCY_MS });
try {
  for (const backend of backends) await run(backend, fakes, figures, notes);
} finally {
  await fakes.stop();
}
printSummary(figures);
log(`results in ${writeResults('alerts', { members: MEMBERS, concurrency: CONCURRENCY, workers: WORKERS, latencyMs: LATENCY_MS, backends, machine: machine(), ...notes, figures })}`);
