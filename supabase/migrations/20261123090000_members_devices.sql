-- Members and their push devices.
-- members.id is the Supabase Auth user id (the JWT "sub"). There is no foreign key to auth.users
-- so the same schema runs on plain PostgreSQL; the API creates the row on first authenticated call.

create table public.members (
  id            uuid primary key,
  email         text,
  display_name  text check (display_name is null or char_length(display_name) <= 100),
  time_zone     text not null default 'UTC',
  created_at    timestamptz not null default now(),
  updated_at    timestamptz not null default now()
);

create table public.devices (
  id            uuid primary key default gen_random_uuid(),
  member_id     uuid not null references public.members (id) on delete cascade,
  -- A push token identifies one app install; if it shows up under another member the phone changed hands.
  token         text not null unique check (char_length(token) between 1 and 4096),
  platform      text not null check (platform in ('ios', 'android', 'web')),
  created_at    timestamptz not null default now(),
  last_seen_at  timestamptz not null default now()
);
create index devices_member_id_idx on public.devices (member_id);

-- Liveness of worker processes, for operators (/readyz detail, metrics).
create table public.worker_heartbeats (
  worker_id     text primary key,
  queue_backend text not null,
  beat_at       timestamptz not null
);

-- Row Level Security: the API connects with a privileged role and authorises every query by
-- member id itself; RLS is the second wall for anything that reaches the tables with a user's JWT
-- (Supabase's PostgREST, the dashboard, a leaked anon key).
alter table public.members enable row level security;
alter table public.devices enable row level security;
alter table public.worker_heartbeats enable row level security;

create policy members_self_select on public.members for select to authenticated using (id = auth.uid());
create policy members_self_update on public.members for update to authenticated using (id = auth.uid()) with check (id = auth.uid());
create policy members_self_delete on public.members for delete to authenticated using (id = auth.uid());

create policy devices_owner_all on public.devices for all to authenticated
  using (member_id = auth.uid()) with check (member_id = auth.uid());

grant select, update, delete on public.members to authenticated;
grant select, insert, update, delete on public.devices to authenticated;
grant all on public.members, public.devices, public.worker_heartbeats to service_role;
