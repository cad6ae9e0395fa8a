-- Messages a contact can read (issue 17): each contact's language, and the notice that an
-- "I'm on it" lapsed.

-- The language of a contact's invitation, alerts and all clear. A check, not a trigger: a Supabase
-- client writing a contact directly meets the same rule as the API (400 there, 23514 here).
alter table public.contacts
  add column locale text not null default 'en' check (locale in ('en', 'es', 'de', 'fr'));

-- ack_lapsed: told to the contacts who heard someone was on it, and to the one who said it, when that
-- acknowledgement times out with no check-in.
alter table public.deliveries drop constraint deliveries_kind_check;
alter table public.deliveries add constraint deliveries_kind_check
  check (kind in ('invitation', 'reminder', 'alert', 'all_clear', 'ack_notice', 'ack_lapsed', 'check_in_note', 'verification'));
