-- Phone calls as an escalation action (issue 18): a call is a delivery on the channel 'voice'
-- (kind 'alert', one per incident step and contact like every alert: deliveries_step_uidx), placed
-- through Twilio's Calls API; its statuses land in provider_status / carrier_status like any other.
-- No new table and no new function: the grants and RLS decisions of deliveries (rls_hardening)
-- cover the new channel as they are, and the dev outbox's channel column is free text.
alter table public.deliveries drop constraint deliveries_channel_check;
alter table public.deliveries add constraint deliveries_channel_check
  check (channel in ('push', 'sms', 'email', 'voice'));
