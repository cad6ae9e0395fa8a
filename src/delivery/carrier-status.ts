import type pg from 'pg';
import { batcherPer } from '../batcher.js';
import { setSmsOptOut } from '../channels/sms-twilio/opt-out.js';
import type { SendStatus } from '../channels/types.js';
import { prepared, withTransaction, type Queryable } from '../db/pool.js';
import type { Metrics } from '../observability/metrics.js';
import { claimProviderEvent, disableContactChannel, recordFailover, type DeliveryRef } from './feedback.js';

/**
 * What a provider says happened to a message after it accepted it: Twilio status callbacks,
 * SendGrid events, FCM's answer to the send. Every status is kept once in `delivery_statuses`;
 * the delivery row carries the provider's last word (`provider_status`) and its meaning across
 * providers (`carrier_status`), which never moves backwards.
 *
 * A Twilio callback can arrive before our worker has recorded the message id on the row (Twilio
 * calls back as soon as it answers the send). It is then held in `held_delivery_statuses` and
 * applied when the row appears. Both sides write, commit, then look for the other's write, so one
 * of them always sees it: the worker after recording the send (`recordSendOutcome`), the webhook
 * after holding (`applyHeldStatuses` for that message); the reconciler's pass every minute is the
 * backstop (and drops what is held for longer than a day).
 */

export type CarrierStatus = 'sent' | 'deferred' | 'delivered' | 'undelivered' | 'bounced' | 'dropped' | 'failed';
export const CARRIER_STATUSES: readonly CarrierStatus[] = ['sent', 'deferred', 'delivered', 'undelivered', 'bounced', 'dropped', 'failed'];

/**
 * Provider words (lower case), the order of a message's life, and what each means. Final words
 * share a rank, so the later of two wins (a bounce after delivered); a lower rank never replaces
 * a higher one (a late "sent" or "processed" after "delivered").
 * Calls (Twilio CallStatus): initiated, ringing, in-progress (answered), then completed (a person
 * answered: delivered), busy or no-answer (undelivered), failed or canceled; `answering_machine`
 * is ours, for a call completed by a machine (AnsweredBy machine_*, fax): undelivered.
 */
const WORDS: Record<string, { rank: number; carrier: CarrierStatus | null }> = {
  accepted: { rank: 0, carrier: null }, scheduled: { rank: 0, carrier: null }, processed: { rank: 0, carrier: null },
  queued: { rank: 1, carrier: null }, sending: { rank: 2, carrier: null },
  sent: { rank: 3, carrier: 'sent' }, deferred: { rank: 3, carrier: 'deferred' },
  delivered: { rank: 4, carrier: 'delivered' }, undelivered: { rank: 4, carrier: 'undelivered' }, failed: { rank: 4, carrier: 'failed' },
  canceled: { rank: 4, carrier: 'failed' }, bounce: { rank: 4, carrier: 'bounced' }, dropped: { rank: 4, carrier: 'dropped' },
  read: { rank: 5, carrier: 'delivered' },
  // Postmark: the recipient marked the mail as spam, so it arrived.
  spamcomplaint: { rank: 5, carrier: 'delivered' },
  // Vonage delivery receipts (its `accepted` is recorded as `sent`: sms-vonage/status.ts).
  buffered: { rank: 3, carrier: 'deferred' }, unknown: { rank: 3, carrier: null },
  expired: { rank: 4, carrier: 'undelivered' }, rejected: { rank: 4, carrier: 'failed' },
  initiated: { rank: 1, carrier: null }, ringing: { rank: 2, carrier: null }, 'in-progress': { rank: 3, carrier: null },
  completed: { rank: 4, carrier: 'delivered' }, busy: { rank: 4, carrier: 'undelivered' }, 'no-answer': { rank: 4, carrier: 'undelivered' },
  answering_machine: { rank: 4, carrier: 'undelivered' },
};

export const carrierStatusOf = (word: string): CarrierStatus | null => WORDS[word.toLowerCase()]?.carrier ?? null;
const rankOf = (word: string): number => WORDS[word]?.rank ?? 0;
/** The metric label: a known word, or "other" (provider words are not ours to bound). */
export const statusLabel = (word: string): string => (WORDS[word.toLowerCase()] === undefined ? 'other' : word.toLowerCase());

// The same ranks in SQL, for the row's current word (keys are fixed lower-case words above).
const RANK_SQL = `(case d.provider_status ${Object.entries(WORDS).map(([w, { rank }]) => `when '${w}' then ${rank}`).join(' ')} else 0 end)`;

/** What a status means for the contact's address; worked out by the provider's module when it arrives. */
export type StatusEffects = {
  /** Turn the channel off for the contact with this reason (while the address is still theirs). */
  dead_address?: string;
  /** SMS: the number opted out everywhere. */
  opted_out?: true;
  /** An alert: the incident timeline records that the contact's other channels carry it. */
  failover?: string;
};

export type StatusReport = {
  provider: string;
  /** Unique per provider: a repeat is a no-op. */
  eventId: string;
  /** Our delivery id, when the provider echoes it back (SendGrid custom_args). */
  deliveryId?: string | undefined;
  providerMessageId?: string | undefined;
  /** The provider's own word. */
  status: string;
  errorCode: string | null;
  /** When the provider says it happened; when we heard it if the provider does not say. */
  occurredAt: Date;
  effects?: StatusEffects;
  /** Hold a status that matches no delivery yet (only for providers whose callbacks are all ours: Twilio). */
  holdUnmatched?: boolean;
};

export type StatusOutcome = 'applied' | 'stale' | 'held' | 'duplicate' | 'unknown';
/** receiptSeconds: from the provider accepting the message to this delivered receipt (pruuf_receipt_seconds). */
export type StatusResult = { outcome: StatusOutcome; ref?: DeliveryRef; disabled: boolean; receiptSeconds?: number | null };

/** What applying a status needs of its delivery. */
export type SentRef = Pick<DeliveryRef, 'id' | 'contact_id' | 'incident_id' | 'channel' | 'kind' | 'address'>;

const REF_COLUMNS = 'id, member_id, contact_id, incident_id, channel, kind, address';
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

async function lockDelivery(tx: Queryable, r: Pick<StatusReport, 'provider' | 'deliveryId' | 'providerMessageId'>): Promise<DeliveryRef | undefined> {
  // Locked, so the statuses of one delivery are applied one after the other, each seeing the last.
  if (r.deliveryId !== undefined && UUID.test(r.deliveryId)) {
    return (await tx.query<DeliveryRef>(`select ${REF_COLUMNS} from deliveries where id = $1 for update`, [r.deliveryId])).rows[0];
  }
  if (r.providerMessageId === undefined || r.providerMessageId === '') return undefined;
  return (await tx.query<DeliveryRef>(
    `select ${REF_COLUMNS} from deliveries where provider = $1 and provider_message_id = $2 limit 1 for update`, [r.provider, r.providerMessageId],
  )).rows[0];
}

/**
 * Stores one status of a delivery and moves the row on when it says something later. Returns
 * recorded = false for a status already stored (a repeat), advanced = false when the row keeps a
 * later word. The effects run for every status stored for the first time, also an out-of-order one.
 */
export async function applyToDelivery(
  tx: Queryable, ref: SentRef, r: Omit<StatusReport, 'deliveryId' | 'providerMessageId' | 'holdUnmatched'>, now: Date,
): Promise<{ recorded: boolean; advanced: boolean; disabled: boolean; receiptSeconds: number | null }> {
  const [res] = await storeStatuses(tx, [{ deliveryId: ref.id, report: r, now }]);
  const recorded = res?.recorded === true;
  let disabled = false;
  if (recorded && r.effects !== undefined) {
    const e = r.effects;
    if (e.dead_address !== undefined && ref.contact_id !== null && (ref.channel === 'email' || ref.channel === 'sms')) {
      // A status can come long after the send: an address the member has since corrected stays on.
      disabled = await disableContactChannel(tx, ref.contact_id, ref.channel, e.dead_address, now, ref.address);
    }
    if (e.opted_out === true && ref.channel === 'sms' && ref.address !== '') await setSmsOptOut(tx, ref.address, true, now);
    if (e.failover !== undefined && ref.kind === 'alert') await recordFailover(tx, ref, e.failover, now);
  }
  return { recorded, advanced: res?.advanced === true, disabled, receiptSeconds: res?.receipt_seconds ?? null };
}

type StoredStatus = { recorded: boolean; advanced: boolean; receipt_seconds: number | null };

/**
 * Statuses stored in ONE statement, each for its own delivery (at most one per delivery per
 * call): stored once (a repeat is recorded = false), and the row moved on when the word is later
 * than the one it has (advanced). Per item, in order. The effects are applyToDelivery's.
 */
async function storeStatuses(
  db: Queryable, items: readonly { deliveryId: string; report: Pick<StatusReport, 'provider' | 'eventId' | 'status' | 'errorCode' | 'occurredAt'>; now: Date }[],
): Promise<StoredStatus[]> {
  const input = items.map(({ deliveryId, report: r, now }, i) => {
    const word = r.status.toLowerCase();
    return {
      i, delivery_id: deliveryId, provider: r.provider, event_id: r.eventId.slice(0, 200), status: word.slice(0, 64), carrier_status: carrierStatusOf(word),
      error_code: r.errorCode?.slice(0, 100) ?? null, occurred_at: r.occurredAt, received_at: now, rank: rankOf(word),
    };
  });
  const { rows } = await db.query<StoredStatus & { i: number }>(prepared(
    'statuses.store',
    `with input as (
       select * from json_to_recordset($1::json) as r(i int, delivery_id uuid, provider text, event_id text, status text, carrier_status text,
                                                      error_code text, occurred_at timestamptz, received_at timestamptz, rank int)
     ), h as (
       insert into delivery_statuses (delivery_id, provider, event_id, status, carrier_status, error_code, occurred_at, received_at)
       select delivery_id, provider, event_id, status, carrier_status, error_code, occurred_at, received_at from input
       on conflict (provider, event_id) do nothing
       returning provider, event_id
     ), u as (
       update deliveries d
          set provider_status = i.status, provider_status_at = i.occurred_at, provider_error_code = i.error_code,
              carrier_status = coalesce(i.carrier_status, d.carrier_status),
              carrier_status_at = case when i.carrier_status is not null and d.carrier_status is distinct from i.carrier_status then i.occurred_at else d.carrier_status_at end,
              updated_at = i.received_at
         from input i
        where d.id = i.delivery_id and exists (select 1 from h where h.provider = i.provider and h.event_id = i.event_id)
          and (d.provider_status is null or ${RANK_SQL} < i.rank
               or (${RANK_SQL} = i.rank and (d.provider_status_at is null or d.provider_status_at <= i.occurred_at)))
       returning i.i, case when i.carrier_status = 'delivered' and d.sent_at is not null then extract(epoch from (i.occurred_at - d.sent_at))::float8 end as secs
     )
     select i.i, exists (select 1 from h where h.provider = i.provider and h.event_id = i.event_id) as recorded,
            u.i is not null as advanced, u.secs as receipt_seconds
       from input i left join u on u.i = i.i order by i.i`,
    [JSON.stringify(input)],
  ));
  return rows;
}

type SendStatusItem = { deliveryId: string; report: Pick<StatusReport, 'provider' | 'eventId' | 'status' | 'errorCode' | 'occurredAt'>; now: Date };

/** The statuses providers give in their answer to a send (FCM), stored together per turn. */
const sendStatusWriter = batcherPer((pool: pg.Pool) => (items: readonly SendStatusItem[]) => storeStatuses(pool, items), 200);

/**
 * One provider event, inside the caller's transaction: claimed once (provider_events), then
 * stored on its delivery, or held when it matches none yet and the provider's callbacks are all
 * ours. After 'held', call applyHeldStatuses for the message once the transaction has committed.
 */
export async function recordStatus(tx: Queryable, r: StatusReport, now: Date): Promise<StatusResult> {
  const ref = await lockDelivery(tx, r);
  const holding = ref === undefined && r.holdUnmatched === true && r.providerMessageId !== undefined && r.providerMessageId !== '';
  // Not ours: nothing is claimed.
  if (ref === undefined && !holding) return { outcome: 'unknown', disabled: false };
  if (!(await claimProviderEvent(tx, r.provider, r.eventId, now))) return { outcome: 'duplicate', ...(ref === undefined ? {} : { ref }), disabled: false };
  if (ref === undefined) {
    await tx.query(
      `insert into held_delivery_statuses (provider, event_id, provider_message_id, status, error_code, occurred_at, received_at, effects)
       values ($1, $2, $3, $4, $5, $6, $7, $8) on conflict do nothing`,
      [r.provider, r.eventId.slice(0, 200), r.providerMessageId!.slice(0, 200), r.status.toLowerCase().slice(0, 64), r.errorCode?.slice(0, 100) ?? null,
        r.occurredAt, now, JSON.stringify(r.effects ?? {})],
    );
    return { outcome: 'held', disabled: false };
  }
  const applied = await applyToDelivery(tx, ref, r, now);
  const outcome = !applied.recorded ? 'duplicate' : applied.advanced ? 'applied' : 'stale';
  return { outcome, ref, disabled: applied.disabled, receiptSeconds: applied.receiptSeconds };
}

export type AppliedHeld = { provider: string; channel: string; status: string; outcome: StatusOutcome };

type HeldRow = { provider: string; event_id: string; provider_message_id: string; status: string; error_code: string | null; occurred_at: Date; effects: StatusEffects };

/** Held statuses whose delivery now has the message id (optionally of one message), applied and removed. */
export async function applyHeldStatuses(
  pool: pg.Pool, now: Date, only?: { provider: string; providerMessageId: string }, limit = 500,
): Promise<AppliedHeld[]> {
  return withTransaction(pool, async (tx) => {
    // Taken by deleting them: two workers (or a worker and a webhook) never apply one twice.
    const { rows } = await tx.query<HeldRow>(
      `delete from held_delivery_statuses h where (h.provider, h.event_id) in (
         select x.provider, x.event_id from held_delivery_statuses x
          where ($1::text is null or (x.provider = $1 and x.provider_message_id = $2))
            and exists (select 1 from deliveries d where d.provider = x.provider and d.provider_message_id = x.provider_message_id)
          order by x.received_at limit $3
          for update of x skip locked)
       returning h.provider, h.event_id, h.provider_message_id, h.status, h.error_code, h.occurred_at, h.effects`,
      [only?.provider ?? null, only?.providerMessageId ?? null, limit],
    );
    rows.sort((a, b) => a.occurred_at.getTime() - b.occurred_at.getTime());
    const applied: AppliedHeld[] = [];
    for (const h of rows) {
      const ref = await lockDelivery(tx, { provider: h.provider, providerMessageId: h.provider_message_id });
      if (ref === undefined) continue;
      const res = await applyToDelivery(tx, ref, {
        provider: h.provider, eventId: h.event_id, status: h.status, errorCode: h.error_code, occurredAt: h.occurred_at, effects: h.effects,
      }, now);
      applied.push({ provider: h.provider, channel: ref.channel, status: h.status, outcome: !res.recorded ? 'duplicate' : res.advanced ? 'applied' : 'stale' });
    }
    return applied;
  });
}

/**
 * Right after the worker recorded a send: the provider's word from its answer (FCM) when there is
 * one, then any status that arrived before the record (held). A failed send passes no message id.
 * Looked up after the record committed, so a callback held meanwhile is seen (see the top).
 */
/** The sends of one turn ask about held callbacks in one statement. */
const heldReader = batcherPer((pool: pg.Pool) => async (items: readonly { provider: string; id: string }[]) => {
  const { rows } = await pool.query<{ provider: string; provider_message_id: string }>(prepared(
    'statuses.held-for-sent',
    `select distinct h.provider, h.provider_message_id from held_delivery_statuses h
       join unnest($1::text[], $2::text[]) as q(provider, id) on h.provider = q.provider and h.provider_message_id = q.id`,
    [items.map((i) => i.provider), items.map((i) => i.id)],
  ));
  const held = new Set(rows.map((r) => `${r.provider} ${r.provider_message_id}`));
  return items.map((i) => held.has(`${i.provider} ${i.id}`));
}, 500);

export async function recordSendOutcome(
  pool: pg.Pool, ref: SentRef, send: { provider: string; providerMessageId?: string | undefined; status?: SendStatus | undefined }, now: Date, metrics?: StatusMetrics,
): Promise<void> {
  if (send.status !== undefined) {
    // A send's own status has no effects (no dead address, no opt-out): stored with the others of its turn.
    const res = await sendStatusWriter(pool).run({
      deliveryId: ref.id, now,
      report: { provider: send.provider, eventId: `send:${ref.id}:${send.status.status}`, status: send.status.status, errorCode: send.status.errorCode, occurredAt: now },
    });
    countStatus(metrics, send.provider, ref.channel, send.status.status, !res.recorded ? 'duplicate' : res.advanced ? 'applied' : 'stale');
  }
  if (send.providerMessageId === undefined) return;
  // Whether callbacks for this message wait in held_delivery_statuses (they came before its record).
  if (!(await heldReader(pool).run({ provider: send.provider, id: send.providerMessageId }))) return;
  for (const a of await applyHeldStatuses(pool, now, { provider: send.provider, providerMessageId: send.providerMessageId })) {
    countStatus(metrics, a.provider, a.channel, a.status, a.outcome);
  }
}

/** How long a status waits for its delivery before it is dropped. */
export const HELD_STATUS_TTL_MS = 24 * 60 * 60_000;

/**
 * The reconciler's pass: applies held statuses whose row appeared (a backstop: the worker and the
 * webhook normally do it at once) and drops those held longer than HELD_STATUS_TTL_MS.
 */
export async function sweepHeldStatuses(pool: pg.Pool, now: Date, metrics?: StatusMetrics): Promise<{ applied: number; dropped: number }> {
  let applied = 0;
  for (;;) {
    const batch = await applyHeldStatuses(pool, now);
    for (const a of batch) countStatus(metrics, a.provider, a.channel, a.status, a.outcome);
    applied += batch.length;
    if (batch.length < 500) break;
  }
  const { rowCount } = await pool.query('delete from held_delivery_statuses where received_at < $1', [new Date(now.getTime() - HELD_STATUS_TTL_MS)]);
  return { applied, dropped: rowCount ?? 0 };
}

export type StatusMetrics = Partial<Pick<Metrics, 'deliveryStatuses' | 'receiptSeconds'>>;

export function countStatus(
  metrics: StatusMetrics | undefined, provider: string, channel: string | undefined, status: string, outcome: StatusOutcome, receiptSeconds?: number | null,
): void {
  metrics?.deliveryStatuses?.inc({ provider, channel: channel ?? 'unknown', status: statusLabel(status), outcome });
  if (receiptSeconds != null && receiptSeconds >= 0) metrics?.receiptSeconds?.observe({ provider, channel: channel ?? 'unknown' }, receiptSeconds);
}
