import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { incidentSettings } from '../../src/incidents/settings.js';
import { createLogger } from '../../src/observability/logger.js';
import { createMetrics, type Metrics } from '../../src/observability/metrics.js';
import { AUDIT_EVERY_MS, checkTimers, DEFAULT_AUDITOR_SETTINGS, runAudit } from '../../src/ops/auditor.js';
import { QueueSystem } from '../../src/queue/index.js';
import { startWorker } from '../../src/worker.js';
import { startTestApp, type TestApp } from '../helpers/app.js';
import { TEST_LINK_SECRET } from '../helpers/tokens.js';
import { memberWithContacts, testClock } from '../incidents/helpers.js';

const log = createLogger('silent');

async function gauge(metrics: Metrics, name: 'overdueTimers' | 'oldestOverdueSeconds', kind: string): Promise<number | undefined> {
  const v = await metrics[name].get();
  return v.values.find((x) => x.labels.kind === kind)?.value;
}

async function waitFor(what: string, cond: () => Promise<boolean>, timeoutMs = 15_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (Date.now() < until) {
    if (await cond()) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`timed out waiting for: ${what}`);
}

function heartbeatServer(): Promise<{ server: Server; url: string; calls: () => number }> {
  let calls = 0;
  const server = createServer((req, res) => {
    if (req.method === 'GET') calls += 1;
    res.writeHead(200).end('OK');
  });
  return new Promise((resolve) => {
    server.listen(0, '127.0.0.1', () => {
      resolve({ server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/ping/check-id`, calls: () => calls });
    });
  });
}

it('catches a stalled sweeper within two minutes with the default interval and tolerance', () => {
  expect(AUDIT_EVERY_MS + DEFAULT_AUDITOR_SETTINGS.lateSeconds * 1000).toBeLessThanOrEqual(120_000);
});

describe.each(['redis', 'postgres'] as const)('the auditor on the %s queue backend', (backend) => {
  const clock = testClock('2026-03-02T08:00:00Z');
  let t: TestApp;
  let hb: Awaited<ReturnType<typeof heartbeatServer>>;
  const stalledMetrics = createMetrics();
  let resumed: QueueSystem | undefined;

  beforeAll(async () => {
    t = await startTestApp({ backend, clock: () => clock.now });
    hb = await heartbeatServer();
  });
  afterAll(async () => {
    await resumed?.close();
    await t.close();
    await new Promise((r) => hb.server.close(r));
  });

  it('flags a deadline left unswept with no worker sweeping, then clears once a sweeper runs again', async () => {
    // Deadline 09:30 UTC, 30 min grace: the alert is due at 10:00.
    await memberWithContacts(t, [1]);
    // A worker with no sweeper: the stalled alerting path. Its auditor runs every 200 ms.
    await startWorker({
      pool: t.db.pool, queues: t.queues, clock: () => clock.now, log, metrics: stalledMetrics, breakers: false,
      auditEveryMs: 200, auditor: { ...DEFAULT_AUDITOR_SETTINGS, heartbeatUrl: hb.url },
    });
    await waitFor('a first audit', async () => (await stalledMetrics.auditorLastRun.get()).values[0]!.value > 0);
    expect(await gauge(stalledMetrics, 'overdueTimers', 'missed_deadline')).toBe(0);
    await waitFor('the heartbeat after a passing audit', async () => hb.calls() > 0);

    clock.set('2026-03-02T10:00:29Z'); // late, but within the 30 s tolerance
    await new Promise((r) => setTimeout(r, 600));
    expect(await gauge(stalledMetrics, 'overdueTimers', 'missed_deadline')).toBe(0);

    clock.set('2026-03-02T10:00:45Z');
    await waitFor('the missed deadline flagged', async () => (await gauge(stalledMetrics, 'overdueTimers', 'missed_deadline')) === 1);
    expect(await gauge(stalledMetrics, 'oldestOverdueSeconds', 'missed_deadline')).toBe(45);
    expect((await stalledMetrics.auditorOk.get()).values[0]!.value).toBe(0);
    // No heartbeat while a check fails: the outside monitor notices the silence.
    const beatsWhenStalled = hb.calls();
    await new Promise((r) => setTimeout(r, 600));
    expect(hb.calls()).toBe(beatsWhenStalled);

    // Every API replica shows the verdict, in /readyz detail and /metrics; readiness stays.
    const ready = await t.app.inject({ method: 'GET', url: '/readyz' });
    expect(ready.statusCode).toBe(200);
    expect(ready.json().alerting).toMatchObject({ ok: false, stale: false, overdue: { missed_deadline: 1, escalation_step: 0 } });
    const scrape = (await t.app.inject({ method: 'GET', url: '/metrics' })).body;
    expect(scrape).toContain('pruuf_overdue_timers{kind="missed_deadline"} 1');
    expect(scrape).toContain('pruuf_auditor_ok 0');

    // The sweeper comes back (another worker process): the incident opens, the audit passes.
    resumed = new QueueSystem({ ...t.queues.settings }, log);
    const resumedMetrics = createMetrics();
    await startWorker({
      pool: t.db.pool, queues: resumed, clock: () => clock.now, log, metrics: resumedMetrics, breakers: false,
      incidents: incidentSettings(t.config, TEST_LINK_SECRET), sweepEveryMs: 200, auditEveryMs: 200,
      auditor: { ...DEFAULT_AUDITOR_SETTINGS, heartbeatUrl: hb.url },
    });
    await waitFor('the audit passing again', async () => (await t.db.pool.query('select ok from auditor_state')).rows[0].ok === true);
    const { rows } = await t.db.pool.query(`select count(*)::int as n from incidents where kind = 'missed'`);
    expect(rows[0].n).toBe(1);
    await waitFor('the heartbeat called again', async () => hb.calls() > beatsWhenStalled);
    const after = (await t.app.inject({ method: 'GET', url: '/readyz' })).json();
    expect(after.alerting).toMatchObject({ ok: true, overdue: { missed_deadline: 0 } });
    expect(Date.parse(after.alerting.last_success_at)).toBeGreaterThanOrEqual(Date.parse('2026-03-02T10:00:45Z'));
    // The sweep now reports its duration and what it claimed.
    await waitFor('the sweep observed', async () => /pruuf_sweep_rows_total\{kind="missed"\} 1/.test(await resumedMetrics.registry.metrics()));
    expect(await resumedMetrics.registry.metrics()).toMatch(/pruuf_sweep_duration_seconds_count [1-9]/);
  });
});

describe('the auditor checks', () => {
  const clock = testClock('2026-03-02T08:00:00Z');
  let t: TestApp;
  beforeAll(async () => {
    t = await startTestApp({ backend: 'postgres', clock: () => clock.now });
  });
  afterAll(() => t.close());

  it('flags a delivery pending longer than its retry plan allows, and reports the oldest pending age', async () => {
    const { sub } = await memberWithContacts(t, [1]);
    await t.db.pool.query(
      `insert into deliveries (member_id, kind, channel, address, body, status, created_at)
       values ($1, 'reminder', 'email', 'a@example.test', 'hello', 'pending', now() - interval '20 minutes'),
              ($1, 'reminder', 'email', 'a@example.test', 'hello', 'pending', now() - interval '1 minute')`, [sub]);
    const r = await checkTimers(t.db.pool, clock.now, DEFAULT_AUDITOR_SETTINGS);
    expect(r.ok).toBe(false);
    expect(r.overdue.pending_delivery.count).toBe(1);
    expect(r.oldest_pending_delivery_seconds).toBeGreaterThanOrEqual(1200);
    await t.db.pool.query(`update deliveries set status = 'sent' where member_id = $1`, [sub]);
    expect((await checkTimers(t.db.pool, clock.now, DEFAULT_AUDITOR_SETTINGS)).ok).toBe(true);
  });

  it('flags an escalation step and an acknowledgement expiry that are overdue', async () => {
    const { sub } = await memberWithContacts(t, [1]);
    const plan = JSON.stringify({ tiers: [], member_name: 'Ann', time_zone: 'UTC' });
    await t.db.pool.query(
      `insert into incidents (member_id, kind, opened_at, plan, escalation_minutes, max_rounds, ack_timeout_minutes, state, next_step_at, ack_expires_at)
       values ($1, 'sos', $2, $3, 15, 3, 60, 'open', $2::timestamptz - interval '2 minutes', null),
              ($1, 'sos', $2, $3, 15, 3, 60, 'acknowledged', null, $2::timestamptz - interval '5 minutes')`,
      [sub, clock.now, plan]);
    const r = await checkTimers(t.db.pool, clock.now, DEFAULT_AUDITOR_SETTINGS);
    expect(r.overdue.escalation_step).toEqual({ count: 1, oldest_seconds: 120 });
    expect(r.overdue.ack_expiry).toEqual({ count: 1, oldest_seconds: 300 });
    await t.db.pool.query(`update incidents set state = 'resolved', next_step_at = null, ack_expires_at = null where member_id = $1`, [sub]);
  });

  it('puts the first alert of an incident into the deadline-to-delivery histogram once', async () => {
    const { sub, contacts } = await memberWithContacts(t, [1]);
    const plan = JSON.stringify({ tiers: [], member_name: 'Ann', time_zone: 'UTC' });
    const { rows: [inc] } = await t.db.pool.query(
      `insert into incidents (member_id, kind, opened_at, alert_at, plan, escalation_minutes, max_rounds, ack_timeout_minutes, state)
       values ($1, 'missed', now() - interval '2 minutes', now() - interval '2 minutes', $2, 15, 3, 60, 'resolved') returning id`, [sub, plan]);
    await t.db.pool.query(
      `insert into deliveries (member_id, contact_id, kind, channel, address, body, status, incident_id, step_no, sent_at)
       values ($1, $2, 'alert', 'sms', '+447700900001', 'x', 'sent', $3, 1, now() - interval '1 minute - 3 seconds'),
              ($1, $2, 'alert', 'sms', '+447700900001', 'x', 'sent', $3, 2, now() - interval '1 minute')`,
      [sub, contacts[0]!.id, inc.id]);
    const metrics = createMetrics();
    const deps = { pool: t.db.pool, clock: () => clock.now, log, metrics, settings: DEFAULT_AUDITOR_SETTINGS };
    await runAudit(deps);
    await runAudit(deps);
    const text = await metrics.registry.metrics();
    expect(text).toContain('pruuf_deadline_to_delivery_seconds_count{channel="sms"} 1');
    expect(text).toMatch(/pruuf_deadline_to_delivery_seconds_bucket\{le="60",channel="sms"\} 0/);
    expect(text).toMatch(/pruuf_deadline_to_delivery_seconds_bucket\{le="120",channel="sms"\} 1/);
  });
});
