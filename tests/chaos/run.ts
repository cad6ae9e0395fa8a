// npm run test:chaos — the promise "every alert that should go out goes out, once", checked with
// the real processes while things break.
//
//   npm run test:chaos                     CI size: 300 members, both queue backends
//   npm run test:chaos -- --full           2,000 members
//   options: --backend=redis|postgres|both|none  --members=N  --data-members=N  --provider-members=N  --no-providers  --concurrency=N (per worker)  --keep (keep logs)
//
// Topology, all separate processes: this conductor (which also serves the provider fakes: FCM,
// SendGrid and Twilio speaking their wire formats), the API (src/server.ts), two workers (the
// production worker with push pointed at the fake, tests/chaos/worker.ts), and a PostgreSQL and
// a Redis of the run's own (tests/chaos/lib/services.ts), so they can be killed and restarted.
//
// Scenario: N members miss a deadline at the same instant (two contacts each: one on push, email
// and SMS, one on email and SMS); N/10 more check in just before it (their contacts must hear
// nothing). During the burst, one after the other: SendGrid fails 30 % of calls and hangs on 5 %
// (throughout); a worker is SIGKILLed and restarted; Redis is killed and restarted empty (on the
// PostgreSQL backend: the queue tables are emptied); PostgreSQL is stopped and started; both
// workers get SIGTERM in turn and are restarted (a rolling deploy); the API too. Both workers
// sweep all along. Meanwhile a client checks in steadily, retrying idempotently.
// At the end it reads the fakes' logs and the database and prints expected, delivered, lost,
// duplicated and the worst deadline-to-delivery latency, and checks readiness and backpressure.
// Then the data-fault phase (tests/chaos/lib/data-faults.ts): a clean burst of --data-members
// (default N/3), then one as large beside members carrying a poison each (contacts and a member
// deleted mid-incident, zones PostgreSQL or luxon do not know and instants out of range written
// as postgres, an alert whose render throws, an unreadable plan): unaffected members' alerts
// must all arrive, once, within two sweeps of the clean burst's slowest.
// Last, the provider phase (tests/chaos/lib/provider-faults.ts), on processes of its own with two
// providers per channel: the primaries fail 100 %, or accept and never deliver, during a burst;
// every SMS and email alert must reach its contact through the secondary, at most once per provider.
// Exit code 0 only if every check holds.
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { arg, flag } from '../../bench/lib/env.js';
import { freePort, startServer, type Server } from '../../bench/lib/processes.js';
import { summarize } from '../../bench/lib/stats.js';
import { startFakeFcm } from '../fakes/fcm.js';
import { seededRandom } from '../fakes/random.js';
import { startFakeSendGrid } from '../fakes/sendgrid.js';
import { startFakeTwilio } from '../fakes/twilio.js';
import { signToken } from '../helpers/tokens.js';
import { createLogger } from '../../src/observability/logger.js';
import { QueueSystem } from '../../src/queue/index.js';
import { deliveryBatchJobId, deliveryJobId } from '../../src/delivery/outbox.js';
import { startPostgres, startRedis, type PgServer, type RedisServer } from './lib/services.js';
import { acceptances, seed, type Fakes } from './lib/seed.js';
import { dataFaultPhase } from './lib/data-faults.js';
import { providerPhase } from './lib/provider-faults.js';

const FULL = flag('full');
const MEMBERS = Number(arg('members', FULL ? '2000' : '300'));
const EARLY = Math.max(1, Math.round(MEMBERS / 10));
const CONCURRENCY = Number(arg('concurrency', FULL ? '16' : '8'));
const BACKEND_ARG = arg('backend', 'both');
/** --backend=none: only the provider phase. */
const BACKENDS = (BACKEND_ARG === 'both' ? ['redis', 'postgres'] : BACKEND_ARG === 'none' ? [] : [BACKEND_ARG]) as ('redis' | 'postgres')[];
const KEEP = flag('keep');
/** Provider latency: long enough that the burst outlasts the whole sequence of faults. */
const LATENCY: [number, number] = [50, 150];
const STEADY_MEMBERS = 40;
/** The data-fault phase: the members of each of its two bursts (clean, then poisoned). */
const DATA_MEMBERS = Number(arg('data-members', String(Math.max(50, Math.round(MEMBERS / 3)))));
const SWEEP_MS = 1000;
/** The provider phase: members per burst (each owes four SMS and email alerts). */
const PROVIDER_MEMBERS = Number(arg('provider-members', FULL ? '500' : '100'));
const JWT_SECRET = 'chaos-jwt-secret-of-at-least-32-characters';
const say = (msg: string) => process.stderr.write(`[chaos] ${msg}\n`);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

type Check = { name: string; ok: boolean; detail: string };
type Result = { backend: string; rows: [string, string][]; checks: Check[]; dataFaults?: string[]; providerFaults?: string[] };

// ---------------------------------------------------------------- HTTP helpers

type Answer = { status: number; ms: number; retryAfter: string | null; body: unknown };

async function call(url: string, init: RequestInit = {}): Promise<Answer> {
  const started = performance.now();
  try {
    const res = await fetch(url, { ...init, signal: AbortSignal.timeout(15_000) });
    const text = await res.text();
    let body: unknown = text;
    try { body = JSON.parse(text); } catch { /* HTML or empty */ }
    return { status: res.status, ms: performance.now() - started, retryAfter: res.headers.get('retry-after'), body };
  } catch {
    return { status: 0, ms: performance.now() - started, retryAfter: null, body: null }; // no connection
  }
}

const checkIn = (base: string, bearer: string, key: string) => call(`${base}/v1/check-ins`, {
  method: 'POST', headers: { authorization: `Bearer ${bearer}`, 'content-type': 'application/json', 'idempotency-key': key }, body: JSON.stringify({ note: 'fine' }),
});

/** Polls /readyz until it answers `status`; returns how long that took, or undefined. */
async function readyzBecomes(base: string, status: 200 | 503, withinMs: number): Promise<number | undefined> {
  const started = Date.now();
  while (Date.now() - started < withinMs) {
    const r = await call(`${base}/readyz`);
    if (r.status === status) return Date.now() - started;
    await sleep(100);
  }
  return undefined;
}

/**
 * The app's retry discipline: one Idempotency-Key per check-in, the same key again after a
 * refused connection, a 503 (after its Retry-After, capped) or a timeout, until it is answered.
 */
class SteadyClient {
  started = 0;
  completed = 0;
  retries = 0;
  refused = 0;
  unavailable = 0;
  wrong: string[] = [];
  readonly keys = new Map<string, string>(); // idempotency key → member id
  private stopping = false;
  private loops: Promise<void>[] = [];

  constructor(private readonly base: () => string, private readonly members: { id: string; bearer: string }[]) {}

  start(parallel = 4): void {
    this.loops = Array.from({ length: parallel }, (_, lane) => this.loop(lane, parallel));
  }

  private async loop(lane: number, parallel: number): Promise<void> {
    for (let i = lane; !this.stopping; i += parallel) {
      const m = this.members[i % this.members.length]!;
      const key = randomUUID();
      this.keys.set(key, m.id);
      this.started += 1;
      for (let tries = 0; ; tries++) {
        const r = await checkIn(this.base(), m.bearer, key);
        if (r.status === 201 || r.status === 200) { this.completed += 1; break; }
        if (r.status === 0 || r.status === 503 || r.status === 502) {
          if (r.status === 0) this.refused += 1; else this.unavailable += 1;
          this.retries += 1;
          await sleep(Math.min(1000, r.retryAfter === null ? 200 : Number(r.retryAfter) * 1000));
          continue;
        }
        this.wrong.push(`${r.status} ${JSON.stringify(r.body).slice(0, 200)}`);
        break;
      }
      await sleep(50);
    }
  }

  async stop(): Promise<void> {
    this.stopping = true;
    await Promise.all(this.loops);
  }
}

/** Where each still-pending alert stands, in the database and in the queue, to see why it is late. */
async function explainLost(pool: pg.Pool, backend: 'redis' | 'postgres', redisUrl: string | undefined, databaseUrl: string): Promise<void> {
  const { rows } = await pool.query<{ id: string; channel: string; status: string; attempts: number; last_error: string | null; created_at: Date; updated_at: Date; job_key: string | null; lease_owner: string | null }>(
    `select id, channel, status, attempts, last_error, created_at, updated_at, job_key, lease_owner from deliveries where kind = 'alert' and status <> 'sent' limit 10`,
  );
  const queues = new QueueSystem({ backend, redisUrl, databaseUrl, prefix: 'chaos' }, createLogger('silent'));
  try {
    for (const r of rows) {
      // A row in a batch is carried by its batch's job; otherwise by its own.
      const job = await queues.queue('delivery').getJob(r.job_key === null ? deliveryJobId(r.id) : deliveryBatchJobId(r.job_key)).catch(() => undefined);
      const state = job === undefined || job === null ? 'no job' : await job.getState();
      say(`not sent: ${JSON.stringify({ ...r, job: state, job_attempts: job?.attemptsMade, job_delay: job?.delay, job_failed: job?.failedReason })}`);
      // Every try, to tell an unlucky streak from tries that were never the delivery's own (an open breaker counted).
      const { rows: tries } = await pool.query<{ attempted_at: Date; provider: string; outcome: string; error_class: string | null; error: string | null; duration_ms: number }>(
        `select attempted_at, provider, outcome, error_class, error, duration_ms from delivery_attempts where delivery_id = $1 order by attempted_at`, [r.id],
      ).catch(() => ({ rows: [] }));
      for (const t of tries) say(`  try ${t.attempted_at.toISOString()} ${t.provider} ${t.outcome} ${t.error_class ?? ''} ${t.error ?? ''} (${t.duration_ms} ms)`);
    }
  } finally {
    await queues.close();
  }
}

/** A duplicate no crash explains: when each copy left, and what the database recorded of the tries. */
async function explainDuplicate(pool: pg.Pool, key: string, times: number[], alertAt: Date, events: { name: string; at: number }[]): Promise<void> {
  const [channel, ...rest] = key.split(':');
  const address = rest.join(':');
  const rel = (ms: number) => `${((ms - alertAt.getTime()) / 1000).toFixed(2)} s`;
  const { rows } = await pool.query<{ attempted_at: Date; outcome: string; error: string | null; duration_ms: number }>(
    `select a.attempted_at, a.outcome, a.error, a.duration_ms from delivery_attempts a join deliveries d on d.id = a.delivery_id
      where d.kind = 'alert' and d.channel = $1 and (d.address = $2 or d.address like 'user:%' and $1 = 'push') order by a.attempted_at limit 20`,
    [channel, address],
  ).catch(() => ({ rows: [] }));
  say(`duplicate ${channel} (copies at ${times.map(rel).join(', ')}); events: ${events.map((e) => `${e.name.split(',')[0]} @${(e.at / 1000).toFixed(1)} s`).join('; ')}`);
  if (channel !== 'push') for (const r of rows) say(`  try at ${rel(r.attempted_at.getTime())}: ${r.outcome} ${r.error ?? ''} (${r.duration_ms} ms)`);
}

// ---------------------------------------------------------------- one scenario

async function scenario(backend: 'redis' | 'postgres'): Promise<Result> {
  const dir = mkdtempSync(path.join(os.tmpdir(), `pruuf-chaos-${backend}-`));
  say(`${backend}: scratch folder ${dir}`);
  const checks: Check[] = [];
  const check = (name: string, ok: boolean, detail: string) => {
    checks.push({ name, ok, detail });
    say(`${ok ? 'ok  ' : 'FAIL'} ${name}: ${detail}`);
  };
  let pgs: PgServer | undefined;
  let redis: RedisServer | undefined;
  const servers = new Map<string, Server>();
  const fakes: Fakes = {
    fcm: await startFakeFcm({ latencyMs: { min: LATENCY[0], max: LATENCY[1] }, seed: 3 }),
    sendgrid: await startFakeSendGrid({ latencyMs: { min: LATENCY[0], max: LATENCY[1] }, random: seededRandom(5) }),
    twilio: await startFakeTwilio({ latencyMs: LATENCY, random: seededRandom(7) }),
  };
  let pool: pg.Pool | undefined;
  let client: SteadyClient | undefined;
  try {
    pgs = await startPostgres(dir);
    if (backend === 'redis') redis = await startRedis(dir);
    pool = new pg.Pool({ connectionString: pgs.url, max: 4, connectionTimeoutMillis: 5000 });
    pool.on('error', () => undefined); // the run restarts the database under it
    const apiPort = await freePort();
    const base = `http://127.0.0.1:${apiPort}`;
    const env: Record<string, string> = {
      NODE_ENV: 'production', HOST: '127.0.0.1', LOG_LEVEL: process.env.CHAOS_LOG_LEVEL ?? 'warn',
      DATABASE_URL: pgs.url, ...(redis === undefined ? {} : { REDIS_URL: redis.url }), QUEUE_PREFIX: 'chaos',
      SUPABASE_JWT_SECRET: JWT_SECRET, LINK_SIGNING_SECRET: 'chaos-link-secret-of-at-least-32-characters', PUBLIC_BASE_URL: base,
      RATE_LIMIT_IP_PER_MINUTE: '1000000', RATE_LIMIT_MEMBER_PER_MINUTE: '1000000',
      FREE_PLAN_CHANNELS: 'push,sms,email', DELIVERY_CONCURRENCY: String(CONCURRENCY), SWEEP_EVERY_MS: String(SWEEP_MS),
      SENDGRID_API_KEY: fakes.sendgrid.apiKey, SENDGRID_API_BASE: fakes.sendgrid.url, SENDGRID_FROM_EMAIL: 'alerts@chaos.test',
      TWILIO_ACCOUNT_SID: fakes.twilio.accountSid, TWILIO_AUTH_TOKEN: fakes.twilio.authToken, TWILIO_API_BASE: fakes.twilio.url,
      TWILIO_MESSAGING_SERVICE_SID: 'MGchaos', SMS_RATE_PER_SECOND: '1000',
      CHAOS_FCM_PORT: String(fakes.fcm.port), CHAOS_FCM_PROJECT: fakes.fcm.projectId, CHAOS_FCM_TOKEN: fakes.fcm.accessToken,
    };
    const startApi = async () => {
      servers.set('api', await startServer({ name: 'api', script: 'src/server.ts', env: { ...env, PORT: String(apiPort) }, port: apiPort, readyPath: '/readyz', logFile: path.join(dir, 'api.log') }));
    };
    const startWorkerProcess = async (name: string) => {
      const port = await freePort();
      servers.set(name, await startServer({ name, script: 'tests/chaos/worker.ts', env: { ...env, METRICS_PORT: String(port) }, port, readyPath: '/healthz', logFile: path.join(dir, `${name}.log`) }));
    };
    await startApi(); // it applies the migrations
    await Promise.all([startWorkerProcess('worker-a'), startWorkerProcess('worker-b')]);

    const alertAt = new Date(Date.now() + 6000 + EARLY * 20);
    const seeded = await seed(pool, alertAt, { members: MEMBERS, early: EARLY });
    say(`${backend}: ${MEMBERS} members miss a deadline at ${alertAt.toISOString()} (${seeded.expected.size} alerts expected); ${EARLY} check in before it`);
    const earlyAnswers = await Promise.all(seeded.early.map(async (id) => checkIn(base, await signToken({ sub: id, secret: JWT_SECRET }), randomUUID())));
    check('early check-ins answered', earlyAnswers.every((a) => a.status === 201), `${earlyAnswers.filter((a) => a.status === 201).length}/${EARLY} got 201`);
    const steady = await Promise.all(Array.from({ length: STEADY_MEMBERS }, async () => {
      const id = randomUUID();
      return { id, bearer: await signToken({ sub: id, secret: JWT_SECRET }) };
    }));
    client = new SteadyClient(() => base, steady);
    client.start();

    const delivered = () => { let d = 0; const acc = acceptances(fakes); for (const k of seeded.expected) if (acc.has(k)) d += 1; return d; };
    const events: { name: string; at: number; delivered: number; pendingBefore: boolean }[] = [];
    const event = async (name: string, act: () => Promise<void>) => {
      const before = delivered();
      events.push({ name, at: Date.now() - alertAt.getTime(), delivered: before, pendingBefore: before < seeded.expected.size });
      say(`${backend}: +${((Date.now() - alertAt.getTime()) / 1000).toFixed(1)} s, ${before}/${seeded.expected.size} delivered: ${name}`);
      await act();
    };
    const restartGracefully = async (name: string) => {
      const s = servers.get(name)!;
      await s.stop();
      check(`${name} SIGTERM exit`, s.child.exitCode === 0, `exit code ${s.child.exitCode}, signal ${s.child.signalCode}`);
      if (name === 'api') await startApi(); else await startWorkerProcess(name);
    };

    await sleep(Math.max(0, alertAt.getTime() - Date.now()));
    // When a duplicate is explained: a process died, or the queue lost its jobs, while sends were
    // in flight (the provider accepted, our record did not follow, or a re-added job started
    // before the first finished). Each window may explain at most `bound` duplicates.
    const windows: { what: string; from: number; to: number; bound: number }[] = [];
    await event('SendGrid fails 30 % of calls and hangs on 5 % from now on', async () => {
      fakes.sendgrid.setFaults({ serverErrorPct: 30, hangPct: 5 });
    });
    await sleep(2000);
    await event('SIGKILL worker-b, restart it', async () => {
      const s = servers.get('worker-b')!;
      const killedAt = Date.now();
      s.child.kill('SIGKILL');
      await new Promise((r) => s.child.once('exit', r));
      // Until the process is gone (under load, tens of ms after the signal) it may still send.
      windows.push({ what: 'SIGKILL', from: killedAt - LATENCY[1] - 2500, to: Date.now() + 100, bound: CONCURRENCY });
      await startWorkerProcess('worker-b');
    });
    if (redis !== undefined) {
      const r = redis;
      await event('kill Redis (all queue content lost), restart it after 3 s', async () => {
        const lostAt = Date.now();
        await r.kill();
        const downAfter = await readyzBecomes(base, 503, 10_000);
        check('redis down: /readyz 503', downAfter !== undefined, downAfter === undefined ? 'still 200 after 10 s' : `503 after ${downAfter} ms`);
        const bearer = steady[0]!.bearer;
        const answers = await Promise.all([0, 1, 2].map(() => checkIn(base, bearer, randomUUID())));
        check('redis down: check-ins succeed', answers.every((a) => a.status === 201), answers.map((a) => `${a.status} in ${Math.round(a.ms)} ms`).join(', '));
        await sleep(3000);
        await r.start();
        const upAfter = await readyzBecomes(base, 200, 30_000);
        windows.push({ what: 'queue loss', from: lostAt - LATENCY[1] - 2500, to: Date.now() + 3000 + 2500, bound: 2 * CONCURRENCY });
        check('redis back: /readyz 200', upAfter !== undefined, upAfter === undefined ? 'not ready 30 s after' : `200 after ${upAfter} ms`);
      });
    } else {
      await event('empty the PostgreSQL queue tables (all queue content lost)', async () => {
        const { rows } = await pool!.query<{ t: string }>(
          `select format('%I.%I', schemaname, tablename) as t from pg_tables where schemaname = 'bullmq' and tablename in ('job', 'scheduler', 'dedup', 'dedup_next', 'job_dependency', 'job_log')`,
        );
        const lostAt = Date.now();
        await pool!.query(`truncate ${rows.map((r) => r.t).join(', ')} cascade`);
        windows.push({ what: 'queue loss', from: lostAt - LATENCY[1] - 2500, to: Date.now() + 3000 + 2500, bound: 2 * CONCURRENCY });
      });
    }
    await event('stop PostgreSQL, start it after 3 s', async () => {
      await pgs!.stop('fast');
      const downAfter = await readyzBecomes(base, 503, 10_000);
      check('postgres down: /readyz 503', downAfter !== undefined, downAfter === undefined ? 'still 200 after 10 s' : `503 after ${downAfter} ms`);
      const answers = await Promise.all([0, 1, 2].map(() => checkIn(base, steady[1]!.bearer, randomUUID())));
      check('postgres down: check-ins get a fast 503 with Retry-After', answers.every((a) => a.status === 503 && a.retryAfter !== null && a.ms < 2000),
        answers.map((a) => `${a.status} retry-after=${a.retryAfter} in ${Math.round(a.ms)} ms`).join(', '));
      await sleep(3000);
      await pgs!.start();
      const upAfter = await readyzBecomes(base, 200, 30_000);
      check('postgres back: /readyz 200', upAfter !== undefined, upAfter === undefined ? 'not ready 30 s after' : `200 after ${upAfter} ms`);
    });
    const afterOutages = delivered();
    const resumedIn = await (async () => {
      const t0 = Date.now();
      // A BullMQ worker that took nothing after Redis came back is replaced within ~20 s (src/queue).
      while (Date.now() - t0 < 60_000) {
        if (delivered() >= Math.min(seeded.expected.size, afterOutages + 20)) return Date.now() - t0;
        await sleep(100);
      }
      return undefined;
    })();
    check('deliveries resume after the outages, no process restarted', resumedIn !== undefined,
      resumedIn === undefined ? 'fewer than 20 more in 60 s' : `20 more delivered within ${resumedIn} ms`);
    await event('rolling restart: SIGTERM worker-a, restart it', () => restartGracefully('worker-a'));
    await event('rolling restart: SIGTERM worker-b, restart it', () => restartGracefully('worker-b'));
    await event('rolling restart: SIGTERM the API, restart it', () => restartGracefully('api'));

    // The rest of the burst.
    const until = Date.now() + (FULL ? 600_000 : 240_000);
    for (;;) {
      const pending = await pool.query<{ n: number }>(`select count(*)::int as n from deliveries where status = 'pending'`).then((r) => r.rows[0]!.n, () => -1);
      if ((delivered() >= seeded.expected.size && pending === 0) || Date.now() > until) break;
      await sleep(250);
    }
    await sleep(1000); // a last duplicate would show now
    await client.stop();

    // ------------------------------------------------------------ the tally
    const acc = acceptances(fakes);
    const firsts: number[] = [];
    let lost = 0;
    let duplicated = 0;
    // A duplicate the crash explains: first accepted while the killed worker could still have
    // been waiting for the provider's answer (its send timeout), i.e. before it recorded it.
    let unexplained = 0;
    // The fakes stamp a message when its request arrives and answer LATENCY later; our record
    // follows the answer within milliseconds: a crash duplicate's first copy arrived shortly before.
    const inCrashWindow = (at: number) => windows.some((w) => at >= w.from && at <= w.to);
    for (const key of seeded.expected) {
      const times = acc.get(key);
      if (times === undefined) { lost += 1; continue; }
      duplicated += times.length - 1;
      if (times.length > 1 && !inCrashWindow(Math.min(...times))) {
        unexplained += times.length - 1;
        await explainDuplicate(pool, key, times, alertAt, events);
      }
      firsts.push(Math.min(...times) - alertAt.getTime());
    }
    const falseAlarms = [...seeded.silent].filter((k) => acc.has(k)).length;
    const strangers = [...acc.keys()].filter((k) => !seeded.expected.has(k) && !seeded.silent.has(k)).length;
    const lat = summarize(firsts);
    const { rows: incidentRows } = await pool.query<{ per_member: number; members: number }>(
      `select n as per_member, count(*)::int as members from (select member_id, count(*)::int as n from incidents group by member_id) x group by n order by n`,
    );
    const { rows: statusRows } = await pool.query<{ status: string; n: number }>(`select status, count(*)::int as n from deliveries where kind = 'alert' group by status order by status`);
    const { rows: [ci] } = await pool.query<{ rows: number; keys: number }>(
      `select count(*)::int as rows, count(distinct idempotency_key)::int as keys from check_ins where idempotency_key = any($1::text[])`, [[...client.keys.keys()]],
    );
    const bound = windows.reduce((sum, w) => sum + w.bound, 0);
    const boundText = windows.map((w) => `${w.what}: ${w.bound}`).join(' + ');
    if (lost > 0) await explainLost(pool, backend, redis?.url, pgs.url);
    const burstEvents = events.filter((e) => e.pendingBefore).length;

    check('lost alerts', lost === 0, `${lost}`);
    check('duplicates only from the crash, within its bound', duplicated <= bound && unexplained === 0,
      `${duplicated}, ${unexplained} of them first sent outside a crash window (bound: the sends in flight, ${boundText} = ${bound})`);
    check('no alert for members who checked in', falseAlarms === 0 && strangers === 0, `${falseAlarms} to their contacts, ${strangers} to unknown addresses`);
    check('one incident per missed deadline', incidentRows.length === 1 && incidentRows[0]!.per_member === 1 && incidentRows[0]!.members === MEMBERS,
      incidentRows.map((r) => `${r.members} members with ${r.per_member}`).join(', '));
    check('every fault struck during the burst', burstEvents === events.length, `${burstEvents}/${events.length}`);
    check('no check-in lost', client.wrong.length === 0 && client.completed === client.started && ci!.rows === client.completed && ci!.keys === client.completed,
      `${client.started} sent, ${client.completed} answered 2xx, ${ci!.rows} rows for ${ci!.keys} keys; ${client.retries} retries (${client.refused} refused connections, ${client.unavailable} 503s)${client.wrong.length === 0 ? '' : `; wrong: ${client.wrong.slice(0, 3).join(' | ')}`}`);

    // ------------------------------------------------------------ hostile data
    const data = await dataFaultPhase({
      pool, fakes, members: DATA_MEMBERS, sweepMs: SWEEP_MS, say: (msg) => say(`${backend}: ${msg}`),
      api: async (method, url, memberId) => (await call(`${base}${url}`, { method, headers: { authorization: `Bearer ${await signToken({ sub: memberId, secret: JWT_SECRET })}` } })).status,
      ready: async () => (await call(`${base}/readyz`)).status,
    });
    checks.push(...data.checks);

    const rows: [string, string][] = [
      ['members missing the deadline', String(MEMBERS)],
      ['expected deliveries', String(seeded.expected.size)],
      ['delivered', String(firsts.length)],
      ['lost', String(lost)],
      ['duplicated', `${duplicated} (bound ${bound})`],
      ['false alarms', String(falseAlarms + strangers)],
      ['deadline+grace → provider p50 / p99', `${(lat.p50 / 1000).toFixed(1)} s / ${(lat.p99 / 1000).toFixed(1)} s`],
      ['worst deadline+grace → provider', `${(lat.max / 1000).toFixed(1)} s`],
      ['alert rows by status', statusRows.map((r) => `${r.status} ${r.n}`).join(', ')],
      ['SendGrid outcomes', Object.entries(fakes.sendgrid.outcomes).filter(([, v]) => v > 0).map(([k, v]) => `${k} ${v}`).join(', ')],
      ['check-ins during the run', `${client.completed} (${client.retries} retried)`],
      ['faults (time after alert_at, delivered so far)', events.map((e) => `${e.name.split(',')[0]} @${(e.at / 1000).toFixed(1)} s ${e.delivered}`).join('; ')],
      ...data.rows,
    ];
    return { backend, rows, checks, dataFaults: data.table };
  } finally {
    await client?.stop();
    await Promise.allSettled([...servers.values()].map((s) => s.stop()));
    await pool?.end().catch(() => undefined);
    await Promise.allSettled([redis?.destroy(), pgs?.destroy(), fakes.fcm.close(), fakes.sendgrid.close(), fakes.twilio.close()]);
    if (KEEP) say(`${backend}: logs kept in ${dir}`);
    else rmSync(dir, { recursive: true, force: true });
  }
}

const results: Result[] = [];
const started = Date.now();
for (const backend of BACKENDS) {
  const t0 = Date.now();
  try {
    results.push(await scenario(backend));
  } catch (err) {
    results.push({ backend, rows: [], checks: [{ name: 'scenario ran', ok: false, detail: (err as Error).stack ?? String(err) }] });
  }
  say(`${backend}: ${((Date.now() - t0) / 1000).toFixed(0)} s`);
}
if (!flag('no-providers')) {
  const t0 = Date.now();
  try {
    const p = await providerPhase({ members: PROVIDER_MEMBERS, concurrency: CONCURRENCY, sweepMs: SWEEP_MS, keep: KEEP, say });
    results.push({ backend: 'providers (redis)', rows: p.rows, checks: p.checks, providerFaults: p.table });
  } catch (err) {
    results.push({ backend: 'providers (redis)', rows: [], checks: [{ name: 'provider phase ran', ok: false, detail: (err as Error).stack ?? String(err) }] });
  }
  say(`providers: ${((Date.now() - t0) / 1000).toFixed(0)} s`);
}
const out: string[] = ['', `chaos run: ${MEMBERS} members, ${CONCURRENCY} sends at once per worker, ${((Date.now() - started) / 1000).toFixed(0)} s`];
for (const r of results) {
  out.push('', `## ${r.backend} queue backend`, '', '| figure | value |', '|---|---|', ...r.rows.map(([k, v]) => `| ${k} | ${v} |`), '');
  if (r.dataFaults !== undefined) out.push(`### ${r.backend}: data faults`, '', ...r.dataFaults, '');
  if (r.providerFaults !== undefined) out.push('### provider faults (two providers per channel)', '', ...r.providerFaults, '');
  for (const c of r.checks) out.push(`${c.ok ? 'PASS' : 'FAIL'} ${c.name}: ${c.detail}`);
}
const failed = results.flatMap((r) => r.checks.filter((c) => !c.ok));
out.push('', failed.length === 0 ? 'CHAOS PASSED' : `CHAOS FAILED: ${failed.length} check(s)`);
process.stdout.write(`${out.join('\n')}\n`);
process.exit(failed.length === 0 ? 0 : 1);
