import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { FastifyInstance } from 'fastify';
import type pg from 'pg';
import { buildApp } from './app.js';
import { devOutboxChannels } from './channels/index.js';
import { CHANNEL_NAMES, type Channels } from './channels/types.js';
import { hasConfiguredAuthKey, resolveAuthKeys, resolveLinkSecret } from './auth/dev-secret.js';
import { createTokenVerifier } from './auth/jwt.js';
import { systemClock } from './clock.js';
import { ConfigError, loadConfig, type Config } from './config.js';
import { incidentSettings } from './incidents/settings.js';
import { createSupabaseUserDeleter } from './members/supabase-admin.js';
import { createLogger, type Logger } from './observability/logger.js';
import { createMetrics, type Metrics } from './observability/metrics.js';
import { metricsTokenMatches, opsMetricsCollector } from './ops/routes.js';
import { openRuntime } from './runtime.js';
import { startWorker } from './worker.js';

/**
 * Process bootstrap shared by `npm start` (API + worker in one process), `start:api` and
 * `start:worker`. SIGTERM/SIGINT: stop accepting, drain in-flight requests and jobs, exit 0.
 */
export type Roles = { api: boolean; worker: boolean };

/**
 * For harnesses that run the real processes against local provider fakes (tests/chaos): the
 * worker's channels, built once the database pool exists. Production entries pass nothing.
 */
export type BootOptions = { channels?: (pool: pg.Pool, config: Config, log: Logger) => Channels };

function configOrExit(): Config {
  try {
    return loadConfig();
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`pruuf: ${err.message}\nSee .env.example for every variable.\n`);
      process.exit(1);
    }
    throw err;
  }
}

/**
 * A worker-only process has no API to serve /metrics: this bare listener does, so its job,
 * delivery and breaker metrics can be scraped. Nothing else is served.
 */
function serveMetrics(metrics: Metrics, host: string, port: number, token: string | undefined, collect: () => Promise<void>): Promise<Server> {
  const server = createServer((req, res) => {
    const path = (req.url ?? '').split('?')[0];
    if (req.method === 'GET' && path === '/metrics' && token !== undefined && !metricsTokenMatches(req.headers.authorization, token)) {
      res.writeHead(401, { 'content-type': 'application/json', 'www-authenticate': 'Bearer realm="metrics"' })
        .end('{"error":{"code":"UNAUTHENTICATED","message":"the metrics bearer token (METRICS_TOKEN) is required"}}');
    } else if (req.method === 'GET' && path === '/metrics') {
      collect().then(() => metrics.registry.metrics()).then(
        (text) => res.writeHead(200, { 'content-type': metrics.registry.contentType }).end(text),
        () => res.writeHead(500, { 'content-type': 'application/json' }).end('{"error":{"code":"INTERNAL","message":"metrics unavailable"}}'),
      );
    } else if (req.method === 'GET' && path === '/healthz') {
      res.writeHead(200, { 'content-type': 'application/json' }).end('{"status":"ok"}');
    } else {
      res.writeHead(404, { 'content-type': 'application/json' }).end('{"error":{"code":"NOT_FOUND","message":"only /metrics and /healthz here"}}');
    }
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve(server));
  });
}

/**
 * Channels with no provider send into the dev outbox, where nobody reads them. In production a
 * worker with no real channel at all would "send" every alert to nobody: it refuses to start.
 * Each channel left without a provider is logged loudly and shown (metric, /readyz detail).
 */
function checkChannels(roles: Roles, options: BootOptions, config: Config, log: Logger, metrics: Metrics): void {
  const missing = devOutboxChannels(config);
  for (const name of CHANNEL_NAMES) metrics.channelWithoutProvider.set({ channel: name }, missing.includes(name) ? 1 : 0);
  if (config.NODE_ENV !== 'production') return;
  if (roles.worker && options.channels === undefined && missing.length === CHANNEL_NAMES.length) {
    process.stderr.write('pruuf: in production a worker needs a real provider for at least one alert channel '
      + '(FIREBASE_SERVICE_ACCOUNT_JSON/_PATH for push, TWILIO_ACCOUNT_SID or VONAGE_API_KEY for SMS, SENDGRID_API_KEY or POSTMARK_SERVER_TOKEN for email); '
      + 'without one, every alert would go to the dev outbox and reach nobody.\nSee .env.example for every variable.\n');
    process.exit(1);
  }
  for (const name of missing) {
    log.warn({ channel: name }, `no provider configured for ${name}: its messages go to the dev outbox and reach nobody (pruuf_channel_without_provider, /readyz channels)`);
  }
}

export async function boot(roles: Roles, options: BootOptions = {}): Promise<void> {
  const started = Date.now();
  const config = configOrExit();
  const log = createLogger(config.LOG_LEVEL);
  const metrics = createMetrics();
  checkChannels(roles, options, config, log, metrics);
  let app: FastifyInstance | undefined;
  let metricsServer: Server | undefined;
  let runtime: Awaited<ReturnType<typeof openRuntime>> | undefined;
  let stopping = false;

  async function shutdown(signal: string, code = 0): Promise<void> {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, 'shutting down: draining requests and jobs');
    const timer = setTimeout(() => {
      log.error('shutdown timed out; exiting');
      process.exit(1);
    }, config.SHUTDOWN_TIMEOUT_MS);
    timer.unref();
    try {
      await app?.close();
      await new Promise<void>((resolve) => (metricsServer === undefined ? resolve() : metricsServer.close(() => resolve())));
      await runtime?.close();
      log.info('shutdown complete');
      process.exit(code);
    } catch (err) {
      log.error({ err }, 'shutdown failed');
      process.exit(1);
    }
  }
  process.on('SIGTERM', () => void shutdown('SIGTERM'));
  process.on('SIGINT', () => void shutdown('SIGINT'));

  try {
    runtime = await openRuntime(config, log);
    const linkSecret = await resolveLinkSecret(config);
    if (roles.worker) {
      await startWorker({
        pool: runtime.pool, queues: runtime.queues, clock: systemClock, log, metrics,
        incidents: incidentSettings(config, linkSecret), sweepEveryMs: config.SWEEP_EVERY_MS, deliveryConcurrency: config.DELIVERY_CONCURRENCY,
        failoverAfterMs: config.PROVIDER_FAILOVER_MINUTES * 60_000, receiptTimeoutMs: config.RECEIPT_TIMEOUT_SECONDS * 1000, config,
        ...(options.channels === undefined ? {} : { channels: options.channels(runtime.pool, config, log) }),
      });
    }
    if (config.METRICS_PORT !== undefined) {
      const rt = runtime;
      const collect = roles.api ? opsMetricsCollector({ pool: rt.pool, queues: rt.queues, metrics }) : async () => undefined;
      metricsServer = await serveMetrics(metrics, config.METRICS_HOST, config.METRICS_PORT, config.METRICS_TOKEN, collect);
      log.info({ host: config.METRICS_HOST, port: (metricsServer.address() as AddressInfo).port }, 'metrics listening');
    } else if (roles.api && config.NODE_ENV === 'production' && config.METRICS_TOKEN === undefined) {
      log.warn('neither METRICS_PORT nor METRICS_TOKEN is set: /metrics is not served (docs/runbooks.md, README "Operations")');
    }
    if (roles.api) {
      if (!hasConfiguredAuthKey(config)) {
        log.warn('no SUPABASE_JWT_SECRET / SUPABASE_JWKS_URL set: using a development secret; `npm run token` prints a bearer token');
      }
      const keys = await resolveAuthKeys(config);
      app = await buildApp({
        config,
        pool: runtime.pool,
        queues: runtime.queues,
        migrations: runtime.migrations,
        verifyToken: createTokenVerifier(keys),
        linkSecret,
        logger: log,
        metrics,
        ...(config.SUPABASE_URL !== undefined && config.SUPABASE_SERVICE_ROLE_KEY !== undefined
          ? { deleteAuthUser: createSupabaseUserDeleter(config.SUPABASE_URL, config.SUPABASE_SERVICE_ROLE_KEY) }
          : {}),
      });
      await app.listen({ host: config.HOST, port: config.PORT });
    }
    log.info({ ms: Date.now() - started, roles, url: config.publicBaseUrl, queue_backend: config.queueBackend }, 'pruuf started');
  } catch (err) {
    log.fatal({ err }, 'startup failed');
    await shutdown('startup-failure', 1);
  }
}
