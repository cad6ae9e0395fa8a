-- Billing: Stripe customers and subscriptions as Stripe last told us, and the audit trail of
-- every change to them. Entitlements are computed from these rows (src/billing/entitlements.ts).

-- One Stripe customer per app user, created at their first checkout and reused after.
create table public.billing_customers (
  member_id           uuid primary key references public.members (id) on delete cascade,
  stripe_customer_id  text not null unique check (char_length(stripe_customer_id) between 1 and 255),
  created_at          timestamptz not null default now()
);

create table public.subscriptions (
  id                    text primary key check (char_length(id) between 1 and 255),
  -- The payer. Null until we learn whose it is: Stripe's events can arrive before the checkout's.
  member_id             uuid references public.members (id) on delete cascade,
  stripe_customer_id    text not null,
  price_id              text,
  -- From the price (STRIPE_PRICE_*); a price we do not know grants nothing ('free').
  plan                  text not null check (plan in ('free', 'plus', 'family')),
  -- Stripe's own word: trialing, active, past_due, unpaid, canceled, incomplete, incomplete_expired, paused.
  status                text not null check (char_length(status) between 1 and 40),
  cancel_at_period_end  boolean not null default false,
  cancel_at             timestamptz,
  current_period_end    timestamptz,
  trial_end             timestamptz,
  canceled_at           timestamptz,
  ended_at              timestamptz,
  -- The latest invoice outcome, ordered by the invoice events' creation time.
  last_payment          text check (last_payment in ('paid', 'failed')),
  last_payment_at       timestamptz,
  -- Creation time (Stripe's clock) of the newest event reflected in the stored state: an event
  -- older than this is stale; one from the same second with other content is re-read from the API.
  state_at              timestamptz not null,
  -- When the stored state was last read from Stripe's API rather than from an event's payload.
  synced_at             timestamptz,
  created_at            timestamptz not null default now(),
  updated_at            timestamptz not null default now()
);
create index subscriptions_member_idx on public.subscriptions (member_id) where member_id is not null;
create index subscriptions_customer_idx on public.subscriptions (stripe_customer_id);

-- Who/what/when/before/after of every subscription change. Kept when the payer's account is
-- deleted (the member id is cleared): the trail of what Stripe told us stays whole.
create table public.billing_audit (
  id               bigint generated always as identity primary key,
  at               timestamptz not null,
  member_id        uuid references public.members (id) on delete set null,
  subscription_id  text,
  -- 'stripe' (a webhook event) or 'member' (an API call by the payer)
  actor            text not null check (actor in ('stripe', 'member')),
  action           text not null check (char_length(action) between 1 and 100),
  event_id         text,
  before           jsonb,
  after            jsonb
);
create index billing_audit_subscription_idx on public.billing_audit (subscription_id, at, id);
create index billing_audit_member_idx on public.billing_audit (member_id, at desc) where member_id is not null;

alter table public.billing_customers enable row level security;
alter table public.subscriptions enable row level security;
alter table public.billing_audit enable row level security;

-- Members read their own billing rows; only the service writes (from Stripe's word, not the client's).
create policy billing_customers_owner_select on public.billing_customers for select to authenticated using (member_id = auth.uid());
create policy subscriptions_owner_select on public.subscriptions for select to authenticated using (member_id = auth.uid());
create policy billing_audit_owner_select on public.billing_audit for select to authenticated using (member_id = auth.uid());

grant select on public.billing_customers, public.subscriptions, public.billing_audit to authenticated;
grant all on public.billing_customers, public.subscriptions, public.billing_audit to service_role;
