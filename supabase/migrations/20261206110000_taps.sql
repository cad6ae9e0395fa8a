-- "Checked in" notes go out at most once a day per member (issue 17): the member's local day
-- whose first check-in claimed the notes, and that check-in. The post-check-in bookkeeping
-- claims a day with one upsert (`… on conflict (member_id) do update … where day < excluded.day`),
-- so two check-ins racing in two API processes cannot both send. One row per member, overwritten
-- day after day; it goes with the member (on delete cascade).
create table public.check_in_note_days (
  member_id    uuid primary key references public.members (id) on delete cascade,
  day          date not null,
  check_in_id  uuid not null,
  updated_at   timestamptz not null default now()
);

-- Bookkeeping of the service alone: RLS on and no policy, so anon and authenticated (Supabase
-- clients) neither read nor write it; the service connects as the owner.
alter table public.check_in_note_days enable row level security;
revoke all on public.check_in_note_days from public, anon, authenticated;
grant all on public.check_in_note_days to service_role;
