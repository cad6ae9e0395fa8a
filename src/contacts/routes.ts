import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { member } from '../auth/plugin.js';
import { entitlementsFor } from '../billing/entitlements.js';
import { notFound, validation } from '../http/errors.js';
import { authErrors, ErrorEnvelopeSchema, IdParams, iso, listOf } from '../http/schemas.js';
import { reachOf } from './reach.js';
import { Contact, ContactPatchBody, NewContactBody } from './schemas.js';
import * as repo from './repo.js';
import { addContact, changeContact, type ContactDeps } from './service.js';
import type { MessageChannelName } from '../channels/types.js';

/** `alertChannels`: what alerts may use for this member (every channel on every plan: entitlements.ts). */
export function contactOut(c: repo.ContactRow, alertChannels: MessageChannelName[]) {
  const reach = reachOf(c, alertChannels);
  return {
    id: c.id,
    name: c.name,
    email: c.email,
    phone: c.phone,
    tier: c.tier,
    notify_on_check_in: c.notify_on_check_in,
    locale: c.locale,
    status: c.status,
    sms_opted_out: c.sms_opted_out,
    sms_disabled: c.sms_disabled,
    sms_disabled_reason: c.sms_disabled_reason,
    email_disabled: c.email_disabled,
    email_disabled_reason: c.email_disabled_reason,
    linked: c.linked_user_id !== null,
    channels: reach.channels,
    reachable: reach.reachable,
    unreachable_reason: reach.unreachable_reason,
    invited_at: iso(c.invited_at),
    responded_at: c.responded_at === null ? null : iso(c.responded_at),
    created_at: iso(c.created_at),
    updated_at: iso(c.updated_at),
  };
}

export function contactRoutes(app: FastifyInstance, deps: ContactDeps): void {
  const r = app.withTypeProvider<ZodTypeProvider>();
  const secured = { preHandler: app.requireMember };
  const security = [{ bearerAuth: [] }];
  const tags = ['contacts'];
  const allowed = async (memberId: string) => (await entitlementsFor(deps.pool, memberId, deps.plans)).alertChannels;

  r.get('/v1/contacts', {
    ...secured,
    schema: {
      tags, security, summary: "The member's emergency contacts",
      response: { 200: listOf(Contact), ...authErrors },
    },
  }, async (req) => {
    const who = member(req);
    const [rows, channels] = await Promise.all([repo.listContacts(deps.pool, who.id), allowed(who.id)]);
    return { data: rows.map((c) => contactOut(c, channels)), pagination: { next_cursor: null, has_more: false } };
  });

  r.post('/v1/contacts', {
    ...secured,
    schema: {
      tags, security, summary: 'Add a contact; they get an invitation to confirm (201 even when alerts cannot reach them yet: see reachable)',
      body: NewContactBody,
      response: { 201: Contact, ...authErrors, 402: ErrorEnvelopeSchema, 409: ErrorEnvelopeSchema },
    },
  }, async (req, reply) => {
    const who = member(req);
    const b = req.body;
    const created = await addContact(deps, who, { name: b.name, email: b.email ?? null, phone: b.phone ?? null, tier: b.tier, notify_on_check_in: b.notify_on_check_in, locale: b.locale }, app.clock());
    return reply.code(201).send(contactOut(created, await allowed(who.id)));
  });

  r.get('/v1/contacts/:id', {
    ...secured,
    schema: { tags, security, summary: 'One contact', params: IdParams, response: { 200: Contact, ...authErrors } },
  }, async (req) => {
    const who = member(req);
    const c = await repo.getContact(deps.pool, who.id, req.params.id);
    if (c === undefined) throw notFound('contact');
    return contactOut(c, await allowed(who.id));
  });

  r.patch('/v1/contacts/:id', {
    ...secured,
    schema: {
      tags, security, summary: 'Change a contact (a new email or phone needs a new confirmation)',
      params: IdParams, body: ContactPatchBody,
      response: { 200: Contact, ...authErrors, 409: ErrorEnvelopeSchema },
    },
  }, async (req) => {
    const who = member(req);
    const current = await repo.getContact(deps.pool, who.id, req.params.id);
    if (current === undefined) throw notFound('contact');
    const email = 'email' in req.body ? (req.body.email ?? null) : current.email;
    const phone = 'phone' in req.body ? (req.body.phone ?? null) : current.phone;
    if (email === null && phone === null) throw validation('a contact needs an email or a phone', { issues: [{ path: 'body.email', message: 'cannot remove both' }] });
    const patch: repo.ContactPatch = {};
    if (req.body.name !== undefined) patch.name = req.body.name;
    if ('email' in req.body) patch.email = req.body.email ?? null;
    if ('phone' in req.body) patch.phone = req.body.phone ?? null;
    if (req.body.tier !== undefined) patch.tier = req.body.tier;
    if (req.body.notify_on_check_in !== undefined) patch.notify_on_check_in = req.body.notify_on_check_in;
    if (req.body.locale !== undefined) patch.locale = req.body.locale;
    const updated = await changeContact(deps, who, req.params.id, patch, app.clock());
    return contactOut(updated, await allowed(who.id));
  });

  r.delete('/v1/contacts/:id', {
    ...secured,
    schema: { tags, security, summary: 'Remove a contact', params: IdParams, response: { 204: z.null(), ...authErrors } },
  }, async (req, reply) => {
    const who = member(req);
    if (!(await repo.deleteContact(deps.pool, who.id, req.params.id))) throw notFound('contact');
    return reply.code(204).send(null);
  });
}
