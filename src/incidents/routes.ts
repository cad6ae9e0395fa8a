import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import type pg from 'pg';
import { member } from '../auth/plugin.js';
import { withTransaction } from '../db/pool.js';
import { CARRIER_STATUSES } from '../delivery/carrier-status.js';
import { enqueueDeliveries } from '../delivery/outbox.js';
import { conflict, notFound } from '../http/errors.js';
import { authErrors, ErrorEnvelopeSchema, IdParams, iso, listOf, Timestamp } from '../http/schemas.js';
import { ensureMember } from '../members/repo.js';
import type { Logger } from '../observability/logger.js';
import type { QueueSystem } from '../queue/index.js';
import { openIncident, resolve, type IncidentSettings } from './engine.js';
import * as repo from './repo.js';

export type IncidentRouteDeps = { pool: pg.Pool; queues: QueueSystem; log: Logger; settings: IncidentSettings };

const Incident = z
  .object({
    id: z.uuid(),
    kind: z.enum(['missed', 'sos']),
    state: z.enum(['open', 'acknowledged', 'resolved']),
    schedule_id: z.uuid().nullable(),
    deadline_at: Timestamp.nullable(),
    opened_at: Timestamp,
    delayed_by_seconds: z.number().int(),
    round: z.number().int(),
    steps_sent: z.number().int(),
    next_step_at: Timestamp.nullable(),
    acknowledged_at: Timestamp.nullable(),
    acknowledged_by: z.object({ contact_id: z.uuid(), name: z.string() }).nullable(),
    ack_expires_at: Timestamp.nullable(),
    resolved_at: Timestamp.nullable(),
    resolution: z.enum(['check_in', 'member_resolved']).nullable(),
  })
  .meta({ id: 'Incident' });

const Timeline = Incident.extend({
  events: z.array(z.object({ at: Timestamp, type: z.string(), step_no: z.number().int().nullable(), contact_id: z.uuid().nullable(), detail: z.record(z.string(), z.unknown()).nullable() })),
  deliveries: z.array(z.object({
    id: z.uuid(), kind: z.string(), channel: z.enum(['push', 'sms', 'email', 'voice']).describe('voice: a phone call (carrier_status delivered = answered by a person)'), contact_id: z.uuid().nullable(), contact_name: z.string().nullable(),
    step_no: z.number().int().nullable(), status: z.enum(['pending', 'sent', 'failed', 'cancelled']), attempts: z.number().int(),
    created_at: Timestamp, sent_at: Timestamp.nullable(), error_class: z.string().nullable(),
    carrier_status: z.enum(CARRIER_STATUSES).nullable()
      .describe("The provider's or carrier's last word on the message: sent (handed on, no receipt yet; push never gets one), deferred, delivered, undelivered, bounced, dropped, failed; null: no word yet. Never moves backwards"),
    carrier_status_at: Timestamp.nullable().describe('When it reached that status (the provider\'s time where it gives one, else when we heard it)'),
    carrier_error_code: z.string().nullable().describe("The provider's code with it (Twilio 30003, a bounce's SMTP status, an FCM error code), else null"),
  })),
}).meta({ id: 'IncidentTimeline' });

const t = (d: Date | null) => (d === null ? null : iso(d));

function incidentOut(i: repo.IncidentRow) {
  const by = i.acknowledged_by === null ? null : i.plan.tiers.flatMap((x) => x.contacts).find((c) => c.id === i.acknowledged_by);
  return {
    id: i.id, kind: i.kind, state: i.state, schedule_id: i.schedule_id, deadline_at: t(i.deadline_at), opened_at: iso(i.opened_at),
    delayed_by_seconds: i.delayed_by_seconds, round: i.round, steps_sent: i.step_no, next_step_at: t(i.next_step_at),
    acknowledged_at: t(i.acknowledged_at), acknowledged_by: by === null || by === undefined ? null : { contact_id: by.id, name: by.name },
    ack_expires_at: t(i.ack_expires_at), resolved_at: t(i.resolved_at), resolution: i.resolution,
  };
}

const Location = z.strictObject({ lat: z.number().min(-90).max(90), lng: z.number().min(-180).max(180), accuracy_m: z.number().min(0).max(100_000).optional() });

export function incidentRoutes(app: FastifyInstance, deps: IncidentRouteDeps): void {
  const r = app.withTypeProvider<ZodTypeProvider>();
  const secured = { preHandler: app.requireMember };
  const security = [{ bearerAuth: [] }];
  const tags = ['incidents'];

  r.get('/v1/incidents', {
    ...secured,
    schema: { tags, security, summary: "The member's incidents, newest first", querystring: z.strictObject({ limit: z.coerce.number().int().min(1).max(100).default(20) }),
      response: { 200: listOf(Incident), ...authErrors } },
  }, async (req) => {
    const { rows } = await deps.pool.query<{ id: string }>('select id from incidents where member_id = $1 order by opened_at desc, id desc limit $2', [member(req).id, req.query.limit + 1]);
    const page = rows.slice(0, req.query.limit);
    const items = await Promise.all(page.map((x) => repo.getIncident(deps.pool, x.id)));
    return { data: items.filter((x) => x !== undefined).map(incidentOut), pagination: { next_cursor: null, has_more: rows.length > req.query.limit } };
  });

  r.get('/v1/incidents/:id', {
    ...secured,
    schema: { tags, security, summary: 'One incident with its timeline: steps, deliveries, acknowledgements', params: IdParams, response: { 200: Timeline, ...authErrors } },
  }, async (req) => {
    const inc = await repo.getIncident(deps.pool, req.params.id, { memberId: member(req).id });
    if (inc === undefined) throw notFound('incident');
    const [events, deliveries] = await Promise.all([
      deps.pool.query('select at, type, step_no, contact_id, detail from incident_events where incident_id = $1 order by at, id', [inc.id]),
      deps.pool.query(
        `select d.id, d.kind, d.channel, d.contact_id, c.name as contact_name, d.step_no, d.status, d.attempts, d.created_at, d.sent_at, d.error_class,
                d.carrier_status, d.carrier_status_at, case when d.carrier_status is null then null else d.provider_error_code end as carrier_error_code
         from deliveries d left join contacts c on c.id = d.contact_id where d.incident_id = $1 order by d.created_at, d.id`, [inc.id]),
    ]);
    return {
      ...incidentOut(inc),
      events: events.rows.map((e) => ({ ...e, at: iso(e.at) })),
      deliveries: deliveries.rows.map((d) => ({ ...d, created_at: iso(d.created_at), sent_at: t(d.sent_at), carrier_status_at: t(d.carrier_status_at) })),
    };
  });

  r.post('/v1/incidents/:id/resolve', {
    ...secured,
    schema: { tags, security, summary: 'Mark a false alarm: contacts already alerted get the all clear', params: IdParams, response: { 200: Incident, ...authErrors, 409: ErrorEnvelopeSchema } },
  }, async (req) => {
    const who = member(req);
    const now = app.clock();
    const { inc, ids } = await withTransaction(deps.pool, async (tx) => {
      const cur = await repo.getIncident(tx, req.params.id, { memberId: who.id, lock: true });
      if (cur === undefined) throw notFound('incident');
      if (cur.state === 'resolved') throw conflict('this incident is already resolved');
      const created = await resolve(tx, cur, 'member_resolved', now, null);
      return { inc: (await repo.getIncident(tx, cur.id))!, ids: created };
    });
    await enqueueDeliveries(deps.pool, deps.queues, ids, deps.log);
    return incidentOut(inc);
  });

  // Never refused for want of a display name (unlike arming a schedule): a person in danger who
  // presses SOS gets their alert out, and it names them as best it can (the member's email, else
  // the name their contacts were invited under).
  r.post('/v1/sos', {
    ...secured,
    schema: { tags, security, summary: '"I need help": an incident now, every tier alerted at once',
      body: z.strictObject({ note: z.string().trim().max(500).optional(), location: Location.optional() }).nullish(),
      response: { 201: Incident, ...authErrors } },
  }, async (req, reply) => {
    const who = member(req);
    const now = app.clock();
    const body = req.body ?? {};
    const { inc, ids } = await withTransaction(deps.pool, async (tx) => {
      await ensureMember(tx, who);
      const opened = await openIncident(tx, deps.settings, {
        member_id: who.id, schedule_id: null, kind: 'sos', deadline_at: null, alert_at: null,
        note: body.note === undefined || body.note === '' ? null : body.note, latitude: body.location?.lat ?? null, longitude: body.location?.lng ?? null,
      }, now);
      return { inc: (await repo.getIncident(tx, opened.incidentId!))!, ids: opened.deliveryIds };
    });
    await enqueueDeliveries(deps.pool, deps.queues, ids, deps.log);
    return reply.code(201).send(incidentOut(inc));
  });
}
