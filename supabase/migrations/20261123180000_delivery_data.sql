-- A push message's data payload (string values: the incident id, the link to open, its type),
-- kept with the delivery like the text of an email or SMS, so the push channel sends what was
-- rendered when the alert was written.
alter table public.deliveries add column data jsonb check (data is null or jsonb_typeof(data) = 'object');
