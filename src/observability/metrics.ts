import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

/** One registry per process role (tests build many apps in one process, each with its own). */
export type Metrics = ReturnType<typeof createMetrics>;

export function createMetrics() {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'pruuf_' });
  return {
    registry,
    httpDuration: new Histogram({
      name: 'pruuf_http_request_duration_seconds',
      help: 'HTTP request duration by route template, method and status code',
      labelNames: ['method', 'route', 'status_code'] as const,
      buckets: [0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
      registers: [registry],
    }),
    jobsProcessed: new Counter({
      name: 'pruuf_jobs_processed_total',
      help: 'Queue jobs processed by queue and outcome',
      labelNames: ['queue', 'outcome'] as const,
      registers: [registry],
    }),
    workerHeartbeat: new Gauge({
      name: 'pruuf_worker_last_heartbeat_seconds',
      help: 'Unix time of the last heartbeat job this process ran',
      registers: [registry],
    }),
    breakerState: new Gauge({
      name: 'pruuf_breaker_state',
      help: 'Circuit breaker state per provider: 0 closed, 1 half-open, 2 open',
      labelNames: ['provider'] as const,
      registers: [registry],
    }),
    deliveries: new Counter({
      name: 'pruuf_deliveries_total',
      help: 'Delivery tries by channel, kind and outcome (sent, failed, retry, skipped)',
      labelNames: ['channel', 'kind', 'outcome'] as const,
      registers: [registry],
    }),
    providerCalls: new Counter({
      name: 'pruuf_provider_calls_total',
      help: 'Calls to a provider (tries that reached its breaker) by outcome (accepted, failed) and error class',
      labelNames: ['provider', 'outcome', 'error_class'] as const,
      registers: [registry],
    }),
    providerCallSeconds: new Histogram({
      name: 'pruuf_provider_call_seconds',
      help: 'Duration of one provider call, accepted or failed',
      labelNames: ['provider', 'outcome'] as const,
      buckets: [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 15],
      registers: [registry],
    }),
    deliveryLatency: new Histogram({
      name: 'pruuf_delivery_latency_seconds',
      help: 'Time from a delivery row being created to the provider accepting the message',
      labelNames: ['channel', 'kind'] as const,
      buckets: [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300],
      registers: [registry],
    }),
  };
}
