-- Provider feedback: what the providers tell us after they accepted a message (webhooks),
-- channels disabled per contact by that feedback, and members' phones for SMS reminders and
-- check-in by reply.

-- The provider's latest word on a delivery (SendGrid processed/delivered/deferred/bounce/dropped;
-- Twilio queued/sent/delivered/undelivered/failed). `status` stays ours: sent means handed over.
alter table public.deliveries
  add column provider_status     text,
  add column provider_status_at  timestamptz,
  add column provider_error_code text;
-- Status callbacks name the provider's message id.
create index deliveries_provider_message_idx on public.deliveries (provider, provider_message_id)
  where provider_message_id is not null;

-- Each provider event is applied once: SendGrid's sg_event_id, Twilio's MessageSid + status.
create table public.provider_events (
  provider     text not null,
  event_id     text not null check (char_length(event_id) between 1 and 200),
  received_at  timestamptz not null default now(),
  primary key (provider, event_id)
);
create index provider_events_received_idx on public.provider_events (received_at);
alter table public.provider_events enable row level security;
-- No policy: only the service connects to it.

-- Why a channel was turned off for a contact, shown to the member: an SMS STOP is the contact's
-- choice (sms_opted_out); a number that can never receive SMS (invalid, landline) is sms_disabled;
-- a hard bounce is email_disabled. Changing the address clears them.
alter table public.contacts
  add column sms_disabled          boolean not null default false,
  add column sms_disabled_reason   text check (sms_disabled_reason is null or char_length(sms_disabled_reason) <= 200),
  add column email_disabled_reason text check (email_disabled_reason is null or char_length(email_disabled_reason) <= 200);
-- Inbound SMS (STOP/START) finds every contact row with the sender's number.
create index contacts_phone_idx on public.contacts (phone) where phone is not null;

-- The member's own phone: SMS reminders, and "reply OK" check-ins matched by the sender.
alter table public.members
  add column phone text check (phone is null or phone ~ '^\+[1-9][0-9]{6,14}$');
create unique index members_phone_uidx on public.members (phone) where phone is not null;
