import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import type pg from 'pg';
import { member } from '../auth/plugin.js';
import { validation } from '../http/errors.js';
import { authErrors, iso, listOf, Timestamp } from '../http/schemas.js';

export type AuditRouteDeps = { pool: pg.Pool };

const ACTOR_TYPES = ['member', 'contact', 'stripe', 'provider', 'system', 'operator'] as const;

const AuditEntry = z
  .object({
    id: z.string().describe('opaque, increasing'),
    at: Timestamp,
    actor: z.object({ type: z.enum(ACTOR_TYPES), id: z.string().nullable() }),
    action: z.string().describe('e.g. schedule.updated, contact.invitation_active, incident.acknowledged'),
    entity: z.object({ type: z.string(), id: z.string().nullable() }),
    changes: z.array(z.string()).describe('names of the fields that changed (never their values)'),
    detail: z.record(z.string(), z.unknown()).nullable(),
  })
  .meta({ id: 'AuditEntry' });

const AuditQuery = z.strictObject({
  limit: z.coerce.number().int().min(1).max(100).default(50),
  cursor: z.string().max(40).optional(),
});

type Row = {
  id: number; at: Date; actor_type: (typeof ACTOR_TYPES)[number]; actor_id: string | null; action: string;
  entity_type: string; entity_id: string | null; changes: string[]; detail: Record<string, unknown> | null;
};

// The cursor is the last id seen; encoded so clients treat it as opaque.
const encodeCursor = (id: number): string => Buffer.from(`a${id}`).toString('base64url');
function decodeCursor(c: string): number {
  const m = /^a([1-9][0-9]{0,15})$/.exec(Buffer.from(c, 'base64url').toString('utf8'));
  if (m === null) throw validation('cursor is not valid', { issues: [{ path: 'querystring.cursor', message: 'use next_cursor from a previous page' }] });
  return Number(m[1]);
}

/** GET /v1/audit: the caller's own trail, newest first. The rows are written by database triggers. */
export function auditRoutes(app: FastifyInstance, deps: AuditRouteDeps): void {
  const r = app.withTypeProvider<ZodTypeProvider>();
  r.get('/v1/audit', {
    preHandler: app.requireMember,
    schema: {
      tags: ['audit'], security: [{ bearerAuth: [] }],
      summary: 'Who did what and when to the caller\'s account, contacts, schedules, pauses, subscription and incidents, newest first',
      querystring: AuditQuery,
      response: { 200: listOf(AuditEntry), ...authErrors },
    },
  }, async (req) => {
    const { limit, cursor } = req.query;
    const before = cursor === undefined ? null : decodeCursor(cursor);
    // Only the trail of the profile as it is now: from its creation on. A deleted account's trail
    // (kept until retention purges it) is not readable with a token that outlived the deletion,
    // neither before nor after that token re-creates a profile with the same id.
    const { rows } = await deps.pool.query<Row>(
      `select a.id, a.at, a.actor_type, a.actor_id, a.action, a.entity_type, a.entity_id, a.changes, a.detail
         from audit_log a join members m on m.id = a.member_id and a.at >= m.created_at
        where a.member_id = $1 and ($2::bigint is null or a.id < $2)
        order by a.id desc limit $3`,
      [member(req).id, before, limit + 1],
    );
    const page = rows.slice(0, limit);
    const hasMore = rows.length > limit;
    return {
      data: page.map((x) => ({
        id: String(x.id), at: iso(x.at), actor: { type: x.actor_type, id: x.actor_id }, action: x.action,
        entity: { type: x.entity_type, id: x.entity_id }, changes: x.changes, detail: x.detail,
      })),
      pagination: { next_cursor: hasMore ? encodeCursor(page[page.length - 1]!.id) : null, has_more: hasMore },
    };
  });
}
