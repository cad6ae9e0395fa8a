// Deadline-to-outbox latency: N members miss a deadline at the same instant; the real worker
// (sweeper every second, delivery workers, dev outbox channel) alerts their contacts.
// Prints p50/p99/max of (dev outbox write − alert_at) per delivery, for each N, beside a
// baseline: the same number of outbox rows written straight into PostgreSQL in one statement.
//   npm run bench:alert-latency -- [--backend=redis|postgres] [--sizes=1,1000]
// Needs PostgreSQL (TEST_PG_ADMIN_URL, default postgres://postgres@127.0.0.1:5432/postgres) and,
// for the redis backend, Redis (TEST_REDIS_URL, default redis://127.0.0.1:6379).
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { loadConfig } from '../src/config.js';
import { migrate } from '../src/db/migrate.js';
import { incidentSettings } from '../src/incidents/settings.js';
import { createLogger } from '../src/observability/logger.js';
import { createMetrics } from '../src/observability/metrics.js';
import { QueueSystem } from '../src/queue/index.js';
import { startWorker } from '../src/worker.js';

const arg = (name: string, def: string) => process.argv.find((a) => a.startsWith(`--${name}=`))?.split('=')[1] ?? def;
const backend = arg('backend', 'redis') as 'redis' | 'postgres';
const sizes = arg('sizes', '1,1000').split(',').map(Number);
const ADMIN = process.env.TEST_PG_ADMIN_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const REDIS = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';
const SECRET = 'bench-link-secret-of-at-least-32-characters';

const pct = (xs: number[], p: number) => xs[Math.min(xs.length - 1, Math.floor((p / 100) * xs.length))]!;

async function run(n: number): Promise<void> {
  const name = `pruuf_bench_${randomBytes(4).toString('hex')}`;
  const admin = new pg.Client({ connectionString: ADMIN });
  await admin.connect();
  await admin.query(`create database ${name}`);
  const url = new URL(ADMIN);
  url.pathname = `/${name}`;
  const pool = new pg.Pool({ connectionString: url.toString(), max: 10 });
  pool.on('error', () => undefined); // the database is dropped at the end
  const log = createLogger('warn');
  const config = loadConfig({ NODE_ENV: 'test', DATABASE_URL: url.toString(), ...(backend === 'redis' ? { REDIS_URL: REDIS } : {}), LINK_SIGNING_SECRET: SECRET, PUBLIC_BASE_URL: 'https://pruuf.example' });
  const queues = new QueueSystem({ backend, redisUrl: config.REDIS_URL, databaseUrl: url.toString(), prefix: `bench${randomBytes(3).toString('hex')}` }, log);
  try {
    await migrate(pool, { queueBackend: backend });
    const alertAt = new Date(Date.now() + 4000);
    await pool.query(
      `with m as (
         insert into members (id, display_name, time_zone) select gen_random_uuid(), 'Member ' || g, 'UTC' from generate_series(1, $1) g returning id
       ), c as (
         insert into contacts (member_id, name, email, status) select id, 'Contact', id || '@example.test', 'active' from m returning member_id
       )
       insert into schedules (member_id, kind, due_at, grace_minutes, reminder_minutes, next_deadline_at, alert_at, window_start_at)
       select member_id, 'once', $2, 0, '{}', $2, $2, now() from c`,
      [n, alertAt],
    );
    await startWorker({ pool, queues, clock: () => new Date(), log, metrics: createMetrics(), incidents: incidentSettings(config, SECRET), sweepEveryMs: 1000 });
    const until = Date.now() + 120_000;
    for (;;) {
      const { rows } = await pool.query<{ n: number }>(`select count(*)::int as n from dev_outbox where kind = 'alert'`);
      if (rows[0]!.n >= n || Date.now() > until) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    const { rows } = await pool.query<{ ms: number }>(
      `select extract(epoch from (o.created_at - i.alert_at)) * 1000 as ms
       from dev_outbox o join deliveries d on d.id = o.delivery_id join incidents i on i.id = d.incident_id where o.kind = 'alert'`,
    );
    const ms = rows.map((r) => Number(r.ms)).sort((a, b) => a - b);
    const lost = n - ms.length;
    // Baseline: the same number of outbox rows written in one statement, nothing else.
    const t0 = performance.now();
    await pool.query(`insert into dev_outbox (delivery_id, channel, "to", body, kind) select id, channel, address, body, 'baseline' from deliveries where kind = 'alert' on conflict do nothing`);
    await pool.query(`delete from dev_outbox where kind = 'baseline'`);
    const baseline = performance.now() - t0;
    console.log(
      `${backend} backend, ${n} simultaneous misses: deadline→outbox p50 ${pct(ms, 50)?.toFixed(0)} ms, p99 ${pct(ms, 99)?.toFixed(0)} ms, max ${ms.at(-1)?.toFixed(0)} ms, ` +
      `delivered ${ms.length}, lost ${lost} | baseline (write ${n} outbox rows directly): ${baseline.toFixed(0)} ms total (the sweeper runs every 1000 ms)`,
    );
  } finally {
    await queues.close();
    await pool.end();
    await admin.query(`drop database if exists ${name} with (force)`);
    await admin.end();
  }
}

for (const n of sizes) await run(n);
