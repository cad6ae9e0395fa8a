import { readFile } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import type { FastifyInstance } from 'fastify';
import { buildApp } from '../../src/app.js';
import { createTokenVerifier } from '../../src/auth/jwt.js';
import { loadMigrations } from '../../src/db/migrate.js';
import { incidentSettings } from '../../src/incidents/settings.js';
import { createLogger } from '../../src/observability/logger.js';
import { createMetrics } from '../../src/observability/metrics.js';
import { QueueSystem } from '../../src/queue/index.js';
import { startWorker } from '../../src/worker.js';
import { testConfig } from '../helpers/app.js';
import { createTestDatabase, type TestDatabase } from '../helpers/db.js';
import { TEST_JWT_SECRET, TEST_LINK_SECRET } from '../helpers/tokens.js';

const HISTOGRAM_SUFFIX = /_(bucket|count|sum)$/;

/** Metric names in a text: every `pruuf_…` token, histogram series mapped to their family. */
function metricNames(text: string): string[] {
  return [...new Set([...text.matchAll(/\bpruuf_[a-z0-9_]+/g)].map((m) => m[0]))];
}

describe('the dashboard and the runbooks', () => {
  let db: TestDatabase;
  let queues: QueueSystem;
  let app: FastifyInstance;
  let scrape = '';

  beforeAll(async () => {
    // API and worker in one process sharing one registry, as `npm start` runs them.
    db = await createTestDatabase();
    const config = testConfig('redis', db.url);
    const log = createLogger('silent');
    const metrics = createMetrics();
    queues = new QueueSystem({ backend: 'redis', redisUrl: config.REDIS_URL, databaseUrl: db.url, prefix: config.QUEUE_PREFIX }, log);
    app = await buildApp({ config, pool: db.pool, queues, metrics, migrations: await loadMigrations(), verifyToken: createTokenVerifier({ hsSecret: TEST_JWT_SECRET }), linkSecret: TEST_LINK_SECRET });
    await app.ready();
    await startWorker({ pool: db.pool, queues, clock: () => new Date(), log, metrics, config, incidents: incidentSettings(config, TEST_LINK_SECRET), sweepEveryMs: 200, auditEveryMs: 200 });
    const until = Date.now() + 15_000;
    while (Date.now() < until && (await metrics.auditorLastRun.get()).values[0]!.value === 0) await new Promise((r) => setTimeout(r, 100));
    scrape = (await app.inject({ method: 'GET', url: '/metrics' })).body;
  });
  afterAll(async () => {
    await app.close();
    await queues.close();
    await db.drop();
  });

  const exported = () => new Set([...scrape.matchAll(/^# TYPE (\S+) /gm)].map((m) => m[1]!));

  it('exports the auditor, queue and sweep metrics from a running app and worker', () => {
    expect(scrape).toContain('pruuf_overdue_timers{kind="missed_deadline"} 0');
    expect(scrape).toContain('pruuf_auditor_ok 1');
    expect(scrape).toMatch(/pruuf_auditor_last_success_timestamp_seconds [1-9]/);
    expect(scrape).toMatch(/pruuf_queue_jobs\{queue="delivery",state="waiting"\} \d+/);
    expect(scrape).toMatch(/pruuf_queue_oldest_waiting_seconds\{queue="sweep"\} [\d.]+/);
    expect(scrape).toMatch(/pruuf_sweep_duration_seconds_count [1-9]/);
  });

  it.each([['ops/grafana-dashboard.json'], ['docs/runbooks.md']])('name only metrics that exist: %s', async (file) => {
    const names = metricNames(await readFile(file, 'utf8'));
    expect(names.length).toBeGreaterThan(5);
    const families = exported();
    const missing = names.filter((n) => !families.has(n) && !families.has(n.replace(HISTOGRAM_SUFFIX, '')));
    expect(missing).toEqual([]);
  });

  it('gives every dashboard panel a Prometheus query', async () => {
    const dashboard = JSON.parse(await readFile('ops/grafana-dashboard.json', 'utf8')) as { panels: { title: string; targets: { expr: string }[] }[] };
    for (const panel of dashboard.panels) {
      expect({ panel: panel.title, hasQueries: panel.targets.length > 0 }).toEqual({ panel: panel.title, hasQueries: true });
      expect(panel.targets.every((q) => /pruuf_/.test(q.expr))).toBe(true);
    }
  });
});
