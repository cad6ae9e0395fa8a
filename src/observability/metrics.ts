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
    deliveryStatuses: new Counter({
      name: 'pruuf_delivery_statuses_total',
      help: 'Statuses providers reported for our messages (Twilio callbacks, SendGrid events, FCM answers) by provider, channel, the provider word '
        + '(delivered, undelivered, bounce, ...; other) and outcome (applied, stale: kept in the history only, held: before the send was recorded, '
        + 'duplicate, unknown: not our message)',
      labelNames: ['provider', 'channel', 'status', 'outcome'] as const,
      registers: [registry],
    }),
    providerCalls: new Counter({
      name: 'pruuf_provider_calls_total',
      help: 'Calls to a provider (tries that reached its breaker) by outcome (accepted, failed) and error class',
      labelNames: ['provider', 'outcome', 'error_class'] as const,
      registers: [registry],
    }),
    providerFailovers: new Counter({
      name: 'pruuf_provider_failovers_total',
      help: 'Deliveries moved from one provider of a channel to the next (a transient failure or an open breaker)',
      labelNames: ['channel', 'from', 'to'] as const,
      registers: [registry],
    }),
    receiptSeconds: new Histogram({
      name: 'pruuf_receipt_seconds',
      help: 'From a provider accepting an SMS or email to its delivered receipt, by provider and channel',
      labelNames: ['provider', 'channel'] as const,
      buckets: [1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600],
      registers: [registry],
    }),
    receiptTimeouts: new Counter({
      name: 'pruuf_receipt_timeouts_total',
      help: 'Alerts with no delivered receipt within RECEIPT_TIMEOUT_SECONDS, by the provider that had them and what was done (repeated: a copy through the next provider; none_left: every provider carried it already; not_open: the incident was resolved or acknowledged; dead_address: the carrier said the address cannot receive it)',
      labelNames: ['provider', 'channel', 'action'] as const,
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
    // What the user feels: from the moment an alert was due (deadline + grace, or the SOS) to a provider accepting it.
    deadlineToDelivery: new Histogram({
      name: 'pruuf_deadline_to_delivery_seconds',
      help: "Time from an incident's first alert being due (alert_at, or the SOS) to the provider accepting that alert, per channel",
      labelNames: ['channel'] as const,
      buckets: [1, 2.5, 5, 10, 15, 30, 60, 120, 300, 600, 1800],
      registers: [registry],
    }),
    sweepDuration: new Histogram({
      name: 'pruuf_sweep_duration_seconds',
      help: 'Duration of one sweep tick (claiming every due timer and writing its outbox rows)',
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers: [registry],
    }),
    sweepClaimed: new Histogram({
      name: 'pruuf_sweep_claimed_rows',
      help: 'Timer rows claimed in one sweep tick (missed deadlines, paused skips, escalation steps, ack timeouts, reminders)',
      buckets: [0, 1, 5, 25, 100, 250, 1000, 5000, 25000],
      registers: [registry],
    }),
    sweepRows: new Counter({
      name: 'pruuf_sweep_rows_total',
      help: 'Timer rows the sweeper claimed, by kind (missed, skipped_paused, step, ack_timeout, reminder) and deliveries it created',
      labelNames: ['kind'] as const,
      registers: [registry],
    }),
    sweepItemFailures: new Counter({
      name: 'pruuf_sweep_item_failures_total',
      help: 'Items (schedules, incidents) a sweep lane could not process and set aside with backoff, by lane; the rest of their batch went on',
      labelNames: ['lane'] as const,
      registers: [registry],
    }),
    sweepLaneErrors: new Counter({
      name: 'pruuf_sweep_lane_errors_total',
      help: 'Sweep ticks in which a whole lane failed (database unreachable mid-batch, or a failure not pinned on one item); the other lanes still ran',
      labelNames: ['lane'] as const,
      registers: [registry],
    }),
    sweepFailing: new Gauge({
      name: 'pruuf_sweep_failing_items',
      help: 'Items set aside after failing, by lane (retried with backoff), as of the last audit',
      labelNames: ['lane'] as const,
      registers: [registry],
    }),
    channelWithoutProvider: new Gauge({
      name: 'pruuf_channel_without_provider',
      help: '1 for each channel (push, sms, email, voice) with no provider configured: its messages go to the dev outbox, nobody receives them',
      labelNames: ['channel'] as const,
      registers: [registry],
    }),
    sweepQuarantined: new Gauge({
      name: 'pruuf_sweep_quarantined_items',
      help: 'Items that failed 3 times or more in a row, by lane, as of the last audit: an operator should look (docs/runbooks.md)',
      labelNames: ['lane'] as const,
      registers: [registry],
    }),
    queueRestored: new Counter({
      name: 'pruuf_queue_restored_total',
      help: 'Times this worker found the queue had lost its jobs (Redis restarted empty, queue tables emptied) and restored its schedulers and pending deliveries',
      registers: [registry],
    }),
    queueJobs: new Gauge({
      name: 'pruuf_queue_jobs',
      help: 'Jobs per queue and state (waiting, active, delayed, failed, prioritized) at the last collection',
      labelNames: ['queue', 'state'] as const,
      registers: [registry],
    }),
    queueOldestWaiting: new Gauge({
      name: 'pruuf_queue_oldest_waiting_seconds',
      help: 'Age of the oldest job waiting to be picked up, per queue (0: none waiting)',
      labelNames: ['queue'] as const,
      registers: [registry],
    }),
    overdueTimers: new Gauge({
      name: 'pruuf_overdue_timers',
      help: 'Timers overdue by more than the auditor tolerance, by kind (missed_deadline, escalation_step, ack_expiry, reminder, pending_delivery)',
      labelNames: ['kind'] as const,
      registers: [registry],
    }),
    oldestOverdueSeconds: new Gauge({
      name: 'pruuf_oldest_overdue_timer_seconds',
      help: 'How late the most overdue timer of each kind is (0: none overdue)',
      labelNames: ['kind'] as const,
      registers: [registry],
    }),
    oldestPendingDelivery: new Gauge({
      name: 'pruuf_oldest_pending_delivery_seconds',
      help: 'Age of the oldest delivery still pending (0: none)',
      registers: [registry],
    }),
    auditorOk: new Gauge({
      name: 'pruuf_auditor_ok',
      help: 'Whether the last auditor run found every timer on schedule (1) or not (0)',
      registers: [registry],
    }),
    auditorLastRun: new Gauge({
      name: 'pruuf_auditor_last_run_timestamp_seconds',
      help: 'Unix time of the last auditor run, whatever it found',
      registers: [registry],
    }),
    auditorLastSuccess: new Gauge({
      name: 'pruuf_auditor_last_success_timestamp_seconds',
      help: 'Unix time of the last auditor run that found every timer on schedule (0: never)',
      registers: [registry],
    }),
    heartbeatCalls: new Counter({
      name: 'pruuf_auditor_heartbeat_calls_total',
      help: 'Calls of HEARTBEAT_URL after a passing audit, by outcome (ok, failed)',
      labelNames: ['outcome'] as const,
      registers: [registry],
    }),
    retentionPurged: new Counter({
      name: 'pruuf_retention_purged_total',
      help: 'Rows the retention job purged, by what (delivery_payloads, check_in_locations, ...)',
      labelNames: ['what'] as const,
      registers: [registry],
    }),
    retentionFailures: new Counter({
      name: 'pruuf_retention_failures_total',
      help: 'Retention purges that failed, by what they purge; the other purges of the run still ran',
      labelNames: ['what'] as const,
      registers: [registry],
    }),
    retentionLastRun: new Gauge({
      name: 'pruuf_retention_last_run_timestamp_seconds',
      help: 'Unix time the retention job last finished',
      registers: [registry],
    }),
  };
}
