import type { FastifyInstance, FastifyReply } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import type pg from 'pg';
import twilio from 'twilio';
import { z } from 'zod';
import type { Config } from '../../config.js';
import { enqueueDeliveries } from '../../delivery/outbox.js';
import { ErrorEnvelopeSchema } from '../../http/schemas.js';
import { callOpening, pressKey, type CallTurn } from '../../incidents/call-answers.js';
import type { IncidentSettings } from '../../incidents/engine.js';
import type { Logger } from '../../observability/logger.js';
import type { Metrics } from '../../observability/metrics.js';
import type { QueueSystem } from '../../queue/index.js';
import { twilioSignatureCheck } from '../sms-twilio/signature.js';
import { callDelivery, VOICE_GATHER_PATH, VOICE_STATUS_PATH, VOICE_TWIML_PATH } from './index.js';
import { applyCallStatus } from './status.js';

export type VoiceWebhookDeps = {
  pool: pg.Pool;
  queues: QueueSystem;
  log: Logger;
  settings: IncidentSettings;
  linkSecret: string;
  config: Pick<Config, 'TWILIO_AUTH_TOKEN' | 'publicBaseUrl'>;
  metrics?: Pick<Metrics, 'deliveryStatuses'>;
};

/** Seconds Twilio waits for a key after the alert was said. */
export const GATHER_TIMEOUT_SECONDS = 8;

const Query = z.object({ d: z.string().min(1).max(200) });
const Sid = z.string().regex(/^CA[0-9a-f]{32}$/, 'a Twilio call sid');
const AnsweredBy = z.string().max(40).regex(/^[a-z_]+$/).optional();
const TwimlBody = z.looseObject({ CallSid: Sid, AnsweredBy });
const GatherBody = z.looseObject({ CallSid: Sid, Digits: z.string().max(20).regex(/^[0-9*#]*$/).default('') });
const StatusBody = z.looseObject({
  CallSid: Sid,
  CallStatus: z.string().min(1).max(40).regex(/^[a-z-]+$/),
  AnsweredBy,
  CallDuration: z.coerce.number().int().min(0).max(86_400).optional(),
  ErrorCode: z.string().max(10).regex(/^\d*$/).optional(),
});
const errors = { 400: ErrorEnvelopeSchema, 403: ErrorEnvelopeSchema, 404: ErrorEnvelopeSchema };
const twimlOut = z.string().describe('TwiML <Response>');

/** The turn as TwiML: a one-key <Gather> around the alert (then a goodbye if no key came), or words and a hang-up. */
export function twimlOf(turn: CallTurn, gatherUrl: string): string {
  const r = new twilio.twiml.VoiceResponse();
  if (turn.kind === 'ask') {
    const language = turn.language as 'en-US';
    r.gather({ input: ['dtmf'], numDigits: 1, action: gatherUrl, method: 'POST', timeout: GATHER_TIMEOUT_SECONDS }).say({ language }, turn.say);
    r.say({ language }, turn.noKey);
  } else if (turn.kind === 'end') {
    r.say({ language: turn.language as 'en-US' }, turn.say);
  }
  r.hangup();
  return r.toString();
}

/**
 * What Twilio calls while a call is up: the TwiML of the answered call, the key pressed, and the
 * call's statuses. Each request is signed by Twilio (X-Twilio-Signature over PUBLIC_BASE_URL + the
 * path with its query) and names its delivery in a signed `call` token (`?d=`): a bad signature
 * is 403, a token we did not sign (or expired) 404, both in the error envelope, and nothing
 * changes. Registered only with TWILIO_AUTH_TOKEN. Exempt from the per-IP limit (Twilio's few addresses).
 */
export function voiceWebhookRoutes(app: FastifyInstance, deps: VoiceWebhookDeps): void {
  const authToken = deps.config.TWILIO_AUTH_TOKEN;
  if (authToken === undefined) return;
  const r = app.withTypeProvider<ZodTypeProvider>();
  const common = { preValidation: twilioSignatureCheck(authToken, deps.config.publicBaseUrl), config: { rateLimit: false as const } };
  const tags = ['webhooks'];

  const deliveryOf = (token: string): string => callDelivery(deps.linkSecret, token, app.clock());
  const gatherUrl = (token: string) => `${deps.config.publicBaseUrl}${VOICE_GATHER_PATH}?d=${token}`;
  const sendTwiml = (reply: FastifyReply, turn: CallTurn, token: string) =>
    reply.code(200).type('text/xml; charset=utf-8').send(twimlOf(turn, gatherUrl(token)));

  r.post(VOICE_TWIML_PATH, {
    ...common,
    schema: {
      tags, summary: 'Twilio fetches what an answered call says: the alert, and a one-key question (X-Twilio-Signature)',
      consumes: ['application/x-www-form-urlencoded'], produces: ['text/xml'], querystring: Query, body: TwimlBody, response: { 200: twimlOut, ...errors },
    },
  }, async (req, reply) => {
    const deliveryId = deliveryOf(req.query.d);
    const turn = await callOpening(deps.pool, deliveryId, req.body.AnsweredBy);
    req.log.info({ delivery_id: deliveryId, call_sid: req.body.CallSid, turn: turn.kind }, 'call answered');
    return sendTwiml(reply, turn, req.query.d);
  });

  r.post(VOICE_GATHER_PATH, {
    ...common,
    schema: {
      tags, summary: 'The key pressed during a call: 1 I\'m on it, 2 needs more help, 9 repeat (X-Twilio-Signature)',
      consumes: ['application/x-www-form-urlencoded'], produces: ['text/xml'], querystring: Query, body: GatherBody, response: { 200: twimlOut, ...errors },
    },
  }, async (req, reply) => {
    const deliveryId = deliveryOf(req.query.d);
    const { turn, deliveryIds } = await pressKey(deps.pool, deps.settings, deliveryId, req.body.Digits, app.clock());
    await enqueueDeliveries(deps.pool, deps.queues, deliveryIds, deps.log);
    req.log.info({ delivery_id: deliveryId, call_sid: req.body.CallSid, key: req.body.Digits, deliveries: deliveryIds.length }, 'key pressed during a call');
    return sendTwiml(reply, turn, req.query.d);
  });

  r.post(VOICE_STATUS_PATH, {
    ...common,
    schema: {
      tags, summary: 'Twilio call status callback: ringing, answered, completed, busy, no-answer, failed (X-Twilio-Signature)',
      consumes: ['application/x-www-form-urlencoded'], querystring: Query, body: StatusBody, response: { 204: z.null(), ...errors },
    },
  }, async (req, reply) => {
    const b = req.body;
    await applyCallStatus(deps.pool, deps.log, {
      deliveryId: deliveryOf(req.query.d), callSid: b.CallSid, status: b.CallStatus, answeredBy: b.AnsweredBy ?? null,
      durationSeconds: b.CallDuration ?? null, errorCode: b.ErrorCode === undefined || b.ErrorCode === '' ? null : b.ErrorCode,
    }, app.clock(), deps.metrics);
    return reply.code(204).send(null);
  });
}
