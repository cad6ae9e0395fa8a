-- Push tokens belong to (member, install), not to whoever registered them last; and a deleted
-- account leaves a small tombstone so that nothing of it comes back (issue 16, findings 3 and 8).

-- 1. Devices: unique per (member, token) instead of per token.
-- Before, registering a token another member held moved that member's device to the caller: anyone
-- who learnt a token could silence someone's reminders and alerts, and 200/201 told them whether the
-- token was registered. Now a member registering a token someone else holds gets a row of their own
-- (the other member keeps theirs), unless they prove they are on the same install: each
-- registration returns a device secret once (32 random bytes, base64url), stored here only as its
-- SHA-256; presenting it (previous_device_secret) when another account signs in on that install
-- deletes the old account's row, so its pushes stop going to a phone someone else now uses.
alter table public.devices drop constraint devices_token_key;
alter table public.devices add constraint devices_member_token_key unique (member_id, token);
-- The unique index leads with member_id: it serves every per-member lookup the old index served.
drop index public.devices_member_id_idx;
-- Dead-token clean-up and the proof check look a token up across members.
create index devices_token_idx on public.devices (token);
-- Null on rows registered before this migration: their next registration by the owner issues one.
alter table public.devices add column secret_hash bytea check (secret_hash is null or octet_length(secret_hash) = 32);
-- RLS is unchanged (devices_owner_all): a member under RLS sees and writes only their own rows, so
-- their own secret hashes; inserting a row for another member's token is exactly what the API
-- allows, and touches nothing of that member.

-- 2. Deleted accounts.
-- A member's deletion is remembered here (one row per member id, kept while a link signed before the
-- deletion could still be valid; retention drops it after that, once no profile has the id):
-- - deletions counts how often this id was deleted: check-in links carry the count in force when
--   they were signed (no count: 0), so a link signed before a deletion stays dead even after the
--   profile is re-created by a still-valid access token (same id);
-- - contact_ids are the deleted member's contacts: invitation and alert links name a contact, whose
--   row is gone, and this says the link died with the account (410 ACCOUNT_DELETED), not with a
--   removed contact. Random ids, nothing personal.
-- No policy: only the service (table owner) reads or writes it; anon and authenticated get nothing.
create table public.deleted_accounts (
  member_id    uuid primary key,
  deleted_at   timestamptz not null,
  deletions    integer not null default 1 check (deletions >= 1),
  contact_ids  uuid[] not null default '{}'
);
create index deleted_accounts_contacts_idx on public.deleted_accounts using gin (contact_ids);
alter table public.deleted_accounts enable row level security;
revoke all on public.deleted_accounts from public, anon, authenticated;
grant select, insert, update, delete on public.deleted_accounts to service_role;

-- Every way a members row goes (DELETE /v1/me, a Supabase client under RLS, psql) records the
-- tombstone and unlinks the account from other members' contacts in the same transaction: the
-- watcher's view, push alerts and billing coverage follow linked_user_id, so they go at once (not
-- "at the next retention run", which never came when the profile was re-created meanwhile). BEFORE
-- DELETE, because the contacts cascade away after the row. Security definer: a member deleting
-- themselves under RLS may not write either table.
create function public.members_record_deletion() returns trigger language plpgsql security definer set search_path = public as $$
declare
  actor text := current_setting('pruuf.actor', true);
begin
  insert into deleted_accounts (member_id, deleted_at, contact_ids)
  values (old.id, now(), coalesce((select array_agg(c.id) from contacts c where c.member_id = old.id), '{}'))
  on conflict (member_id) do update
    set deleted_at = excluded.deleted_at, deletions = deleted_accounts.deletions + 1,
        contact_ids = deleted_accounts.contact_ids || excluded.contact_ids;
  -- The other members' trails record 'contact.unlinked' by the system, never naming who acted
  -- (that would be the deleted account's id).
  perform set_config('pruuf.actor', 'system', true);
  update contacts set linked_user_id = null where linked_user_id = old.id;
  perform set_config('pruuf.actor', coalesce(actor, ''), true);
  return old;
end $$;
revoke execute on function public.members_record_deletion() from public, anon, authenticated;
create trigger members_record_deletion before delete on public.members
  for each row execute function public.members_record_deletion();

-- Deletions before this migration: their member.deleted rows say when (the trail is purged within
-- a day, so these are recent). A profile re-created since keeps its id; its earlier links die now.
insert into public.deleted_accounts (member_id, deleted_at)
select member_id, max(at) from public.audit_log
 where action = 'member.deleted' and member_id is not null
 group by member_id
on conflict do nothing;

-- 3. The audit trail of a deleted account can be purged even when a profile with the same id was
-- created since (before, retention waited for the id to have no profile, which never came): the
-- rows up to the deletion, and only those. GET /v1/audit shows a profile only rows from its own
-- creation on, so it never shows them meanwhile.
create or replace function public.audit_log_append_only() returns trigger language plpgsql as $$
begin
  if tg_op = 'DELETE'
     and current_setting('pruuf.audit_purge', true) = 'deleted_members'
     and old.member_id is not null
     and (not exists (select 1 from public.members m where m.id = old.member_id)
          or exists (select 1 from public.deleted_accounts d where d.member_id = old.member_id and old.at <= d.deleted_at)) then
    return old;
  end if;
  raise exception 'audit_log is append-only' using errcode = 'insufficient_privilege';
end $$;
