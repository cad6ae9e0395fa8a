-- Push tokens belong to (member, install), not to whoever registered them last; and a deleted
-- account leaves a small tombstone so that nothing of it comes back (issue 16, findings 3 and 8).

-- 1. Devices: unique per (member, token) instead of per token.
-- Before, registering a token another member held moved that member's device to the caller: anyone
-- who learnt a token could silence someone's reminders and alerts, and 200/201 told them whether the
-- token was registered. Now a member registering a token someone else holds gets a row of their own
-- (the other member keeps theirs), unless they prove they are on the same install: each
-- registration returns a device secret once (32 random bytes, base64url), stored here only as its
-- SHA-256; presenting it (previous_device_secret) when another account signs in on that install
-- deletes the old account's row, so its pushes stop going to a phone someone else now uses.
alter table public.devices drop constraint devices_token_key;
alter table public.devices add constraint devices_member_token_key unique (member_id, token);
-- The unique index leads with member_id: it serves every per-member lookup the old index served.
drop index public.devices_member_id_idx;
-- Dead-token clean-up and the proof check look a token up across members.
create index devices_token_idx on public.devices (token);
-- Null on rows registered before this migration: their next registration by the owner issues one.
alter table public.devices add column secret_hash bytea check (secret_hash is null or octet_length(secret_hash) = 32);
-- RLS is unchanged (devices_owner_all): a member under RLS sees and writes only their own rows, so
-- their own secret hashes; inserting a row for another member's token is exactly what the API
-- allows, and touches nothing of that member.
