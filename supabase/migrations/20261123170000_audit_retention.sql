-- Operability: the audit log (who did what, when), the auditor's last verdict, and what data
-- retention needs to find its rows cheaply.

-- Append-only trail of account, contact, schedule, pause, subscription and incident changes and
-- every acknowledgement. Written by triggers, so no feature can forget it. It names the fields
-- that changed, never their values: addresses and notes stay out of the trail.
create table public.audit_log (
  id           bigint generated always as identity primary key,
  at           timestamptz not null default now(),
  -- Whose trail this is (GET /v1/audit). No foreign key: a member's deletion is itself recorded,
  -- and retention purges the trail of deleted members within a day.
  member_id    uuid,
  actor_type   text not null check (actor_type in ('member', 'contact', 'stripe', 'provider', 'system', 'operator')),
  actor_id     text check (actor_id is null or char_length(actor_id) <= 100),
  action       text not null check (char_length(action) between 1 and 100),
  entity_type  text not null check (char_length(entity_type) between 1 and 40),
  entity_id    text,
  changes      text[] not null default '{}',
  detail       jsonb
);
create index audit_log_member_idx on public.audit_log (member_id, id desc) where member_id is not null;
-- Retention finds deleted members' trails through their last row.
create index audit_log_deleted_member_idx on public.audit_log (member_id) where action = 'member.deleted';

-- Nobody rewrites history: not the app, not the owner. The one exception is retention removing
-- the trail of a member who no longer exists, and only when it says so for its transaction.
create function public.audit_log_append_only() returns trigger language plpgsql as $$
begin
  if tg_op = 'DELETE'
     and current_setting('pruuf.audit_purge', true) = 'deleted_members'
     and old.member_id is not null
     and not exists (select 1 from public.members m where m.id = old.member_id) then
    return old;
  end if;
  raise exception 'audit_log is append-only' using errcode = 'insufficient_privilege';
end $$;
create trigger audit_log_append_only before update or delete on public.audit_log
  for each row execute function public.audit_log_append_only();
create function public.audit_log_no_truncate() returns trigger language plpgsql as $$
begin
  raise exception 'audit_log is append-only' using errcode = 'insufficient_privilege';
end $$;
create trigger audit_log_no_truncate before truncate on public.audit_log
  for each statement execute function public.audit_log_no_truncate();

alter table public.audit_log enable row level security;
create policy audit_log_owner_select on public.audit_log for select to authenticated using (member_id = auth.uid());
-- Supabase grants everything on new tables to its roles by default: take back all but reading
-- (and inserting, for the service), so no role holds UPDATE, DELETE or TRUNCATE on the trail.
revoke all on public.audit_log from public, anon, authenticated, service_role;
grant select on public.audit_log to authenticated;
grant select, insert on public.audit_log to service_role;

-- Who acts: the app may name the actor for its transaction (set_config('pruuf.actor',
-- 'member:<id>', true)); otherwise each trigger infers it from what changed.
create function public.audit_write(p_member uuid, p_actor_type text, p_actor_id text, p_action text,
  p_entity_type text, p_entity_id text, p_changes text[], p_detail jsonb) returns void
  language plpgsql security definer set search_path = public as $$
declare
  given text := nullif(current_setting('pruuf.actor', true), '');
  kind text;
begin
  if given is not null then
    kind := split_part(given, ':', 1);
    if kind in ('member', 'contact', 'stripe', 'provider', 'system', 'operator') then
      p_actor_type := kind;
      p_actor_id := nullif(substr(given, char_length(kind) + 2, 100), '');
    end if;
  end if;
  insert into public.audit_log (member_id, actor_type, actor_id, action, entity_type, entity_id, changes, detail)
  values (p_member, p_actor_type, p_actor_id, p_action, p_entity_type, p_entity_id, coalesce(p_changes, '{}'), p_detail);
end $$;

create function public.audit_changed(o jsonb, n jsonb, cols text[]) returns text[] language sql immutable as $$
  select coalesce(array_agg(c order by c), '{}') from unnest(cols) c where o -> c is distinct from n -> c
$$;

create function public.audit_members() returns trigger language plpgsql security definer set search_path = public as $$
declare ch text[];
begin
  if tg_op = 'INSERT' then
    perform audit_write(new.id, 'member', new.id::text, 'member.created', 'member', new.id::text, '{}', null);
  elsif tg_op = 'DELETE' then
    perform audit_write(old.id, 'member', old.id::text, 'member.deleted', 'member', old.id::text, '{}', null);
  else
    ch := audit_changed(to_jsonb(old), to_jsonb(new), array['display_name', 'time_zone', 'phone', 'email', 'sms_opted_out']);
    if cardinality(ch) > 0 then
      perform audit_write(new.id, 'member', new.id::text, 'member.updated', 'member', new.id::text, ch, null);
    end if;
  end if;
  return null;
end $$;
create trigger audit_members after insert or delete on public.members for each row execute function public.audit_members();
create trigger audit_members_update after update of display_name, time_zone, phone, email, sms_opted_out on public.members
  for each row execute function public.audit_members();

-- A member's own rows removed with the member (cascade) are not news: the member.deleted row says it.
create function public.audit_member_gone(p uuid) returns boolean language sql stable as $$
  select not exists (select 1 from public.members where id = p)
$$;

create function public.audit_contacts() returns trigger language plpgsql security definer set search_path = public as $$
declare
  ch text[];
  own text[];
begin
  if tg_op = 'INSERT' then
    perform audit_write(new.member_id, 'member', new.member_id::text, 'contact.created', 'contact', new.id::text, '{}', jsonb_build_object('tier', new.tier));
  elsif tg_op = 'DELETE' then
    if audit_member_gone(old.member_id) then return null; end if;
    perform audit_write(old.member_id, 'member', old.member_id::text, 'contact.deleted', 'contact', old.id::text, '{}', null);
  else
    ch := audit_changed(to_jsonb(old), to_jsonb(new), array['name', 'email', 'phone', 'tier', 'notify_on_check_in', 'status',
      'linked_user_id', 'sms_opted_out', 'sms_disabled', 'email_disabled']);
    if cardinality(ch) = 0 then return null; end if;
    own := audit_changed(to_jsonb(old), to_jsonb(new), array['name', 'email', 'phone', 'tier', 'notify_on_check_in']);
    if cardinality(own) > 0 then
      perform audit_write(new.member_id, 'member', new.member_id::text, 'contact.updated', 'contact', new.id::text, ch, null);
    elsif ch = array['linked_user_id'] and new.linked_user_id is null then
      -- The linked app user's account was deleted (retention unlinks it).
      perform audit_write(new.member_id, 'system', null, 'contact.unlinked', 'contact', new.id::text, ch, null);
    elsif 'status' = any(ch) or 'linked_user_id' = any(ch) then
      perform audit_write(new.member_id, 'contact', new.id::text, 'contact.invitation_' || new.status, 'contact', new.id::text, ch,
        jsonb_build_object('status', new.status));
    elsif 'sms_opted_out' = any(ch) then
      perform audit_write(new.member_id, 'contact', new.id::text, case when new.sms_opted_out then 'contact.sms_opted_out' else 'contact.sms_opted_in' end,
        'contact', new.id::text, ch, null);
    else
      perform audit_write(new.member_id, 'provider', null, 'contact.channel_disabled', 'contact', new.id::text, ch,
        jsonb_build_object('sms_disabled', new.sms_disabled, 'email_disabled', new.email_disabled));
    end if;
  end if;
  return null;
end $$;
create trigger audit_contacts after insert or delete on public.contacts for each row execute function public.audit_contacts();
create trigger audit_contacts_update after update of name, email, phone, tier, notify_on_check_in, status, linked_user_id, sms_opted_out, sms_disabled, email_disabled
  on public.contacts for each row execute function public.audit_contacts();

-- Only what the member set: the sweeper moving deadlines along is not an audit event (and the
-- check-in hot path, which updates schedules, never fires this trigger: see UPDATE OF).
create function public.audit_schedules() returns trigger language plpgsql security definer set search_path = public as $$
declare ch text[];
begin
  if tg_op = 'INSERT' then
    perform audit_write(new.member_id, 'member', new.member_id::text, 'schedule.created', 'schedule', new.id::text, '{}', jsonb_build_object('kind', new.kind));
  elsif tg_op = 'DELETE' then
    if audit_member_gone(old.member_id) then return null; end if;
    perform audit_write(old.member_id, 'member', old.member_id::text, 'schedule.deleted', 'schedule', old.id::text, '{}', null);
  else
    ch := audit_changed(to_jsonb(old), to_jsonb(new), array['kind', 'local_time', 'days', 'due_at', 'time_zone', 'grace_minutes', 'reminder_minutes', 'active']);
    if cardinality(ch) > 0 then
      perform audit_write(new.member_id, 'member', new.member_id::text, 'schedule.updated', 'schedule', new.id::text, ch, null);
    end if;
  end if;
  return null;
end $$;
create trigger audit_schedules after insert or delete on public.schedules for each row execute function public.audit_schedules();
create trigger audit_schedules_update after update of kind, local_time, days, due_at, time_zone, grace_minutes, reminder_minutes, active
  on public.schedules for each row execute function public.audit_schedules();

create function public.audit_pauses() returns trigger language plpgsql security definer set search_path = public as $$
declare ch text[];
begin
  if tg_op = 'INSERT' then
    perform audit_write(new.member_id, 'member', new.member_id::text, 'pause.created', 'pause', new.id::text, '{}',
      jsonb_build_object('starts_at', new.starts_at, 'ends_at', new.ends_at));
  elsif tg_op = 'DELETE' then
    if audit_member_gone(old.member_id) then return null; end if;
    perform audit_write(old.member_id, 'member', old.member_id::text, 'pause.deleted', 'pause', old.id::text, '{}', null);
  else
    ch := audit_changed(to_jsonb(old), to_jsonb(new), array['starts_at', 'ends_at', 'reason']);
    if cardinality(ch) > 0 then
      perform audit_write(new.member_id, 'member', new.member_id::text, 'pause.updated', 'pause', new.id::text, ch,
        jsonb_build_object('starts_at', new.starts_at, 'ends_at', new.ends_at));
    end if;
  end if;
  return null;
end $$;
create trigger audit_pauses after insert or update or delete on public.pauses for each row execute function public.audit_pauses();

create function public.audit_subscriptions() returns trigger language plpgsql security definer set search_path = public as $$
declare ch text[];
begin
  if tg_op = 'INSERT' then
    perform audit_write(new.member_id, 'stripe', null, 'subscription.created', 'subscription', new.id, '{}',
      jsonb_build_object('plan', new.plan, 'status', new.status));
  elsif tg_op = 'DELETE' then
    if old.member_id is not null and audit_member_gone(old.member_id) then return null; end if;
    perform audit_write(old.member_id, 'stripe', null, 'subscription.deleted', 'subscription', old.id, '{}', null);
  else
    ch := audit_changed(to_jsonb(old), to_jsonb(new), array['member_id', 'price_id', 'plan', 'status', 'cancel_at_period_end', 'cancel_at',
      'current_period_end', 'trial_end', 'canceled_at', 'ended_at', 'last_payment']);
    if cardinality(ch) > 0 then
      perform audit_write(new.member_id, 'stripe', null, 'subscription.updated', 'subscription', new.id, ch,
        jsonb_build_object('plan', new.plan, 'status', new.status, 'cancel_at_period_end', new.cancel_at_period_end));
    end if;
  end if;
  return null;
end $$;
create trigger audit_subscriptions after insert or update or delete on public.subscriptions for each row execute function public.audit_subscriptions();

-- Incident state changes. An acknowledgement and a contact's "needs more help" are recorded from
-- their timeline events (with the contact who acted), so the state change they cause is not
-- recorded twice.
create function public.audit_incidents() returns trigger language plpgsql security definer set search_path = public as $$
declare latest text;
begin
  if tg_op = 'INSERT' then
    perform audit_write(new.member_id, case when new.kind = 'sos' then 'member' else 'system' end,
      case when new.kind = 'sos' then new.member_id::text end, 'incident.opened', 'incident', new.id::text, '{}',
      jsonb_build_object('kind', new.kind));
  elsif new.state is distinct from old.state then
    if new.state = 'resolved' then
      perform audit_write(new.member_id, 'member', new.member_id::text, 'incident.resolved', 'incident', new.id::text, array['state'],
        jsonb_build_object('from', old.state, 'to', new.state, 'resolution', new.resolution));
    elsif old.state = 'acknowledged' and new.state = 'open' then
      select type into latest from public.incident_events where incident_id = new.id order by id desc limit 1;
      if latest is distinct from 'escalated_by_contact' then
        perform audit_write(new.member_id, 'system', null, 'incident.ack_timed_out', 'incident', new.id::text, array['state'],
          jsonb_build_object('from', old.state, 'to', new.state));
      end if;
    end if;
  end if;
  return null;
end $$;
create trigger audit_incidents after insert on public.incidents for each row execute function public.audit_incidents();
create trigger audit_incidents_state after update of state on public.incidents for each row execute function public.audit_incidents();

create function public.audit_incident_events() returns trigger language plpgsql security definer set search_path = public as $$
declare who uuid;
begin
  select member_id into who from public.incidents where id = new.incident_id;
  perform audit_write(who, 'contact', new.contact_id::text,
    case when new.type = 'acknowledged' then 'incident.acknowledged' else 'incident.escalated_by_contact' end,
    'incident', new.incident_id::text, '{}', null);
  return null;
end $$;
create trigger audit_incident_events after insert on public.incident_events for each row
  when (new.type in ('acknowledged', 'escalated_by_contact')) execute function public.audit_incident_events();

-- The auditor's last verdict, for /readyz and /metrics of every API replica (the auditor runs in
-- a worker). One row. `latency_watermark`: deliveries sent up to here are in the
-- deadline-to-delivery histogram already.
create table public.auditor_state (
  id                 boolean primary key default true check (id),
  checked_at         timestamptz,
  ok                 boolean,
  result             jsonb,
  last_success_at    timestamptz,
  latency_watermark  timestamptz
);
insert into public.auditor_state (id) values (true);
alter table public.auditor_state enable row level security;
-- No policy: only the service connects to it.
grant all on public.auditor_state to service_role;

-- Retention: message bodies and delivery payloads older than RETENTION_DAYS are blanked and
-- marked; the facts (ids, channel, kind, status, timestamps) stay for statistics.
alter table public.deliveries add column payload_purged_at timestamptz;
create index deliveries_retention_idx on public.deliveries (created_at) where payload_purged_at is null and status <> 'pending';
alter table public.incidents add column payload_purged_at timestamptz;
create index incidents_retention_idx on public.incidents (opened_at) where payload_purged_at is null and state = 'resolved';
-- Shared locations go after LOCATION_RETENTION_HOURS: small indexes, emptied as they are purged.
create index check_ins_location_idx on public.check_ins (checked_in_at) where latitude is not null;
create index check_ins_note_idx on public.check_ins (checked_in_at) where note is not null;
create index incidents_location_idx on public.incidents (resolved_at)
  where state = 'resolved' and (latitude is not null or last_latitude is not null);

-- The auditor feeds pruuf_deadline_to_delivery_seconds from first alerts sent since its last run.
create index deliveries_first_alert_sent_idx on public.deliveries (sent_at) where kind = 'alert' and step_no = 1 and sent_at is not null;
