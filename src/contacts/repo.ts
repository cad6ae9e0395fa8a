import type { MessageChannelName } from '../channels/types.js';
import type { Queryable } from '../db/pool.js';
import type { Locale } from '../incidents/locales/index.js';

export type ContactStatus = 'invited' | 'active' | 'declined';

export type ContactRow = {
  id: string;
  member_id: string;
  name: string;
  email: string | null;
  phone: string | null;
  tier: number;
  notify_on_check_in: boolean;
  /** One of LOCALES (the database checks it). */
  locale: Locale;
  status: ContactStatus;
  sms_opted_out: boolean;
  sms_disabled: boolean;
  sms_disabled_reason: string | null;
  email_disabled: boolean;
  email_disabled_reason: string | null;
  linked_user_id: string | null;
  invited_at: Date;
  responded_at: Date | null;
  created_at: Date;
  updated_at: Date;
  has_devices: boolean;
};

const COLUMNS = `c.id, c.member_id, c.name, c.email, c.phone, c.tier, c.notify_on_check_in, c.locale, c.status, c.sms_opted_out,
  c.sms_disabled, c.sms_disabled_reason, c.email_disabled, c.email_disabled_reason, c.linked_user_id, c.invited_at, c.responded_at, c.created_at, c.updated_at,
  exists (select 1 from devices d where c.linked_user_id is not null and d.member_id = c.linked_user_id) as has_devices`;

/**
 * The channels an alert would use for this contact right now, before the plan is applied:
 * active contacts on everything they have; invited ones by email only (no SMS without consent);
 * declined ones nothing. Calls are not a channel of an alert's messages (src/incidents/calls.ts).
 */
export function contactChannels(
  c: Pick<ContactRow, 'status' | 'email' | 'phone' | 'sms_opted_out' | 'email_disabled' | 'linked_user_id' | 'has_devices'> & { sms_disabled?: boolean },
): MessageChannelName[] {
  if (c.status === 'declined') return [];
  const out: MessageChannelName[] = [];
  if (c.status === 'active' && c.linked_user_id !== null && c.has_devices) out.push('push');
  if (c.status === 'active' && c.phone !== null && !c.sms_opted_out && c.sms_disabled !== true) out.push('sms');
  if (c.email !== null && !c.email_disabled) out.push('email');
  return out;
}

export async function listContacts(db: Queryable, memberId: string): Promise<ContactRow[]> {
  const { rows } = await db.query<ContactRow>(`select ${COLUMNS} from contacts c where c.member_id = $1 order by c.tier, c.created_at, c.id`, [memberId]);
  return rows;
}

export async function getContact(db: Queryable, memberId: string, id: string): Promise<ContactRow | undefined> {
  const { rows } = await db.query<ContactRow>(`select ${COLUMNS} from contacts c where c.member_id = $1 and c.id = $2`, [memberId, id]);
  return rows[0];
}

/** For invitation links: the contact by id alone (the signed token is the authorisation). */
export async function getContactById(db: Queryable, id: string): Promise<(ContactRow & { member_name: string | null }) | undefined> {
  const { rows } = await db.query<ContactRow & { member_name: string | null }>(
    `select ${COLUMNS}, coalesce(nullif(btrim(m.display_name), ''), m.email) as member_name from contacts c join members m on m.id = c.member_id where c.id = $1`,
    [id],
  );
  return rows[0];
}

/** Locks the member row so concurrent adds cannot pass the plan limit together; returns the current count. */
export async function lockAndCountContacts(db: Queryable, memberId: string): Promise<number> {
  await db.query('select 1 from members where id = $1 for update', [memberId]);
  const { rows } = await db.query<{ n: number }>('select count(*)::int as n from contacts where member_id = $1', [memberId]);
  return rows[0]!.n;
}

export type NewContact = { name: string; email: string | null; phone: string | null; tier: number; notify_on_check_in: boolean; locale?: Locale };

export async function insertContact(db: Queryable, memberId: string, c: NewContact, now: Date): Promise<ContactRow> {
  const { rows } = await db.query<{ id: string }>(
    `insert into contacts (member_id, name, email, phone, tier, notify_on_check_in, locale, invited_at, created_at, updated_at)
     values ($1, $2, $3, $4, $5, $6, $8, $7, $7, $7) returning id`,
    [memberId, c.name, c.email, c.phone, c.tier, c.notify_on_check_in, now, c.locale ?? 'en'],
  );
  return (await getContact(db, memberId, rows[0]!.id))!;
}

export type ContactPatch = Partial<NewContact>;

/** A changed address needs fresh consent: the contact goes back to `invited` (and gets a new invitation). */
export async function updateContact(db: Queryable, memberId: string, id: string, patch: ContactPatch, now: Date): Promise<{ contact: ContactRow; reinvite: boolean } | undefined> {
  const { rows } = await db.query<{ id: string; reinvite: boolean }>(
    `with old as (select * from contacts where member_id = $1 and id = $2 for update)
     update contacts c set
       name = coalesce($3, c.name),
       email = case when $4::boolean then $5 else c.email end,
       phone = case when $6::boolean then $7 else c.phone end,
       tier = coalesce($8, c.tier),
       notify_on_check_in = coalesce($9, c.notify_on_check_in),
       locale = coalesce($11, c.locale),
       status = case when (($4 and $5 is distinct from old.email) or ($6 and $7 is distinct from old.phone)) then 'invited' else c.status end,
       invited_at = case when (($4 and $5 is distinct from old.email) or ($6 and $7 is distinct from old.phone)) then $10 else c.invited_at end,
       sms_opted_out = case when $6 and $7 is distinct from old.phone then false else c.sms_opted_out end,
       sms_disabled = case when $6 and $7 is distinct from old.phone then false else c.sms_disabled end,
       sms_disabled_reason = case when $6 and $7 is distinct from old.phone then null else c.sms_disabled_reason end,
       email_disabled = case when $4 and $5 is distinct from old.email then false else c.email_disabled end,
       email_disabled_reason = case when $4 and $5 is distinct from old.email then null else c.email_disabled_reason end,
       updated_at = $10
     from old where c.id = old.id
     returning c.id, (($4 and $5 is distinct from old.email) or ($6 and $7 is distinct from old.phone)) as reinvite`,
    [memberId, id, patch.name ?? null, 'email' in patch, patch.email ?? null, 'phone' in patch, patch.phone ?? null, patch.tier ?? null, patch.notify_on_check_in ?? null, now, patch.locale ?? null],
  );
  const row = rows[0];
  if (row === undefined) return undefined;
  return { contact: (await getContact(db, memberId, id))!, reinvite: row.reinvite };
}

export async function deleteContact(db: Queryable, memberId: string, id: string): Promise<boolean> {
  const { rowCount } = await db.query('delete from contacts where member_id = $1 and id = $2', [memberId, id]);
  return (rowCount ?? 0) > 0;
}

/**
 * Answer an invitation, once. Only the invitation that was sent last (same invited_at) counts, and
 * only while it is unanswered: the same answer again from the same user (or again without one) is a
 * repeat and changes nothing; any other second answer is a conflict (a forwarded or leaked link must
 * not move a contact's alerts to someone else, nor silence them). A new invitation (the member
 * changes the address, or sends it again) starts over.
 */
export async function respondToInvitation(
  db: Queryable, id: string, invitedAtMs: number, answer: 'active' | 'declined', linkedUserId: string | null, now: Date,
): Promise<{ outcome: 'answered' | 'repeat'; contact: ContactRow } | { outcome: 'conflict'; contact: ContactRow } | undefined> {
  const { rows } = await db.query<{ id: string; member_id: string }>(
    `update contacts set status = $3, responded_at = $5, updated_at = $5,
       linked_user_id = case when $3 = 'active' then $4::uuid end
     where id = $1 and floor(extract(epoch from invited_at) * 1000) = $2 and status = 'invited'
     returning id, member_id`,
    [id, invitedAtMs, answer, linkedUserId, now],
  );
  if (rows[0] !== undefined) return { outcome: 'answered', contact: (await getContact(db, rows[0].member_id, rows[0].id))! };
  const current = await getContactById(db, id);
  if (current === undefined || current.invited_at.getTime() !== invitedAtMs) return undefined;
  const same = current.status === answer && (answer === 'declined' || current.linked_user_id === linkedUserId);
  return { outcome: same ? 'repeat' : 'conflict', contact: current };
}
