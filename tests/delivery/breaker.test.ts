import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { coalesced } from '../../src/channels/coalesce.js';
import { ChannelError, providersOf, type Channel, type Channels, type OutboundMessage, type SendResult } from '../../src/channels/types.js';
import { systemClock } from '../../src/clock.js';
import { withTransaction } from '../../src/db/pool.js';
import {
  BREAKER_TIMEOUT_SLACK_MS, CircuitOpenError, DEFAULT_BREAKER_OPTIONS, withBreakers, type BreakerOptions, type BreakerSet, type ProviderBreaker,
} from '../../src/delivery/breaker.js';
import { DeliveryDeferredError, deferDelayMs, processDelivery } from '../../src/delivery/deliver.js';
import { enqueueDeliveries, insertDeliveries, type NewDelivery } from '../../src/delivery/outbox.js';
import { createLogger } from '../../src/observability/logger.js';
import { createMetrics, type Metrics } from '../../src/observability/metrics.js';
import { QueueSystem } from '../../src/queue/index.js';
import { startWorker, type StartedWorker } from '../../src/worker.js';
import { testConfig } from '../helpers/app.js';
import { createTestDatabase, type TestDatabase } from '../helpers/db.js';
import { createOutageProvider, waitFor, type OutageProvider } from './fake-provider.js';

/** The first provider of a channel (these tests give each channel one). */
const first = (c: Channel | readonly Channel[]): Channel => providersOf(c)[0]!;

const log = createLogger('silent');

type Behaviour = (msg: OutboundMessage, signal: AbortSignal) => Promise<SendResult>;
const accept: Behaviour = async (msg) => ({ provider: 'fake', providerMessageId: `m-${msg.deliveryId}` });
const unavailable: Behaviour = async () => { throw new ChannelError('upstream 503', 'transient'); };

/** Stands in for a provider's API: does what the test scripts, and counts the calls that reach it. */
function scripted(provider: string, behaviour: Behaviour = accept) {
  let calls = 0;
  let current = behaviour;
  const channel: Channel = {
    provider,
    send(msg, signal) {
      calls += 1;
      return current(msg, signal);
    },
  };
  return { channel, calls: () => calls, behave: (b: Behaviour) => { current = b; } };
}

const everywhere = (channel: Channel): Channels => ({ push: channel, sms: channel, email: channel });
let n = 0;
const message = (channel: OutboundMessage['channel'] = 'sms'): OutboundMessage => ({
  deliveryId: `d${++n}`, channel, to: '+15551230000', subject: null, body: 'Ann missed her check-in.', html: null, kind: 'alert', incidentId: null,
});
const never = () => new AbortController().signal;
const FAST: BreakerOptions = { timeoutMs: 1000, errorThresholdPercentage: 50, resetTimeoutMs: 60_000, volumeThreshold: 4, rollingCountTimeout: 10_000 };
const gauge = (provider: string, value: number) => `pruuf_breaker_state{provider="${provider}"} ${value}`;

describe('a circuit breaker per provider', () => {
  const sets: BreakerSet[] = [];
  const guard = (channels: Channels, opts: Partial<BreakerOptions> = {}, metrics?: Metrics) => {
    const set = withBreakers(channels, { ...FAST, ...opts }, metrics);
    sets.push(set);
    return set;
  };
  afterAll(() => sets.forEach((s) => s.shutdown()));

  it('has sensible defaults', () => {
    expect(DEFAULT_BREAKER_OPTIONS).toEqual({ timeoutMs: 15_000, errorThresholdPercentage: 50, resetTimeoutMs: 30_000, volumeThreshold: 10, rollingCountTimeout: 60_000 });
    const set = guard(everywhere(scripted('p').channel), DEFAULT_BREAKER_OPTIONS);
    const { options } = set.breakers.get('p') as unknown as { options: Record<string, unknown> };
    expect(options).toMatchObject({ timeout: 15_000 + BREAKER_TIMEOUT_SLACK_MS, resetTimeout: 30_000, errorThresholdPercentage: 50 });
  });

  it('lets permanent errors through unchanged and never opens on them', async () => {
    const thrown: ChannelError[] = [];
    const p = scripted('flaky', async (msg) => {
      const err = new ChannelError(`${msg.to} is not a valid number`, 'permanent');
      thrown.push(err);
      throw err;
    });
    const set = guard(everywhere(p.channel), { volumeThreshold: 2 });
    for (let i = 0; i < 20; i++) {
      const err = await first(set.channels.sms).send(message(), never()).catch((e: unknown) => e);
      expect(err).toBe(thrown[i]);
    }
    expect(set.breakers.get('flaky')!.closed).toBe(true);
    p.behave(accept);
    await expect(first(set.channels.sms).send(message(), never())).resolves.toMatchObject({ providerMessageId: expect.any(String) });
    expect(p.calls()).toBe(21);
  });

  it('opens after transient failures past the threshold, then fails fast with a transient error that never reaches the provider', async () => {
    const metrics = createMetrics();
    const p = scripted('flaky', unavailable);
    const set = guard(everywhere(p.channel), {}, metrics);
    expect(await metrics.registry.metrics()).toContain(gauge('flaky', 0));
    for (let i = 0; i < 4; i++) await expect(first(set.channels.email).send(message('email'), never())).rejects.toThrow('upstream 503');
    expect(set.breakers.get('flaky')!.opened).toBe(true);

    for (let i = 0; i < 5; i++) {
      const err = await first(set.channels.email).send(message('email'), never()).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(CircuitOpenError);
      expect(err).toBeInstanceOf(ChannelError);
      expect(err).toMatchObject({ message: 'flaky circuit open', errorClass: 'transient' });
      const retryAfterMs = (err as ChannelError).retryAfterMs!;
      expect(retryAfterMs).toBeGreaterThan(0);
      expect(retryAfterMs).toBeLessThanOrEqual(FAST.resetTimeoutMs);
    }
    expect(p.calls()).toBe(4);
    expect(await metrics.registry.metrics()).toContain(gauge('flaky', 2));
  });

  it('counts configuration errors and timeouts toward opening', async () => {
    const p = scripted('flaky', async () => { throw new ChannelError('401 bad credentials', 'configuration'); });
    const set = guard(everywhere(p.channel), { timeoutMs: 30 });
    for (let i = 0; i < 2; i++) await expect(first(set.channels.sms).send(message(), never())).rejects.toMatchObject({ errorClass: 'configuration' });
    // Honours the signal: each call's own deadline (timeoutMs) ends it, though the caller's never fires.
    p.behave((_msg, signal) => new Promise((_, reject) => signal.addEventListener('abort', () => reject(signal.reason as Error))));
    for (let i = 0; i < 2; i++) await expect(first(set.channels.sms).send(message(), never())).rejects.toMatchObject({ name: 'TimeoutError' });
    expect(set.breakers.get('flaky')!.opened).toBe(true);
    await expect(first(set.channels.sms).send(message(), never())).rejects.toBeInstanceOf(CircuitOpenError);
    expect(p.calls()).toBe(4);
  });

  it('backs the per-call deadline with the breaker timeout for a provider that ignores its signal', async () => {
    const p = scripted('deaf', () => new Promise<SendResult>(() => undefined));
    const set = guard(everywhere(p.channel), { timeoutMs: 20 });
    const started = Date.now();
    const err = await first(set.channels.push).send(message('push'), never()).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ChannelError);
    expect(err).toMatchObject({ errorClass: 'transient', message: `deaf did not answer within ${20 + BREAKER_TIMEOUT_SLACK_MS} ms` });
    expect(Date.now() - started).toBeGreaterThanOrEqual(20 + BREAKER_TIMEOUT_SLACK_MS - 5);
  });

  it('half-opens after the reset timeout, lets one trial through, and closes when it succeeds', async () => {
    const metrics = createMetrics();
    const p = scripted('flaky', unavailable);
    const set = guard(everywhere(p.channel), { volumeThreshold: 2, resetTimeoutMs: 200 }, metrics);
    const breaker = set.breakers.get('flaky')!;
    for (let i = 0; i < 2; i++) await expect(first(set.channels.sms).send(message(), never())).rejects.toThrow('upstream 503');
    expect(breaker.opened).toBe(true);
    await expect(first(set.channels.sms).send(message(), never())).rejects.toBeInstanceOf(CircuitOpenError);

    await waitFor(async () => (breaker.halfOpen ? true : undefined), 2000);
    expect(await metrics.registry.metrics()).toContain(gauge('flaky', 1));
    let release!: () => void;
    const gate = new Promise<void>((r) => { release = r; });
    p.behave(async (msg) => { await gate; return accept(msg, never()); });
    const trial = first(set.channels.sms).send(message(), never());
    // While the trial is in flight, everything else still fails fast.
    await expect(first(set.channels.email).send(message('email'), never())).rejects.toBeInstanceOf(CircuitOpenError);
    expect(p.calls()).toBe(3);
    release();
    await expect(trial).resolves.toMatchObject({ providerMessageId: expect.any(String) });
    expect(breaker.closed).toBe(true);
    expect(await metrics.registry.metrics()).toContain(gauge('flaky', 0));
    await expect(first(set.channels.push).send(message('push'), never())).resolves.toBeDefined();
    expect(p.calls()).toBe(4);
  });

  it('opens again when the trial call fails', async () => {
    const p = scripted('flaky', unavailable);
    const set = guard(everywhere(p.channel), { volumeThreshold: 2, resetTimeoutMs: 100 });
    const breaker = set.breakers.get('flaky')!;
    for (let i = 0; i < 2; i++) await expect(first(set.channels.sms).send(message(), never())).rejects.toThrow('upstream 503');
    await waitFor(async () => (breaker.halfOpen ? true : undefined), 2000);
    await expect(first(set.channels.sms).send(message(), never())).rejects.toThrow('upstream 503');
    expect(breaker.opened).toBe(true);
    await expect(first(set.channels.sms).send(message(), never())).rejects.toBeInstanceOf(CircuitOpenError);
    expect(p.calls()).toBe(3);
  });

  it('shares one breaker between the channels of one provider, and keeps providers apart', async () => {
    const twilio = scripted('twilio', unavailable);
    const fcm = scripted('fcm');
    const set = guard({ push: fcm.channel, sms: twilio.channel, email: { provider: 'twilio', send: (m, s) => twilio.channel.send(m, s) } }, { volumeThreshold: 2 });
    expect([...set.breakers.keys()].sort()).toEqual(['fcm', 'twilio']);
    await expect(first(set.channels.sms).send(message('sms'), never())).rejects.toThrow('upstream 503');
    await expect(first(set.channels.email).send(message('email'), never())).rejects.toThrow('upstream 503');
    expect(set.breakers.get('twilio')!.opened).toBe(true);
    await expect(first(set.channels.sms).send(message('sms'), never())).rejects.toBeInstanceOf(CircuitOpenError);
    await expect(first(set.channels.push).send(message('push'), never())).resolves.toBeDefined();
    expect(set.breakers.get('fcm')!.closed).toBe(true);
  });

  it('counts a bulk request once: one failed request of many messages does not open it, an outage still does', async () => {
    let requests = 0;
    let failing = true;
    const bulk: Channel = {
      provider: 'bulky',
      maxBatch: 50,
      send: async (msg) => ({ provider: 'bulky', providerMessageId: `m-${msg.deliveryId}` }),
      async sendMany(msgs) {
        requests += 1;
        if (failing) throw new ChannelError('bulky answered 500', 'transient');
        return msgs.map((m) => ({ provider: 'bulky', providerMessageId: `m-${m.deliveryId}` }));
      },
    };
    const set = guard(everywhere(coalesced(bulk)));
    const turn = (k: number) => Promise.all(Array.from({ length: k }, () => first(set.channels.email).send(message('email'), never()).catch((e: unknown) => e)));
    // Ten messages, one request, one failure: below the volume threshold (4), so still closed.
    const answers = await turn(10);
    expect(requests).toBe(1);
    expect(answers.every((a) => a instanceof ChannelError && a.message === 'bulky answered 500')).toBe(true);
    expect(set.breakers.get('bulky')!.closed).toBe(true);
    // The provider is down: every request fails, and after the threshold the breaker opens.
    for (let i = 0; i < 3; i++) await turn(10);
    expect(requests).toBe(4);
    expect(set.breakers.get('bulky')!.opened).toBe(true);
    // Open: a whole turn fails fast, deferred, without a request.
    const open = await turn(10);
    expect(requests).toBe(4);
    expect(open.every((a) => a instanceof CircuitOpenError)).toBe(true);
    failing = false;
  });

  it('counts a bulk request answered with a failure for every message (as SendGrid and FCM answer a 5xx) as one failure, a partly failed one as none', async () => {
    let requests = 0;
    let mode: 'down' | 'partly' = 'down';
    const bulk: Channel = {
      provider: 'answering',
      maxBatch: 50,
      send: async (msg) => ({ provider: 'answering', providerMessageId: `m-${msg.deliveryId}` }),
      async sendMany(msgs) {
        requests += 1;
        const down = new ChannelError('answering answered 503', 'transient');
        return msgs.map((m, i) => (mode === 'down' || i === 0 ? down : { provider: 'answering', providerMessageId: `m-${m.deliveryId}` }));
      },
    };
    const set = guard(everywhere(coalesced(bulk)));
    const turn = (k: number) => Promise.all(Array.from({ length: k }, () => first(set.channels.email).send(message('email'), never()).catch((e: unknown) => e)));
    // Each message still gets its own answer, and the request counts once.
    const answers = await turn(5);
    expect(answers.every((a) => a instanceof ChannelError && a.message === 'answering answered 503')).toBe(true);
    expect(set.breakers.get('answering')!.stats).toMatchObject({ fires: 1, failures: 1 });
    // Answered per message, some sent: the provider is up.
    mode = 'partly';
    const partly = await turn(5);
    expect(partly.filter((a) => a instanceof Error)).toHaveLength(1);
    expect(set.breakers.get('answering')!.stats).toMatchObject({ fires: 2, failures: 1 });
    // Down again, request after request: it opens (3 failures of 4 requests), and the next turn fails fast without a request.
    mode = 'down';
    await turn(5);
    await turn(5);
    expect(set.breakers.get('answering')!.opened).toBe(true);
    expect((await turn(5)).every((a) => a instanceof CircuitOpenError)).toBe(true);
    expect(requests).toBe(4);
  });

  it('fails sends with a transient error after shutdown, so nothing is marked failed for it', async () => {
    const p = scripted('flaky');
    const set = guard(everywhere(p.channel));
    set.shutdown();
    set.shutdown();
    await expect(first(set.channels.sms).send(message(), never())).rejects.toMatchObject({ errorClass: 'transient', message: 'flaky circuit breaker is shut down' });
    expect(p.calls()).toBe(0);
  });

  it('spreads deferred retries with a floor and jitter', () => {
    expect(deferDelayMs(0, () => 0)).toBe(50);
    expect(deferDelayMs(200, () => 0)).toBe(200);
    expect(deferDelayMs(200, () => 1)).toBe(250);
  });
});

type Row = { status: string; attempts: number; error_class: string | null; last_error: string | null; provider: string | null };

const alert = (address: string): NewDelivery => ({
  memberId: null, contactId: null, kind: 'alert', channel: 'email', address, subject: 'Check on Ann', body: 'Ann missed her check-in.',
});

async function deliveryState(db: TestDatabase, id: string) {
  const row = (await db.pool.query<Row>('select status, attempts, error_class, last_error, provider from deliveries where id = $1', [id])).rows[0]!;
  const tries = (await db.pool.query<{ outcome: string; error_class: string | null; error: string | null; provider: string }>(
    'select outcome, error_class, error, provider from delivery_attempts where delivery_id = $1 order by attempted_at, id', [id],
  )).rows;
  return { row, tries };
}

describe('a delivery whose provider circuit is open', () => {
  let db: TestDatabase;
  let set: BreakerSet;
  beforeAll(async () => {
    db = await createTestDatabase();
  });
  afterAll(async () => {
    set?.shutdown();
    await db.drop();
  });

  it('stays pending on what would be its last try, recording a transient failed try that never reached the provider', async () => {
    const metrics = createMetrics();
    const outage = createOutageProvider(db.pool);
    set = withBreakers(outage.channels, FAST, metrics);
    set.breakers.get('flaky')!.open();
    const [id] = await withTransaction(db.pool, (tx) => insertDeliveries(tx, [alert('ann@example.test')]));
    const deps = { pool: db.pool, channels: set.channels, clock: systemClock, log, metrics };

    const err = await processDelivery(deps, id!, 3, 4).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DeliveryDeferredError);
    expect((err as DeliveryDeferredError).retryAfterMs).toBeGreaterThan(0);
    expect(outage.calls(id!)).toBe(0);
    const { row, tries } = await deliveryState(db, id!);
    expect(row).toMatchObject({ status: 'pending', attempts: 1, error_class: 'transient', last_error: 'flaky circuit open' });
    expect(tries).toEqual([expect.objectContaining({ outcome: 'failed', error_class: 'transient', error: 'flaky circuit open', provider: 'flaky' })]);
    expect(await metrics.registry.metrics()).toContain('pruuf_deliveries_total{channel="email",kind="alert",outcome="retry"} 1');
  });
});

describe.each(['redis', 'postgres'] as const)('a provider outage past the breaker threshold on the %s queue backend', (backend) => {
  let db: TestDatabase;
  let queues: QueueSystem;
  let outage: OutageProvider;
  let worker: StartedWorker;
  const metrics = createMetrics();
  const JOBS = { backoffDelayMs: 10, attempts: 3 };

  beforeAll(async () => {
    db = await createTestDatabase();
    const config = testConfig(backend, db.url);
    queues = new QueueSystem({ backend, redisUrl: config.REDIS_URL, databaseUrl: db.url, prefix: config.QUEUE_PREFIX }, log);
    outage = createOutageProvider(db.pool);
    worker = await startWorker({
      pool: db.pool, queues, clock: systemClock, log, metrics, channels: outage.channels, deliveryJobs: JOBS,
      breakers: { resetTimeoutMs: 200, volumeThreshold: 2, timeoutMs: 2000 },
    });
  });
  afterAll(async () => {
    await queues.close(); // shuts the breakers down with the delivery worker
    worker.shutdownBreakers();
    await db.drop();
  });

  it('keeps the alert pending while the provider is down and sends it exactly once when it recovers', async () => {
    const breaker: ProviderBreaker = worker.breakers.get('flaky')!;
    outage.setDown(true);
    const [id] = await withTransaction(db.pool, (tx) => insertDeliveries(tx, [alert('bob@example.test')]));
    await enqueueDeliveries(db.pool, queues, [id!], log, JOBS);

    // Twice as many tries as the job has attempts: an outage never spends them.
    await waitFor(async () => ((await deliveryState(db, id!)).tries.length >= 2 * JOBS.attempts ? true : undefined));
    const down = await deliveryState(db, id!);
    expect(down.row.status).toBe('pending');
    expect(down.tries.every((t) => t.outcome === 'failed' && t.error_class === 'transient')).toBe(true);
    expect(breaker.closed).toBe(false);
    expect(await metrics.registry.metrics()).toMatch(/pruuf_breaker_state\{provider="flaky"\} [12]\n/);
    expect(outage.accepted(id!)).toBe(0);

    outage.setDown(false);
    await waitFor(async () => ((await deliveryState(db, id!)).row.status === 'pending' ? undefined : true));
    await new Promise((r) => setTimeout(r, 300)); // a duplicate would have gone out by now
    const up = await deliveryState(db, id!);
    expect(up.row).toMatchObject({ status: 'sent', provider: 'flaky', error_class: null });
    expect(outage.accepted(id!)).toBe(1);
    const { rows: [box] } = await db.pool.query<{ n: number }>('select count(*)::int as n from dev_outbox where delivery_id = $1', [id]);
    expect(box!.n).toBe(1);
    expect(up.tries.filter((t) => t.outcome === 'accepted')).toHaveLength(1);
    expect(up.tries.at(-1)!.outcome).toBe('accepted');
    expect(breaker.closed).toBe(true);

    const text = await metrics.registry.metrics();
    expect(text).toContain(gauge('flaky', 0));
    expect(text).toContain('pruuf_deliveries_total{channel="email",kind="alert",outcome="sent"} 1');
    expect(text).toMatch(/pruuf_deliveries_total\{channel="email",kind="alert",outcome="retry"\} \d+/);
    expect(text).toContain('pruuf_delivery_latency_seconds_count{channel="email",kind="alert"} 1');
  });
});
