-- Members' side: contacts, schedules, pauses, check-ins; and the outbox of messages
-- (deliveries) with the dev outbox that stands in for providers not configured.

create table public.contacts (
  id               uuid primary key default gen_random_uuid(),
  member_id        uuid not null references public.members (id) on delete cascade,
  name             text not null check (char_length(name) between 1 and 100),
  email            text check (email is null or char_length(email) <= 254),
  phone            text check (phone is null or phone ~ '^\+[1-9][0-9]{6,14}$'),
  tier             smallint not null default 1 check (tier between 1 and 3),
  notify_on_check_in boolean not null default false,
  -- invited → active | declined. Channel-level states are separate flags: an SMS STOP opts out
  -- of SMS only; a hard bounce disables email only.
  status           text not null default 'invited' check (status in ('invited', 'active', 'declined')),
  sms_opted_out    boolean not null default false,
  email_disabled   boolean not null default false,
  -- The app user who accepted the invitation with a bearer token: push alerts and /v1/watching.
  linked_user_id   uuid,
  invited_at       timestamptz not null default now(),
  responded_at     timestamptz,
  created_at       timestamptz not null default now(),
  updated_at       timestamptz not null default now(),
  check (email is not null or phone is not null)
);
create index contacts_member_id_idx on public.contacts (member_id, created_at);
-- One contact row per address per member: adding the same person twice is a conflict.
create unique index contacts_member_email_uidx on public.contacts (member_id, lower(email)) where email is not null;
create unique index contacts_member_phone_uidx on public.contacts (member_id, phone) where phone is not null;
create index contacts_linked_user_idx on public.contacts (linked_user_id) where linked_user_id is not null;

create table public.schedules (
  id                     uuid primary key default gen_random_uuid(),
  member_id              uuid not null references public.members (id) on delete cascade,
  kind                   text not null check (kind in ('daily', 'once')),
  local_time             text check (local_time ~ '^([01][0-9]|2[0-3]):[0-5][0-9]$'),
  days                   smallint[] not null default '{1,2,3,4,5,6,7}',
  due_at                 timestamptz,
  -- null: follow the member's time zone (changes with it)
  time_zone              text,
  grace_minutes          integer not null default 30 check (grace_minutes between 0 and 720),
  reminder_minutes       integer[] not null default '{30,0}',
  active                 boolean not null default true,
  -- The pending deadline (UTC) and when it becomes a miss; null when nothing is due (a past once).
  next_deadline_at       timestamptz,
  alert_at               timestamptz,
  -- Start of the current window: a check-in after it satisfies next_deadline_at.
  window_start_at        timestamptz not null,
  -- Precomputed deadline after next, so a check-in advances schedules in the same single
  -- statement that records it; recomputed off the hot path (null = to be recomputed).
  following_deadline_at  timestamptz,
  created_at             timestamptz not null default now(),
  updated_at             timestamptz not null default now(),
  check ((kind = 'daily' and local_time is not null) or (kind = 'once' and due_at is not null)),
  check (days <@ '{1,2,3,4,5,6,7}'::smallint[] and cardinality(days) > 0)
);
create index schedules_member_id_idx on public.schedules (member_id);
-- The sweeper's query: due alerts of active schedules, oldest first.
create index schedules_due_alert_idx on public.schedules (alert_at) where active and alert_at is not null;
-- Schedules whose following deadline must be recomputed after a check-in advanced them.
create index schedules_recompute_idx on public.schedules (id) where active and next_deadline_at is not null and following_deadline_at is null and kind = 'daily';

create table public.pauses (
  id          uuid primary key default gen_random_uuid(),
  member_id   uuid not null references public.members (id) on delete cascade,
  starts_at   timestamptz not null,
  ends_at     timestamptz not null,
  reason      text check (reason is null or char_length(reason) <= 200),
  created_at  timestamptz not null default now(),
  check (ends_at > starts_at)
);
create index pauses_member_id_idx on public.pauses (member_id, ends_at);

-- History: grows to hundreds of millions of rows. Every per-member query is served by
-- (member_id, checked_in_at desc, id). To partition by time later: make it
-- `partition by range (checked_in_at)` with monthly partitions; the primary key and the
-- idempotency unique index then need checked_in_at (move idempotency keys to their own
-- small table, expired after 24 h, at that point).
create table public.check_ins (
  id                     uuid primary key default gen_random_uuid(),
  member_id              uuid not null references public.members (id) on delete cascade,
  checked_in_at          timestamptz not null,
  source                 text not null default 'app' check (source in ('app', 'link', 'sms')),
  note                   text check (note is null or char_length(note) <= 500),
  latitude               double precision check (latitude between -90 and 90),
  longitude              double precision check (longitude between -180 and 180),
  accuracy_m             real check (accuracy_m >= 0),
  idempotency_key        text check (idempotency_key is null or char_length(idempotency_key) <= 200),
  request_hash           text,
  -- What this check-in did, so a replay with the same Idempotency-Key gets the same answer.
  next_deadline_at       timestamptz,
  resolved_incident_ids  uuid[] not null default '{}'
);
create index check_ins_member_time_idx on public.check_ins (member_id, checked_in_at desc, id desc);
create unique index check_ins_idempotency_idx on public.check_ins (member_id, idempotency_key) where idempotency_key is not null;

-- The outbox: one row per message per channel. Created in the same transaction as the state
-- change that causes it; a queue job per row carries only its id.
create table public.deliveries (
  id                   uuid primary key default gen_random_uuid(),
  member_id            uuid references public.members (id) on delete cascade,
  contact_id           uuid references public.contacts (id) on delete set null,
  kind                 text not null check (kind in ('invitation', 'reminder', 'alert', 'all_clear', 'ack_notice', 'check_in_note')),
  channel              text not null check (channel in ('push', 'sms', 'email')),
  -- email address, E.164 phone, or the device id for push
  address              text not null,
  subject              text,
  body                 text not null,
  html                 text,
  incident_id          uuid,
  status               text not null default 'pending' check (status in ('pending', 'sent', 'failed', 'cancelled')),
  attempts             integer not null default 0,
  provider             text,
  provider_message_id  text,
  last_error           text,
  error_class          text check (error_class is null or error_class in ('permanent', 'transient', 'configuration')),
  created_at           timestamptz not null default now(),
  sent_at              timestamptz,
  updated_at           timestamptz not null default now()
);
create index deliveries_member_idx on public.deliveries (member_id, created_at desc);
-- The reconciler's query: rows still pending.
create index deliveries_pending_idx on public.deliveries (created_at) where status = 'pending';

-- Every try at handing a delivery to a provider: when, who, and how it ended.
create table public.delivery_attempts (
  id            bigint generated always as identity primary key,
  delivery_id   uuid not null references public.deliveries (id) on delete cascade,
  attempted_at  timestamptz not null,
  provider      text not null,
  outcome       text not null check (outcome in ('accepted', 'failed')),
  error_class   text check (error_class is null or error_class in ('permanent', 'transient', 'configuration')),
  error         text,
  duration_ms   integer
);
create index delivery_attempts_delivery_idx on public.delivery_attempts (delivery_id, attempted_at);

-- What the dev channels "sent", for a person to read at /dev/outbox.
create table public.dev_outbox (
  id           uuid primary key default gen_random_uuid(),
  delivery_id  uuid not null unique references public.deliveries (id) on delete cascade,
  channel      text not null,
  "to"         text not null,
  subject      text,
  body         text not null,
  kind         text not null,
  incident_id  uuid,
  created_at   timestamptz not null default now()
);
create index dev_outbox_created_idx on public.dev_outbox (created_at desc);

alter table public.contacts enable row level security;
alter table public.schedules enable row level security;
alter table public.pauses enable row level security;
alter table public.check_ins enable row level security;
alter table public.deliveries enable row level security;
alter table public.dev_outbox enable row level security;
alter table public.delivery_attempts enable row level security;

create policy contacts_owner_all on public.contacts for all to authenticated
  using (member_id = auth.uid()) with check (member_id = auth.uid());
create policy schedules_owner_all on public.schedules for all to authenticated
  using (member_id = auth.uid()) with check (member_id = auth.uid());
create policy pauses_owner_all on public.pauses for all to authenticated
  using (member_id = auth.uid()) with check (member_id = auth.uid());
create policy check_ins_owner_select on public.check_ins for select to authenticated using (member_id = auth.uid());
create policy check_ins_owner_insert on public.check_ins for insert to authenticated with check (member_id = auth.uid());
create policy deliveries_owner_select on public.deliveries for select to authenticated using (member_id = auth.uid());

grant select, insert, update, delete on public.contacts, public.schedules, public.pauses to authenticated;
grant select, insert on public.check_ins to authenticated;
grant select on public.deliveries to authenticated;
grant all on public.contacts, public.schedules, public.pauses, public.check_ins, public.deliveries, public.dev_outbox, public.delivery_attempts to service_role;
