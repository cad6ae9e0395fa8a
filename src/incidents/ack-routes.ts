import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { DateTime } from 'luxon';
import { z } from 'zod';
import { withTransaction } from '../db/pool.js';
import { enqueueDeliveries } from '../delivery/outbox.js';
import { AppError } from '../http/errors.js';
import { escapeHtml, page, sendHtml, wantsHtml } from '../http/html.js';
import { ErrorEnvelopeSchema } from '../http/schemas.js';
import { LinkError, verifyLink } from '../links/tokens.js';
import { ACCOUNT_DELETED, accountDeleted, contactOfDeletedAccount } from '../members/deleted-accounts.js';
import { alertReach, alertReachHtml } from './alert-reach.js';
import { acknowledge, escalateByContact } from './engine.js';
import { telLink } from './message-format.js';
import { planContact } from './outbound.js';
import * as repo from './repo.js';
import type { IncidentRouteDeps } from './routes.js';

/** The contact's pages from an alert: who missed what, and two buttons. No account, no JavaScript. */
const TokenParams = z.object({ token: z.string().min(1).max(1000) });
const AckAnswer = z.object({ incident_id: z.uuid(), state: z.enum(['open', 'acknowledged', 'resolved']), acknowledged_by: z.string().nullable() }).meta({ id: 'AckAnswer' });

const gone = (message: string) => new AppError(410, 'LINK_EXPIRED', message);
const invalid = () => new AppError(404, 'NOT_FOUND', 'this alert link is not valid');
const removed = () => new AppError(410, 'CONTACT_REMOVED', 'this alert link no longer works: you are no longer an emergency contact for this person');
const accountGone = () => accountDeleted('this alert link no longer works: the Pruuf account it was about was deleted, and nobody is alerted for it any more');

export function ackRoutes(app: FastifyInstance, deps: IncidentRouteDeps & { linkSecret: string }): void {
  const r = app.withTypeProvider<ZodTypeProvider>();
  const tags = ['contact pages'];

  function verify(token: string): { contactId: string; incidentId: string } {
    try {
      const p = verifyLink(deps.linkSecret, 'ack', token, app.clock());
      if (p.x === undefined) throw invalid();
      return { contactId: p.s, incidentId: p.x };
    } catch (err) {
      if (err instanceof LinkError) throw err.reason === 'expired' ? gone('this alert link has expired') : invalid();
      throw err;
    }
  }

  async function load(db: Parameters<typeof repo.getIncident>[0], token: string, lock: boolean) {
    const { contactId, incidentId } = verify(token);
    const inc = await repo.getIncident(db, incidentId, { lock });
    // Incidents go only with their member's account: a link we signed for one that is gone (its
    // contact recorded with the deleted account) says so, and shows nothing else.
    if (inc === undefined && (await contactOfDeletedAccount(db, contactId))) throw accountGone();
    // The link names a contact of this incident's plan; anything else is not a link we made.
    if (inc === undefined || planContact(inc.plan, contactId) === undefined) throw invalid();
    // A contact the member removed keeps nothing: not the member's name, note or location, and no
    // button (the plan snapshot still names them; the contacts table no longer does).
    if (!(await repo.presentContacts(db, [contactId])).has(contactId)) throw removed();
    return { inc, contact: planContact(inc.plan, contactId)! };
  }

  const validZone = (z: string | null | undefined) => (typeof z === 'string' && DateTime.now().setZone(z).isValid ? z : null);
  const local = (d: Date | null, zone: string) => (d === null ? 'never' : DateTime.fromJSDate(d).setZone(zone).toFormat("ccc d LLL, HH:mm ZZZZ"));

  function problem(req: FastifyRequest, reply: FastifyReply, err: unknown) {
    if (err instanceof AppError && wantsHtml(req.headers.accept)) {
      const title = err.code === 'CONTACT_REMOVED' || err.code === ACCOUNT_DELETED ? 'This link no longer works' : err.statusCode === 410 ? 'This link has expired' : err.statusCode === 409 ? 'All clear' : 'This link is not valid';
      return sendHtml(reply, err.statusCode, page(title, `<div class="card"><h1>${escapeHtml(title)}</h1><p>${escapeHtml(err.message)}.</p></div>`));
    }
    throw err;
  }

  r.get('/a/:token', {
    schema: { tags, summary: 'Alert page for a contact: who missed what, and "I\'m on it"', params: TokenParams, produces: ['text/html'] },
  }, async (req, reply) => {
    let loaded;
    try {
      loaded = await load(deps.pool, req.params.token, false);
    } catch (err) {
      return problem(req, reply, err);
    }
    const { inc, contact } = loaded;
    const name = escapeHtml(inc.plan.member_name);
    // Times in the reader's zone when we know it (a contact who uses the app), else the member's; always with the zone's name.
    const zone = validZone(contact.time_zone) ?? inc.plan.time_zone;
    const action = `/a/${encodeURIComponent(req.params.token)}`;
    if (inc.state === 'resolved') {
      return sendHtml(reply, 200, page('All clear', `<div class="card"><h1>All clear: ${name} is OK</h1><p>${escapeHtml(inc.resolution === 'check_in' ? `${inc.plan.member_name} checked in` : `${inc.plan.member_name} marked it a false alarm`)} at ${escapeHtml(local(inc.resolved_at, zone))}. Thank you for being there.</p></div>`));
    }
    const what = inc.kind === 'sos'
      ? `${name} pressed the SOS button at ${escapeHtml(local(inc.opened_at, zone))} and needs help.`
      : `${name} missed a check-in due ${escapeHtml(local(inc.deadline_at, zone))}.`;
    const alerted = inc.kind === 'sos' ? '' : `<p class="muted">Pruuf alerted contacts at ${escapeHtml(local(inc.opened_at, zone))}.</p>`;
    const tel = telLink(inc.plan.member_phone);
    const call = tel === null ? '' : `<p><a class="call" href="${escapeHtml(tel)}">Call ${name}: ${escapeHtml(inc.plan.member_phone!)}</a></p>`;
    const loc = inc.last_location === null ? '' : `<p><a href="https://maps.google.com/?q=${inc.last_location.lat},${inc.last_location.lng}">Last known location on a map</a></p>`;
    const ackBy = inc.state === 'acknowledged' ? planContact(inc.plan, inc.acknowledged_by ?? '')?.name ?? 'Someone' : null;
    const status = ackBy === null ? '' : `<p class="muted">${escapeHtml(ackBy === contact.name ? 'You are' : `${ackBy} is`)} on it since ${escapeHtml(local(inc.acknowledged_at, zone))}.</p>`;
    const reach = alertReachHtml(await alertReach(deps.pool, inc.id));
    return sendHtml(reply, 200, page(`${inc.plan.member_name} may need help`, `<div class="card">
<h1>${what}</h1>
${alerted}
<p>Last check-in: ${escapeHtml(local(inc.last_check_in_at, zone))}.</p>
${call}
${loc}
${inc.note === null ? '' : `<p>Their note: “${escapeHtml(inc.note)}”</p>`}
<p>Please call them or go and check on them. If you are taking care of it, tell the others:</p>
${status}
${reach}
<form method="post" action="${action}/ack"><button class="primary" type="submit">I'm on it</button></form>
<form method="post" action="${action}/escalate"><button class="danger" type="submit">This needs more help</button></form>
<p class="muted">"This needs more help" alerts everyone else on ${name}'s list now.</p>
</div>`));
  });

  async function act(req: FastifyRequest<{ Params: { token: string } }>, reply: FastifyReply, action: 'ack' | 'escalate') {
    const now = app.clock();
    let result;
    try {
      result = await withTransaction(deps.pool, async (tx) => {
        const { inc, contact } = await load(tx, req.params.token, true);
        if (inc.state === 'resolved') throw new AppError(409, 'CONFLICT', `${inc.plan.member_name} is OK: this alert was resolved`);
        const ids = action === 'ack' ? await acknowledge(tx, inc, contact.id, now) : await escalateByContact(tx, deps.settings, inc, contact.id, now);
        return { ids, inc: (await repo.getIncident(tx, inc.id))!, contact };
      });
    } catch (err) {
      return problem(req, reply, err);
    }
    await enqueueDeliveries(deps.pool, deps.queues, result.ids, deps.log);
    const ackBy = result.inc.acknowledged_by === null ? null : planContact(result.inc.plan, result.inc.acknowledged_by)?.name ?? null;
    if (!wantsHtml(req.headers.accept)) return reply.send({ incident_id: result.inc.id, state: result.inc.state, acknowledged_by: ackBy });
    const body = action === 'ack'
      ? `<h1>Thank you, ${escapeHtml(result.contact.name)}</h1><p>Escalation has stopped and the others know you are on it. If ${escapeHtml(result.inc.plan.member_name)} is not OK, call the emergency services.</p>`
      : `<h1>Everyone has been alerted</h1><p>Every contact on ${escapeHtml(result.inc.plan.member_name)}'s list is being alerted now. If it is an emergency, call the emergency services.</p>`;
    return sendHtml(reply, 200, page(action === 'ack' ? "You're on it" : 'Alerted everyone', `<div class="card">${body}</div>`));
  }

  const schema = (summary: string) => ({ tags, summary, params: TokenParams, response: { 200: AckAnswer, 404: ErrorEnvelopeSchema, 409: ErrorEnvelopeSchema, 410: ErrorEnvelopeSchema } });
  r.post('/a/:token/ack', { schema: schema("I'm on it: escalation stops, the other alerted contacts are told") }, (req, reply) => act(req, reply, 'ack'));
  r.post('/a/:token/escalate', { schema: schema('This needs more help: every remaining tier is alerted now') }, (req, reply) => act(req, reply, 'escalate'));
}
