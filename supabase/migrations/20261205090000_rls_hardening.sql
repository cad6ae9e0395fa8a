-- What a Supabase client (roles anon and authenticated, the member's JWT in request.jwt.claims)
-- may do to the tables directly: the same as the API lets the member do, and nothing the API does
-- on the member's behalf (issue 16, R1–R4). The service connects as the owner and is not bound
-- by any of this.
--
-- Rule: a member reads their own rows and writes directly only a column whose change needs
-- nothing else from the service. Everything with a consequence goes through the API, because
-- the database cannot do the rest of it:
--   * deadlines and timers (schedules, pauses, members.time_zone, check-ins) are computed by the
--     API in the zone of the member (luxon) in the same transaction as the edit; a direct edit
--     would leave next_deadline_at/alert_at/next_reminder_at computed for the old values — a
--     silent schedule or a false alert;
--   * contacts' addresses need a fresh invitation and consent, new contacts the plan's limit;
--     status, linked_user_id, invited_at/responded_at (the invitation's answer) and the channel
--     flags are written only from the contact's own answer or the providers' word (R1: a member
--     linking a payer's account got that payer's family plan);
--   * members.phone is unique and, soon, verified; sms_opted_out is the phone's own STOP;
--   * deleting the account must check the subscription and delete the Supabase Auth user (R4);
--   * a check-in's time is the server's clock (a client-chosen checked_in_at counts as checked
--     in for windows it never saw), and it advances deadlines and resolves incidents;
--   * push tokens are registered through the API (its takeover rules), and never read back.
-- tests/db/rls-roles.test.ts holds the same decisions as a list and fails for any table,
-- column grant, policy or function that is not in it.

-- 1. Start from nothing. Supabase's default privileges grant every table, sequence and function
-- in public to anon and authenticated (TRUNCATE, which RLS does not filter, included), and
-- PostgreSQL grants EXECUTE on every function to PUBLIC: a SECURITY DEFINER function such as
-- audit_write() was callable by anon through PostgREST's /rpc (R3). Trigger functions need no
-- EXECUTE from the writer (only their creator's), so closing them breaks no trigger.
revoke all on all tables in schema public from public, anon, authenticated;
revoke all on all sequences in schema public from public, anon, authenticated;
revoke all on all routines in schema public from public, anon, authenticated;

-- New objects start closed too: a function created by this role (any schema, BullMQ's included)
-- is no longer executable by PUBLIC, and Supabase's per-schema grants to anon/authenticated are
-- withdrawn. A migration that wants a member to reach something grants it explicitly.
alter default privileges revoke execute on routines from public;
alter default privileges in schema public revoke all on tables from anon, authenticated;
alter default privileges in schema public revoke all on sequences from anon, authenticated;
alter default privileges in schema public revoke execute on routines from anon, authenticated;

-- 2. Grants and policies, table by table. Policies are per command so that they say exactly what
-- the grants allow; "for all" policies are gone.

-- members: read the profile, change the display name. No insert (the API creates the row on
-- first call), no delete (R4: DELETE /v1/me checks the subscription and deletes the auth user).
drop policy members_self_delete on public.members;
grant select on public.members to authenticated;
grant update (display_name) on public.members to authenticated;

-- devices: list and forget one's devices; the token (a credential for reaching the phone) is not
-- readable, as in GET /v1/devices. Registration only through POST /v1/devices.
drop policy devices_owner_all on public.devices;
create policy devices_owner_select on public.devices for select to authenticated using (member_id = auth.uid());
create policy devices_owner_delete on public.devices for delete to authenticated using (member_id = auth.uid());
grant select (id, member_id, platform, created_at, last_seen_at) on public.devices to authenticated;
grant delete on public.devices to authenticated;

-- contacts: read them all; rename, move between tiers, toggle check-in notes; remove one.
-- Adding one (plan limit, invitation) or changing an address (re-invitation) only through the API.
drop policy contacts_owner_all on public.contacts;
create policy contacts_owner_select on public.contacts for select to authenticated using (member_id = auth.uid());
create policy contacts_owner_update on public.contacts for update to authenticated
  using (member_id = auth.uid()) with check (member_id = auth.uid());
create policy contacts_owner_delete on public.contacts for delete to authenticated using (member_id = auth.uid());
grant select, delete on public.contacts to authenticated;
grant update (name, tier, notify_on_check_in) on public.contacts to authenticated;

-- schedules: read them, remove one (what DELETE /v1/schedules/:id does). Every other edit moves
-- the timers and goes through the API (R2: alert_at and the zone are never the client's to write).
drop policy schedules_owner_all on public.schedules;
create policy schedules_owner_select on public.schedules for select to authenticated using (member_id = auth.uid());
create policy schedules_owner_delete on public.schedules for delete to authenticated using (member_id = auth.uid());
grant select, delete on public.schedules to authenticated;

-- pauses: read only; starting or ending one recomputes the deadlines (POST/DELETE /v1/pauses).
drop policy pauses_owner_all on public.pauses;
create policy pauses_owner_select on public.pauses for select to authenticated using (member_id = auth.uid());
grant select on public.pauses to authenticated;

-- check_ins: read only; checking in is POST /v1/check-ins.
drop policy check_ins_owner_insert on public.check_ins;
grant select on public.check_ins to authenticated;

-- deliveries: the status of what was sent to whom (what GET /v1/incidents/:id shows), never the
-- message itself: subject, body, html, render and data carry the contacts' /a/ links, bearer
-- credentials of the contacts; address and last_error name the contacts' addresses and devices (R4).
grant select (id, member_id, contact_id, incident_id, step_no, kind, channel, status, attempts, error_class,
  provider_status, provider_status_at, created_at, sent_at, updated_at) on public.deliveries to authenticated;

-- Read-only, own rows (policies unchanged): incidents and their timeline, billing, the audit trail.
grant select on public.incidents, public.incident_events to authenticated;
grant select on public.billing_customers, public.subscriptions, public.billing_audit to authenticated;
grant select on public.audit_log to authenticated;

-- Public reference data: the zones PostgreSQL knows.
grant select on public.time_zone_names to anon, authenticated;

-- Everything else (delivery_attempts, dev_outbox, provider_events, sms_sender_rate, sweep_failures,
-- auditor_state, worker_heartbeats, pruuf_migrations) stays closed: RLS on, no policy, no grant.

-- The data rules' predicates run in trigger WHEN clauses as the writer, so a writer needs EXECUTE
-- on them: the owner has it; service_role (Supabase's server key, all tables granted above it) is
-- given it back so that its writes keep passing the rules. Members write no column they guard.
grant execute on function public.is_time_zone_name(text), public.is_instant_in_range(timestamptz) to service_role;
