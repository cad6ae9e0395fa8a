-- Carrier statuses (issue 17 #7): what a provider says happened to a message after it accepted
-- it (Twilio status callbacks, SendGrid events, FCM's answer), kept per delivery as a history and
-- summed up on the delivery row, so the incident timeline and the contact's alert page can show
-- whether an alert reached the phone or the mailbox.

-- The provider's words normalised across providers (src/delivery/carrier-status.ts):
--   sent        handed on by the provider (Twilio sent, FCM accepted)
--   deferred    the receiving mail server asked SendGrid to try again later
--   delivered   the carrier or mail server confirmed it (Twilio delivered/read, SendGrid delivered)
--   undelivered the carrier could not deliver it (Twilio undelivered; FCM: every token dead)
--   bounced     the receiving mail server refused it (SendGrid bounce)
--   dropped     SendGrid did not send it (a suppressed or invalid address)
--   failed      the provider could not send it (Twilio failed, canceled)
-- A word that says nothing new (Twilio queued/sending, SendGrid processed) leaves it null.
-- It never moves backwards: a late "sent" after "delivered" leaves "delivered"; final words share
-- a rank, so a later correction (a bounce after delivered) lands. provider_status keeps the
-- provider's own last word and provider_error_code its code (20261123140000_provider_feedback).
alter table public.deliveries
  add column carrier_status text check (carrier_status is null or carrier_status in
    ('sent', 'deferred', 'delivered', 'undelivered', 'bounced', 'dropped', 'failed')),
  add column carrier_status_at timestamptz;

-- Rows written before this migration: their last provider word, translated once.
update public.deliveries
   set carrier_status = case provider_status
         when 'sent' then 'sent' when 'deferred' then 'deferred' when 'delivered' then 'delivered' when 'read' then 'delivered'
         when 'undelivered' then 'undelivered' when 'bounce' then 'bounced' when 'dropped' then 'dropped'
         when 'failed' then 'failed' when 'canceled' then 'failed' end,
       carrier_status_at = provider_status_at
 where provider_status is not null;

-- Every status a provider reported for a delivery, once per provider event (Twilio: message sid +
-- status; SendGrid: sg_event_id; FCM: the send), including the ones that did not change the row.
create table public.delivery_statuses (
  id              bigint generated always as identity primary key,
  delivery_id     uuid not null references public.deliveries (id) on delete cascade,
  provider        text not null check (char_length(provider) between 1 and 40),
  event_id        text not null check (char_length(event_id) between 1 and 200),
  status          text not null check (char_length(status) between 1 and 64),
  carrier_status  text check (carrier_status is null or carrier_status in
    ('sent', 'deferred', 'delivered', 'undelivered', 'bounced', 'dropped', 'failed')),
  error_code      text check (error_code is null or char_length(error_code) <= 100),
  -- When the provider says it happened (SendGrid's timestamp); when we heard it where the
  -- provider gives no time (Twilio).
  occurred_at     timestamptz not null,
  received_at     timestamptz not null,
  unique (provider, event_id)
);
create index delivery_statuses_delivery_idx on public.delivery_statuses (delivery_id, occurred_at);

-- A status callback that came before our worker recorded the provider's message id on the row
-- (Twilio answers the send and calls back at once; the callback can win the race). Held here,
-- keyed by provider + message id, and applied by the worker right after it records the send, by
-- the webhook itself when the row appears meanwhile, or by the reconciler's pass every minute;
-- dropped after a day (a send whose record never landed: the message was sent again).
-- `effects` is what the status means for the contact's address, worked out when it arrived:
-- {"dead_address": reason, "opted_out": true, "failover": reason}.
create table public.held_delivery_statuses (
  provider             text not null check (char_length(provider) between 1 and 40),
  event_id             text not null check (char_length(event_id) between 1 and 200),
  provider_message_id  text not null check (char_length(provider_message_id) between 1 and 200),
  status               text not null check (char_length(status) between 1 and 64),
  error_code           text check (error_code is null or char_length(error_code) <= 100),
  occurred_at          timestamptz not null,
  received_at          timestamptz not null,
  effects              jsonb not null default '{}'::jsonb check (jsonb_typeof(effects) = 'object'),
  primary key (provider, event_id)
);
create index held_delivery_statuses_message_idx on public.held_delivery_statuses (provider, provider_message_id);
create index held_delivery_statuses_received_idx on public.held_delivery_statuses (received_at);

-- RLS on both, and no policy: only the service (the table owner) reads and writes them. Members see
-- their deliveries' carrier status on the deliveries row (its existing owner select policy) and in
-- the incident timeline; the history and held callbacks are operator data.
alter table public.delivery_statuses enable row level security;
alter table public.held_delivery_statuses enable row level security;
revoke all on public.delivery_statuses, public.held_delivery_statuses from public, anon, authenticated;
grant all on public.delivery_statuses, public.held_delivery_statuses to service_role;

-- A member's Supabase client reads its deliveries' status columns (rls_hardening): the carrier's
-- word is status too (what GET /v1/incidents/:id shows), never a body or an address.
grant select (carrier_status, carrier_status_at, provider_error_code) on public.deliveries to authenticated;
