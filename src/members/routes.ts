import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import type pg from 'pg';
import { member } from '../auth/plugin.js';
import { subscriptionsOf } from '../billing/repo.js';
import { withTransaction } from '../db/pool.js';
import { Phone } from '../contacts/schemas.js';
import { conflict, displayNameRequired, unavailable } from '../http/errors.js';
import { authErrors, checkedResponse, ErrorEnvelopeSchema, iso, Timestamp } from '../http/schemas.js';
import { recomputeMemberSchedules } from '../schedules/repo.js';
import { timeZoneField, type TimeZones } from '../schedules/zones.js';
import * as repo from './repo.js';
import type { AuthUserDeleter } from './supabase-admin.js';

export const Member = z
  .object({
    id: z.uuid(),
    email: z.string().nullable(),
    display_name: z.string().nullable(),
    time_zone: z.string(),
    phone: z.string().nullable().describe('E.164; once verified, SMS reminders go here and a reply of OK from it checks in'),
    phone_verified: z.boolean().describe('the member proved they hold the phone with an SMS code (POST /v1/me/phone/verification); an unverified phone gets no SMS and cannot check in by SMS reply; changing the phone clears it'),
    sms_opted_out: z.boolean().describe('the phone texted STOP: no SMS until it texts START; cleared when the phone changes'),
    created_at: Timestamp,
    updated_at: Timestamp,
  })
  .meta({ id: 'Member' });

/** Built per app: a valid time zone is one the app's database knows too. */
const memberPatch = (zones: TimeZones) => z
  .strictObject({
    display_name: z.string().trim().min(1).max(100).nullable().optional(),
    time_zone: timeZoneField(zones).optional(),
    phone: Phone.nullable().optional().describe('E.164 (spaces, dots, dashes and brackets are removed); null removes it. Stored unverified: verify it with POST /v1/me/phone/verification'),
  })
  .refine((b) => Object.keys(b).length > 0, 'give at least one of display_name, time_zone, phone');

export const memberOut = ({ phone_verified_at: verifiedAt, ...m }: repo.MemberRow) =>
  ({ ...m, phone_verified: verifiedAt !== null, created_at: iso(m.created_at), updated_at: iso(m.updated_at) });

/** Subscription states in which Stripe will charge again at the next period. */
const STILL_CHARGING = new Set(['active', 'trialing', 'past_due', 'unpaid']);

export type MemberRouteDeps = { pool: pg.Pool; zones: TimeZones; deleteAuthUser?: AuthUserDeleter | undefined };

export function memberRoutes(app: FastifyInstance, deps: MemberRouteDeps): void {
  const r = app.withTypeProvider<ZodTypeProvider>();
  const secured = { preHandler: app.requireMember };
  const security = [{ bearerAuth: [] }];
  const MemberPatch = memberPatch(deps.zones);

  r.get('/v1/me', {
    ...secured,
    schema: { tags: ['members'], summary: "The caller's profile (created on first call)", security, response: { 200: Member, ...authErrors } },
  }, async (req) => memberOut(await repo.ensureMember(deps.pool, member(req))));

  r.patch('/v1/me', {
    ...secured,
    schema: { tags: ['members'], summary: 'Change display name, time zone or phone (a new phone is unverified; the name cannot be cleared while a schedule is active: 409 DISPLAY_NAME_REQUIRED)', security, body: MemberPatch, response: { 200: Member, ...authErrors, 409: ErrorEnvelopeSchema } },
  }, async (req) => {
    const who = member(req);
    // A new time zone moves every schedule that follows the member's zone, in the same transaction.
    // A phone never conflicts: it is stored unverified, and only verified phones are unique (no
    // answer here says whether another member uses the number).
    return withTransaction(deps.pool, async (tx) => {
      const before = await repo.ensureMember(tx, who);
      const after = await repo.updateMember(tx, who, req.body);
      // The update holds the member row: a schedule being armed meanwhile has committed (we see it) or waits and then sees no name.
      if (req.body.display_name === null) {
        const armed = await repo.armedSchedules(tx, who.id);
        if (armed > 0) {
          throw displayNameRequired(
            `you have ${armed} active schedule${armed === 1 ? '' : 's'}, and their alerts tell your contacts who you are: keep a display name, or deactivate (PATCH active false) or delete them first`,
            409, { active_schedules: armed },
          );
        }
      }
      if (after.time_zone !== before.time_zone) await recomputeMemberSchedules(tx, who.id, app.clock());
      return checkedResponse(Member, memberOut(after));
    });
  });

  r.delete('/v1/me', {
    ...secured,
    schema: {
      tags: ['members'],
      summary: 'Delete the account and all personal data (contacts are told nothing)',
      security,
      response: { 204: z.null(), ...authErrors, 409: ErrorEnvelopeSchema, 503: ErrorEnvelopeSchema },
    },
  }, async (req, reply) => {
    const who = member(req);
    // The data and the auth user go together: if Supabase refuses, nothing is deleted and the client retries.
    await withTransaction(deps.pool, async (tx) => {
      // Deleting the account would not stop Stripe charging the card: the member cancels first.
      const charging = (await subscriptionsOf(tx, who.id)).filter((s) => STILL_CHARGING.has(s.status) && !s.cancel_at_period_end);
      if (charging.length > 0) {
        throw conflict('cancel your subscription first (POST /v1/billing/portal), then delete the account: deleting it would not stop the payments', { subscriptions: charging.length });
      }
      // A user who never opened their profile can still be someone's linked contact: the profile is
      // created first so that its deletion goes the one way every deletion goes (the
      // members_record_deletion trigger: tombstone, links to the account cleared).
      await repo.ensureMember(tx, who);
      await repo.deleteMember(tx, who.id);
      if (deps.deleteAuthUser !== undefined) {
        try {
          await deps.deleteAuthUser(who.id);
        } catch (err) {
          req.log.error({ err: { message: (err as Error).message } }, 'deleting the Supabase Auth user failed');
          throw unavailable('could not delete the sign-in account right now; nothing was deleted, retry shortly', 30);
        }
      }
    });
    return reply.code(204).send(null);
  });
}
