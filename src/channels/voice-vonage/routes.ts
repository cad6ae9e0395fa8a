import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import type pg from 'pg';
import { z } from 'zod';
import type { Config } from '../../config.js';
import { enqueueDeliveries } from '../../delivery/outbox.js';
import { AppError } from '../../http/errors.js';
import { ErrorEnvelopeSchema } from '../../http/schemas.js';
import { callOpening, pressKey, type CallTurn } from '../../incidents/call-answers.js';
import type { IncidentSettings } from '../../incidents/engine.js';
import type { Logger } from '../../observability/logger.js';
import type { Metrics } from '../../observability/metrics.js';
import type { QueueSystem } from '../../queue/index.js';
import { callDelivery } from '../voice-twilio/index.js';
import { GATHER_TIMEOUT_SECONDS } from '../voice-twilio/routes.js';
import { VONAGE_ANSWER_PATH, VONAGE_EVENT_PATH, VONAGE_INPUT_PATH } from './index.js';
import { vonageJwtCheck } from './signature.js';
import { applyVonageCallEvent } from './status.js';

export type VonageVoiceWebhookDeps = {
  pool: pg.Pool;
  queues: QueueSystem;
  log: Logger;
  settings: IncidentSettings;
  linkSecret: string;
  config: Pick<Config, 'VONAGE_SIGNATURE_SECRET' | 'VONAGE_APPLICATION_ID' | 'publicBaseUrl'>;
  metrics?: Pick<Metrics, 'deliveryStatuses'>;
};

/** An answer, a key or an event is a few hundred bytes: anything far bigger is refused (413) before it is parsed. */
export const CALL_WEBHOOK_BODY_LIMIT_BYTES = 16 * 1024;

const Id = z.string().min(1).max(64).regex(/^[A-Za-z0-9-]+$/, 'a Vonage uuid');
const Query = z.looseObject({ d: z.string().min(1).max(200) });
const AnswerQuery = z.looseObject({ d: z.string().min(1).max(200), uuid: Id.optional(), conversation_uuid: Id.optional() });
const AnswerBody = z.looseObject({ uuid: Id.optional(), conversation_uuid: Id.optional() }).optional();
const InputBody = z.looseObject({
  uuid: Id,
  dtmf: z.looseObject({ digits: z.string().max(20).regex(/^[0-9*#]*$/).default(''), timed_out: z.boolean().optional() }).optional(),
});
const EventBody = z.looseObject({
  uuid: Id,
  status: z.string().min(1).max(40).regex(/^[a-z_-]+$/),
  detail: z.string().max(100).regex(/^[A-Za-z0-9_ .-]*$/).optional(),
  duration: z.coerce.number().int().min(0).max(86_400).optional(),
});
const Ncco = z.array(z.looseObject({ action: z.string() })).describe('an NCCO: what the call does next');
const errors = { 400: ErrorEnvelopeSchema, 401: ErrorEnvelopeSchema, 404: ErrorEnvelopeSchema };
type NccoAction = z.infer<typeof Ncco>[number];

/**
 * The turn as an NCCO: the alert (which a key may interrupt) and a one-key input posting to
 * `inputUrl`; or words, after which Vonage hangs up; or nothing (hang up now). The words and their
 * language (en-US, es-ES, de-DE, fr-FR: Vonage's talk codes) are the ones Twilio says.
 */
export function nccoOf(turn: CallTurn, inputUrl: string): NccoAction[] {
  if (turn.kind === 'hangup') return [];
  if (turn.kind === 'end') return [{ action: 'talk', text: turn.say, language: turn.language }];
  return [
    { action: 'talk', text: turn.say, language: turn.language, bargeIn: true },
    { action: 'input', type: ['dtmf'], dtmf: { maxDigits: 1, timeOut: GATHER_TIMEOUT_SECONDS }, eventUrl: [inputUrl], eventMethod: 'POST' },
  ];
}

/**
 * What Vonage calls while a call is up: the NCCO of the answered call (GET, or POST when the
 * application says so), the key pressed (the input's event URL) and the call's events. Each request
 * is signed by Vonage (signature.ts: 401 when it is not) and names its delivery in a signed `call`
 * token (`?d=`, 404 when we did not sign it or it expired), both in the error envelope, and
 * nothing changes. Always registered (refusing everything without VONAGE_SIGNATURE_SECRET), and
 * exempt from the per-IP limit like the other provider webhooks.
 */
export async function vonageVoiceWebhookRoutes(app: FastifyInstance, deps: VonageVoiceWebhookDeps): Promise<void> {
  await app.register(async (scope) => routes(scope, deps));
}

function routes(app: FastifyInstance, deps: VonageVoiceWebhookDeps): void {
  // JSON parsed as usual, and its bytes kept for payload_hash (this scope only).
  const raw = new WeakMap<FastifyRequest, string>();
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser('application/json', { parseAs: 'string', bodyLimit: CALL_WEBHOOK_BODY_LIMIT_BYTES }, (req, body, done) => {
    const text = typeof body === 'string' ? body : body.toString('utf8');
    raw.set(req, text);
    try {
      done(null, text.trim() === '' ? undefined : JSON.parse(text));
    } catch {
      done(new AppError(400, 'VALIDATION_ERROR', 'request body is not valid JSON'), undefined);
    }
  });
  const r = app.withTypeProvider<ZodTypeProvider>();
  const check = vonageJwtCheck({
    secret: deps.config.VONAGE_SIGNATURE_SECRET, applicationId: deps.config.VONAGE_APPLICATION_ID, clock: () => app.clock(), rawBody: (req) => raw.get(req),
  });
  const common = { preValidation: check, bodyLimit: CALL_WEBHOOK_BODY_LIMIT_BYTES, config: { rateLimit: false as const } };
  const tags = ['webhooks'];
  const signed = '(signed: a bearer JWT with the signature secret, and a call token in d)';

  const deliveryOf = (token: string): string => callDelivery(deps.linkSecret, token, app.clock());
  const inputUrl = (token: string) => `${deps.config.publicBaseUrl}${VONAGE_INPUT_PATH}?d=${token}`;

  const answer = async (req: FastifyRequest, token: string, uuid: string | undefined) => {
    const deliveryId = deliveryOf(token);
    const turn = await callOpening(deps.pool, deliveryId, undefined);
    req.log.info({ delivery_id: deliveryId, call_uuid: uuid, turn: turn.kind }, 'call answered');
    return nccoOf(turn, inputUrl(token));
  };
  const answerSchema = { tags, summary: `Vonage fetches what an answered call says: the alert, and a one-key input ${signed}`, response: { 200: Ncco, ...errors } };

  r.get(VONAGE_ANSWER_PATH, { ...common, schema: { ...answerSchema, querystring: AnswerQuery } }, async (req) => answer(req, req.query.d, req.query.uuid));
  r.post(VONAGE_ANSWER_PATH, {
    ...common, schema: { ...answerSchema, consumes: ['application/json'], querystring: Query, body: AnswerBody },
  }, async (req) => answer(req, req.query.d, req.body?.uuid));

  r.post(VONAGE_INPUT_PATH, {
    ...common,
    schema: {
      tags, summary: `The key pressed during a call: 1 I'm on it, 2 needs more help, 9 repeat ${signed}`,
      consumes: ['application/json'], querystring: Query, body: InputBody, response: { 200: Ncco, ...errors },
    },
  }, async (req) => {
    const deliveryId = deliveryOf(req.query.d);
    const digits = req.body.dtmf?.digits ?? '';
    if (digits === '') {
      // No key before the input timed out: goodbye, as Twilio says after its <Gather>.
      const turn = await callOpening(deps.pool, deliveryId, undefined);
      req.log.info({ delivery_id: deliveryId, call_uuid: req.body.uuid }, 'no key pressed during a call');
      return turn.kind === 'ask' ? [{ action: 'talk', text: turn.noKey, language: turn.language }] : nccoOf(turn, inputUrl(req.query.d));
    }
    const { turn, deliveryIds } = await pressKey(deps.pool, deps.settings, deliveryId, digits, app.clock());
    await enqueueDeliveries(deps.pool, deps.queues, deliveryIds, deps.log);
    req.log.info({ delivery_id: deliveryId, call_uuid: req.body.uuid, key: digits, deliveries: deliveryIds.length }, 'key pressed during a call');
    return nccoOf(turn, inputUrl(req.query.d));
  });

  r.post(VONAGE_EVENT_PATH, {
    ...common,
    schema: {
      tags, summary: `Vonage call event: started, ringing, answered, completed, busy, timeout, failed, rejected, machine ${signed}`,
      consumes: ['application/json'], querystring: Query, body: EventBody, response: { 204: z.null(), ...errors },
    },
  }, async (req, reply) => {
    const b = req.body;
    await applyVonageCallEvent(deps.pool, deps.log, {
      deliveryId: deliveryOf(req.query.d), uuid: b.uuid, status: b.status, detail: b.detail === undefined || b.detail === '' ? null : b.detail,
      durationSeconds: b.duration ?? null,
    }, app.clock(), deps.metrics);
    return reply.code(204).send(null);
  });
}
