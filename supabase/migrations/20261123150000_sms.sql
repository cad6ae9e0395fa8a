-- SMS over Twilio: a throughput budget per sender shared by every worker process, and the
-- member's own SMS opt-out (a member who texts STOP gets no SMS reminders until START).

-- GCRA state per sender (a phone number or a messaging service): `tat` is the theoretical
-- arrival time of the next message. One row, updated in one statement per send, so any number
-- of workers together stay within the sender's rate.
create table public.sms_sender_rate (
  sender  text primary key check (char_length(sender) between 1 and 64),
  tat     timestamptz not null
);
alter table public.sms_sender_rate enable row level security;
-- No policy: only the service connects to it.

alter table public.members
  add column sms_opted_out boolean not null default false;
