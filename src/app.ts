import { randomUUID } from 'node:crypto';
import Fastify, { type FastifyBaseLogger, type FastifyInstance, type FastifyReply } from 'fastify';
import cors from '@fastify/cors';
import formbody from '@fastify/formbody';
import helmet from '@fastify/helmet';
import rateLimit from '@fastify/rate-limit';
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import { jsonSchemaTransform, jsonSchemaTransformObject, serializerCompiler, validatorCompiler } from 'fastify-type-provider-zod';
import type pg from 'pg';
import type { Config } from './config.js';
import { installAuth } from './auth/plugin.js';
import type { TokenVerifier } from './auth/jwt.js';
import { systemClock, type Clock } from './clock.js';
import type { Migration } from './db/migrate.js';
import { clientErrorHandler, installErrorHandlers } from './http/errors-install.js';
import { rejectNulCharacters } from './http/input-guards.js';
import { AppError, envelope } from './http/errors.js';
import { configuredProviders, devOutboxChannels } from './channels/index.js';
import { contactRoutes } from './contacts/routes.js';
import { devOutboxRoutes } from './delivery/routes.js';
import { invitationRoutes } from './contacts/invitation-routes.js';
import { memberRoutes } from './members/routes.js';
import { phoneRoutes } from './members/phone-routes.js';
import { deviceRoutes } from './devices/routes.js';
import { billingRoutes } from './billing/routes.js';
import { planSettings } from './billing/entitlements.js';
import { ackRoutes } from './incidents/ack-routes.js';
import { postmarkWebhookRoutes } from './channels/email-postmark/webhook.js';
import { sendgridWebhookRoutes } from './channels/email-sendgrid/webhook.js';
import { incidentRoutes } from './incidents/routes.js';
import { incidentSettings } from './incidents/settings.js';
import { checkInRoutes } from './checkins/routes.js';
import { pauseRoutes } from './schedules/pause-routes.js';
import { scheduleRoutes } from './schedules/routes.js';
import { timeZonesOrLater, type TimeZones } from './schedules/zones.js';
import { watchingRoutes } from './contacts/watching.js';
import { twilioWebhookRoutes } from './channels/sms-twilio/webhook-routes.js';
import { vonageWebhookRoutes } from './channels/sms-vonage/webhook-routes.js';
import { voiceWebhookRoutes } from './channels/voice-twilio/routes.js';
import { vonageVoiceWebhookRoutes } from './channels/voice-vonage/routes.js';
import type { AuthUserDeleter } from './members/supabase-admin.js';
import { loggerOptions, type Logger } from './observability/logger.js';
import { createMetrics, type Metrics } from './observability/metrics.js';
import { opsRoutes } from './ops/routes.js';
import { auditRoutes } from './audit/routes.js';
import type { QueueSystem } from './queue/index.js';

export type AppDeps = {
  config: Config;
  pool: pg.Pool;
  queues: QueueSystem;
  verifyToken: TokenVerifier;
  /** Signs and verifies the links in messages (resolveLinkSecret). */
  linkSecret: string;
  migrations: Migration[];
  clock?: Clock;
  metrics?: Metrics;
  /** A ready logger (server) or none (tests: silent unless LOG_LEVEL says otherwise). */
  logger?: Logger;
  deleteAuthUser?: AuthUserDeleter;
  /** Serve GET /dev/outbox. Default: when some channel has no real provider configured. */
  devOutbox?: boolean;
  /** The time zones requests may name. Default: loaded from the database (pg_timezone_names) here, once. */
  timeZones?: TimeZones;
};

const REQUEST_ID = /^[A-Za-z0-9._:-]{1,64}$/;

/** The Fastify instance: the server and every test build exactly this. */
export async function buildApp(deps: AppDeps): Promise<FastifyInstance> {
  const { config } = deps;
  const metrics = deps.metrics ?? createMetrics();
  const clock = deps.clock ?? systemClock;
  // Before any route: their validators accept only zones this database knows.
  const zones = deps.timeZones ?? (await timeZonesOrLater(deps.pool, (err) =>
    (deps.logger ?? console).warn?.({ err: { message: err.message } }, 'could not read the time zones from the database; checking with luxon until it can')));

  const app = Fastify({
    ...(deps.logger !== undefined ? { loggerInstance: deps.logger as FastifyBaseLogger } : { logger: loggerOptions(config.LOG_LEVEL) }),
    bodyLimit: config.BODY_LIMIT_BYTES,
    requestTimeout: config.REQUEST_TIMEOUT_MS,
    connectionTimeout: config.REQUEST_TIMEOUT_MS,
    // Node enforces requestTimeout/headersTimeout only when it sweeps its connections (every 30 s
    // by default), so a client dribbling a byte at a time would hold a socket for up to 30 s more.
    http: {
      connectionsCheckingInterval: Math.max(250, Math.min(5000, Math.floor(config.REQUEST_TIMEOUT_MS / 4))),
      headersTimeout: Math.min(10_000, config.REQUEST_TIMEOUT_MS),
      requestTimeout: config.REQUEST_TIMEOUT_MS,
    },
    keepAliveTimeout: 72_000,
    clientErrorHandler,
    trustProxy: config.TRUST_PROXY.length === 0 ? false : config.TRUST_PROXY,
    return503OnClosing: true,
    requestIdHeader: false, // genReqId reads x-request-id itself, accepting only sane values
    genReqId: (req) => {
      const incoming = req.headers['x-request-id'];
      return typeof incoming === 'string' && REQUEST_ID.test(incoming) ? incoming : randomUUID();
    },
    routerOptions: { maxParamLength: 500, ignoreTrailingSlash: true },
    // The router's own refusals (a malformed percent-escape, an over-long parameter) come before
    // any route and its error handler: they leave in the envelope too, without echoing the path,
    // which may hold a signed link.
    frameworkErrors: (err, _req, reply) => {
      const tooLong = err.code === 'FST_ERR_MAX_PARAM_LENGTH';
      void (reply as FastifyReply).code(tooLong ? 414 : 400).send(tooLong ? envelope('URI_TOO_LONG', 'a path parameter is too long') : envelope('VALIDATION_ERROR', 'the URL is not valid (a malformed percent-escape)'));
    },
  });
  app.setValidatorCompiler(validatorCompiler);
  app.setSerializerCompiler(serializerCompiler);
  app.decorate('clock', clock);

  app.addHook('onRequest', async (req, reply) => {
    void reply.header('x-request-id', req.id);
    // Answers here are personal, and the contact pages' URLs are bearer links: no cache keeps
    // them (helmet already sends Referrer-Policy: no-referrer, so no link leaks on to other sites).
    void reply.header('cache-control', 'no-store');
  });
  app.addHook('onResponse', async (req, reply) => {
    metrics.httpDuration.observe(
      { method: req.method, route: req.routeOptions.url ?? 'unmatched', status_code: String(reply.statusCode) },
      reply.elapsedTime / 1000,
    );
  });

  await app.register(helmet, {
    // The HTML pages we serve are our own, small and script-free; swagger-ui sets its own CSP.
    contentSecurityPolicy: { useDefaults: true, directives: { 'form-action': ["'self'"] } },
    crossOriginResourcePolicy: { policy: 'same-site' },
  });
  // HTML forms on the contact pages post urlencoded bodies (and Twilio webhooks will).
  await app.register(formbody, { bodyLimit: 16 * 1024 });
  await app.register(rateLimit, {
    global: true,
    max: config.RATE_LIMIT_IP_PER_MINUTE,
    timeWindow: 60_000,
    keyGenerator: (req) => `ip:${req.ip}`,
    errorResponseBuilder: (_req, ctx) => new AppError(429, 'RATE_LIMITED', `too many requests from this address; retry in ${Math.ceil(ctx.ttl / 1000)} s`),
  });
  installErrorHandlers(app);
  rejectNulCharacters(app);
  // After the error handler: a route keeps the handler in force when it is added, and the CORS
  // preflight route must answer malformed requests in the envelope like every other route.
  await app.register(cors, { origin: config.corsOrigins, methods: ['GET', 'POST', 'PATCH', 'DELETE'], maxAge: 600 });
  await app.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: { title: 'Pruuf API', version: '1.0.0', description: 'Check-in deadlines with escalating alerts to emergency contacts.' },
      components: { securitySchemes: { bearerAuth: { type: 'http', scheme: 'bearer', bearerFormat: 'JWT' } } },
    },
    transform: jsonSchemaTransform,
    transformObject: jsonSchemaTransformObject,
  });
  await app.register(swaggerUi, { routePrefix: '/docs', staticCSP: true });

  installAuth(app, deps.verifyToken, config.RATE_LIMIT_MEMBER_PER_MINUTE);

  app.get('/openapi.json', { schema: { hide: true }, config: { rateLimit: false } }, async () => app.swagger());
  opsRoutes(app, {
    pool: deps.pool, queues: deps.queues, metrics, migrations: deps.migrations, probeRatePerMinute: config.PROBE_RATE_PER_MINUTE,
    devOutbox: devOutboxChannels(config),
    providers: configuredProviders(config),
    metricsAccess: config.METRICS_TOKEN !== undefined ? { mode: 'token', token: config.METRICS_TOKEN }
      : config.METRICS_PORT !== undefined || config.NODE_ENV === 'production' ? { mode: 'elsewhere' } : { mode: 'open' },
  });
  memberRoutes(app, { pool: deps.pool, zones, deleteAuthUser: deps.deleteAuthUser });
  phoneRoutes(app, { pool: deps.pool, queues: deps.queues, log: app.log as unknown as Logger, linkSecret: deps.linkSecret });
  deviceRoutes(app, { pool: deps.pool });
  auditRoutes(app, { pool: deps.pool });
  await billingRoutes(app, { pool: deps.pool, config });
  const links = { publicBaseUrl: config.publicBaseUrl, linkSecret: deps.linkSecret, invitationTtlDays: config.INVITATION_TTL_DAYS };
  const plans = planSettings(config);
  const appLog = app.log as unknown as Logger;
  contactRoutes(app, { pool: deps.pool, queues: deps.queues, log: appLog, links, plans });
  invitationRoutes(app, { pool: deps.pool, linkSecret: deps.linkSecret });
  scheduleRoutes(app, { pool: deps.pool, zones });
  pauseRoutes(app, { pool: deps.pool });
  checkInRoutes(app, { pool: deps.pool, queues: deps.queues, log: appLog, linkSecret: deps.linkSecret });
  watchingRoutes(app, { pool: deps.pool });
  twilioWebhookRoutes(app, { pool: deps.pool, queues: deps.queues, log: appLog, config, metrics });
  vonageWebhookRoutes(app, { pool: deps.pool, log: appLog, config, metrics });
  const incidents = { pool: deps.pool, queues: deps.queues, log: appLog, settings: incidentSettings(config, deps.linkSecret) };
  incidentRoutes(app, incidents);
  ackRoutes(app, { ...incidents, linkSecret: deps.linkSecret });
  voiceWebhookRoutes(app, { ...incidents, linkSecret: deps.linkSecret, config, metrics });
  await vonageVoiceWebhookRoutes(app, { ...incidents, linkSecret: deps.linkSecret, config, metrics });
  await sendgridWebhookRoutes(app, { pool: deps.pool, publicKey: config.SENDGRID_WEBHOOK_PUBLIC_KEY, bodyLimit: config.WEBHOOK_BODY_LIMIT_BYTES, log: appLog, metrics });
  await postmarkWebhookRoutes(app, {
    pool: deps.pool, bodyLimit: config.WEBHOOK_BODY_LIMIT_BYTES, log: appLog, metrics,
    credentials: config.POSTMARK_WEBHOOK_USER === undefined || config.POSTMARK_WEBHOOK_PASSWORD === undefined
      ? undefined : { user: config.POSTMARK_WEBHOOK_USER, password: config.POSTMARK_WEBHOOK_PASSWORD },
  });
  // Never in production: the outbox shows every message, acknowledgement links included.
  if (config.NODE_ENV !== 'production' && (deps.devOutbox ?? devOutboxChannels(config).length > 0)) devOutboxRoutes(app, { pool: deps.pool });

  return app;
}

declare module 'fastify' {
  interface FastifyInstance {
    clock: Clock;
  }
}
