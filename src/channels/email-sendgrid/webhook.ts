import type { KeyObject } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import type pg from 'pg';
import { z } from 'zod';
import { withTransaction, type Queryable } from '../../db/pool.js';
import { countStatus, recordStatus, type StatusMetrics, type StatusReport } from '../../delivery/carrier-status.js';
import { AppError, validation } from '../../http/errors.js';
import { rawBodyRoutes } from '../../http/raw-body.js';
import { ErrorEnvelopeSchema } from '../../http/schemas.js';
import type { Logger } from '../../observability/logger.js';
import { SENDGRID_PROVIDER } from './index.js';
import { DELIVERY_EVENTS, SendGridEventBatch, toStatusReport, type SendGridEvent } from './events.js';
import { loadSendGridPublicKey, SIGNATURE_HEADER, TIMESTAMP_HEADER, verifySendGridSignature } from './signature.js';

/**
 * POST /webhooks/sendgrid/events: SendGrid's signed event webhook.
 *
 * Refusals are 401 (no key configured, missing or wrong signature, timestamp outside the window)
 * and change nothing; a body that is signed but not a batch of events is 400; an oversized body
 * is 413 before any signature work. Each event is applied in its own transaction and at most
 * once (sg_event_id), so when the database fails mid-batch the 5xx makes SendGrid resend the
 * batch and only the events not yet applied take effect.
 */

export type SendGridWebhookDeps = {
  pool: pg.Pool;
  /** SENDGRID_WEBHOOK_PUBLIC_KEY; unset refuses every request. */
  publicKey: string | undefined;
  /** WEBHOOK_BODY_LIMIT_BYTES. */
  bodyLimit: number;
  log?: Logger;
  /** pruuf_delivery_statuses_total. */
  metrics?: StatusMetrics;
};

/** SendGrid's timestamp is the time it sent this request; older than this is a replay (or lost). */
export const MAX_EVENT_AGE_MS = 10 * 60_000;
/** Clocks drift: a timestamp this far ahead of ours is still believed. */
export const MAX_CLOCK_SKEW_MS = 60_000;

const Summary = z.object({
  received: z.number().int().describe('events in the batch'),
  applied: z.number().int().describe('delivery events recorded on a delivery'),
  duplicates: z.number().int().describe('events already applied earlier (SendGrid retries)'),
  ignored: z.number().int().describe('engagement events, and events for no delivery of ours'),
  email_disabled: z.number().int().describe('contacts whose email was turned off (hard bounce, invalid address)'),
});
type Summary = z.infer<typeof Summary>;

const refused = (message: string) => new AppError(401, 'UNAUTHENTICATED', message);

function headerOf(value: string | string[] | undefined): string | undefined {
  return typeof value === 'string' ? value : undefined;
}

/** Signature, then freshness; throws the refusal. */
function authenticate(key: KeyObject | undefined, headers: Record<string, string | string[] | undefined>, body: Buffer, now: Date): void {
  if (key === undefined) {
    throw refused('the SendGrid event webhook is not configured: set SENDGRID_WEBHOOK_PUBLIC_KEY to the verification key SendGrid shows');
  }
  const signature = headerOf(headers[SIGNATURE_HEADER]);
  const timestamp = headerOf(headers[TIMESTAMP_HEADER]);
  if (signature === undefined || timestamp === undefined) {
    throw refused('missing X-Twilio-Email-Event-Webhook-Signature or X-Twilio-Email-Event-Webhook-Timestamp header');
  }
  if (!/^\d{1,12}$/.test(timestamp) || !verifySendGridSignature(key, timestamp, body, signature)) {
    throw refused('the SendGrid event webhook signature does not match this request');
  }
  const ageMs = now.getTime() - Number(timestamp) * 1000;
  if (ageMs > MAX_EVENT_AGE_MS || ageMs < -MAX_CLOCK_SKEW_MS) {
    throw refused('the SendGrid event webhook timestamp is outside the accepted 10-minute window (a replayed or delayed request)');
  }
}

function parseBatch(body: Buffer): SendGridEvent[] {
  let json: unknown;
  try {
    json = JSON.parse(body.toString('utf8'));
  } catch {
    throw validation('request body is not valid JSON');
  }
  if (!Array.isArray(json)) throw validation('request body must be a JSON array of SendGrid events');
  const parsed = SendGridEventBatch.safeParse(json);
  if (!parsed.success) {
    const issues = parsed.error.issues.slice(0, 20).map((i) => ({ path: ['body', ...i.path].join('.'), message: i.message }));
    throw validation(`${issues[0]!.path}: ${issues[0]!.message}`, { issues });
  }
  return parsed.data;
}

type EventOutcome = 'applied' | 'duplicate' | 'ignored' | 'disabled';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/**
 * An event without our delivery_id is matched by its message id (the part of sg_message_id before
 * the first dot: the request's X-Message-Id). Messages sent in one request (sendMany: one
 * personalization each) share it, so when several deliveries have it the recipient's address
 * picks the one (a request carries an address at most once); when none has that address the
 * event matches no delivery rather than an arbitrary one of them.
 */
async function matchByMessage(tx: Queryable, report: StatusReport, email: string | undefined): Promise<StatusReport> {
  if ((report.deliveryId !== undefined && UUID.test(report.deliveryId)) || report.providerMessageId === undefined) return report;
  const { rows } = await tx.query<{ id: string; address: string }>(
    'select id, address from deliveries where provider = $1 and provider_message_id = $2',
    [report.provider, report.providerMessageId],
  );
  if (rows.length <= 1) return report;
  const to = email?.trim().toLowerCase();
  const mine = rows.filter((r) => to !== undefined && r.address.trim().toLowerCase() === to);
  return mine.length === 1 ? { ...report, deliveryId: mine[0]!.id } : { ...report, deliveryId: undefined, providerMessageId: undefined };
}

/**
 * Our mail always carries delivery_id (custom_args) and the row exists before the send, so an
 * event is matched by our id even when it beats our record of the send; one without it is not
 * ours (another system on the same account) and is not held.
 */
async function applyEvent(deps: SendGridWebhookDeps, e: SendGridEvent, now: Date): Promise<EventOutcome> {
  if (!DELIVERY_EVENTS.has(e.event)) return 'ignored';
  const result = await withTransaction(deps.pool, async (tx) => recordStatus(tx, await matchByMessage(tx, toStatusReport(e, SENDGRID_PROVIDER), e.email), now));
  countStatus(deps.metrics, SENDGRID_PROVIDER, result.ref?.channel, e.event, result.outcome, result.receiptSeconds);
  if (result.outcome === 'duplicate') return 'duplicate';
  if (result.outcome === 'unknown' || result.ref === undefined) return 'ignored';
  if (result.disabled) {
    deps.log?.info({ provider: SENDGRID_PROVIDER, contact_id: result.ref.contact_id, delivery_id: result.ref.id, event: e.event }, 'email turned off for a contact: the address cannot receive mail');
    return 'disabled';
  }
  return 'applied';
}

export async function sendgridWebhookRoutes(app: FastifyInstance, deps: SendGridWebhookDeps): Promise<void> {
  // A malformed key stops the start, naming the variable, rather than refusing every event later.
  const key = deps.publicKey === undefined ? undefined : loadSendGridPublicKey(deps.publicKey);
  if (key === undefined) deps.log?.warn('SENDGRID_WEBHOOK_PUBLIC_KEY is not set: SendGrid events will be refused');

  await rawBodyRoutes(app, { bodyLimit: deps.bodyLimit }, (scope) => {
    scope.withTypeProvider<ZodTypeProvider>().post('/webhooks/sendgrid/events', {
      schema: {
        tags: ['webhooks'],
        summary: 'SendGrid signed event webhook: delivery events for our email',
        response: { 200: Summary, 400: ErrorEnvelopeSchema, 401: ErrorEnvelopeSchema, 413: ErrorEnvelopeSchema, 415: ErrorEnvelopeSchema },
      },
    }, async (req) => {
      if (!Buffer.isBuffer(req.body)) throw new AppError(415, 'UNSUPPORTED_MEDIA_TYPE', 'SendGrid events arrive as application/json');
      const body = req.body;
      authenticate(key, req.headers, body, scope.clock());
      const events = parseBatch(body);
      const summary: Summary = { received: events.length, applied: 0, duplicates: 0, ignored: 0, email_disabled: 0 };
      // One at a time: events of one message come in order within a batch, and a failure stops
      // the batch so SendGrid's retry resumes it.
      for (const e of events) {
        const outcome = await applyEvent(deps, e, scope.clock());
        if (outcome === 'duplicate') summary.duplicates += 1;
        else if (outcome === 'ignored') summary.ignored += 1;
        else {
          summary.applied += 1;
          if (outcome === 'disabled') summary.email_disabled += 1;
        }
      }
      req.log.info({ provider: SENDGRID_PROVIDER, ...summary }, 'SendGrid events received');
      return summary;
    });
  });
}
