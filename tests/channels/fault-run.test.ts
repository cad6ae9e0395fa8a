import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { createSendGridChannel } from '../../src/channels/email-sendgrid/index.js';
import { createFcmChannel, type FcmChannel } from '../../src/channels/push-fcm/index.js';
import { createTwilioChannel } from '../../src/channels/sms-twilio/index.js';
import { sweepOnce } from '../../src/incidents/sweep.js';
import { createLogger } from '../../src/observability/logger.js';
import { createMetrics } from '../../src/observability/metrics.js';
import { startWorker, type StartedWorker } from '../../src/worker.js';
import { startTestApp, type TestApp } from '../helpers/app.js';
import { waitFor } from '../delivery/fake-provider.js';
import { startFakeFcm, type FakeFcm } from '../fakes/fcm.js';
import { seededRandom, startFakeSendGrid, type FakeSendGrid } from '../fakes/sendgrid.js';
import { startFakeTwilio, type FakeTwilio } from '../fakes/twilio.js';
import { sweepDeps, testClock } from '../incidents/helpers.js';

/**
 * The three real channels against their fakes, each failing 30 % of calls with a 500, 10 % with
 * a 429 that says when to come back, and timing out on 5 %: a burst of missed deadlines still
 * ends with every alert accepted by its provider exactly once, and the metrics show the fight.
 */
const MEMBERS = 40;
const FAULTS = { error500: 0.3, throttle: 0.1, hang: 0.05 };
const log = createLogger('silent');
/**
 * 35 % of tries fail in a way that spends an attempt (500s and hangs; 429s and an open breaker
 * don't): with production's 8 attempts one alert in ~4,000 per channel would end failed (its other
 * channels carrying it). The test asks for every one, so it gives each job 25.
 */
const JOBS = { attempts: 25, backoffDelayMs: 20 };

describe('a burst of alerts through faulty providers', () => {
  let t: TestApp;
  let fcmFake: FakeFcm;
  let sgFake: FakeSendGrid;
  let twFake: FakeTwilio;
  let fcm: FcmChannel;
  let worker: StartedWorker;
  const metrics = createMetrics();
  const clock = testClock('2026-11-23T10:00:00Z');

  beforeAll(async () => {
    t = await startTestApp({ clock: () => clock.now, env: { FREE_PLAN_CHANNELS: 'push,sms,email' } });
    fcmFake = await startFakeFcm({ latencyMs: { min: 5, max: 20 }, faults: { error500: FAULTS.error500, throttle: FAULTS.throttle, hang: FAULTS.hang }, retryAfterSeconds: 1, seed: 7 });
    sgFake = await startFakeSendGrid({ latencyMs: { min: 5, max: 20 }, faults: { serverErrorPct: 30, rateLimitPct: 10, hangPct: 5 }, rateLimitResetSeconds: 1, random: seededRandom(11) });
    twFake = await startFakeTwilio({ latencyMs: [5, 20], faults: { error500: FAULTS.error500, tooMany: FAULTS.throttle, retryAfterSeconds: 1, hang: FAULTS.hang }, random: seededRandom(13) });
    fcm = createFcmChannel({ pool: t.db.pool, log, projectId: fcmFake.projectId, credential: fcmFake.credential(), connect: fcmFake.connect });
    const email = createSendGridChannel({ apiKey: sgFake.apiKey, baseUrl: sgFake.url, from: { email: 'alerts@pruuf.test', name: 'Pruuf' }, log });
    const sms = createTwilioChannel({
      accountSid: twFake.accountSid, authToken: twFake.authToken, apiBase: twFake.url, from: '+15005550006', validitySeconds: 1800,
      statusCallbackUrl: 'http://pruuf.test/webhooks/twilio/status', ratePerSecond: 1000, pool: t.db.pool, log,
    });
    worker = await startWorker({
      pool: t.db.pool, queues: t.queues, clock: systemNow, log, metrics, channels: { push: fcm, sms, email },
      // Short enough for a test: a hung call gives up after 2 s (well above the fakes' latency even on a busy machine,
      // so only the hangs time out); an open breaker tries again after 300 ms.
      breakers: { timeoutMs: 2000, resetTimeoutMs: 300, volumeThreshold: 10, errorThresholdPercentage: 50, rollingCountTimeout: 5000 },
      deliveryJobs: JOBS,
    });
  }, 60_000);

  afterAll(async () => {
    await t.queues.close();
    worker.shutdownBreakers();
    await fcm.close();
    await Promise.all([fcmFake.close(), sgFake.close(), twFake.close()]);
    await t.close();
  });

  it('delivers every alert exactly once per channel, and the breaker metrics show the faults', async () => {
    // MEMBERS members, each with two active contacts on email and SMS; the first is a linked app user with a phone for push.
    const { rows: members } = await t.db.pool.query<{ id: string }>(
      `insert into members (id, display_name, time_zone) select gen_random_uuid(), 'Member ' || g, 'UTC' from generate_series(1, $1) g returning id`, [MEMBERS],
    );
    for (const [i, m] of members.entries()) {
      const watcher = randomUUID();
      await t.db.pool.query(`insert into members (id, display_name) values ($1, 'Watcher')`, [watcher]);
      await t.db.pool.query(`insert into devices (member_id, token, platform) values ($1, $2, 'android')`, [watcher, `token-${watcher}`]);
      await t.db.pool.query(
        `insert into contacts (member_id, name, email, phone, tier, status, linked_user_id, responded_at) values
           ($1, 'Ann', $2, $3, 1, 'active', $4, now()), ($1, 'Bob', $5, $6, 1, 'active', null, now())`,
        [m.id, `ann-${i}@example.test`, `+4477009${String(2 * i).padStart(5, '0')}`, watcher, `bob-${i}@example.test`, `+4477009${String(2 * i + 1).padStart(5, '0')}`],
      );
      await t.db.pool.query(
        `insert into schedules (member_id, kind, local_time, time_zone, grace_minutes, next_deadline_at, alert_at, window_start_at, following_deadline_at)
         values ($1, 'daily', '09:00', 'UTC', 30, '2026-11-23T09:00:00Z', '2026-11-23T09:30:00Z', '2026-11-22T09:00:00Z', '2026-11-24T09:00:00Z')`,
        [m.id],
      );
    }

    // The sweep enqueues the first jobs, so it gets the same attempts as the worker's reconciler.
    const swept = await sweepOnce({ ...sweepDeps(t, clock), deliveryJobs: JOBS });
    expect(swept.missed).toBe(MEMBERS);
    const expected = MEMBERS * 5; // push + sms + email for Ann, sms + email for Bob

    const settled = await waitFor(async () => {
      const { rows } = await t.db.pool.query<{ status: string; n: number }>(`select status, count(*)::int as n from deliveries where kind = 'alert' group by status`);
      const by = Object.fromEntries(rows.map((r) => [r.status, r.n]));
      return (by.pending ?? 0) === 0 ? by : undefined;
    }, 120_000);
    const failedTries = await t.db.pool.query(
      `select d.channel, a.error_class, a.error from deliveries d join delivery_attempts a on a.delivery_id = d.id where d.status = 'failed' order by a.attempted_at`,
    );
    expect({ settled, failedTries: failedTries.rows }).toEqual({ settled: { sent: expected }, failedTries: [] });

    const { rows } = await t.db.pool.query<{ channel: string; provider: string; provider_message_id: string }>(
      `select channel, provider, provider_message_id from deliveries where kind = 'alert'`,
    );
    const ids = (channel: string) => rows.filter((r) => r.channel === channel).map((r) => r.provider_message_id).sort();
    // Every accepted message is one delivery's, and every delivery was accepted exactly once.
    expect(fcmFake.accepted.map((a) => a.name).sort()).toEqual(ids('push'));
    expect(sgFake.accepted.map((a) => a.messageId).sort()).toEqual(ids('email'));
    expect(twFake.accepted.map((a) => a.sid).sort()).toEqual(ids('sms'));
    expect(new Set(rows.map((r) => `${r.channel}:${r.provider}`))).toEqual(new Set(['push:fcm', 'sms:twilio', 'email:sendgrid']));
    // A push carries the acknowledgement link to open, as rendered with the alert.
    for (const a of fcmFake.accepted) expect(a.message.data).toMatchObject({ type: 'alert', url: expect.stringMatching(/^http:\/\/pruuf\.test\/a\/[\w-]+$/), kind: 'alert' });

    const text = await metrics.registry.metrics();
    for (const provider of ['fcm', 'twilio', 'sendgrid']) {
      expect(text).toMatch(new RegExp(`pruuf_breaker_state\\{provider="${provider}"\\} [012]`));
      expect(text).toMatch(new RegExp(`pruuf_provider_calls_total\\{provider="${provider}",outcome="failed",error_class="transient"\\} [1-9]`));
      expect(text).toMatch(new RegExp(`pruuf_provider_call_seconds_count\\{provider="${provider}",outcome="accepted"\\} [1-9]`));
    }
    for (const channel of ['push', 'sms', 'email']) {
      expect(text).toContain(`pruuf_deliveries_total{channel="${channel}",kind="alert",outcome="sent"} ${channel === 'push' ? MEMBERS : 2 * MEMBERS}`);
      expect(text).toMatch(new RegExp(`pruuf_deliveries_total\\{channel="${channel}",kind="alert",outcome="retry"\\} [1-9]`));
    }
    const { rows: tries } = await t.db.pool.query<{ provider: string; outcome: string; error_class: string | null; n: number }>(
      `select provider, outcome, error_class, count(*)::int as n from delivery_attempts group by 1, 2, 3 order by 1, 2, 3`,
    );
    // What happened, for whoever reads the test output.
    console.log(`[fault run] ${expected} alerts; tries by provider/outcome/class: ${JSON.stringify(tries)}; fakes: fcm ${JSON.stringify(fcmFake.stats)}, sendgrid ${JSON.stringify(sgFake.outcomes)}, twilio ${JSON.stringify(twFake.outcomes)}`);
    expect(tries.filter((r) => r.outcome === 'failed').reduce((n, r) => n + r.n, 0)).toBeGreaterThan(0);
  }, 180_000);
});

function systemNow(): Date {
  return new Date();
}
