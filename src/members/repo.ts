import type { Queryable } from '../db/pool.js';
import type { Principal } from '../auth/jwt.js';

export type MemberRow = {
  id: string;
  email: string | null;
  display_name: string | null;
  time_zone: string;
  phone: string | null;
  /** null: the phone is a claim only (no SMS reminders, no check-in by SMS reply) until verified by a code. */
  phone_verified_at: Date | null;
  sms_opted_out: boolean;
  created_at: Date;
  updated_at: Date;
};

export const MEMBER_COLUMNS = 'id, email, display_name, time_zone, phone, phone_verified_at, sms_opted_out, created_at, updated_at';

/** The member row for a verified token, created on first sight from its claims (one statement). */
export async function ensureMember(db: Queryable, who: Principal): Promise<MemberRow> {
  const { rows } = await db.query<MemberRow>(
    `with ins as (
       insert into members (id, email) values ($1, $2)
       on conflict (id) do nothing
       returning ${MEMBER_COLUMNS}
     )
     select ${MEMBER_COLUMNS} from ins
     union all
     select ${MEMBER_COLUMNS} from members where id = $1
     limit 1`,
    [who.id, who.email ?? null],
  );
  if (rows[0] !== undefined) return rows[0];
  // A concurrent first request inserted the row after this statement's snapshot: read it now.
  const again = await db.query<MemberRow>(`select ${MEMBER_COLUMNS} from members where id = $1`, [who.id]);
  if (again.rows[0] === undefined) throw new Error('member row missing after upsert');
  return again.rows[0];
}

export type MemberPatch = { display_name?: string | null | undefined; time_zone?: string | undefined; phone?: string | null | undefined };

/**
 * A phone set here is unverified (the database's members_phone_verification_rule clears
 * phone_verified_at whenever the phone changes; setting the same phone again keeps it), so it
 * never collides with another member's: only verified phones are unique.
 */
export async function updateMember(db: Queryable, who: Principal, patch: MemberPatch): Promise<MemberRow> {
  await ensureMember(db, who);
  // A new number has not said STOP: its opt-out belonged to the old one.
  const { rows } = await db.query<MemberRow>(
    `update members set
       display_name = case when $2::boolean then $3 else display_name end,
       time_zone = coalesce($4, time_zone),
       sms_opted_out = case when $5::boolean and $6::text is distinct from phone then false else sms_opted_out end,
       phone = case when $5::boolean then $6 else phone end,
       updated_at = now()
     where id = $1
     returning ${MEMBER_COLUMNS}`,
    [who.id, 'display_name' in patch, patch.display_name ?? null, patch.time_zone ?? null, 'phone' in patch, patch.phone ?? null],
  );
  return rows[0]!;
}

/**
 * The member's display name, read under a share lock held to the end of the transaction: a
 * schedule armed in it and a PATCH /v1/me clearing the name cannot both commit (the clear waits,
 * then sees the schedule; or the arming waits, then sees no name).
 */
export async function lockedDisplayName(db: Queryable, memberId: string): Promise<string | null> {
  const { rows } = await db.query<{ display_name: string | null }>('select display_name from members where id = $1 for share', [memberId]);
  return rows[0]?.display_name ?? null;
}

/** Schedules that are armed: active, with a deadline to come. */
export async function armedSchedules(db: Queryable, memberId: string): Promise<number> {
  const { rows } = await db.query<{ n: number }>(
    'select count(*)::int as n from schedules where member_id = $1 and active and next_deadline_at is not null',
    [memberId],
  );
  return rows[0]!.n;
}

/** Deletes the member and, by cascade, every row that belongs to them. */
export async function deleteMember(db: Queryable, memberId: string): Promise<boolean> {
  const { rowCount } = await db.query('delete from members where id = $1', [memberId]);
  return (rowCount ?? 0) > 0;
}
