import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { member } from '../auth/plugin.js';
import { AppError, validation } from '../http/errors.js';
import { escapeHtml, page, sendHtml, wantsHtml } from '../http/html.js';
import { authErrors, ErrorEnvelopeSchema, iso, listOf, Timestamp } from '../http/schemas.js';
import { LinkError, verifyLink } from '../links/tokens.js';
import { readCheckInLinkExtra } from '../links/check-in-link.js';
import { ACCOUNT_DELETED, accountDeleted, checkInLinkOfDeletedAccount } from '../members/deleted-accounts.js';
import * as repo from './repo.js';
import { checkIn, checkInByLink, requestHash, type CheckInDeps } from './service.js';

const Location = z.strictObject({
  lat: z.number().min(-90).max(90),
  lng: z.number().min(-180).max(180),
  accuracy_m: z.number().min(0).max(100_000).optional(),
});
const CheckInBody = z
  .strictObject({ note: z.string().trim().max(500).optional(), location: Location.optional() })
  .nullish()
  .describe('optional: a bare POST is a check-in too');
const CheckInAnswer = z
  .object({ id: z.uuid(), checked_in_at: Timestamp, next_deadline_at: Timestamp.nullable(), resolved_incident_ids: z.array(z.uuid()) })
  .meta({ id: 'CheckIn' });
const HistoryItem = z
  .object({
    id: z.uuid(), checked_in_at: Timestamp, source: z.enum(['app', 'link', 'sms']), note: z.string().nullable(),
    location: z.object({ lat: z.number(), lng: z.number(), accuracy_m: z.number().nullable() }).nullable(),
  })
  .meta({ id: 'CheckInHistoryItem' });
const HistoryQuery = z.strictObject({
  limit: z.coerce.number().int().min(1).max(100).default(20),
  cursor: z.string().max(200).optional(),
});
const IdempotencyHeaders = z.object({
  'idempotency-key': z.string().min(1).max(200).regex(/^[\x21-\x7e]+$/, 'printable ASCII without spaces').optional(),
});

function encodeCursor(r: { checked_in_at: Date; id: string }): string {
  return Buffer.from(`${iso(r.checked_in_at)}|${r.id}`).toString('base64url');
}
function decodeCursor(c: string): { at: Date; id: string } {
  const [at, id] = Buffer.from(c, 'base64url').toString('utf8').split('|');
  const date = new Date(at ?? '');
  if (Number.isNaN(date.getTime()) || !/^[0-9a-f-]{36}$/.test(id ?? '')) {
    throw validation('cursor is not valid', { issues: [{ path: 'querystring.cursor', message: 'use next_cursor from a previous page' }] });
  }
  return { at: date, id: id! };
}

export function checkInRoutes(app: FastifyInstance, deps: CheckInDeps & { linkSecret: string }): void {
  const r = app.withTypeProvider<ZodTypeProvider>();
  const secured = { preHandler: app.requireMember };
  const security = [{ bearerAuth: [] }];
  const tags = ['check-ins'];

  r.post('/v1/check-ins', {
    ...secured,
    schema: {
      tags, security, summary: '"I\'m OK": satisfies every schedule whose current window this falls in',
      headers: IdempotencyHeaders, body: CheckInBody,
      response: { 201: CheckInAnswer, ...authErrors, 409: ErrorEnvelopeSchema },
    },
  }, async (req, reply) => {
    const who = member(req);
    const key = req.headers['idempotency-key'] ?? null;
    const body = req.body ?? {};
    const result = await checkIn(deps, {
      memberId: who.id,
      email: who.email ?? null,
      at: app.clock(),
      source: 'app',
      note: body.note === undefined || body.note === '' ? null : body.note,
      location: body.location ?? null,
      idempotencyKey: key,
      requestHash: key === null ? null : requestHash(body),
    });
    return reply.code(201).send(result);
  });

  r.get('/v1/check-ins', {
    ...secured,
    schema: {
      tags, security, summary: 'Check-in history, newest first', querystring: HistoryQuery,
      response: { 200: listOf(HistoryItem), ...authErrors },
    },
  }, async (req) => {
    const { limit, cursor } = req.query;
    const rows = await repo.history(deps.pool, member(req).id, limit + 1, cursor === undefined ? undefined : decodeCursor(cursor));
    const page = rows.slice(0, limit);
    const hasMore = rows.length > limit;
    return {
      data: page.map((c) => ({
        id: c.id, checked_in_at: iso(c.checked_in_at), source: c.source as 'app', note: c.note,
        location: c.latitude === null || c.longitude === null ? null : { lat: c.latitude, lng: c.longitude, accuracy_m: c.accuracy_m },
      })),
      pagination: { next_cursor: hasMore ? encodeCursor(page[page.length - 1]!) : null, has_more: hasMore },
    };
  });

  // The signed link in a reminder: one big "I'm OK" button that works without JavaScript.
  const TokenParams = z.object({ token: z.string().min(1).max(1000) });
  const invalid = () => new AppError(404, 'NOT_FOUND', 'this check-in link is not valid');
  /** The member the link checks in; throws 404, 410 expired, or 410 for a deleted account. */
  const verify = async (token: string): Promise<{ memberId: string; deadlineMs: string | undefined }> => {
    let payload;
    try {
      payload = verifyLink(deps.linkSecret, 'checkin', token, app.clock());
    } catch (err) {
      if (!(err instanceof LinkError)) throw err;
      throw err.reason === 'expired' ? new AppError(410, 'LINK_EXPIRED', 'this check-in link has expired; open the app or reply OK to the text') : invalid();
    }
    const extra = readCheckInLinkExtra(payload.x);
    if (extra === undefined) throw invalid();
    // A link outlives nothing: an erased account must not come back through an old reminder, not
    // even when a still-valid access token has re-created a profile with the same id.
    if (await checkInLinkOfDeletedAccount(deps.pool, payload.s, extra.generation)) {
      throw accountDeleted('this check-in link no longer works: the Pruuf account it belongs to was deleted');
    }
    return { memberId: payload.s, deadlineMs: extra.deadlineMs };
  };
  const problemPage = (err: AppError) => {
    const title = err.code === ACCOUNT_DELETED ? 'This link no longer works' : err.statusCode === 410 ? 'This link has expired' : 'This link is not valid';
    return page('Link not valid', `<div class="card"><h1>${title}</h1><p>${escapeHtml(err.message)}.</p></div>`);
  };

  r.get('/c/:token', {
    schema: { tags: ['contact pages'], summary: 'Check-in page from a reminder link', params: TokenParams, produces: ['text/html'] },
  }, async (req, reply) => {
    try {
      await verify(req.params.token);
    } catch (err) {
      if (err instanceof AppError && wantsHtml(req.headers.accept)) return sendHtml(reply, err.statusCode, problemPage(err));
      throw err;
    }
    return reply.type('text/html; charset=utf-8').send(page("Check in with Pruuf", `<div class="card">
<h1>Are you OK?</h1>
<form method="post" action="/c/${encodeURIComponent(req.params.token)}"><button class="primary" type="submit">I'm OK</button></form>
<p class="muted">Tapping the button checks you in, just like the app.</p></div>`));
  });

  r.post('/c/:token', {
    schema: { tags: ['contact pages'], summary: 'Check in through a reminder link', params: TokenParams, response: { 201: CheckInAnswer, 404: ErrorEnvelopeSchema, 410: ErrorEnvelopeSchema } },
  }, async (req, reply) => {
    const json = !wantsHtml(req.headers.accept);
    let memberId: string;
    let deadline: string | undefined;
    try {
      ({ memberId, deadlineMs: deadline } = await verify(req.params.token));
    } catch (err) {
      if (err instanceof AppError && !json) return sendHtml(reply, err.statusCode, problemPage(err));
      throw err;
    }
    // Tapped again (or after the app answered the same deadline): the same answer, nothing recorded.
    const result = await checkInByLink(deps, memberId, deadline, app.clock());
    if (json) return reply.code(201).send(result);
    const next = result.next_deadline_at === null ? '' : `<p class="muted">Next check-in due ${escapeHtml(new Date(result.next_deadline_at).toUTCString())}.</p>`;
    return sendHtml(reply, 201, page('Checked in', `<div class="card"><h1>Thank you, you are checked in</h1>${next}</div>`));
  });
}
