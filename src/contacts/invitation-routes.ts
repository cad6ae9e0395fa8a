import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import type pg from 'pg';
import { AppError } from '../http/errors.js';
import { escapeHtml, page, wantsHtml } from '../http/html.js';
import { ErrorEnvelopeSchema } from '../http/schemas.js';
import { LinkError, verifyLink } from '../links/tokens.js';
import { ACCOUNT_DELETED, accountDeleted, contactOfDeletedAccount } from '../members/deleted-accounts.js';
import * as repo from './repo.js';

/** Invitation pages: a contact confirms or declines without an account, through a signed link. */
export type InvitationDeps = { pool: pg.Pool; linkSecret: string };

const TokenParams = z.object({ token: z.string().min(1).max(1000) });
const Answer = z.object({ status: z.enum(['invited', 'active', 'declined']), linked: z.boolean() }).meta({ id: 'InvitationAnswer' });

function linkProblem(err: LinkError): AppError {
  return err.reason === 'expired'
    ? new AppError(410, 'LINK_EXPIRED', 'this invitation link has expired; ask for a new one')
    : new AppError(404, 'NOT_FOUND', 'this invitation link is not valid');
}

function htmlError(reply: FastifyReply, err: AppError) {
  const title = err.code === 'CONTACT_REMOVED' || err.code === ACCOUNT_DELETED ? 'This link no longer works' : err.statusCode === 410 ? 'This link has expired' : err.statusCode === 409 ? 'This invitation was already answered' : 'This link is not valid';
  const text = err.code === 'CONTACT_REMOVED' ? 'You are no longer an emergency contact for this person, so this invitation no longer works.'
    : err.code === ACCOUNT_DELETED ? 'The Pruuf account that sent this invitation was deleted, so this invitation no longer works.'
    : err.statusCode === 410
    ? 'Invitation links work for a limited time. Ask the person who invited you to send a new invitation.'
    : err.statusCode === 409 ? err.message
    : 'The link may be incomplete, or a newer invitation replaced it. Check that you opened the whole link from the latest message.';
  return reply.code(err.statusCode).type('text/html; charset=utf-8').send(page(title, `<div class="card"><h1>${escapeHtml(title)}</h1><p>${escapeHtml(text)}</p></div>`));
}

export function invitationRoutes(app: FastifyInstance, deps: InvitationDeps): void {
  const r = app.withTypeProvider<ZodTypeProvider>();
  const tags = ['contact pages'];

  async function load(token: string) {
    let payload;
    try {
      payload = verifyLink(deps.linkSecret, 'invite', token, app.clock());
    } catch (err) {
      if (err instanceof LinkError) throw linkProblem(err);
      throw err;
    }
    const contact = await repo.getContactById(deps.pool, payload.s);
    // We signed it, so the contact existed: removed since (or with the whole account), the link is
    // gone for good (410).
    if (contact === undefined) {
      if (await contactOfDeletedAccount(deps.pool, payload.s)) throw accountDeleted('this invitation no longer works: the Pruuf account that sent it was deleted');
      throw new AppError(410, 'CONTACT_REMOVED', 'this invitation no longer works: the person who sent it removed you as a contact');
    }
    // A newer invitation (changed address) makes an old link invalid.
    if (String(contact.invited_at.getTime()) !== payload.x) throw linkProblem(new LinkError('bad_signature'));
    return contact;
  }

  r.get('/i/:token', {
    schema: { tags, summary: 'Invitation page: confirm or decline, no account needed', params: TokenParams, produces: ['text/html'] },
  }, async (req, reply) => {
    let contact;
    try {
      contact = await load(req.params.token);
    } catch (err) {
      if (err instanceof AppError && wantsHtml(req.headers.accept)) return htmlError(reply, err);
      throw err;
    }
    const who = escapeHtml(contact.member_name ?? 'A Pruuf member');
    const action = `/i/${encodeURIComponent(req.params.token)}`;
    if (contact.status !== 'invited') {
      // Answered: the link is spent (a forwarded link must not change who gets the alerts).
      const done = contact.status === 'active'
        ? `You have confirmed: you are an emergency contact for ${who}.`
        : `You declined: you will not receive alerts for ${who}.`;
      return reply.type('text/html; charset=utf-8').send(page('Invitation answered', `<div class="card">
<h1>${escapeHtml(done)}</h1>
<p>An invitation is answered once. To change your answer, ask ${who} to send you a new invitation.</p>
</div>`));
    }
    return reply.type('text/html; charset=utf-8').send(page('Be an emergency contact?', `<div class="card">
<h1>${who} asked you to be their emergency contact</h1>
<p>Hello ${escapeHtml(contact.name)}. ${who} checks in with Pruuf every day. If they miss a check-in, Pruuf will alert you so you can make sure they are OK.</p>
<form method="post" action="${action}/accept"><button class="primary" type="submit">Yes, I will be a contact</button></form>
<form method="post" action="${action}/decline"><button class="secondary" type="submit">No, decline</button></form>
<p class="muted">You do not need an account. You can opt out of text messages at any time by replying STOP.</p>
</div>`));
  });

  async function answer(req: FastifyRequest<{ Params: { token: string } }>, reply: FastifyReply, status: 'active' | 'declined') {
    const json = !wantsHtml(req.headers.accept);
    let contact;
    try {
      contact = await load(req.params.token);
    } catch (err) {
      if (err instanceof AppError && !json) return htmlError(reply, err);
      throw err;
    }
    const linkedUser = status === 'active' ? (req.principal?.id ?? null) : null;
    const fail = (err: AppError) => { if (json) throw err; return htmlError(reply, err); };
    if (linkedUser !== null && linkedUser === contact.member_id) {
      return fail(new AppError(409, 'OWN_INVITATION', 'you cannot be your own emergency contact: this invitation is for someone else'));
    }
    const result = await repo.respondToInvitation(deps.pool, contact.id, contact.invited_at.getTime(), status, linkedUser, app.clock());
    if (result === undefined) return fail(new AppError(404, 'NOT_FOUND', 'this invitation link is not valid'));
    if (result.outcome === 'conflict') {
      return fail(new AppError(409, 'ALREADY_ANSWERED',
        `this invitation was already ${result.contact.status === 'active' ? 'accepted' : 'declined'}; an invitation is answered once. Ask ${contact.member_name ?? 'the member'} to send a new one`));
    }
    const updated = result.contact;
    if (json) return reply.send({ status: updated.status, linked: updated.linked_user_id !== null });
    const who = escapeHtml(contact.member_name ?? 'the member');
    const body = status === 'active'
      ? `<h1>Thank you</h1><p>You are now an emergency contact for ${who}. If they miss a check-in, we will alert you.</p>`
      : `<h1>Declined</h1><p>You will not receive alerts for ${who}. We have not told them why.</p>`;
    return reply.type('text/html; charset=utf-8').send(page(status === 'active' ? 'Confirmed' : 'Declined', `<div class="card">${body}</div>`));
  }

  const answerSchema = (summary: string) => ({
    tags, summary, params: TokenParams,
    response: { 200: Answer, 400: ErrorEnvelopeSchema, 401: ErrorEnvelopeSchema, 404: ErrorEnvelopeSchema, 409: ErrorEnvelopeSchema, 410: ErrorEnvelopeSchema },
  });
  r.post('/i/:token/accept', {
    preHandler: app.optionalMember,
    schema: { ...answerSchema('Confirm; with a bearer token also links the contact to that app user'), security: [{}, { bearerAuth: [] }] },
  }, (req, reply) => answer(req, reply, 'active'));
  r.post('/i/:token/decline', { schema: answerSchema('Decline the invitation') }, (req, reply) => answer(req, reply, 'declined'));
}
