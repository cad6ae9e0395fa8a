import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import pg from 'pg';
import { buildApp } from '../../src/app.js';
import { createTokenVerifier } from '../../src/auth/jwt.js';
import { loadMigrations } from '../../src/db/migrate.js';
import { createLogger } from '../../src/observability/logger.js';
import { QueueSystem } from '../../src/queue/index.js';
import { timeZonesFrom } from '../../src/schedules/zones.js';
import { startTestApp, testConfig, type TestApp } from '../helpers/app.js';
import { TEST_JWT_SECRET, TEST_LINK_SECRET } from '../helpers/tokens.js';

describe.each(['redis', 'postgres'] as const)('operations endpoints on the %s queue backend', (backend) => {
  let t: TestApp;
  beforeAll(async () => {
    t = await startTestApp({ backend });
  });
  afterAll(() => t.close());

  it('answers /healthz', async () => {
    const res = await t.app.inject({ method: 'GET', url: '/healthz' });
    expect(res.statusCode).toBe(200);
    expect(res.json()).toEqual({ status: 'ok' });
  });

  it('is ready when database, migrations and queue are', async () => {
    const res = await t.app.inject({ method: 'GET', url: '/readyz' });
    expect(res.statusCode).toBe(200);
    expect(res.json()).toEqual({
      status: 'ready',
      checks: { database: { ok: true }, migrations: { ok: true }, queue: { ok: true } },
      // No worker runs here: no audit yet, which the detail says without making the API unready.
      alerting: {
        ok: null, stale: true, checked_at: null, last_success_at: null, oldest_pending_delivery_seconds: null,
        overdue: { missed_deadline: 0, escalation_step: 0, ack_expiry: 0, reminder: 0, pending_delivery: 0 },
        quarantined: { missed: 0, reminders: 0, steps: 0, ack: 0, refill: 0, receipts: 0 },
      },
      channels: { push: 'dev_outbox', sms: 'dev_outbox', email: 'dev_outbox', voice: 'dev_outbox' },
      providers: { push: [], sms: [], email: [], voice: [] },
    });
  });

  it('is not ready while a migration is missing from the ledger', async () => {
    const { rows } = await t.db.pool.query('delete from pruuf_migrations where version = (select max(version) from pruuf_migrations) returning *');
    try {
      const res = await t.app.inject({ method: 'GET', url: '/readyz' });
      expect(res.statusCode).toBe(503);
      expect(res.json().checks.migrations.ok).toBe(false);
    } finally {
      const r = rows[0];
      await t.db.pool.query('insert into pruuf_migrations (version, name, checksum, applied_at) values ($1, $2, $3, $4)', [r.version, r.name, r.checksum, r.applied_at]);
    }
  });

  it('exports Prometheus metrics with the request duration histogram by route and status', async () => {
    await t.app.inject({ method: 'GET', url: '/v1/me', headers: await t.as(randomUUID()) });
    const res = await t.app.inject({ method: 'GET', url: '/metrics' });
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toContain('text/plain');
    expect(res.body).toMatch(/pruuf_http_request_duration_seconds_bucket\{[^}]*route="\/v1\/me"[^}]*status_code="200"/);
    expect(res.body).toContain('pruuf_process_cpu_seconds_total');
  });

  it('serves the OpenAPI document generated from the route schemas, and the docs page', async () => {
    const spec = (await t.app.inject({ method: 'GET', url: '/openapi.json' })).json();
    expect(spec.openapi).toMatch(/^3\./);
    for (const path of ['/v1/me', '/v1/devices', '/v1/devices/{id}', '/healthz', '/readyz', '/metrics']) {
      expect(spec.paths).toHaveProperty([path]);
    }
    expect(spec.paths['/v1/me'].patch.requestBody).toBeDefined();
    expect(spec.paths['/v1/me'].get.security).toEqual([{ bearerAuth: [] }]);
    const docs = await t.app.inject({ method: 'GET', url: '/docs' });
    expect([200, 302]).toContain(docs.statusCode);
  });
});

describe('readiness when the database is down', () => {
  it('answers 503 with the failing check named, and check-ins of members get a fast 503 with Retry-After', async () => {
    // A pool pointing at a port where nothing listens stands for a database that went away.
    const deadUrl = 'postgres://postgres@127.0.0.1:1/nowhere';
    const config = testConfig('redis', deadUrl);
    const pool = new pg.Pool({ connectionString: deadUrl, connectionTimeoutMillis: 500 });
    pool.on('error', () => undefined);
    const queues = new QueueSystem({ backend: 'redis', redisUrl: config.REDIS_URL, databaseUrl: deadUrl, prefix: config.QUEUE_PREFIX }, createLogger('silent'));
    // The zones are given: with no database there is none to load them from.
    const app = await buildApp({ config, pool, queues, migrations: await loadMigrations(), verifyToken: createTokenVerifier({ hsSecret: TEST_JWT_SECRET }), linkSecret: TEST_LINK_SECRET, timeZones: timeZonesFrom(['UTC']) });
    try {
      const res = await app.inject({ method: 'GET', url: '/readyz' });
      expect(res.statusCode).toBe(503);
      const body = res.json();
      expect(body.status).toBe('not_ready');
      expect(body.checks.database.ok).toBe(false);
      expect(body.checks.queue.ok).toBe(true);
      expect(body.error.code).toBe('NOT_READY');

      const me = await app.inject({ method: 'GET', url: '/v1/me', headers: { authorization: `Bearer ${await (await import('../helpers/tokens.js')).signToken()}` } });
      expect(me.statusCode).toBe(503);
      expect(me.headers['retry-after']).toBe('5');
      expect(me.json().error.code).toBe('SERVICE_UNAVAILABLE');
    } finally {
      await app.close();
      await queues.close();
      await pool.end();
    }
  });
});
