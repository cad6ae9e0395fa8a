import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import type pg from 'pg';
import { member } from '../auth/plugin.js';
import { withTransaction } from '../db/pool.js';
import { notFound, validation } from '../http/errors.js';
import { authErrors, checkedResponse, IdParams, Instant, iso, listOf, Timestamp } from '../http/schemas.js';
import { ensureMember } from '../members/repo.js';
import { recomputeMemberSchedules } from './repo.js';

/** Pauses (vacation): no deadline falling inside one can be missed; overlapping pauses merge. */
const Pause = z.object({ id: z.uuid(), from: Timestamp, until: Timestamp, reason: z.string().nullable(), created_at: Timestamp }).meta({ id: 'Pause' });
const NewPause = z
  .strictObject({
    from: Instant.optional().describe('default: now'),
    until: Instant,
    reason: z.string().trim().max(200).optional(),
  });

type PauseRow = { id: string; starts_at: Date; ends_at: Date; reason: string | null; created_at: Date };
const pauseOut = (p: PauseRow) => ({ id: p.id, from: iso(p.starts_at), until: iso(p.ends_at), reason: p.reason, created_at: iso(p.created_at) });

const MAX_PAUSE_MS = 366 * 86_400_000;

export function pauseRoutes(app: FastifyInstance, deps: { pool: pg.Pool }): void {
  const r = app.withTypeProvider<ZodTypeProvider>();
  const secured = { preHandler: app.requireMember };
  const security = [{ bearerAuth: [] }];
  const tags = ['schedules'];

  r.get('/v1/pauses', {
    ...secured,
    schema: { tags, security, summary: 'Current and coming pauses', response: { 200: listOf(Pause), ...authErrors } },
  }, async (req) => {
    const { rows } = await deps.pool.query<PauseRow>(
      'select id, starts_at, ends_at, reason, created_at from pauses where member_id = $1 and ends_at > $2 order by starts_at',
      [member(req).id, app.clock()],
    );
    return { data: rows.map(pauseOut), pagination: { next_cursor: null, has_more: false } };
  });

  r.post('/v1/pauses', {
    ...secured,
    schema: { tags, security, summary: 'Pause all alerting from–until (merges with overlapping pauses)', body: NewPause, response: { 201: Pause, ...authErrors } },
  }, async (req, reply) => {
    const who = member(req);
    const now = app.clock();
    const from = req.body.from === undefined ? now : new Date(req.body.from);
    const until = new Date(req.body.until);
    const issue = (message: string) => validation(message, { issues: [{ path: 'body.until', message }] });
    if (until <= from) throw issue('until must be after from');
    if (until <= now) throw issue('until must be in the future');
    if (until.getTime() - from.getTime() > MAX_PAUSE_MS) throw issue('a pause lasts at most a year');
    const merged = await withTransaction(deps.pool, async (tx) => {
      await ensureMember(tx, who);
      await tx.query('select 1 from members where id = $1 for update', [who.id]);
      // Overlapping or touching pauses become one.
      const { rows: gone } = await tx.query<PauseRow>(
        `delete from pauses where member_id = $1 and starts_at <= $3 and ends_at >= $2 returning id, starts_at, ends_at, reason, created_at`,
        [who.id, from, until],
      );
      const start = new Date(Math.min(from.getTime(), ...gone.map((p) => p.starts_at.getTime())));
      const end = new Date(Math.max(until.getTime(), ...gone.map((p) => p.ends_at.getTime())));
      const { rows } = await tx.query<PauseRow>(
        'insert into pauses (member_id, starts_at, ends_at, reason, created_at) values ($1, $2, $3, $4, $5) returning id, starts_at, ends_at, reason, created_at',
        [who.id, start, end, req.body.reason ?? gone.find((p) => p.reason !== null)?.reason ?? null, now],
      );
      await recomputeMemberSchedules(tx, who.id, now);
      return checkedResponse(Pause, pauseOut(rows[0]!));
    });
    return reply.code(201).send(merged);
  });

  r.delete('/v1/pauses/:id', {
    ...secured,
    schema: { tags, security, summary: 'End a pause now (or cancel one not started)', params: IdParams, response: { 204: z.null(), ...authErrors } },
  }, async (req, reply) => {
    const who = member(req);
    const now = app.clock();
    await withTransaction(deps.pool, async (tx) => {
      const { rows } = await tx.query<{ starts_at: Date }>(
        'select starts_at from pauses where id = $1 and member_id = $2 and ends_at > $3 for update',
        [req.params.id, who.id, now],
      );
      const p = rows[0];
      if (p === undefined) throw notFound('pause');
      if (p.starts_at >= now) await tx.query('delete from pauses where id = $1', [req.params.id]);
      else await tx.query('update pauses set ends_at = $2 where id = $1', [req.params.id, now]);
      await recomputeMemberSchedules(tx, who.id, now);
    });
    return reply.code(204).send(null);
  });
}
