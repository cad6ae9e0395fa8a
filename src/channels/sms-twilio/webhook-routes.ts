import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import type pg from 'pg';
import twilio from 'twilio';
import { z } from 'zod';
import type { Config } from '../../config.js';
import { ErrorEnvelopeSchema } from '../../http/schemas.js';
import type { Logger } from '../../observability/logger.js';
import type { Metrics } from '../../observability/metrics.js';
import type { QueueSystem } from '../../queue/index.js';
import { handleInboundSms } from './inbound.js';
import { INBOUND_PATH, STATUS_CALLBACK_PATH } from './index.js';
import { twilioSignatureCheck } from './signature.js';
import { applyTwilioStatus } from './status.js';

export type TwilioWebhookDeps = {
  pool: pg.Pool;
  queues: QueueSystem;
  log: Logger;
  config: Pick<Config, 'TWILIO_AUTH_TOKEN' | 'publicBaseUrl'>;
  /** pruuf_delivery_statuses_total. */
  metrics?: Pick<Metrics, 'deliveryStatuses'>;
};

const Sid = z.string().regex(/^[A-Z]{2}[0-9a-f]{32}$/, 'a Twilio sid');
const StatusBody = z.looseObject({
  MessageSid: Sid,
  MessageStatus: z.string().min(1).max(40).regex(/^[a-z_]+$/i),
  ErrorCode: z.string().max(10).regex(/^\d*$/).optional(),
});
const InboundBody = z.looseObject({
  MessageSid: Sid,
  From: z.string().min(1).max(64),
  Body: z.string().max(2000).default(''),
});
const webhookErrors = { 400: ErrorEnvelopeSchema, 403: ErrorEnvelopeSchema };

const EMPTY_TWIML = new twilio.twiml.MessagingResponse().toString();
const E164 = /^\+[1-9]\d{6,14}$/;

/**
 * Twilio's webhooks. Each request is checked against X-Twilio-Signature (HMAC-SHA1 of the public
 * URL Twilio called plus the sorted form parameters) before its body is even validated, so a
 * forged request learns nothing and changes nothing. Registered only when TWILIO_AUTH_TOKEN is
 * set: without it no signature can be checked. The global per-IP rate limit does not apply:
 * every callback comes from Twilio's few addresses, and a busy alert produces bursts of them.
 */
export function twilioWebhookRoutes(app: FastifyInstance, deps: TwilioWebhookDeps): void {
  const authToken = deps.config.TWILIO_AUTH_TOKEN;
  if (authToken === undefined) return;
  const r = app.withTypeProvider<ZodTypeProvider>();

  const common = { preValidation: twilioSignatureCheck(authToken, deps.config.publicBaseUrl), config: { rateLimit: false as const } };

  r.post(STATUS_CALLBACK_PATH, {
    ...common,
    schema: {
      tags: ['webhooks'], summary: 'Twilio SMS status callback (X-Twilio-Signature)', consumes: ['application/x-www-form-urlencoded'],
      body: StatusBody, response: { 204: z.null(), ...webhookErrors },
    },
  }, async (req, reply) => {
    const b = req.body;
    const outcome = await applyTwilioStatus(deps.pool, deps.log, {
      messageSid: b.MessageSid, status: b.MessageStatus, errorCode: b.ErrorCode === undefined || b.ErrorCode === '' ? null : b.ErrorCode,
    }, app.clock(), deps.metrics);
    req.log.debug({ message_sid: b.MessageSid, status: b.MessageStatus, outcome }, 'Twilio status callback');
    return reply.code(204).send(null);
  });

  r.post(INBOUND_PATH, {
    ...common,
    schema: {
      tags: ['webhooks'], summary: 'Incoming SMS: STOP/START/HELP and check-in by reply (X-Twilio-Signature); answers TwiML',
      consumes: ['application/x-www-form-urlencoded'], produces: ['text/xml'],
      body: InboundBody, response: { 200: z.string().describe('TwiML <Response>, with a <Message> when there is a reply'), ...webhookErrors },
    },
  }, async (req, reply) => {
    const b = req.body;
    let twiml = EMPTY_TWIML;
    // Short codes and alphanumeric senders cannot be members, contacts or reply targets.
    if (E164.test(b.From)) {
      const result = await handleInboundSms({ pool: deps.pool, queues: deps.queues, log: deps.log, clock: app.clock }, { from: b.From, body: b.Body, messageSid: b.MessageSid });
      if (result.reply !== null) {
        const response = new twilio.twiml.MessagingResponse();
        response.message(result.reply);
        twiml = response.toString();
      }
    }
    return reply.code(200).type('text/xml; charset=utf-8').send(twiml);
  });
}
