-- The sweeper's claim path: what a burst of missed deadlines writes, made small and set-based.

-- An alert written by the sweeper is rendered when the worker sends it, not when the incident
-- opens: the claim then writes a small row, and the text comes from the incident's snapshot
-- (plan, deadline, note, last check-in: none of it changes after opening), so the contact gets
-- the same message either way. `render` holds what is particular to the message: the step's
-- round, the contact, and the signed link it carries, e.g.
-- {"round": 1, "contact_id": "…", "ack_url": "https://…/a/…"}. Every other message (and an
-- alert written in a request: an SOS, a contact's "needs more help") keeps its rendered text.
alter table public.deliveries alter column body drop not null;
alter table public.deliveries add column render jsonb;
alter table public.deliveries add constraint deliveries_text_or_render check (
  body is not null
  or coalesce(kind = 'alert' and incident_id is not null and jsonb_typeof(render) = 'object'
              and jsonb_typeof(render -> 'round') = 'number' and jsonb_typeof(render -> 'contact_id') = 'string'
              and jsonb_typeof(render -> 'ack_url') = 'string', false)
);

-- incident.opened in the audit trail: one INSERT … SELECT per statement (transition table)
-- instead of a PL/pgSQL call per incident. Same rows as audit_incidents() wrote, actor rules of
-- audit_write() included (pruuf.actor names the actor when the app set it).
create function public.audit_incidents_opened() returns trigger language plpgsql security definer set search_path = public as $$
declare
  given text := nullif(current_setting('pruuf.actor', true), '');
  given_kind text := split_part(coalesce(given, ''), ':', 1);
  named boolean := given is not null and given_kind in ('member', 'contact', 'stripe', 'provider', 'system', 'operator');
begin
  insert into public.audit_log (member_id, actor_type, actor_id, action, entity_type, entity_id, changes, detail)
  select o.member_id,
         case when named then given_kind when o.kind = 'sos' then 'member' else 'system' end,
         case when named then nullif(substr(given, char_length(given_kind) + 2, 100), '')
              when o.kind = 'sos' then o.member_id::text end,
         'incident.opened', 'incident', o.id::text, '{}', jsonb_build_object('kind', o.kind)
    from opened o;
  return null;
end $$;
drop trigger audit_incidents on public.incidents;
create trigger audit_incidents_opened after insert on public.incidents
  referencing new table as opened for each statement execute function public.audit_incidents_opened();
-- audit_incidents() stays for state changes (audit_incidents_state, row by row: they come one at a time).

-- deliveries_step_uidx (incident_id, step_no, contact_id, channel, kind) already serves every
-- lookup by incident; the second index on incident_id alone only cost each delivery an insert.
drop index public.deliveries_incident_idx;
