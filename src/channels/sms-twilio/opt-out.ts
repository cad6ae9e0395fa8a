import type { Queryable } from '../../db/pool.js';

/**
 * SMS consent follows the phone number, not a contact row: the same person can be the contact of
 * several members (and a member themselves), and one STOP covers every one of them, as it does
 * at the carrier. Returns how many contact and member rows changed.
 */
export async function setSmsOptOut(db: Queryable, phone: string, optedOut: boolean, now: Date): Promise<{ contacts: number; members: number }> {
  const { rows } = await db.query<{ contacts: number; members: number }>(
    `with c as (
       update contacts set sms_opted_out = $2, updated_at = $3 where phone = $1 and sms_opted_out <> $2 returning 1
     ), m as (
       update members set sms_opted_out = $2, updated_at = $3 where phone = $1 and sms_opted_out <> $2 returning 1
     )
     select (select count(*) from c)::int as contacts, (select count(*) from m)::int as members`,
    [phone, optedOut, now],
  );
  return rows[0]!;
}
