-- Burst delivery (issue 19): one queue job carries a batch of deliveries instead of one each.
-- job_key names the batch a pending row belongs to (written with the row, src/delivery/outbox.ts);
-- the job id is derived from it, so the reconciler re-adds a lost batch under the same id (a no-op
-- while the job exists) and never builds a second job beside it. A row taken out of its batch to be
-- retried on its own (a failed try, a throttle) has job_key cleared: from then on its own job owns it.
-- Rows without a key (written before this, repeat copies) keep one job each, as before.
alter table public.deliveries add column job_key uuid;

-- The batch job reads its rows by key; only pending rows are ever looked up, so the index stays small.
create index deliveries_job_key_idx on public.deliveries (job_key) where status = 'pending' and job_key is not null;

-- Whoever sends a row holds its lease first (one statement with the read: src/delivery/lease.ts):
-- the run that owns it (its job id and worker process) until lease_until, renewed while it lives. A
-- row's batch job, a job of its own added when the batch was unknown, a batch rebuilt by the
-- reconciler, and one job handed out twice by the queue can then never send it side by side.
alter table public.deliveries add column lease_owner text, add column lease_until timestamptz;
