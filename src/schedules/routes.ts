import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import type pg from 'pg';
import { member } from '../auth/plugin.js';
import { withTransaction } from '../db/pool.js';
import { displayNameRequired, notFound, validation } from '../http/errors.js';
import { authErrors, checkedResponse, IdParams, Instant, iso, listOf, Timestamp } from '../http/schemas.js';
import { ensureMember, lockedDisplayName } from '../members/repo.js';
import { DEADLINE_HORIZON, isValidLocalTime } from './deadline.js';
import * as repo from './repo.js';
import { computeTimers } from './timers.js';
import { timeZoneField, type TimeZones } from './zones.js';

const LocalTime = z.string().refine(isValidLocalTime, 'must be HH:MM, 00:00 to 23:59');
const Days = z.array(z.number().int().min(1).max(7)).min(1).max(7).refine((d) => new Set(d).size === d.length, 'days must not repeat');
const Reminders = z.array(z.number().int().min(0).max(1440)).max(5).refine((d) => new Set(d).size === d.length, 'reminders must not repeat');
// A once deadline must leave room for its alert (deadline + up to 720 minutes of grace) before 2200.
const DueAt = Instant.refine((s) => Date.parse(s) < DEADLINE_HORIZON, `must be before ${new Date(DEADLINE_HORIZON).toISOString()}, so that its alert (after up to 12 h of grace) falls before 2200`);

/** Request bodies: built per app, because a valid time zone is one the app's database knows. */
function bodies(zones: TimeZones) {
  const common = {
    time_zone: timeZoneField(zones).nullable().optional().describe("IANA zone; null or absent: the member's, following its changes"),
    grace_minutes: z.number().int().min(0).max(720).optional(),
    reminder_minutes: Reminders.optional().describe('minutes before the deadline to remind the member'),
    active: z.boolean().optional(),
  };
  const Daily = z.strictObject({ kind: z.literal('daily'), local_time: LocalTime, days: Days.optional(), ...common });
  const Once = z.strictObject({ kind: z.literal('once'), due_at: DueAt, ...common });
  return {
    NewSchedule: z.discriminatedUnion('kind', [Daily, Once]),
    SchedulePatch: z
      .strictObject({ local_time: LocalTime.optional(), days: Days.optional(), due_at: DueAt.optional(), ...common })
      .refine((b) => Object.keys(b).length > 0, 'give at least one field to change'),
  };
}

const Schedule = z
  .object({
    id: z.uuid(),
    kind: z.enum(['daily', 'once']),
    local_time: z.string().nullable(),
    days: z.array(z.number().int()),
    due_at: Timestamp.nullable(),
    time_zone: z.string().describe('the zone in force'),
    follows_member_time_zone: z.boolean(),
    grace_minutes: z.number().int(),
    reminder_minutes: z.array(z.number().int()),
    active: z.boolean(),
    next_deadline_at: Timestamp.nullable(),
    alert_at: Timestamp.nullable().describe('next_deadline_at + grace: when a miss alerts the contacts'),
    created_at: Timestamp,
    updated_at: Timestamp,
  })
  .meta({ id: 'Schedule' });

function scheduleOut(s: repo.ScheduleRow) {
  return {
    id: s.id,
    kind: s.kind,
    local_time: s.local_time,
    days: s.days,
    due_at: s.due_at === null ? null : iso(s.due_at),
    time_zone: s.time_zone ?? s.member_time_zone,
    follows_member_time_zone: s.time_zone === null,
    grace_minutes: s.grace_minutes,
    reminder_minutes: s.reminder_minutes,
    active: s.active,
    next_deadline_at: s.next_deadline_at === null ? null : iso(s.next_deadline_at),
    alert_at: s.alert_at === null ? null : iso(s.alert_at),
    created_at: iso(s.created_at),
    updated_at: iso(s.updated_at),
  };
}

/**
 * An armed schedule ends, on a miss, in alerts that say who missed the check-in: without a display
 * name they could only say "a Pruuf member". Arming (creating an active schedule, or changing one
 * that stays or becomes active: its timers restart) needs a name; disarming never does, nor does a
 * check-in, nor an SOS (a person in danger is never refused: see POST /v1/sos).
 */
async function requireNameToArm(tx: pg.PoolClient, memberId: string): Promise<void> {
  if ((await lockedDisplayName(tx, memberId)) !== null) return;
  throw displayNameRequired(
    'set your display name first (PATCH /v1/me with {"display_name": "…"}): alerts tell your contacts who missed a check-in, so an active schedule needs it',
  );
}

export type ScheduleDeps = { pool: pg.Pool; zones: TimeZones };

export function scheduleRoutes(app: FastifyInstance, deps: ScheduleDeps): void {
  const r = app.withTypeProvider<ZodTypeProvider>();
  const secured = { preHandler: app.requireMember };
  const security = [{ bearerAuth: [] }];
  const tags = ['schedules'];
  const { NewSchedule, SchedulePatch } = bodies(deps.zones);

  r.get('/v1/schedules', {
    ...secured,
    schema: { tags, security, summary: "The member's schedules", response: { 200: listOf(Schedule), ...authErrors } },
  }, async (req) => ({ data: (await repo.listSchedules(deps.pool, member(req).id)).map(scheduleOut), pagination: { next_cursor: null, has_more: false } }));

  r.post('/v1/schedules', {
    ...secured,
    schema: { tags, security, summary: 'Create a schedule: daily at a local time, or once by an instant (an active one needs a display name: 400 DISPLAY_NAME_REQUIRED)', body: NewSchedule, response: { 201: Schedule, ...authErrors } },
  }, async (req, reply) => {
    const who = member(req);
    const now = app.clock();
    const b = req.body;
    const input: repo.ScheduleInput = {
      kind: b.kind,
      local_time: b.kind === 'daily' ? b.local_time : null,
      days: b.kind === 'daily' ? [...(b.days ?? [1, 2, 3, 4, 5, 6, 7])].sort() : [1, 2, 3, 4, 5, 6, 7],
      due_at: b.kind === 'once' ? new Date(b.due_at) : null,
      time_zone: b.time_zone ?? null,
      grace_minutes: b.grace_minutes ?? 30,
      reminder_minutes: b.reminder_minutes ?? [30, 0],
      active: b.active ?? true,
    };
    if (input.kind === 'once' && input.due_at! <= now) throw validation('due_at must be in the future', { issues: [{ path: 'body.due_at', message: 'is in the past' }] });
    const row = await withTransaction(deps.pool, async (tx) => {
      await ensureMember(tx, who);
      if (input.active) await requireNameToArm(tx, who.id);
      const ctx = await repo.timerContext(tx, who.id, now);
      const id = await repo.insertSchedule(tx, who.id, input, computeTimers(input, ctx.timeZone, now, ctx.pauses, ctx.lastCheckInAt), now);
      return checkedResponse(Schedule, scheduleOut((await repo.getSchedule(tx, who.id, id))!));
    });
    return reply.code(201).send(row);
  });

  r.get('/v1/schedules/:id', {
    ...secured,
    schema: { tags, security, summary: 'One schedule', params: IdParams, response: { 200: Schedule, ...authErrors } },
  }, async (req) => {
    const s = await repo.getSchedule(deps.pool, member(req).id, req.params.id);
    if (s === undefined) throw notFound('schedule');
    return scheduleOut(s);
  });

  r.patch('/v1/schedules/:id', {
    ...secured,
    schema: { tags, security, summary: 'Change a schedule (timers restart from now: no retroactive alert; one left active needs a display name: 400 DISPLAY_NAME_REQUIRED)', params: IdParams, body: SchedulePatch, response: { 200: Schedule, ...authErrors } },
  }, async (req) => {
    const who = member(req);
    const now = app.clock();
    const row = await withTransaction(deps.pool, async (tx) => {
      const cur = await repo.getSchedule(tx, who.id, req.params.id, true);
      if (cur === undefined) throw notFound('schedule');
      const b = req.body;
      if (cur.kind === 'daily' && b.due_at !== undefined) throw validation('due_at applies to once schedules', { issues: [{ path: 'body.due_at', message: 'not for a daily schedule' }] });
      if (cur.kind === 'once' && (b.local_time !== undefined || b.days !== undefined)) throw validation('local_time and days apply to daily schedules', { issues: [{ path: 'body.local_time', message: 'not for a once schedule' }] });
      const input: repo.ScheduleInput = {
        kind: cur.kind,
        local_time: b.local_time ?? cur.local_time,
        days: b.days === undefined ? cur.days : [...b.days].sort(),
        due_at: b.due_at === undefined ? cur.due_at : new Date(b.due_at),
        time_zone: b.time_zone === undefined ? cur.time_zone : b.time_zone,
        grace_minutes: b.grace_minutes ?? cur.grace_minutes,
        reminder_minutes: b.reminder_minutes ?? cur.reminder_minutes,
        active: b.active ?? cur.active,
      };
      if (input.kind === 'once' && b.due_at !== undefined && input.due_at! <= now) throw validation('due_at must be in the future', { issues: [{ path: 'body.due_at', message: 'is in the past' }] });
      if (input.active) await requireNameToArm(tx, who.id);
      const ctx = await repo.timerContext(tx, who.id, now);
      await repo.updateSchedule(tx, cur.id, input, computeTimers(input, ctx.timeZone, now, ctx.pauses, ctx.lastCheckInAt), now);
      return checkedResponse(Schedule, scheduleOut((await repo.getSchedule(tx, who.id, cur.id))!));
    });
    return row;
  });

  r.delete('/v1/schedules/:id', {
    ...secured,
    schema: { tags, security, summary: 'Remove a schedule', params: IdParams, response: { 204: z.null(), ...authErrors } },
  }, async (req, reply) => {
    if (!(await repo.deleteSchedule(deps.pool, member(req).id, req.params.id))) throw notFound('schedule');
    return reply.code(204).send(null);
  });
}
