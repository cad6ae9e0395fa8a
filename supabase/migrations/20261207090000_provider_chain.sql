-- Redundant delivery (issue 18): several providers per channel, tried in order, and a repeat through
-- the next provider when no delivery receipt comes in time.

-- A repeat is a copy of an alert, sent through a provider that has not carried it yet: repeat_of names
-- the original (every copy names the first one), copy_no counts them (0 = the original). The step's
-- uniqueness takes the copy into account: one row per (step, contact, channel, kind, copy).
alter table public.deliveries
  add column repeat_of uuid references public.deliveries (id) on delete cascade,
  add column copy_no smallint not null default 0 check (copy_no between 0 and 10),
  -- When to look for a delivery receipt (sent_at + RECEIPT_TIMEOUT_SECONDS); cleared once looked at.
  add column receipt_check_at timestamptz,
  add constraint deliveries_copy_names_original check ((copy_no = 0) = (repeat_of is null));

drop index public.deliveries_step_uidx;
create unique index deliveries_step_uidx on public.deliveries (incident_id, step_no, contact_id, channel, kind, copy_no) where incident_id is not null;
create index deliveries_repeat_of_idx on public.deliveries (repeat_of) where repeat_of is not null;
-- The receipts lane of the sweep claims from this.
create index deliveries_receipt_check_idx on public.deliveries (receipt_check_at) where receipt_check_at is not null;

-- Members' clients see which copy a status row is (rls_hardening lists the readable columns).
grant select (repeat_of, copy_no) on public.deliveries to authenticated;

-- The receipts lane isolates its items like every sweep lane.
alter table public.sweep_failures drop constraint sweep_failures_lane_check;
alter table public.sweep_failures add constraint sweep_failures_lane_check
  check (lane in ('missed', 'reminders', 'steps', 'ack', 'refill', 'receipts'));
