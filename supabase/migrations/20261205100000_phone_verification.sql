-- Member phones are verified by an SMS code before they count (issue 16 #4, "phone squatting").
-- Before: any member could claim any number with PATCH /v1/me, and the unique index then locked
-- the number's real owner out (409) and told them the number was registered. Now a phone is only
-- a claim until its holder types the code we texted to it: only a verified phone gets SMS
-- reminders, checks in by SMS reply, and is unique across members.

alter table public.members add column phone_verified_at timestamptz;

-- Phones stored before this migration stay verified. They passed the rule of their time (unique,
-- first come first served), and members check in by SMS reply with them today: unverifying them
-- would silently stop their SMS reminders and reply check-ins, the failure this service exists
-- to prevent. A number squatted among them is undone the moment its holder verifies it (the newer
-- proof wins, see POST /v1/me/phone/verification/confirm). Runs before the rule below exists.
update public.members set phone_verified_at = now() where phone is not null;

alter table public.members add constraint members_phone_verified_has_phone
  check (phone_verified_at is null or phone is not null);

-- Only a verified phone is unique: an unverified claim blocks nobody. Replies to our texts are
-- matched to the one member who verified the sender's number.
drop index public.members_phone_uidx;
create unique index members_verified_phone_uidx on public.members (phone) where phone_verified_at is not null;
-- STOP/START change every row with the number, verified or not (consent follows the number).
create index members_phone_idx on public.members (phone) where phone is not null;

-- phone_verified_at is the service's to set (after a correct code), never a Supabase client's:
-- anon/authenticated may not write it (UPDATE or INSERT). Any writer that changes the phone without
-- naming phone_verified_at in the same statement clears it: the proof was for the old number.
-- (The general column rules for RLS writers are migration 20261205090000's; this one is ours.)
create function public.members_phone_verification_rule() returns trigger language plpgsql as $$
begin
  if tg_op = 'UPDATE' and new.phone is distinct from old.phone
     and new.phone_verified_at is not distinct from old.phone_verified_at then
    new.phone_verified_at := null;
  elsif current_user in ('anon', 'authenticated')
     and new.phone_verified_at is distinct from (case when tg_op = 'UPDATE' then old.phone_verified_at end) then
    raise exception using errcode = 'insufficient_privilege', table = tg_table_name, column = 'phone_verified_at',
      message = 'members.phone_verified_at is set by the service only, after an SMS code (POST /v1/me/phone/verification/confirm)';
  end if;
  return new;
end $$;
-- A trigger function: nobody calls it directly (firing a trigger checks no EXECUTE privilege).
revoke execute on function public.members_phone_verification_rule() from public, anon, authenticated;
create trigger members_phone_verification_rule before insert or update of phone, phone_verified_at on public.members
  for each row execute function public.members_phone_verification_rule();

-- The audit trail also records a verification gained or lost (field name only, never the value).
create or replace function public.audit_members() returns trigger language plpgsql security definer set search_path = public as $$
declare ch text[];
begin
  if tg_op = 'INSERT' then
    perform audit_write(new.id, 'member', new.id::text, 'member.created', 'member', new.id::text, '{}', null);
  elsif tg_op = 'DELETE' then
    perform audit_write(old.id, 'member', old.id::text, 'member.deleted', 'member', old.id::text, '{}', null);
  else
    ch := audit_changed(to_jsonb(old), to_jsonb(new), array['display_name', 'time_zone', 'phone', 'phone_verified_at', 'email', 'sms_opted_out']);
    if cardinality(ch) > 0 then
      perform audit_write(new.id, 'member', new.id::text, 'member.updated', 'member', new.id::text, ch, null);
    end if;
  end if;
  return null;
end $$;
drop trigger audit_members_update on public.members;
create trigger audit_members_update after update of display_name, time_zone, phone, phone_verified_at, email, sms_opted_out on public.members
  for each row execute function public.audit_members();

-- One row per code sent. The code itself is never stored: code_hash is an HMAC keyed by a secret
-- the database does not hold (derived from LINK_SIGNING_SECRET), so a copy of the table cannot be
-- brute-forced over the million six-digit codes. Rows serve the 10-minute code, its 5 tries, and
-- the resend limits (per member and per number, over the last hour); retention deletes them after
-- a day, and they go with the member.
create table public.phone_verifications (
  id           uuid primary key,
  member_id    uuid not null references public.members (id) on delete cascade,
  phone        text not null check (phone ~ '^\+[1-9][0-9]{6,14}$'),
  code_hash    bytea not null check (octet_length(code_hash) = 32),
  created_at   timestamptz not null,
  expires_at   timestamptz not null,
  attempts     integer not null default 0 check (attempts between 0 and 5),
  -- pending → confirmed (right code), dead (5 wrong tries) or superseded (a newer code was sent)
  state        text not null default 'pending' check (state in ('pending', 'confirmed', 'dead', 'superseded')),
  finished_at  timestamptz
);
create index phone_verifications_member_idx on public.phone_verifications (member_id, created_at desc);
create index phone_verifications_phone_idx on public.phone_verifications (phone, created_at desc);
create index phone_verifications_created_idx on public.phone_verifications (created_at);

-- No policy: members never read it (not even their own rows: the hashes are the service's), only
-- the service connects to it.
alter table public.phone_verifications enable row level security;
revoke all on public.phone_verifications from public, anon, authenticated;
grant all on public.phone_verifications to service_role;

-- The code's SMS is an outbox row like every message, kind 'verification'. Its text is rendered
-- when the worker sends it: `render` holds the code sealed (AES-256-GCM, key derived from
-- LINK_SIGNING_SECRET, bound to the verification id and the number), never in clear, because a
-- member reads their own deliveries under RLS and must not read a code texted to a number they
-- do not hold.
alter table public.deliveries drop constraint deliveries_kind_check;
alter table public.deliveries add constraint deliveries_kind_check
  check (kind in ('invitation', 'reminder', 'alert', 'all_clear', 'ack_notice', 'check_in_note', 'verification'));
alter table public.deliveries drop constraint deliveries_text_or_render;
alter table public.deliveries add constraint deliveries_text_or_render check (
  body is not null
  or coalesce(kind = 'alert' and incident_id is not null and jsonb_typeof(render) = 'object'
              and jsonb_typeof(render -> 'round') = 'number' and jsonb_typeof(render -> 'contact_id') = 'string'
              and jsonb_typeof(render -> 'ack_url') = 'string', false)
  or coalesce(kind = 'verification' and jsonb_typeof(render) = 'object'
              and jsonb_typeof(render -> 'verification_id') = 'string' and jsonb_typeof(render -> 'sealed') = 'string', false)
);
