-- Incidents: a missed deadline (or an SOS) and the escalation that follows, until resolved.

create table public.incidents (
  id                     uuid primary key default gen_random_uuid(),
  member_id              uuid not null references public.members (id) on delete cascade,
  schedule_id            uuid references public.schedules (id) on delete set null,
  kind                   text not null check (kind in ('missed', 'sos')),
  -- The missed deadline and when it became a miss (null for an SOS).
  deadline_at            timestamptz,
  alert_at               timestamptz,
  state                  text not null default 'open' check (state in ('open', 'acknowledged', 'resolved')),
  opened_at              timestamptz not null,
  -- How late we were in opening it (our own outage): said in the message.
  delayed_by_seconds     integer not null default 0,
  -- The escalation plan as it was when the incident opened: later edits never change an alert in flight.
  -- {"tiers": [{"tier": 1, "contacts": [{"id", "name", "channels": [{"channel", "address"}]}]}], "member_name", "time_zone"}
  plan                   jsonb not null,
  escalation_minutes     integer not null,
  max_rounds             integer not null,
  ack_timeout_minutes    integer not null,
  -- Where escalation stands: the last step sent, and when the next one is due (null: none due).
  step_no                integer not null default 0,
  round                  integer not null default 1,
  tier_index             integer not null default 0,
  next_step_at           timestamptz,
  acknowledged_at        timestamptz,
  acknowledged_by        uuid references public.contacts (id) on delete set null,
  ack_expires_at         timestamptz,
  resolved_at            timestamptz,
  resolution             text check (resolution in ('check_in', 'member_resolved')),
  resolved_by_check_in   uuid,
  note                   text,
  latitude               double precision,
  longitude              double precision,
  last_check_in_at       timestamptz,
  last_latitude          double precision,
  last_longitude         double precision,
  created_at             timestamptz not null default now()
);
create index incidents_member_idx on public.incidents (member_id, opened_at desc);
-- One incident per missed deadline, whatever number of sweepers race for it.
create unique index incidents_schedule_deadline_uidx on public.incidents (schedule_id, deadline_at) where schedule_id is not null;
-- The sweeper's timers: escalation steps due, acknowledgements timed out, open incidents of a member.
create index incidents_next_step_idx on public.incidents (next_step_at) where state = 'open' and next_step_at is not null;
create index incidents_ack_expiry_idx on public.incidents (ack_expires_at) where state = 'acknowledged';
create index incidents_unresolved_idx on public.incidents (member_id) where state <> 'resolved';

create table public.incident_events (
  id           bigint generated always as identity primary key,
  incident_id  uuid not null references public.incidents (id) on delete cascade,
  at           timestamptz not null,
  -- opened, step, acknowledged, escalated_by_contact, ack_timed_out, exhausted, resolved, failover
  type         text not null,
  step_no      integer,
  tier         integer,
  round        integer,
  contact_id   uuid,
  detail       jsonb
);
create index incident_events_incident_idx on public.incident_events (incident_id, at, id);

alter table public.deliveries add column step_no integer;
-- At most one alert per (incident step, contact, channel), whoever retries.
create unique index deliveries_step_uidx on public.deliveries (incident_id, step_no, contact_id, channel, kind) where incident_id is not null;
create index deliveries_incident_idx on public.deliveries (incident_id) where incident_id is not null;

-- Reminders to the member before a deadline: the next one due (null: none left for this deadline).
alter table public.schedules add column next_reminder_at timestamptz;
create index schedules_reminder_idx on public.schedules (next_reminder_at) where active and next_reminder_at is not null;

-- Every path that moves a deadline (create, edit, check-in, sweep) re-arms its first reminder
-- here, in one place; the sweeper then steps through the remaining offsets itself.
create function public.schedules_arm_reminder() returns trigger language plpgsql as $$
begin
  if tg_op = 'INSERT'
     or new.next_deadline_at is distinct from old.next_deadline_at
     or new.reminder_minutes is distinct from old.reminder_minutes
     or new.active is distinct from old.active then
    new.next_reminder_at := case
      when new.active and new.next_deadline_at is not null and cardinality(new.reminder_minutes) > 0
      then new.next_deadline_at - make_interval(mins => (select max(o) from unnest(new.reminder_minutes) o))
    end;
  end if;
  return new;
end $$;
create trigger schedules_arm_reminder before insert or update on public.schedules
  for each row execute function public.schedules_arm_reminder();

alter table public.incidents enable row level security;
alter table public.incident_events enable row level security;
create policy incidents_owner_select on public.incidents for select to authenticated using (member_id = auth.uid());
create policy incident_events_owner_select on public.incident_events for select to authenticated
  using (exists (select 1 from public.incidents i where i.id = incident_id and i.member_id = auth.uid()));
grant select on public.incidents, public.incident_events to authenticated;
grant all on public.incidents, public.incident_events to service_role;
