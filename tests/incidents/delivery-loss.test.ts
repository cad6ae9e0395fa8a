import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { reconcileDeliveries } from '../../src/delivery/reconciler.js';
import { sweepOnce } from '../../src/incidents/sweep.js';
import { incidentSettings } from '../../src/incidents/settings.js';
import { createLogger } from '../../src/observability/logger.js';
import { createMetrics } from '../../src/observability/metrics.js';
import { startWorker } from '../../src/worker.js';
import { startTestApp, type QueueBackend, type TestApp } from '../helpers/app.js';
import { TEST_LINK_SECRET } from '../helpers/tokens.js';
import { memberWithContacts, sweepDeps, testClock } from './helpers.js';

const log = createLogger('silent');

describe.each(['redis', 'postgres'] as QueueBackend[])('alerts when the %s queue loses everything mid-burst', (backend) => {
  const clock = testClock('2026-11-23T08:00:00Z');
  let t: TestApp;
  beforeAll(async () => {
    t = await startTestApp({ backend, clock: () => clock.now, env: { FREE_PLAN_CHANNELS: 'push,sms,email' } });
  });
  afterAll(() => t.close());

  it('still sends every delivery exactly once', async () => {
    for (let i = 0; i < 20; i += 1) await memberWithContacts(t, [1, 1]);
    clock.set('2026-11-23T10:00:00Z');
    const r = await sweepOnce(sweepDeps(t, clock));
    expect(r).toMatchObject({ missed: 20, deliveries: 80 });
    // The queue forgets every job (Redis flushed / the PostgreSQL queue tables emptied).
    await t.queues.queue('delivery').obliterate({ force: true });
    await reconcileDeliveries(t.db.pool, t.queues, log, 0, { backoffDelayMs: 10 });
    await startWorker({ pool: t.db.pool, queues: t.queues, clock: () => clock.now, log, metrics: createMetrics(), incidents: incidentSettings(t.config, TEST_LINK_SECRET), deliveryJobs: { backoffDelayMs: 10 } });
    const until = Date.now() + 30_000;
    for (;;) {
      const { rows } = await t.db.pool.query(`select count(*)::int as n from deliveries where kind = 'alert' and status = 'sent'`);
      if (rows[0].n === 80 || Date.now() > until) break;
      await new Promise((res) => setTimeout(res, 100));
    }
    const { rows } = await t.db.pool.query(
      `select d.status, count(o.id)::int as outbox from deliveries d left join dev_outbox o on o.delivery_id = d.id where d.kind = 'alert' group by d.id, d.status`,
    );
    expect(rows).toHaveLength(80);
    expect(rows.every((x) => x.status === 'sent' && x.outbox === 1)).toBe(true);
    const { rows: tries } = await t.db.pool.query(`select count(*)::int as n from delivery_attempts a join deliveries d on d.id = a.delivery_id where d.kind = 'alert' and a.outcome = 'accepted'`);
    expect(tries[0].n).toBe(80);
  }, 60_000);
});
