import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import type pg from 'pg';
import { z } from 'zod';
import type { Config } from '../../config.js';
import { AppError, validation } from '../../http/errors.js';
import { ErrorEnvelopeSchema } from '../../http/schemas.js';
import type { Logger } from '../../observability/logger.js';
import type { StatusMetrics } from '../../delivery/carrier-status.js';
import { VONAGE_STATUS_PATH } from './index.js';
import { verifyVonageSignature } from './signature.js';
import { applyVonageReceipt } from './status.js';

export type VonageWebhookDeps = {
  pool: pg.Pool;
  log: Logger;
  config: Pick<Config, 'VONAGE_SIGNATURE_SECRET' | 'VONAGE_SIGNATURE_METHOD'>;
  /** pruuf_delivery_statuses_total. */
  metrics?: StatusMetrics;
};

/** Vonage's `timestamp` is when it signed the request: older than this is a replay (or lost). */
export const MAX_RECEIPT_AGE_MS = 5 * 60_000;
/** Clocks drift: a timestamp this far ahead of ours is still believed. */
export const MAX_CLOCK_SKEW_MS = 60_000;
/** A receipt is a few hundred bytes: anything far bigger is refused (413) before it is parsed. */
export const RECEIPT_BODY_LIMIT_BYTES = 16 * 1024;

const Receipt = z.looseObject({
  messageId: z.string().min(1).max(64).regex(/^[A-Za-z0-9-]+$/, 'a Vonage message id').describe('the Vonage message id (of this part of a long message)'),
  status: z.string().min(1).max(40).regex(/^[a-z_]+$/i).describe('delivered, expired, failed, rejected, accepted, buffered or unknown'),
  'err-code': z.string().max(10).regex(/^\d*$/).optional().describe('the DLR error code; 0: none'),
  'client-ref': z.string().max(100).optional().describe('our delivery id, sent as client-ref'),
  'message-timestamp': z.string().max(40).optional(),
  msisdn: z.string().max(32).optional(),
  timestamp: z.string().describe('Unix seconds when Vonage signed it; refused when older than 5 minutes'),
  nonce: z.string().optional(),
  sig: z.string().describe('the signature (VONAGE_SIGNATURE_METHOD with VONAGE_SIGNATURE_SECRET)'),
});
type Receipt = z.infer<typeof Receipt>;

const refused = (message: string) => new AppError(401, 'UNAUTHENTICATED', message);
const webhookErrors = { 400: ErrorEnvelopeSchema, 401: ErrorEnvelopeSchema };

/** The receipt's parameters as the strings Vonage signed; undefined when it is not a flat object of scalars. */
function flatParams(input: unknown): Record<string, string> | undefined {
  if (typeof input !== 'object' || input === null || Array.isArray(input) || Buffer.isBuffer(input)) return undefined;
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(input as Record<string, unknown>)) {
    if (typeof v === 'string') out[k] = v;
    else if (typeof v === 'number' || typeof v === 'boolean') out[k] = String(v);
    else return undefined;
  }
  return out;
}

/**
 * GET and POST /webhooks/vonage/status: Vonage's delivery receipts, in whichever form the
 * account's dashboard setting sends them (GET query, POST form, POST JSON). Each is checked
 * against its `sig` (signature secret and method from the dashboard) and its `timestamp` before
 * it is even validated, so a forged or replayed receipt learns nothing and changes nothing: 401
 * in the error envelope. Without VONAGE_SIGNATURE_SECRET every receipt is refused (nothing
 * unverified is applied). Like Twilio's callbacks, exempt from the per-IP rate limit.
 */
export function vonageWebhookRoutes(app: FastifyInstance, deps: VonageWebhookDeps): void {
  const r = app.withTypeProvider<ZodTypeProvider>();
  const secret = deps.config.VONAGE_SIGNATURE_SECRET;
  const method = deps.config.VONAGE_SIGNATURE_METHOD;

  const authenticate = async (req: FastifyRequest) => {
    if (secret === undefined) {
      throw refused('Vonage delivery receipts are not configured: set VONAGE_SIGNATURE_SECRET (and VONAGE_SIGNATURE_METHOD) to what the Vonage dashboard shows');
    }
    const params = flatParams((req.method === 'GET' ? req.query : req.body) ?? {});
    if (params === undefined) throw validation('a delivery receipt is a flat set of parameters');
    if (params.sig === undefined || params.sig === '') throw refused('missing sig: enable signed webhooks for the Vonage account');
    const timestamp = params.timestamp ?? '';
    if (!/^\d{1,12}$/.test(timestamp) || !verifyVonageSignature(params, secret, method)) {
      req.log.warn({ route: req.routeOptions.url }, 'Vonage delivery receipt with an invalid signature refused');
      throw refused(`the sig of this delivery receipt does not match (VONAGE_SIGNATURE_METHOD is ${method})`);
    }
    const ageMs = app.clock().getTime() - Number(timestamp) * 1000;
    if (ageMs > MAX_RECEIPT_AGE_MS || ageMs < -MAX_CLOCK_SKEW_MS) {
      throw refused('the timestamp of this delivery receipt is outside the accepted 5-minute window (a replayed or delayed request)');
    }
    // JSON numbers become the strings that were signed, for the schema below (a query is all strings).
    if (req.method !== 'GET') req.body = params;
  };

  const handle = async (req: FastifyRequest, receipt: Receipt) => {
    const errCode = receipt['err-code'];
    const clientRef = receipt['client-ref'];
    const outcome = await applyVonageReceipt(deps.pool, deps.log, {
      messageId: receipt.messageId,
      status: receipt.status,
      errorCode: errCode === undefined || errCode === '' || /^0+$/.test(errCode) ? null : errCode,
      clientRef: clientRef === undefined || clientRef === '' ? null : clientRef,
      messageTimestamp: receipt['message-timestamp'] ?? null,
    }, app.clock(), deps.metrics);
    req.log.debug({ message_id: receipt.messageId, status: receipt.status, outcome }, 'Vonage delivery receipt');
  };

  const common = { preValidation: authenticate, config: { rateLimit: false as const } };
  const summary = 'Vonage SMS delivery receipt (signed: sig + timestamp)';

  r.post(VONAGE_STATUS_PATH, {
    ...common,
    bodyLimit: RECEIPT_BODY_LIMIT_BYTES,
    schema: {
      tags: ['webhooks'], summary, consumes: ['application/json', 'application/x-www-form-urlencoded'],
      body: Receipt, response: { 204: z.null(), ...webhookErrors },
    },
  }, async (req, reply) => {
    await handle(req, req.body);
    return reply.code(204).send(null);
  });

  r.get(VONAGE_STATUS_PATH, {
    ...common,
    schema: { tags: ['webhooks'], summary, querystring: Receipt, response: { 204: z.null(), ...webhookErrors } },
  }, async (req, reply) => {
    await handle(req, req.query);
    return reply.code(204).send(null);
  });
}
