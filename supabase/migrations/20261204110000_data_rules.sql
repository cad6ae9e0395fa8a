-- The API's rules for time zones and instants, enforced again here for writes that bypass it
-- (a Supabase client under RLS, an operator's psql). A zone PostgreSQL does not know breaks
-- every query that says `at time zone` for that member (a contact's /v1/watching); an instant
-- past year 9999 cannot be written in the API's ISO 8601 and breaks every read that returns it.
--
-- Each rule is a trigger whose WHEN clause is the rule itself: the function that raises runs only
-- on a violation, so the sweeper's bulk updates pay one cheap comparison per row and no PL/pgSQL
-- call. On UPDATE a column is checked only when it changes, so a row stored before these rules
-- (an odd zone, a far due_at) can still have its other columns updated: old data is not forbidden.

-- The zones PostgreSQL knows, as a small table with a primary key: pg_timezone_names reads the
-- whole time zone database on every use (tens of milliseconds), too slow for a per-row check or
-- a read's fallback. Fixed offsets are not places (they ignore DST) and are left out, as are the
-- names that are not IANA places: posix/ and right/ copies, localtime, posixrules, Factory.
-- The API refreshes it at start (refresh_time_zone_names), so a PostgreSQL upgrade that drops or
-- adds a zone is reflected at the next start.
create table public.time_zone_names (
  name text primary key
);

create function public.refresh_time_zone_names() returns integer language sql as $$
  with known as (
    select name from pg_timezone_names
     where name !~* '^(UTC|GMT)?[+-][0-9]' and name !~ '^(posix|right)/' and name not in ('localtime', 'posixrules', 'Factory')
  ), gone as (
    delete from public.time_zone_names z where not exists (select 1 from known k where k.name = z.name) returning 1
  ), added as (
    insert into public.time_zone_names (name) select name from known on conflict (name) do nothing returning 1
  )
  select ((select count(*) from gone) + (select count(*) from added))::integer
$$;
select public.refresh_time_zone_names();

create function public.is_time_zone_name(zone text) returns boolean language sql stable as $$
  select exists (select 1 from public.time_zone_names where name = zone)
$$;

-- The instants the API accepts and derives: finite and before 2200 (the API's own bound on every
-- instant a client gives; deadlines stop half a day earlier, so an alert after its grace still fits).
create function public.is_instant_in_range(t timestamptz) returns boolean language sql immutable as $$
  select t is null or (isfinite(t) and t < timestamptz '2200-01-01 00:00:00+00')
$$;

-- Raises for the first column (of those named in the trigger's arguments) that breaks a rule.
-- Only called when the trigger's WHEN clause found a violation, so its cost does not matter.
create function public.refuse_data_rule_violation() returns trigger language plpgsql as $$
declare
  n jsonb := to_jsonb(new);
  o jsonb := case when tg_op = 'UPDATE' then to_jsonb(old) end;
  col text;
  v text;
begin
  foreach col in array tg_argv loop
    continue when o is not null and (n -> col) is not distinct from (o -> col);
    v := n ->> col;
    continue when v is null;
    if col = 'time_zone' then
      if not public.is_time_zone_name(v) then
        raise exception using errcode = 'check_violation', table = tg_table_name, column = col,
          message = format('%s.%s: %L is not a time zone PostgreSQL knows (an IANA name such as Europe/London; not a fixed offset)', tg_table_name, col, v);
      end if;
    elsif not public.is_instant_in_range(v::timestamptz) then
      raise exception using errcode = 'check_violation', table = tg_table_name, column = col,
        message = format('%s.%s: %s is out of range (an instant must be finite and before 2200-01-01T00:00:00Z)', tg_table_name, col, v);
    end if;
  end loop;
  return new;
end $$;

create trigger members_time_zone_rule before insert on public.members for each row
  when (not public.is_time_zone_name(new.time_zone))
  execute function public.refuse_data_rule_violation('time_zone');
create trigger members_time_zone_rule_update before update of time_zone on public.members for each row
  when (new.time_zone is distinct from old.time_zone and not public.is_time_zone_name(new.time_zone))
  execute function public.refuse_data_rule_violation('time_zone');

-- Named to sort after schedules_arm_reminder (BEFORE triggers fire in name order), so the rule
-- sees the next_reminder_at that trigger derives.
create trigger schedules_rules before insert on public.schedules for each row
  when (
    (new.time_zone is not null and not public.is_time_zone_name(new.time_zone))
    or not public.is_instant_in_range(new.due_at) or not public.is_instant_in_range(new.next_deadline_at)
    or not public.is_instant_in_range(new.alert_at) or not public.is_instant_in_range(new.following_deadline_at)
    or not public.is_instant_in_range(new.next_reminder_at)
  )
  execute function public.refuse_data_rule_violation('time_zone', 'due_at', 'next_deadline_at', 'alert_at', 'following_deadline_at', 'next_reminder_at');
create trigger schedules_rules_update before update on public.schedules for each row
  when (
    (new.time_zone is distinct from old.time_zone and new.time_zone is not null and not public.is_time_zone_name(new.time_zone))
    or (new.due_at is distinct from old.due_at and not public.is_instant_in_range(new.due_at))
    or (new.next_deadline_at is distinct from old.next_deadline_at and not public.is_instant_in_range(new.next_deadline_at))
    or (new.alert_at is distinct from old.alert_at and not public.is_instant_in_range(new.alert_at))
    or (new.following_deadline_at is distinct from old.following_deadline_at and not public.is_instant_in_range(new.following_deadline_at))
    or (new.next_reminder_at is distinct from old.next_reminder_at and not public.is_instant_in_range(new.next_reminder_at))
  )
  execute function public.refuse_data_rule_violation('time_zone', 'due_at', 'next_deadline_at', 'alert_at', 'following_deadline_at', 'next_reminder_at');

create trigger pauses_rules before insert on public.pauses for each row
  when (not public.is_instant_in_range(new.starts_at) or not public.is_instant_in_range(new.ends_at))
  execute function public.refuse_data_rule_violation('starts_at', 'ends_at');
create trigger pauses_rules_update before update on public.pauses for each row
  when ((new.starts_at is distinct from old.starts_at and not public.is_instant_in_range(new.starts_at))
        or (new.ends_at is distinct from old.ends_at and not public.is_instant_in_range(new.ends_at)))
  execute function public.refuse_data_rule_violation('starts_at', 'ends_at');

-- Members may insert their own check-ins under RLS: one far in the future would count as "checked
-- in" for every window to come.
create trigger check_ins_rules before insert or update of checked_in_at on public.check_ins for each row
  when (not public.is_instant_in_range(new.checked_in_at))
  execute function public.refuse_data_rule_violation('checked_in_at');

-- Zone names are public reference data: readable by everyone (the rules run as the writer, and a
-- Supabase client may list them), written only by the service.
alter table public.time_zone_names enable row level security;
create policy time_zone_names_read on public.time_zone_names for select to anon, authenticated using (true);
grant select on public.time_zone_names to anon, authenticated;
grant all on public.time_zone_names to service_role;
