import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import type pg from 'pg';
import { pendingMigrations, type Migration } from '../db/migrate.js';
import type { Metrics } from '../observability/metrics.js';
import type { QueueSystem } from '../queue/index.js';

const Check = z.object({ ok: z.boolean(), detail: z.string().optional() });
const Readiness = z
  .object({
    status: z.enum(['ready', 'not_ready']),
    checks: z.object({ database: Check, migrations: Check, queue: Check }),
    error: z.object({ code: z.string(), message: z.string() }).optional(),
  })
  .meta({ id: 'Readiness' });

export type OpsDeps = { pool: pg.Pool; queues: QueueSystem; metrics: Metrics; migrations: Migration[] };

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
  const noLimit = { config: { rateLimit: false } } as const;

  r.get('/healthz', {
    ...noLimit,
    schema: { tags: ['operations'], summary: 'Liveness: the process answers', response: { 200: z.object({ status: z.literal('ok') }) } },
  }, async () => ({ status: 'ok' as const }));

  r.get('/readyz', {
    ...noLimit,
    schema: {
      tags: ['operations'],
      summary: 'Readiness: database and queue reachable, migrations applied',
      response: { 200: Readiness, 503: Readiness },
    },
  }, async (_req, reply) => {
    const [database, migrations, queue] = await Promise.all([
      check(async () => {
        await deps.pool.query('select 1');
        return undefined;
      }),
      check(async () => {
        const pending = await pendingMigrations(deps.pool, deps.migrations);
        return pending.length === 0 ? undefined : `pending: ${pending.join(', ')}`;
      }),
      check(async () => {
        await deps.queues.ping();
        return undefined;
      }),
    ]);
    const ready = database.ok && migrations.ok && queue.ok;
    const body = { status: ready ? ('ready' as const) : ('not_ready' as const), checks: { database, migrations, queue } };
    if (ready) return body;
    void reply.header('retry-after', '5');
    return reply.code(503).send({ ...body, error: { code: 'NOT_READY', message: 'a dependency is unavailable' } });
  });

  app.get('/metrics', { ...noLimit, schema: { tags: ['operations'], summary: 'Prometheus metrics', produces: ['text/plain'] } }, async (_req, reply) => {
    void reply.header('content-type', deps.metrics.registry.contentType);
    return deps.metrics.registry.metrics();
  });
}
