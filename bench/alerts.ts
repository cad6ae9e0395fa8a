// bench:alerts — an alert burst through the real sweeper, queue and channels to the provider
// fakes (FCM, SendGrid, Twilio speaking their wire formats, 20 ms each). N members (default
// 10,000) with two contacts on email + SMS, the first also on push, all due at the same instant.
// Per delivery: provider acceptance time − alert_at. Counts lost (never accepted) and duplicated
// (accepted more than once) deliveries; both must be 0. Target (Redis, 2 cores): p99 ≤ 30 s.
// Baseline, in the same run: the same number of messages sent straight to the same fakes by a
// bare loop at the same concurrency (no database, no queue) — the providers' own ceiling.
//   npm run bench:alerts -- [--members=10000] [--backend=redis|postgres|both] [--concurrency=100] [--workers=1]
// Needs PostgreSQL (TEST_PG_ADMIN_URL) and, for the redis backend, Redis (TEST_REDIS_URL).
import { randomBytes, randomUUID } from 'node:crypto';
import type pg from 'pg';
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
import { startFakeFcm } from '../tests/fakes/fcm.js';
import { startFakeSendGrid } from '../tests/fakes/sendgrid.js';
import { startFakeTwilio } from '../tests/fakes/twilio.js';
import { arg, createBenchDatabase, REDIS_URL } from './lib/env.js';
import { machine, printSummary, writeResults, type Figure } from './lib/report.js';
import { ALERT_BURST } from './lib/scenarios.js';
import { summarize } from './lib/stats.js';

const MEMBERS = Number(arg('members', String(ALERT_BURST.members)));
const CONCURRENCY = Number(arg('concurrency', '100'));
const WORKERS = Number(arg('workers', '1'));
const LATENCY_MS = Number(arg('latency', '20'));
const backends = (arg('backend', 'both') === 'both' ? ['redis', 'postgres'] : [arg('backend', 'redis')]) as ('redis' | 'postgres')[];
const SECRET = 'bench-link-secret-of-at-least-32-characters';
const log = (msg: string) => process.stderr.write(`[bench:alerts] ${msg}\n`);
const silent = createLogger('warn');

type Fakes = Awaited<ReturnType<typeof startFakes>>;

async function startFakes() {
  const [fcm, sendgrid, twilio] = await Promise.all([
    startFakeFcm({ latencyMs: LATENCY_MS }), startFakeSendGrid({ latencyMs: LATENCY_MS }), startFakeTwilio({ latencyMs: LATENCY_MS }),
  ]);
  return { fcm, sendgrid, twilio };
}

function channelsFor(fakes: Fakes, pool: pg.Pool): { channels: Channels; close: () => Promise<void> } {
  const fcm = createFcmChannel({ pool, log: silent, projectId: fakes.fcm.projectId, credential: fakes.fcm.credential(), connect: fakes.fcm.connect });
  return {
    channels: {
      push: fcm,
      email: createSendGridChannel({ apiKey: fakes.sendgrid.apiKey, baseUrl: fakes.sendgrid.url, from: { email: 'alerts@pruuf.example', name: 'Pruuf' }, log: silent }),
      // A messaging service with many numbers: the per-sender budget is not what this bench measures.
      sms: createTwilioChannel({
        accountSid: fakes.twilio.accountSid, authToken: fakes.twilio.authToken, apiBase: fakes.twilio.url, messagingServiceSid: 'MGbench',
        validitySeconds: 1800, statusCallbackUrl: 'https://pruuf.example/webhooks/twilio/status', ratePerSecond: 100_000, pool, log: silent,
      }),
    },
    close: () => fcm.close(),
  };
}

async function seed(pool: pg.Pool, alertAt: Date): Promise<void> {
  const deadline = new Date(alertAt.getTime() - 30 * 60_000);
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
     insert into schedules (member_id, kind, local_time, time_zone, grace_minutes, next_deadline_at, alert_at, window_start_at, following_deadline_at)
     select id, 'daily', '09:00', 'UTC', 30, $2, $3, $2::timestamptz - interval '1 day', $2::timestamptz + interval '1 day' from m`,
    [MEMBERS, deadline, alertAt],
  );
  await pool.query('vacuum analyze');
}

type Accepted = Map<string, number[]>; // provider message id → acceptance times (ms)

function acceptedBy(fakes: Fakes): { push: Accepted; email: Accepted; sms: Accepted } {
  const add = (m: Accepted, id: string, at: number) => m.set(id, [...(m.get(id) ?? []), at]);
  const push: Accepted = new Map();
  const email: Accepted = new Map();
  const sms: Accepted = new Map();
  for (const a of fakes.fcm.accepted) add(push, a.name, a.at);
  for (const a of fakes.sendgrid.accepted) add(email, a.messageId, a.receivedAt.getTime());
  for (const a of fakes.twilio.accepted) add(sms, a.sid, a.receivedAt);
  return { push, email, sms };
}

/** The providers' own ceiling: the same messages straight to the fakes, same concurrency, nothing else. */
async function baseline(fakes: Fakes, pool: pg.Pool, n: number): Promise<{ seconds: number; latency: ReturnType<typeof summarize> }> {
  const { channels, close } = channelsFor(fakes, pool);
  const kinds = ['email', 'sms', 'email', 'sms', 'push'] as const;
  const { rows } = await pool.query<{ id: string }>(`select id from members where display_name like 'Watcher of %' limit $1`, [Math.ceil(n / kinds.length)]);
  const lat: number[] = [];
  let next = 0;
  const t0 = performance.now();
  await Promise.all(Array.from({ length: CONCURRENCY }, async () => {
    for (let i = next++; i < n; i = next++) {
      const channel = kinds[i % kinds.length]!;
      const to = channel === 'push' ? `user:${rows[Math.floor(i / kinds.length) % rows.length]!.id}` : channel === 'sms' ? '+15550000001' : 'someone@example.test';
      const msg: OutboundMessage = { deliveryId: randomUUID(), channel, to, subject: 'Baseline', body: 'Baseline message', html: null, kind: 'alert', incidentId: null };
      const s = performance.now();
      for (;;) {
        try {
          await providersOf(channels[channel])[0]!.send(msg, AbortSignal.timeout(15_000));
          break;
        } catch (err) {
          // The SMS sender's budget says "not yet", as it does to the worker.
          if (!(err instanceof ThrottledError)) throw err;
          await new Promise((r) => setTimeout(r, err.retryAfterMs));
        }
      }
      lat.push(performance.now() - s);
    }
  }));
  const seconds = (performance.now() - t0) / 1000;
  await close();
  return { seconds, latency: summarize(lat) };
}

async function run(backend: 'redis' | 'postgres', figures: Figure[]): Promise<void> {
  const db = await createBenchDatabase(backend, 20);
  const { pool, url } = db;
  const config = loadConfig({ NODE_ENV: 'test', DATABASE_URL: url, ...(backend === 'redis' ? { REDIS_URL } : {}), LINK_SIGNING_SECRET: SECRET, PUBLIC_BASE_URL: 'https://pruuf.example', FREE_PLAN_CHANNELS: 'push,sms,email' });
  const prefix = `bench${randomBytes(3).toString('hex')}`;
  const queueSystems: QueueSystem[] = [];
  const fakes = await startFakes();
  const closers: (() => Promise<void>)[] = [];
  try {
    const alertAt = new Date(Date.now() + 8000 + MEMBERS); // time to seed and start first
    await seed(pool, alertAt);
    const { rows: [{ expected }] } = await pool.query<{ expected: number }>(
      `select count(*)::int * 2 + count(*) filter (where linked_user_id is not null)::int as expected from contacts`,
    ) as unknown as { rows: [{ expected: number }] };
    log(`${backend}: ${MEMBERS.toLocaleString('en-US')} members seeded, ${expected.toLocaleString('en-US')} deliveries expected at ${alertAt.toISOString()}`);
    for (let w = 0; w < WORKERS; w++) {
      const queues = new QueueSystem({ backend, redisUrl: config.REDIS_URL, databaseUrl: url, prefix }, silent);
      queueSystems.push(queues);
      const { channels, close } = channelsFor(fakes, pool);
      closers.push(close);
      await startWorker({ pool, queues, clock: () => new Date(), log: silent, metrics: createMetrics(), channels, incidents: incidentSettings(config, SECRET), sweepEveryMs: 1000, deliveryConcurrency: CONCURRENCY });
    }
    const deadline = alertAt.getTime() + 600_000;
    for (;;) {
      const { rows } = await pool.query<{ pending: number; total: number }>(`select count(*) filter (where status = 'pending')::int as pending, count(*)::int as total from deliveries where kind = 'alert'`);
      if ((rows[0]!.total >= expected && rows[0]!.pending === 0) || Date.now() > deadline) break;
      await new Promise((r) => setTimeout(r, 200));
    }
    const { rows } = await pool.query<{ channel: 'push' | 'email' | 'sms'; provider_message_id: string | null; status: string }>(
      `select channel, provider_message_id, status from deliveries where kind = 'alert'`,
    );
    const accepted = acceptedBy(fakes);
    const lat: number[] = [];
    let lost = 0;
    let duplicated = 0;
    const matched = { push: 0, email: 0, sms: 0 };
    for (const r of rows) {
      const times = r.provider_message_id === null ? undefined : accepted[r.channel].get(r.provider_message_id);
      if (times === undefined) { lost += 1; continue; }
      matched[r.channel] += 1;
      duplicated += times.length - 1;
      lat.push(Math.min(...times) - alertAt.getTime());
    }
    lost += Math.max(0, expected - rows.length);
    // A provider message no delivery row names is a send we lost track of: a duplicate.
    for (const ch of ['push', 'email', 'sms'] as const) duplicated += accepted[ch].size - matched[ch];
    const s = summarize(lat);
    const p = `${backend}`;
    figures.push(
      { name: `${p}.deliveries`, value: lat.length, unit: 'count' },
      { name: `${p}.alert_to_provider.p50`, value: s.p50 / 1000, unit: 's' },
      { name: `${p}.alert_to_provider.p99`, value: s.p99 / 1000, unit: 's', ...(backend === 'redis' ? { target: `<= ${ALERT_BURST.p99Seconds}`, met: s.p99 <= ALERT_BURST.p99Seconds * 1000 } : {}) },
      { name: `${p}.alert_to_provider.max`, value: s.max / 1000, unit: 's' },
      { name: `${p}.throughput`, value: lat.length / (s.max / 1000), unit: 'deliveries/s' },
      { name: `${p}.lost`, value: lost, unit: 'count', target: '= 0', met: lost === 0 },
      { name: `${p}.duplicated`, value: duplicated, unit: 'count', target: '= 0', met: duplicated === 0 },
    );
    if (backend === backends[0]) {
      const b = await baseline(fakes, pool, expected);
      figures.push(
        { name: 'baseline.direct_send.seconds', value: b.seconds, unit: 's' },
        { name: 'baseline.direct_send.throughput', value: expected / b.seconds, unit: 'deliveries/s' },
        { name: 'baseline.direct_send.p99', value: b.latency.p99, unit: 'ms' },
      );
    }
  } finally {
    await Promise.allSettled(queueSystems.map((q) => q.close()));
    await Promise.allSettled(closers.map((c) => c()));
    await Promise.allSettled([fakes.fcm.close(), fakes.sendgrid.close(), fakes.twilio.close()]);
    await db.drop();
  }
}

const figures: Figure[] = [];
for (const backend of backends) await run(backend, figures);
printSummary(figures);
log(`results in ${writeResults('alerts', { members: MEMBERS, concurrency: CONCURRENCY, workers: WORKERS, latencyMs: LATENCY_MS, backends, machine: machine(), figures })}`);
