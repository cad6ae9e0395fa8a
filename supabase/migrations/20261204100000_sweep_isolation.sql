-- Failure isolation in the sweeper: one row that cannot be processed (written by an older
-- version, by a Supabase client under RLS, by a race) is set aside instead of rolling back its
-- whole batch and stopping everyone's alerts.
--
-- A row here is one item of one sweep lane that failed: it is left out of that lane's claims
-- until retry_at (exponential backoff, so a transient fault recovers by itself and a permanent
-- one never becomes a retry storm), and deleted once the item goes through. After a few
-- failures in a row it counts as quarantined: metrics, auditor, /readyz detail, runbook
-- docs/runbooks.md "An item is quarantined".
create table public.sweep_failures (
  -- missed (schedules), reminders (schedules), steps (incidents), ack (incidents), refill (schedules)
  lane             text not null check (lane in ('missed', 'reminders', 'steps', 'ack', 'refill')),
  item_id          uuid not null,
  member_id        uuid,
  failures         integer not null check (failures > 0),
  first_failed_at  timestamptz not null,
  last_failed_at   timestamptz not null,
  retry_at         timestamptz not null,
  last_error       text not null,
  primary key (lane, item_id)
);
create index sweep_failures_retry_idx on public.sweep_failures (lane, retry_at);

alter table public.sweep_failures enable row level security;
-- No policy: members never see it; only the service reads and writes it.
revoke all on public.sweep_failures from public, anon, authenticated;
grant all on public.sweep_failures to service_role;

-- A schedule whose zone the deadline maths could not use (not known to the time zone database):
-- its deadlines are computed in UTC until the zone is repaired, and this says since when.
alter table public.schedules add column zone_fallback_at timestamptz;
