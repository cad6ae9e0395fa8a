import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import type pg from 'pg';
import { member } from '../auth/plugin.js';
import { authErrors, iso, listOf, Timestamp } from '../http/schemas.js';

/** For an app user who is someone's contact: the members they watch and how today is going. */
const Watched = z
  .object({
    member_id: z.uuid(),
    display_name: z.string().nullable(),
    tier: z.number().int(),
    today: z.enum(['pending', 'checked_in', 'late', 'missed']).describe('late: deadline passed, still within grace; missed: past grace'),
    last_check_in_at: Timestamp.nullable(),
    next_deadline_at: Timestamp.nullable(),
    open_incident: z.object({ id: z.uuid(), state: z.string(), opened_at: Timestamp }).nullable(),
  })
  .meta({ id: 'Watched' });

type Row = {
  member_id: string; display_name: string | null; tier: number; last: Date | null; next: Date | null;
  missed: boolean; late: boolean; checked_in_today: boolean;
  incident_id: string | null; incident_state: string | null; incident_opened_at: Date | null;
};

export function watchingRoutes(app: FastifyInstance, deps: { pool: pg.Pool }): void {
  app.withTypeProvider<ZodTypeProvider>().get('/v1/watching', {
    preHandler: app.requireMember,
    schema: {
      tags: ['contacts'], security: [{ bearerAuth: [] }], summary: 'Members the caller watches as an active, linked contact',
      response: { 200: listOf(Watched), ...authErrors },
    },
  }, async (req) => {
    const now = app.clock();
    const { rows } = await deps.pool.query<Row>(
      `select m.id as member_id, m.display_name, c.tier,
         last.at as last,
         (select min(s.next_deadline_at) from schedules s where s.member_id = m.id and s.active and s.next_deadline_at > $2) as next,
         exists (select 1 from schedules s where s.member_id = m.id and s.active and s.alert_at <= $2) as missed,
         exists (select 1 from schedules s where s.member_id = m.id and s.active and s.next_deadline_at <= $2 and s.alert_at > $2) as late,
         coalesce((last.at at time zone tz.name)::date = ($2::timestamptz at time zone tz.name)::date, false) as checked_in_today,
         inc.id as incident_id, inc.state as incident_state, inc.opened_at as incident_opened_at
       from contacts c
       join members m on m.id = c.member_id
       -- A zone PostgreSQL does not know (stored before the database refused them) would fail the whole
       -- list for this watcher: "today" is then the UTC day. time_zone_names is a primary-key lookup;
       -- pg_timezone_names would read the time zone database on every call.
       cross join lateral (select case when exists (select 1 from time_zone_names z where z.name = m.time_zone) then m.time_zone else 'UTC' end as name) tz
       left join lateral (select max(checked_in_at) as at from check_ins ci where ci.member_id = m.id) last on true
       left join lateral (select i.id, i.state, i.opened_at from incidents i where i.member_id = m.id and i.state <> 'resolved' order by i.opened_at desc limit 1) inc on true
       where c.linked_user_id = $1 and c.status = 'active'
       order by m.display_name nulls last, m.id`,
      [member(req).id, now],
    );
    return {
      data: rows.map((r) => ({
        member_id: r.member_id,
        display_name: r.display_name,
        tier: r.tier,
        today: r.missed || r.incident_id !== null ? ('missed' as const) : r.late ? ('late' as const) : r.checked_in_today ? ('checked_in' as const) : ('pending' as const),
        last_check_in_at: r.last === null ? null : iso(r.last),
        next_deadline_at: r.next === null ? null : iso(r.next),
        open_incident: r.incident_id === null ? null : { id: r.incident_id, state: r.incident_state!, opened_at: iso(r.incident_opened_at!) },
      })),
      pagination: { next_cursor: null, has_more: false },
    };
  });
}
