-- Issue 19: deliveries_pending_idx lists the pending rows by age, for the reconciler and the
-- auditor. Its predicate was `status = 'pending'` alone, which every statement that updates
-- one delivery "if still pending" also says (mark sent, a failed try, a lease, a cancellation).
-- In a burst the table goes from a few pending rows to tens of thousands within seconds, before
-- autovacuum's analyze notices; planning with "almost nothing is pending", PostgreSQL then
-- preferred reading ALL pending rows through this index and hashing them over looking a few ids
-- up by primary key: 9–20 ms per "mark sent" statement instead of 0.2, 30 of the 41 s of
-- database CPU of a 10,000-miss burst (bench:alerts, 2026-12-07). Now a statement must say
-- `created_at is not null` (or compare created_at, or ask for min(created_at)) to use it; the
-- rest go by their key (id, job_key, incident_id), whatever the statistics say. (PostgreSQL 17
-- drops `is not null` on NOT NULL columns from queries: tests/delivery/plans.test.ts checks the
-- delivery path's plans on the server the tests run on; re-check this before moving to 17.)
drop index public.deliveries_pending_idx;
create index deliveries_pending_idx on public.deliveries (created_at) where status = 'pending' and created_at is not null;
