import type { Queryable } from '../db/pool.js';
import { AppError } from '../http/errors.js';

/**
 * What the links in messages learn from a deleted account's tombstone (table deleted_accounts,
 * written by the members_record_deletion trigger whichever way the members row goes).
 *
 * Check-in links name the member. The id outlives a deletion when a still-valid access token
 * re-creates the profile, so a check-in link carries the member's link generation: how often the
 * id had been deleted when the link was signed (absent: 0). A link whose generation is below the
 * current count was signed before a deletion and is dead for good.
 *
 * Invitation and alert links name a contact of the member; those rows are gone with the account,
 * and the tombstone's contact ids tell "the account was deleted" from "the member removed you".
 */

export const ACCOUNT_DELETED = 'ACCOUNT_DELETED';

export const accountDeleted = (message: string): AppError => new AppError(410, ACCOUNT_DELETED, message);

/** The generation a check-in link signed now must carry for this member. */
export async function linkGeneration(db: Queryable, memberId: string): Promise<number> {
  const { rows } = await db.query<{ deletions: number }>('select deletions from deleted_accounts where member_id = $1', [memberId]);
  return rows[0]?.deletions ?? 0;
}

/**
 * Whether a check-in link for `memberId` signed at `generation` belongs to a deleted account: the
 * member is gone, or was deleted after the link was signed (and possibly re-created since). We
 * signed the link, so a member with no row existed once: that is a deletion too.
 */
export async function checkInLinkOfDeletedAccount(db: Queryable, memberId: string, generation: number): Promise<boolean> {
  const { rows } = await db.query<{ present: boolean; deletions: number | null }>(
    `select exists (select 1 from members where id = $1) as present,
            (select deletions from deleted_accounts where member_id = $1) as deletions`,
    [memberId],
  );
  const r = rows[0]!;
  return !r.present || (r.deletions ?? 0) > generation;
}

/** Whether `contactId` was a contact of an account deleted since (within the links' lifetime). */
export async function contactOfDeletedAccount(db: Queryable, contactId: string): Promise<boolean> {
  const { rowCount } = await db.query('select 1 from deleted_accounts where contact_ids @> array[$1::uuid] limit 1', [contactId]);
  return (rowCount ?? 0) > 0;
}
