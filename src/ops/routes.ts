import { createHash, timingSafeEqual } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import type pg from 'pg';
import { CHANNEL_NAMES, type ChannelName } from '../channels/types.js';
import { pendingMigrations, type Migration } from '../db/migrate.js';
import type { Metrics } from '../observability/metrics.js';
import type { QueueSystem } from '../queue/index.js';
import { applyAuditorState, AUDIT_STALE_MS, readAuditorState, TIMER_KINDS, type AuditorState } from './auditor.js';
import { collectQueueMetrics } from './queue-metrics.js';
import { AppError, unauthenticated } from '../http/errors.js';
import { SWEEP_LANES_ALL, type SweepLane } from '../incidents/isolate.js';

const Check = z.object({ ok: z.boolean(), detail: z.string().optional() });
/**
 * The auditor's verdict on alerting. Detail only: readiness routes traffic to this API replica,
 * and taking replicas out because alerts run late (a worker problem) would also stop the
 * check-ins that resolve them. Late alerts page through pruuf_overdue_timers and the heartbeat.
 */
const Alerting = z.object({
  ok: z.boolean().nullable().describe('null: no audit has run yet'),
  stale: z.boolean().describe('the last audit is older than 3 minutes: no auditor is running'),
  checked_at: z.string().nullable(),
  last_success_at: z.string().nullable(),
  overdue: z.record(z.enum(TIMER_KINDS), z.number().int()),
  oldest_pending_delivery_seconds: z.number().int().nullable(),
  quarantined: z.record(z.enum(SWEEP_LANES_ALL), z.number().int())
    .describe('per sweep lane, items that failed 3+ times in a row and are retried with backoff (sweep_failures; docs/runbooks.md)'),
});

const Readiness = z
  .object({
    status: z.enum(['ready', 'not_ready']),
    checks: z.object({ database: Check, migrations: Check, queue: Check }),
    alerting: Alerting.optional(),
    channels: z.record(z.enum(['push', 'sms', 'email', 'voice']), z.enum(['provider', 'dev_outbox']))
      .describe('per channel: a real provider configured, or the dev outbox (nobody receives those messages)').optional(),
    providers: z.record(z.enum(CHANNEL_NAMES), z.array(z.string()))
      .describe('per channel: the configured providers in the order a delivery tries them (empty: the dev outbox)').optional(),
    error: z.object({ code: z.string(), message: z.string() }).optional(),
  })
  .meta({ id: 'Readiness' });

/**
 * Who may read /metrics on the API's port: 'open' (development and tests, nothing configured),
 * 'token' (METRICS_TOKEN: `Authorization: Bearer <token>`), or 'elsewhere' (served on METRICS_PORT
 * on a private address, or in production with neither configured: not on the public port at all).
 */
export type MetricsAccess = { mode: 'open' } | { mode: 'token'; token: string } | { mode: 'elsewhere' };

export type OpsDeps = {
  pool: pg.Pool; queues: QueueSystem; metrics: Metrics; migrations: Migration[];
  metricsAccess?: MetricsAccess;
  /** Channels with no provider (their messages go to the dev outbox), shown in /readyz. */
  devOutbox?: readonly ChannelName[];
  /** Each channel's configured providers in order, shown in /readyz. */
  providers?: Record<ChannelName, string[]>;
  /** Per address, per minute, for /healthz and /readyz each (kubelet probes come every few seconds). */
  probeRatePerMinute?: number;
};

const digest = (v: string) => createHash('sha256').update(v).digest();

/** True when the request's bearer token is the metrics token (compared in constant time). */
export function metricsTokenMatches(header: string | undefined, token: string): boolean {
  const given = /^Bearer (.+)$/.exec(header ?? '')?.[1];
  return given !== undefined && timingSafeEqual(digest(given), digest(token));
}

/**
 * The shared state /metrics shows (queues, the auditor's verdict), read at most once at a time:
 * concurrent scrapes share the read in flight, so a flood costs one read, not one per request.
 */
export function opsMetricsCollector(deps: Pick<OpsDeps, 'pool' | 'queues' | 'metrics'>): () => Promise<void> {
  let inFlight: Promise<void> | undefined;
  return () => {
    inFlight ??= Promise.all([
      collectQueueMetrics(deps.queues, deps.metrics),
      readAuditorState(deps.pool).then((state) => applyAuditorState(deps.metrics, state), () => undefined),
    ]).then(() => undefined).finally(() => { inFlight = undefined; });
    return inFlight;
  };
}

function alertingDetail(state: AuditorState, now: Date): z.infer<typeof Alerting> {
  return {
    ok: state.result?.ok ?? null,
    stale: state.checkedAt === null || now.getTime() - state.checkedAt.getTime() > AUDIT_STALE_MS,
    checked_at: state.checkedAt?.toISOString() ?? null,
    last_success_at: state.lastSuccessAt?.toISOString() ?? null,
    overdue: Object.fromEntries(TIMER_KINDS.map((k) => [k, state.result?.overdue[k]?.count ?? 0])) as Record<(typeof TIMER_KINDS)[number], number>,
    oldest_pending_delivery_seconds: state.result?.oldest_pending_delivery_seconds ?? null,
    quarantined: Object.fromEntries(SWEEP_LANES_ALL.map((l) => [l, state.result?.sweep_failures?.[l]?.quarantined ?? 0])) as Record<SweepLane, number>,
  };
}

async function check(fn: () => Promise<string | undefined>): Promise<z.infer<typeof Check>> {
  try {
    const detail = await fn();
    return detail === undefined ? { ok: true } : { ok: false, detail };
  } catch (err) {
    return { ok: false, detail: (err as Error).message.slice(0, 200) };
  }
}

export function opsRoutes(app: FastifyInstance, deps: OpsDeps): void {
  const r = app.withTypeProvider<ZodTypeProvider>();
  // Probes are cheap, but not free (readiness asks the database and the queue): a limit per
  // address of their own, far above any orchestrator's probing, keeps a flood from reaching them.
  const probeLimit = { config: { rateLimit: { max: deps.probeRatePerMinute ?? 600, timeWindow: 60_000 } } } as const;
  const collect = opsMetricsCollector(deps);
  const access = deps.metricsAccess ?? { mode: 'open' };
  let readiness: Promise<{ ready: boolean; body: Record<string, unknown> }> | undefined;

  r.get('/healthz', {
    ...probeLimit,
    schema: { tags: ['operations'], summary: 'Liveness: the process answers', response: { 200: z.object({ status: z.literal('ok') }) } },
  }, async () => ({ status: 'ok' as const }));

  /** One readiness check at a time: concurrent probes share the one in flight (never a stale answer). */
  const readinessNow = () => {
    readiness ??= (async () => {
      const detail: { alerting?: z.infer<typeof Alerting> | undefined } = {};
      const [database, migrations, queue] = await Promise.all([
        check(async () => {
          await deps.pool.query('select 1');
          return undefined;
        }),
        check(async () => {
          const pending = await pendingMigrations(deps.pool, deps.migrations);
          if (pending.length > 0) return `pending: ${pending.join(', ')}`;
          // Detail only: not being able to read it never makes the process unready.
          detail.alerting = await readAuditorState(deps.pool).then((state) => alertingDetail(state, app.clock()), () => undefined);
          return undefined;
        }),
        check(async () => {
          await deps.queues.ping();
          return undefined;
        }),
      ]);
      const ready = database.ok && migrations.ok && queue.ok;
      const channels = deps.devOutbox === undefined ? {}
        : { channels: Object.fromEntries(CHANNEL_NAMES.map((c) => [c, deps.devOutbox!.includes(c) ? 'dev_outbox' : 'provider'])) };
      return { ready, body: { status: ready ? ('ready' as const) : ('not_ready' as const), checks: { database, migrations, queue }, ...(detail.alerting === undefined ? {} : { alerting: detail.alerting }), ...channels, ...(deps.providers === undefined ? {} : { providers: deps.providers }) } };
    })().finally(() => { readiness = undefined; });
    return readiness;
  };

  r.get('/readyz', {
    ...probeLimit,
    schema: {
      tags: ['operations'],
      summary: 'Readiness: database and queue reachable, migrations applied',
      response: { 200: Readiness, 503: Readiness },
    },
  }, async (_req, reply) => {
    const { ready, body } = await readinessNow();
    if (ready) return body as z.infer<typeof Readiness>;
    void reply.header('retry-after', '5');
    return reply.code(503).send({ ...(body as z.infer<typeof Readiness>), error: { code: 'NOT_READY', message: 'a dependency is unavailable' } });
  });

  app.get('/metrics', { schema: { tags: ['operations'], summary: 'Prometheus metrics (METRICS_TOKEN bearer, or on METRICS_PORT)', produces: ['text/plain'] } }, async (req, reply) => {
    if (access.mode === 'elsewhere') throw new AppError(404, 'NOT_FOUND', 'metrics are not served on this port (see METRICS_PORT and METRICS_TOKEN)');
    if (access.mode === 'token' && !metricsTokenMatches(req.headers.authorization, access.token)) {
      void reply.header('www-authenticate', 'Bearer realm="metrics"');
      throw unauthenticated('the metrics bearer token (METRICS_TOKEN) is required');
    }
    // The auditor and the queues are shared by every process: each scrape of any replica shows
    // their current state (bounded: a backend that is down leaves the last values).
    await collect();
    void reply.header('content-type', deps.metrics.registry.contentType);
    return deps.metrics.registry.metrics();
  });
}
