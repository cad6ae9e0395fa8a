import { createHash, timingSafeEqual } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import type pg from 'pg';
import { z } from 'zod';
import { withTransaction } from '../../db/pool.js';
import { countStatus, recordStatus, type StatusMetrics } from '../../delivery/carrier-status.js';
import { AppError, validation } from '../../http/errors.js';
import { rawBodyRoutes } from '../../http/raw-body.js';
import { ErrorEnvelopeSchema } from '../../http/schemas.js';
import type { Logger } from '../../observability/logger.js';
import { POSTMARK_PROVIDER } from './index.js';
import { deliveryIdOf, isApplied, PostmarkEvent, statusWordOf, toStatusReport } from './events.js';

/**
 * POST /webhooks/postmark/events: Postmark's webhooks (Delivery, Bounce, SpamComplaint, …), one
 * JSON record per request, authenticated by the HTTP basic auth we put in the webhook URL.
 *
 * Refusals are 401 (no credentials configured, missing or wrong basic auth) and change nothing;
 * an authenticated body that is not a Postmark record is 400; an oversized body is 413 before any
 * other work. A record is applied in one transaction and at most once, so when the database
 * fails the 5xx makes Postmark retry, and a retry of an applied record is a no-op.
 */

export const POSTMARK_WEBHOOK_PATH = '/webhooks/postmark/events';

export type PostmarkWebhookDeps = {
  pool: pg.Pool;
  /** POSTMARK_WEBHOOK_USER and POSTMARK_WEBHOOK_PASSWORD; unset refuses every request. */
  credentials: { user: string; password: string } | undefined;
  /** WEBHOOK_BODY_LIMIT_BYTES. */
  bodyLimit: number;
  log?: Logger;
  /** pruuf_delivery_statuses_total. */
  metrics?: StatusMetrics;
};

const Outcome = z.object({
  record_type: z.string().describe("Postmark's RecordType"),
  outcome: z.enum(['applied', 'stale', 'duplicate', 'ignored'])
    .describe('applied: the delivery shows it; stale: kept in the history, the delivery already shows a later word; duplicate: already applied (a Postmark retry); ignored: not a delivery record, or not for a message of ours'),
  email_disabled: z.boolean().describe("the contact's email was turned off (hard bounce, inactive address, spam complaint)"),
});
type Outcome = z.infer<typeof Outcome>;

const digest = (value: string) => createHash('sha256').update(value, 'utf8').digest();

const refused = (message: string) =>
  new AppError(401, 'UNAUTHENTICATED', message, undefined, { 'www-authenticate': 'Basic realm="postmark-webhooks", charset="UTF-8"' });

/** Basic auth against the configured pair; digests of equal length, compared in constant time. */
function authenticate(expected: Buffer | undefined, header: string | string[] | undefined): void {
  if (expected === undefined) {
    throw refused('the Postmark webhook is not configured: set POSTMARK_WEBHOOK_USER and POSTMARK_WEBHOOK_PASSWORD, and put them in the webhook URL');
  }
  const m = typeof header === 'string' ? /^Basic\s+([A-Za-z0-9+/=_-]{1,1000})\s*$/i.exec(header) : null;
  if (m === null) throw refused('missing HTTP basic auth: the Postmark webhook URL must carry POSTMARK_WEBHOOK_USER and POSTMARK_WEBHOOK_PASSWORD');
  const presented = digest(Buffer.from(m[1]!, 'base64').toString('utf8'));
  if (!timingSafeEqual(presented, expected)) throw refused('the basic auth of this Postmark webhook does not match POSTMARK_WEBHOOK_USER / POSTMARK_WEBHOOK_PASSWORD');
}

function parseRecord(body: Buffer): PostmarkEvent {
  let json: unknown;
  try {
    json = JSON.parse(body.toString('utf8'));
  } catch {
    throw validation('request body is not valid JSON');
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) throw validation('request body must be one Postmark webhook record (a JSON object)');
  const parsed = PostmarkEvent.safeParse(json);
  if (!parsed.success) {
    const issues = parsed.error.issues.slice(0, 20).map((i) => ({ path: ['body', ...i.path].join('.'), message: i.message }));
    throw validation(`${issues[0]!.path}: ${issues[0]!.message}`, { issues });
  }
  return parsed.data;
}

/**
 * Our mail always carries delivery_id in Metadata and the row exists before the send, so a
 * record is matched by our id even when it beats our record of the send; one without it is not
 * ours (another sender on the same Postmark server) and is not held.
 */
async function applyRecord(deps: PostmarkWebhookDeps, e: PostmarkEvent, now: Date): Promise<Outcome> {
  const base = { record_type: e.RecordType.slice(0, 64), email_disabled: false };
  if (!isApplied(e) || deliveryIdOf(e) === undefined) return { ...base, outcome: 'ignored' };
  const result = await withTransaction(deps.pool, (tx) => recordStatus(tx, toStatusReport(e, POSTMARK_PROVIDER, now), now));
  countStatus(deps.metrics, POSTMARK_PROVIDER, result.ref?.channel, statusWordOf(e), result.outcome, result.receiptSeconds);
  if (result.outcome === 'unknown' || result.outcome === 'held' || result.ref === undefined) return { ...base, outcome: 'ignored' };
  if (result.disabled) {
    deps.log?.info({ provider: POSTMARK_PROVIDER, contact_id: result.ref.contact_id, delivery_id: result.ref.id, record_type: e.RecordType, type: e.Type }, 'email turned off for a contact: the address cannot receive mail');
  }
  return { ...base, outcome: result.outcome, email_disabled: result.disabled };
}

export async function postmarkWebhookRoutes(app: FastifyInstance, deps: PostmarkWebhookDeps): Promise<void> {
  const expected = deps.credentials === undefined ? undefined : digest(`${deps.credentials.user}:${deps.credentials.password}`);
  if (expected === undefined) deps.log?.warn('POSTMARK_WEBHOOK_USER / POSTMARK_WEBHOOK_PASSWORD are not set: Postmark webhooks will be refused');

  await rawBodyRoutes(app, { bodyLimit: deps.bodyLimit }, (scope) => {
    scope.withTypeProvider<ZodTypeProvider>().post(POSTMARK_WEBHOOK_PATH, {
      schema: {
        tags: ['webhooks'],
        summary: 'Postmark webhook (HTTP basic auth): delivery, bounce and spam complaint records for our email',
        response: { 200: Outcome, 400: ErrorEnvelopeSchema, 401: ErrorEnvelopeSchema, 413: ErrorEnvelopeSchema, 415: ErrorEnvelopeSchema },
      },
    }, async (req) => {
      authenticate(expected, req.headers.authorization);
      if (!Buffer.isBuffer(req.body)) throw new AppError(415, 'UNSUPPORTED_MEDIA_TYPE', 'Postmark webhooks arrive as application/json');
      const record = parseRecord(req.body);
      const outcome = await applyRecord(deps, record, scope.clock());
      req.log.info({ provider: POSTMARK_PROVIDER, ...outcome }, 'Postmark webhook received');
      return outcome;
    });
  });
}
