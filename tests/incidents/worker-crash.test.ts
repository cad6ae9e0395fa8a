import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { createLogger } from '../../src/observability/logger.js';
import { QUEUE_NAMES, QueueSystem } from '../../src/queue/index.js';
import type { QueueBackend } from '../helpers/app.js';
import { createTestDatabase, type TestDatabase } from '../helpers/db.js';
import { TEST_REDIS_URL } from '../helpers/env.js';
import { TEST_JWT_SECRET, TEST_LINK_SECRET } from '../helpers/tokens.js';

/**
 * "Every alert that should go out goes out, even if a worker dies": the real worker entry
 * (workers/worker.ts) sweeps a burst of missed deadlines and is SIGKILLed while delivering;
 * a second worker process must finish the job, and nothing may be lost or duplicated.
 *
 * The worker runs as `node --import tsx workers/worker.ts`, not through the tsx CLI: the CLI
 * runs the script in a grandchild and relays signals, and a SIGKILL cannot be relayed, so
 * killing the CLI would leave the real worker running as an orphan.
 */
const ROOT = process.cwd();
const MEMBERS = 600;
const TIER1_CONTACTS = 2; // plus one tier-2 contact each, who must not hear of it yet
const CHANNELS = ['sms', 'email'] as const; // no linked app user: no push
const EXPECTED_ALERTS = MEMBERS * TIER1_CONTACTS * CHANNELS.length;
const KILL_AFTER_SENT = Math.ceil(EXPECTED_ALERTS * 0.15);
const DELIVERY_CONCURRENCY = 20; // startWorker's default
/** Booting the worker through tsx alone takes ~8 s here, more on a loaded machine. */
const FIRST_WORKER_BUDGET_MS = 60_000;
/** Jobs active in the dead worker come back through the stalled check: DELIVERY_LOCK's 10 s lock, checked every 5 s. */
const RECOVERY_BUDGET_MS = 40_000;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

type WorkerProcess = { proc: ChildProcess; output: () => string; exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }> };

function startWorkerProcess(env: NodeJS.ProcessEnv): WorkerProcess {
  const proc = spawn(process.execPath, ['--import', 'tsx', 'workers/worker.ts'], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  proc.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  proc.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => proc.on('exit', (code, signal) => resolve({ code, signal })));
  return { proc, output: () => out, exited };
}

async function stopWorkerProcess(w: WorkerProcess | undefined): Promise<void> {
  if (w === undefined || w.proc.exitCode !== null || w.proc.signalCode !== null) return;
  w.proc.kill('SIGTERM');
  let timer: NodeJS.Timeout | undefined;
  const stopped = await Promise.race([w.exited.then(() => true), new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), 20_000)))]);
  clearTimeout(timer);
  if (!stopped) {
    w.proc.kill('SIGKILL');
    await w.exited;
  }
}

type Counts = { pending: number; sent: number; failed: number; cancelled: number; total: number; incidents: number; due: number };

async function counts(db: TestDatabase): Promise<Counts> {
  const { rows } = await db.pool.query<Counts>(
    `select count(*) filter (where status = 'pending')::int as pending,
            count(*) filter (where status = 'sent')::int as sent,
            count(*) filter (where status = 'failed')::int as failed,
            count(*) filter (where status = 'cancelled')::int as cancelled,
            count(*)::int as total,
            (select count(*)::int from incidents) as incidents,
            (select count(*)::int from schedules where active and alert_at <= now()) as due
       from deliveries`,
  );
  return rows[0]!;
}

/**
 * MEMBERS members, each with two active tier-1 contacts and one tier-2 contact (email and phone
 * each), and a daily 'UTC' schedule whose deadline was an hour ago and whose 30 min grace is over.
 */
async function seedBurst(db: TestDatabase, deadline: Date): Promise<void> {
  await db.pool.query(
    `insert into members (id, display_name, time_zone)
     select gen_random_uuid(), 'Member ' || g, 'UTC' from generate_series(1, $1) g`,
    [MEMBERS],
  );
  await db.pool.query(
    `insert into contacts (member_id, name, email, phone, tier, status, responded_at)
     select m.id, 'Contact ' || c.i, m.id || '-' || c.i || '@example.test', '+4477009' || lpad(c.i::text, 5, '0'),
            case when c.i <= $1 then 1 else 2 end, 'active', now()
       from members m cross join generate_series(1, $1 + 1) c(i)`,
    [TIER1_CONTACTS],
  );
  await db.pool.query(
    `insert into schedules (member_id, kind, local_time, time_zone, grace_minutes, next_deadline_at, alert_at, window_start_at, following_deadline_at)
     select id, 'daily', to_char($1::timestamptz at time zone 'UTC', 'HH24:MI'), 'UTC', 30,
            $1::timestamptz, $1::timestamptz + interval '30 minutes', $1::timestamptz - interval '1 day', $1::timestamptz + interval '1 day'
       from members`,
    [deadline],
  );
}

async function queueCounts(queues: QueueSystem): Promise<Record<string, number>> {
  return queues.queue('delivery').getJobCounts('active', 'waiting', 'prioritized', 'delayed', 'completed', 'failed');
}

describe.each(['redis', 'postgres'] as QueueBackend[])('a worker on the %s queue', (backend) => {
  let db: TestDatabase;
  let dataDir: string;
  let inspect: QueueSystem;
  const prefix = `wc${randomBytes(5).toString('hex')}`;
  const workers: WorkerProcess[] = [];

  beforeAll(async () => {
    db = await createTestDatabase();
    dataDir = await mkdtemp(path.join(tmpdir(), 'pruuf-worker-crash-'));
    inspect = new QueueSystem({ backend, redisUrl: TEST_REDIS_URL, databaseUrl: db.url, prefix }, createLogger('silent'));
  }, 30_000);

  afterAll(async () => {
    await Promise.allSettled(workers.map((w) => stopWorkerProcess(w)));
    if (backend === 'redis') {
      await Promise.allSettled(QUEUE_NAMES.map((q) => inspect.queue(q).obliterate({ force: true })));
    }
    await inspect.close();
    await db.drop();
    await rm(dataDir, { recursive: true, force: true });
  }, 60_000);

  function spawnWorker(): WorkerProcess {
    const w = startWorkerProcess({
      PATH: process.env.PATH,
      HOME: process.env.HOME,
      NODE_ENV: 'test',
      DATABASE_URL: db.url,
      ...(backend === 'redis' ? { REDIS_URL: TEST_REDIS_URL } : {}),
      QUEUE_PREFIX: prefix,
      SWEEP_EVERY_MS: '200',
      LOG_LEVEL: 'warn',
      DATA_DIR: dataDir,
      LINK_SIGNING_SECRET: TEST_LINK_SECRET,
      SUPABASE_JWT_SECRET: TEST_JWT_SECRET,
      PUBLIC_BASE_URL: 'http://pruuf.test',
      FREE_PLAN_CHANNELS: 'push,sms,email',
      FREE_PLAN_CONTACTS: String(TIER1_CONTACTS + 1),
    });
    workers.push(w);
    return w;
  }

  it('killed mid-batch (SIGKILL) loses nothing: a second worker sends every alert exactly once', async () => {
    const t0 = Date.now();
    const deadline = new Date(Math.floor(Date.now() / 60_000) * 60_000 - 60 * 60_000);
    await seedBurst(db, deadline);
    const { rows: plan } = await db.pool.query<{ id: string; member_id: string; tier: number; email: string; phone: string }>(
      'select id, member_id, tier, email, phone from contacts',
    );
    const expected = new Map<string, string>(); // member:contact:channel → address
    for (const c of plan) {
      if (c.tier !== 1) continue;
      for (const ch of CHANNELS) expected.set(`${c.member_id}:${c.id}:${ch}`, ch === 'sms' ? c.phone : c.email);
    }
    expect(expected.size).toBe(EXPECTED_ALERTS);

    // First worker: let it sweep and deliver part of the burst, then kill it without warning
    // while it still has work in hand.
    const first = spawnWorker();
    const firstStarted = Date.now();
    let firstSentAt: number | undefined;
    while (Date.now() - firstStarted < FIRST_WORKER_BUDGET_MS) {
      if (first.proc.exitCode !== null) throw new Error(`first worker exited early (${first.proc.exitCode}):\n${first.output()}`);
      const c = await counts(db);
      if (c.sent > 0 && firstSentAt === undefined) firstSentAt = Date.now();
      if (c.sent >= KILL_AFTER_SENT && c.pending >= 2 * DELIVERY_CONCURRENCY) {
        first.proc.kill('SIGKILL');
        break;
      }
      await sleep(10);
    }
    if (!first.proc.killed) {
      throw new Error(`first worker never had ${KILL_AFTER_SENT} alerts sent and ${2 * DELIVERY_CONCURRENCY} pending within ${FIRST_WORKER_BUDGET_MS} ms (make the burst bigger):\n${first.output()}`);
    }
    const killedAt = Date.now();
    expect((await first.exited).signal).toBe('SIGKILL');
    // The dead process's database sessions end with it; what it committed is all there is.
    await sleep(200);
    const atKill = await counts(db);
    const jobsAtKill = await queueCounts(inspect);
    // What the dead worker had in hand: its active jobs' rows still pending (a batch job's rows by
    // their job_key, a single job's by its id).
    const active = (await inspect.queue('delivery').getJobs(['active'])).map((j) => j.data as { deliveryId?: string; jobKey?: string });
    const { rows: held } = await db.pool.query<{ id: string }>(
      `select id from deliveries where status = 'pending' and (job_key = any($1::uuid[]) or id = any($2::uuid[]))`,
      [active.flatMap((j) => j.jobKey ?? []), active.flatMap((j) => j.deliveryId ?? [])],
    );
    const inFlight = new Set(held.map((r) => r.id));
    // Handed to the "provider" (the dev outbox) but not yet marked sent: a real provider would send these twice.
    const { rows: handedOver } = await db.pool.query<{ id: string }>(
      `select d.id from dev_outbox o join deliveries d on d.id = o.delivery_id where d.status = 'pending'`,
    );
    // Mid-batch: some alerts sent, some still to go, and the delivery worker was busy.
    expect(atKill.sent).toBeGreaterThan(0);
    expect(atKill.pending).toBeGreaterThan(0);
    expect(atKill.sent).toBeLessThan(EXPECTED_ALERTS);
    expect(active.length).toBe(jobsAtKill.active);
    expect(active.length).toBeGreaterThan(0);
    expect(active.length).toBeLessThanOrEqual(DELIVERY_CONCURRENCY);
    expect(inFlight.size).toBeGreaterThan(0);
    expect(handedOver.filter((r) => !inFlight.has(r.id))).toEqual([]);

    // Second worker, started right away as an orchestrator would: it must finish everything
    // with no help from the test.
    const second = spawnWorker();
    const secondStarted = Date.now();
    let sweptMs: number | undefined;
    let allButInFlightMs: number | undefined;
    for (;;) {
      if (second.proc.exitCode !== null) throw new Error(`second worker exited (${second.proc.exitCode}):\n${second.output()}`);
      const c = await counts(db);
      const swept = c.due === 0 && c.incidents === MEMBERS;
      if (swept && sweptMs === undefined) sweptMs = Date.now() - secondStarted;
      if (swept && allButInFlightMs === undefined && c.total === EXPECTED_ALERTS && c.pending <= inFlight.size) allButInFlightMs = Date.now() - secondStarted;
      if (swept && c.pending === 0 && c.total >= EXPECTED_ALERTS) break;
      if (Date.now() - secondStarted > RECOVERY_BUDGET_MS) {
        throw new Error(`not recovered within ${RECOVERY_BUDGET_MS} ms: ${JSON.stringify({ counts: c, jobs: await queueCounts(inspect) })}\n${second.output()}`);
      }
      await sleep(100);
    }
    const recoveredMs = Date.now() - secondStarted;

    // One incident per schedule deadline, for the deadline that was missed, and the schedule moved on.
    const { rows: incidents } = await db.pool.query<{ n: number; schedules: number; at_deadline: number }>(
      `select count(*)::int as n, count(distinct (schedule_id, deadline_at))::int as schedules,
              count(*) filter (where deadline_at = $1)::int as at_deadline
         from incidents`,
      [deadline],
    );
    expect(incidents[0]).toEqual({ n: MEMBERS, schedules: MEMBERS, at_deadline: MEMBERS });
    const { rows: moved } = await db.pool.query<{ n: number }>(
      `select count(*)::int as n from schedules where next_deadline_at = $1::timestamptz + interval '1 day'`,
      [deadline],
    );
    expect(moved[0]!.n).toBe(MEMBERS);

    // Exactly the alerts the plan calls for (tier 1, each channel, the right address), each sent and in the outbox once.
    const { rows: sent } = await db.pool.query<{ id: string; member_id: string; contact_id: string; channel: string; address: string; kind: string; step_no: number; status: string; sent_at: Date; outbox: number; accepted: number }>(
      `select d.id, d.member_id, d.contact_id, d.channel, d.address, d.kind, d.step_no, d.status, d.sent_at,
              (select count(*)::int from dev_outbox o where o.delivery_id = d.id) as outbox,
              (select count(*)::int from delivery_attempts a where a.delivery_id = d.id and a.outcome = 'accepted') as accepted
         from deliveries d`,
    );
    expect(sent).toHaveLength(EXPECTED_ALERTS);
    const got = new Map(sent.map((d) => [`${d.member_id}:${d.contact_id}:${d.channel}`, d.address]));
    expect(got.size).toBe(EXPECTED_ALERTS);
    expect(got).toEqual(expected);
    const wrong = sent.filter((d) => d.kind !== 'alert' || d.step_no !== 1 || d.status !== 'sent' || d.outbox !== 1 || d.accepted < 1);
    expect(wrong).toEqual([]);
    const { rows: [outbox] } = await db.pool.query<{ n: number }>('select count(*)::int as n from dev_outbox');
    expect(outbox!.n).toBe(EXPECTED_ALERTS);

    // Duplicates the crash can cause are confined to the jobs that were in flight when it died, and
    // to the deliveries the worker had in hand at once (DELIVERY_CONCURRENCY, batch rows included).
    const duplicates = sent.filter((d) => d.accepted > 1);
    expect(duplicates.filter((d) => !inFlight.has(d.id))).toEqual([]);
    expect(duplicates.length).toBeLessThanOrEqual(DELIVERY_CONCURRENCY);
    const inFlightSentAfterMs = Math.max(0, ...sent.filter((d) => inFlight.has(d.id)).map((d) => d.sent_at.getTime() - killedAt));
    const othersSentAfterMs = Math.max(0, ...sent.filter((d) => !inFlight.has(d.id)).map((d) => d.sent_at.getTime() - killedAt));

    console.log(`[worker-crash ${backend}] ${JSON.stringify({
      alerts: EXPECTED_ALERTS,
      first_worker_to_first_sent_ms: firstSentAt === undefined ? null : firstSentAt - firstStarted,
      first_worker_to_kill_ms: killedAt - firstStarted,
      at_kill: { sent: atKill.sent, pending: atKill.pending, incidents: atKill.incidents, schedules_still_due: atKill.due, delivery_jobs: jobsAtKill },
      handed_to_provider_but_not_marked_sent_at_kill: handedOver.length,
      deliveries_with_more_than_one_accepted_attempt: duplicates.length,
      second_worker_to_all_incidents_ms: sweptMs,
      second_worker_to_all_but_in_flight_sent_ms: allButInFlightMs,
      second_worker_to_all_sent_ms: recoveredMs,
      last_in_flight_sent_after_kill_ms: inFlightSentAfterMs,
      last_other_sent_after_kill_ms: othersSentAfterMs,
      total_ms: Date.now() - t0,
    })}`);

    await stopWorkerProcess(second);
    expect(second.proc.exitCode).toBe(0);
  }, 180_000);
});
