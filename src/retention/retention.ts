import type pg from 'pg';
import type { Clock } from '../clock.js';
import type { Config } from '../config.js';
import { withTransaction } from '../db/pool.js';
import type { Logger } from '../observability/logger.js';
import type { Metrics } from '../observability/metrics.js';

/**
 * Data retention. Keeps the facts statistics need (ids, channel, kind, status, timestamps,
 * attempts) and drops what people wrote or where they were:
 * - message bodies and delivery payloads (subject, body, html, address, provider error text,
 *   the dev outbox copy), check-in notes, incident notes and the addresses in incident plans:
 *   after RETENTION_DAYS;
 * - shared locations: check-ins' after LOCATION_RETENTION_HOURS; an incident's (and the alerts
 *   quoting it) that long after it was resolved (contacts may need it while it is open);
 * - phone verification codes (their keyed hashes, the number): after a day (they serve 10 minutes
 *   of code and the hour of resend limits);
 * - deleted members: their rows go with the member (foreign keys cascade), links to them as
 *   someone's contact at once (the members_record_deletion trigger); their audit trail up to the
 *   deletion goes at the next run, even when a still-valid token re-created a profile with the same
 *   id meanwhile; their tombstone (deleted_accounts: the id, when, how often, their contacts' ids)
 *   once every link signed before the deletion has expired (linkLifetimeDays) and no profile has
 *   the id. Queue jobs carry delivery ids only, and a job whose row is gone is skipped by its handler.
 *
 * Runs every hour (so "after 24 h" means within 25 h), in batches, each its own short
 * transaction, so it never holds locks the sweeper or the check-in path wait on.
 */

export const RETENTION_JOB_NAME = 'retention';
export const RETENTION_EVERY_MS = 60 * 60_000;
export const RETENTION_BATCH = 1000;
/** Bound per kind per run: a backlog drains over a few runs rather than in one long job. */
const MAX_BATCHES = 500;

export type RetentionSettings = {
  retentionDays: number;
  locationRetentionHours: number;
  /** How long a signed link can live (invitation, alert, check-in): a deleted account's tombstone outlives them all. Default 31. */
  linkLifetimeDays?: number;
  batchSize?: number;
};

/** A check-in link lives until its deadline + grace + 12 h: at most 24 h + 12 h + 12 h after the reminder. */
const CHECK_IN_LINK_DAYS = 2;

export function retentionSettings(config: Config): RetentionSettings {
  return {
    retentionDays: config.RETENTION_DAYS,
    locationRetentionHours: config.LOCATION_RETENTION_HOURS,
    linkLifetimeDays: Math.max(config.INVITATION_TTL_DAYS, config.ACK_LINK_TTL_DAYS, CHECK_IN_LINK_DAYS) + 1,
  };
}

export const DEFAULT_RETENTION_SETTINGS: RetentionSettings = { retentionDays: 90, locationRetentionHours: 24, linkLifetimeDays: 31 };

export type RetentionResult = Record<
  'delivery_payloads' | 'check_in_notes' | 'incident_payloads' | 'check_in_locations' | 'incident_locations' | 'provider_events'
  | 'deleted_members' | 'deleted_member_audit_rows' | 'deleted_account_tombstones' | 'stale_heartbeats' | 'phone_verifications',
  number
>;

const PURGE_DELIVERY = `set subject = null, body = '', html = null, address = '', last_error = null, payload_purged_at = $2`;

/** Blanks deliveries' payloads (and their attempts' error texts and dev outbox copies). */
async function purgeDeliveries(tx: pg.PoolClient, ids: string[], now: Date): Promise<number> {
  if (ids.length === 0) return 0;
  const { rowCount } = await tx.query(`update deliveries ${PURGE_DELIVERY} where id = any($1::uuid[])`, [ids, now]);
  await tx.query('update delivery_attempts set error = null where delivery_id = any($1::uuid[]) and error is not null', [ids]);
  await tx.query('delete from dev_outbox where delivery_id = any($1::uuid[])', [ids]);
  return rowCount ?? 0;
}

/** Repeats one batch until it touches fewer rows than a batch. */
async function drain(batch: () => Promise<number>, size: number): Promise<number> {
  let total = 0;
  for (let i = 0; i < MAX_BATCHES; i += 1) {
    const n = await batch();
    total += n;
    if (n < size) break;
  }
  return total;
}

// The plan keeps who was alerted and in which tiers; only the addresses go (each channel's, and
// the number a call goes to: `voice`). Every level is
// checked for its shape first: a plan an older version (or a hand) wrote oddly must not fail the
// batch it is in (a part that is not what it should be is dropped: it may hold addresses too).
const STRIP_PLAN_ADDRESSES = `case when jsonb_typeof(plan) <> 'object' then '{}'::jsonb
  when jsonb_typeof(plan -> 'tiers') <> 'array' then plan - 'tiers'
  else jsonb_set(plan, '{tiers}', coalesce((
  select jsonb_agg(case when jsonb_typeof(t) = 'object' and jsonb_typeof(t -> 'contacts') = 'array' then jsonb_set(t, '{contacts}', coalesce((
    select jsonb_agg(case when jsonb_typeof(c) <> 'object' then '{}'::jsonb
                          when jsonb_typeof(c -> 'channels') = 'array' then jsonb_set(c - 'voice', '{channels}', coalesce((
      select jsonb_agg(case when jsonb_typeof(ch) = 'object' then ch - 'address' else '{}'::jsonb end)
        from jsonb_array_elements(c -> 'channels') ch), '[]'::jsonb))
                          else c - 'channels' - 'voice' end)
    from jsonb_array_elements(t -> 'contacts') c), '[]'::jsonb)) else '{}'::jsonb end)
  from jsonb_array_elements(plan -> 'tiers') t), '[]'::jsonb)) end`;

/**
 * Each kind of purge on its own: one that fails (an odd row, a lock timeout) is logged and
 * counted, and the kinds after it still run; it is tried again at the next run.
 */
async function purgeKind(deps: RetentionDeps, what: string, fn: () => Promise<number>): Promise<number> {
  try {
    return await fn();
  } catch (err) {
    deps.metrics?.retentionFailures?.inc({ what });
    deps.log.error({ what, err: { message: (err as Error).message, code: (err as { code?: string }).code } }, 'retention: a purge failed; the others went on, it runs again next time');
    return 0;
  }
}

export type RetentionDeps = { pool: pg.Pool; clock: Clock; log: Logger; metrics?: Pick<Metrics, 'retentionPurged' | 'retentionLastRun'> & Partial<Pick<Metrics, 'retentionFailures'>>; settings: RetentionSettings };

export async function runRetention(deps: RetentionDeps): Promise<RetentionResult> {
  const { pool } = deps;
  const now = deps.clock();
  const size = deps.settings.batchSize ?? RETENTION_BATCH;
  const old = new Date(now.getTime() - deps.settings.retentionDays * 86_400_000);
  const located = new Date(now.getTime() - deps.settings.locationRetentionHours * 3_600_000);
  const tx = <T>(fn: (c: pg.PoolClient) => Promise<T>) => withTransaction(pool, fn);

  const deliveryPayloads = await purgeKind(deps, 'delivery_payloads', () => drain(() => tx(async (c) => {
    const { rows } = await c.query<{ id: string }>(
      `select id from deliveries where payload_purged_at is null and status <> 'pending' and created_at < $1
        order by created_at limit $2 for update skip locked`, [old, size]);
    return purgeDeliveries(c, rows.map((r) => r.id), now);
  }), size));

  const checkInNotes = await purgeKind(deps, 'check_in_notes', () => drain(async () => (await pool.query(
    `update check_ins set note = null where id in (
       select id from check_ins where note is not null and checked_in_at < $1 limit $2 for update skip locked)`, [old, size])).rowCount ?? 0, size));

  const incidentPayloads = await purgeKind(deps, 'incident_payloads', () => drain(async () => (await pool.query(
    `update incidents set note = null, plan = ${STRIP_PLAN_ADDRESSES}, payload_purged_at = $3 where id in (
       select id from incidents where payload_purged_at is null and state = 'resolved' and opened_at < $1 limit $2 for update skip locked)`,
    [old, size, now])).rowCount ?? 0, size));

  const checkInLocations = await purgeKind(deps, 'check_in_locations', () => drain(async () => (await pool.query(
    `update check_ins set latitude = null, longitude = null, accuracy_m = null where id in (
       select id from check_ins where latitude is not null and checked_in_at < $1 limit $2 for update skip locked)`, [located, size])).rowCount ?? 0, size));

  // Alerts quote the location as a map link: their bodies go with it.
  const incidentLocations = await purgeKind(deps, 'incident_locations', () => drain(() => tx(async (c) => {
    const { rows } = await c.query<{ id: string }>(
      `update incidents set latitude = null, longitude = null, last_latitude = null, last_longitude = null where id in (
         select id from incidents where state = 'resolved' and (latitude is not null or last_latitude is not null) and resolved_at < $1
          limit $2 for update skip locked)
       returning id`, [located, size]);
    if (rows.length > 0) {
      const { rows: quoting } = await c.query<{ id: string }>(
        `select id from deliveries where incident_id = any($1::uuid[]) and status <> 'pending' and payload_purged_at is null for update skip locked`,
        [rows.map((r) => r.id)]);
      await purgeDeliveries(c, quoting.map((r) => r.id), now);
    }
    return rows.length;
  }), size));

  const providerEvents = await purgeKind(deps, 'provider_events', () => drain(async () => (await pool.query(
    `delete from provider_events where ctid in (select ctid from provider_events where received_at < $1 limit $2)`, [old, size])).rowCount ?? 0, size));

  const staleHeartbeats = await purgeKind(deps, 'stale_heartbeats', async () =>
    (await pool.query(`delete from worker_heartbeats where beat_at < $1`, [new Date(now.getTime() - 7 * 86_400_000)])).rowCount ?? 0);

  const phoneVerifications = await purgeKind(deps, 'phone_verifications', () => drain(async () => (await pool.query(
    `delete from phone_verifications where id in (select id from phone_verifications where created_at < $1 limit $2)`,
    [new Date(now.getTime() - 86_400_000), size])).rowCount ?? 0, size));

  let deleted = { members: 0, auditRows: 0 };
  await purgeKind(deps, 'deleted_members', async () => { deleted = await purgeDeletedMembers(pool, size); return deleted.members; });

  const linksDead = new Date(now.getTime() - (deps.settings.linkLifetimeDays ?? 31) * 86_400_000);
  const tombstones = await purgeKind(deps, 'deleted_account_tombstones', () => purgeTombstones(pool, linksDead));

  const result: RetentionResult = {
    delivery_payloads: deliveryPayloads, check_in_notes: checkInNotes, incident_payloads: incidentPayloads,
    check_in_locations: checkInLocations, incident_locations: incidentLocations, provider_events: providerEvents,
    deleted_members: deleted.members, deleted_member_audit_rows: deleted.auditRows, deleted_account_tombstones: tombstones, stale_heartbeats: staleHeartbeats,
    phone_verifications: phoneVerifications,
  };
  for (const [what, n] of Object.entries(result)) if (n > 0) deps.metrics?.retentionPurged.inc({ what }, n);
  deps.metrics?.retentionLastRun.set(deps.clock().getTime() / 1000);
  if (Object.values(result).some((n) => n > 0)) deps.log.info({ purged: result }, 'retention purged old data');
  return result;
}

/**
 * What outlives a deleted member: their audit trail up to the deletion. Found through the
 * tombstone (whether or not a profile with the same id was created since), or, for deletions made
 * before tombstones existed, through a member.deleted row of an id with no profile (a partial
 * index keeps that cheap); those also still have links to them as someone's contact, unlinked here.
 */
export async function purgeDeletedMembers(pool: pg.Pool, batchSize = RETENTION_BATCH): Promise<{ members: number; auditRows: number }> {
  const { rows } = await pool.query<{ member_id: string }>(
    `(select d.member_id from deleted_accounts d
       where exists (select 1 from audit_log a where a.member_id = d.member_id and a.at <= d.deleted_at))
     union
     (select a.member_id from audit_log a
       where a.action = 'member.deleted' and a.member_id is not null
         and not exists (select 1 from members m where m.id = a.member_id))
     limit $1`, [batchSize]);
  let auditRows = 0;
  for (const { member_id: id } of rows) {
    auditRows += await withTransaction(pool, async (c) => {
      // The trail refuses every delete but this one (see the audit_log_append_only trigger).
      await c.query(`select set_config('pruuf.audit_purge', 'deleted_members', true)`);
      await c.query('update contacts set linked_user_id = null where linked_user_id = $1 and not exists (select 1 from members where id = $1)', [id]);
      // A re-created profile keeps its own trail: only the rows up to the deletion go.
      const { rowCount } = await c.query(
        `delete from audit_log where member_id = $1
            and (not exists (select 1 from members where id = $1)
                 or at <= (select deleted_at from deleted_accounts where member_id = $1))`, [id]);
      return rowCount ?? 0;
    });
  }
  return { members: rows.length, auditRows };
}

/**
 * Tombstones once every link signed before the deletion has expired (`linksDead`): the contact ids
 * go, and the whole row when no profile has the id (a re-created profile keeps its generation, or
 * its own older links would come back to life) and its trail is purged.
 */
export async function purgeTombstones(pool: pg.Pool, linksDead: Date): Promise<number> {
  await pool.query(`update deleted_accounts set contact_ids = '{}' where deleted_at < $1 and cardinality(contact_ids) > 0`, [linksDead]);
  const { rowCount } = await pool.query(
    `delete from deleted_accounts d where d.deleted_at < $1
        and not exists (select 1 from members m where m.id = d.member_id)
        and not exists (select 1 from audit_log a where a.member_id = d.member_id and a.at <= d.deleted_at)`, [linksDead]);
  return rowCount ?? 0;
}
