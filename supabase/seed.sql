-- Local development seed (`supabase db reset` runs it after the migrations).
-- A demo member matching the one `npm run token` signs for, so the API has data at once.
insert into public.members (id, email, display_name, time_zone)
values ('00000000-0000-4000-8000-000000000001', 'demo@pruuf.local', 'Demo Member', 'Europe/London')
on conflict (id) do nothing;
