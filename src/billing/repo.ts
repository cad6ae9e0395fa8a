import type { Queryable } from '../db/pool.js';
import type { Plan } from './entitlements.js';

export type SubscriptionRow = {
  id: string;
  member_id: string | null;
  stripe_customer_id: string;
  price_id: string | null;
  plan: Plan;
  status: string;
  cancel_at_period_end: boolean;
  cancel_at: Date | null;
  current_period_end: Date | null;
  trial_end: Date | null;
  canceled_at: Date | null;
  ended_at: Date | null;
  last_payment: 'paid' | 'failed' | null;
  last_payment_at: Date | null;
  state_at: Date;
  synced_at: Date | null;
  created_at: Date;
  updated_at: Date;
};

/** The part of a subscription that Stripe decides (what an event or the API carries). */
export type SubscriptionState = Pick<
  SubscriptionRow,
  'stripe_customer_id' | 'price_id' | 'plan' | 'status' | 'cancel_at_period_end' | 'cancel_at' | 'current_period_end' | 'trial_end' | 'canceled_at' | 'ended_at'
>;

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export async function customerOf(db: Queryable, memberId: string): Promise<string | undefined> {
  const { rows } = await db.query<{ stripe_customer_id: string }>('select stripe_customer_id from billing_customers where member_id = $1', [memberId]);
  return rows[0]?.stripe_customer_id;
}

/** Remembers a member's customer; the first one stored wins and is returned. */
export async function saveCustomer(db: Queryable, memberId: string, customerId: string): Promise<string> {
  await db.query('insert into billing_customers (member_id, stripe_customer_id) values ($1, $2) on conflict do nothing', [memberId, customerId]);
  return (await customerOf(db, memberId))!;
}

export async function memberOfCustomer(db: Queryable, customerId: string): Promise<string | undefined> {
  const { rows } = await db.query<{ member_id: string }>('select member_id from billing_customers where stripe_customer_id = $1', [customerId]);
  return rows[0]?.member_id;
}

/** A member id from Stripe (metadata, client_reference_id) only counts if that member exists. */
export async function existingMember(db: Queryable, id: string | null | undefined): Promise<string | null> {
  if (typeof id !== 'string' || !UUID.test(id)) return null;
  const { rows } = await db.query<{ id: string }>('select id from members where id = $1', [id.toLowerCase()]);
  return rows[0]?.id ?? null;
}

/** Serialises everything that touches one subscription (row or not yet a row) until commit. */
export async function lockSubscription(tx: Queryable, id: string): Promise<void> {
  await tx.query(`select pg_advisory_xact_lock(hashtextextended('stripe-subscription:' || $1, 0))`, [id]);
}

export async function getSubscription(db: Queryable, id: string): Promise<SubscriptionRow | undefined> {
  const { rows } = await db.query<SubscriptionRow>('select * from subscriptions where id = $1', [id]);
  return rows[0];
}

export async function saveSubscription(
  db: Queryable,
  id: string,
  memberId: string | null,
  s: SubscriptionState,
  stateAt: Date,
  syncedAt: Date | null,
  now: Date,
): Promise<SubscriptionRow> {
  const { rows } = await db.query<SubscriptionRow>(
    `insert into subscriptions (id, member_id, stripe_customer_id, price_id, plan, status, cancel_at_period_end, cancel_at,
       current_period_end, trial_end, canceled_at, ended_at, state_at, synced_at, created_at, updated_at)
     values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $15)
     on conflict (id) do update set
       member_id = coalesce(subscriptions.member_id, excluded.member_id),
       stripe_customer_id = excluded.stripe_customer_id, price_id = excluded.price_id, plan = excluded.plan,
       status = excluded.status, cancel_at_period_end = excluded.cancel_at_period_end, cancel_at = excluded.cancel_at,
       current_period_end = excluded.current_period_end, trial_end = excluded.trial_end,
       canceled_at = excluded.canceled_at, ended_at = excluded.ended_at,
       state_at = greatest(subscriptions.state_at, excluded.state_at),
       synced_at = coalesce(excluded.synced_at, subscriptions.synced_at), updated_at = excluded.updated_at
     returning *`,
    [id, memberId, s.stripe_customer_id, s.price_id, s.plan, s.status, s.cancel_at_period_end, s.cancel_at,
      s.current_period_end, s.trial_end, s.canceled_at, s.ended_at, stateAt, syncedAt, now],
  );
  return rows[0]!;
}

/**
 * A subscription we know exists (an invoice named it) but whose state we cannot read: status
 * 'unknown', never in force, and older than any event, so the first subscription event replaces it.
 */
export async function placeholderSubscription(db: Queryable, id: string, customerId: string, memberId: string | null, now: Date): Promise<SubscriptionRow | undefined> {
  await db.query(
    `insert into subscriptions (id, member_id, stripe_customer_id, plan, status, state_at, created_at, updated_at)
     values ($1, $2, $3, 'free', 'unknown', to_timestamp(0), $4, $4) on conflict do nothing`,
    [id, memberId, customerId, now],
  );
  return getSubscription(db, id);
}

export async function setPayer(db: Queryable, id: string, memberId: string, now: Date): Promise<SubscriptionRow | undefined> {
  const { rows } = await db.query<SubscriptionRow>(
    'update subscriptions set member_id = $2, updated_at = $3 where id = $1 and member_id is null returning *',
    [id, memberId, now],
  );
  return rows[0];
}

/**
 * The latest invoice outcome wins; within one second a payment beats a failure (it settles it).
 * Returns the row only when the outcome changed (that is what the audit trail records).
 */
export async function recordPayment(db: Queryable, id: string, outcome: 'paid' | 'failed', at: Date, now: Date): Promise<SubscriptionRow | undefined> {
  const { rows } = await db.query<SubscriptionRow & { changed: boolean }>(
    `with old as (select id, last_payment from subscriptions where id = $1)
     update subscriptions s set last_payment = $2, last_payment_at = $3, updated_at = $4
       from old
      where s.id = old.id
        and (s.last_payment_at is null or s.last_payment_at < $3 or (s.last_payment_at = $3 and $2 = 'paid' and s.last_payment <> 'paid'))
      returning s.*, old.last_payment is distinct from $2 as changed`,
    [id, outcome, at, now],
  );
  const row = rows[0];
  if (row === undefined || !row.changed) return undefined;
  const { changed: _changed, ...updated } = row;
  return updated;
}

export async function subscriptionsOf(db: Queryable, memberId: string): Promise<SubscriptionRow[]> {
  const { rows } = await db.query<SubscriptionRow>('select * from subscriptions where member_id = $1 order by created_at desc, id', [memberId]);
  return rows;
}

export type AuditEntry = {
  at: Date;
  memberId: string | null;
  subscriptionId: string | null;
  actor: 'stripe' | 'member';
  action: string;
  eventId: string | null;
  before: Record<string, unknown> | null;
  after: Record<string, unknown> | null;
};

export async function audit(db: Queryable, e: AuditEntry): Promise<void> {
  await db.query(
    `insert into billing_audit (at, member_id, subscription_id, actor, action, event_id, before, after)
     values ($1, $2, $3, $4, $5, $6, $7, $8)`,
    [e.at, e.memberId, e.subscriptionId, e.actor, e.action, e.eventId, e.before === null ? null : JSON.stringify(e.before), e.after === null ? null : JSON.stringify(e.after)],
  );
}

/** Members the payer watches as a linked, active contact, earliest link first, with the payer's name for them. */
export async function watchedBy(db: Queryable, payerId: string): Promise<{ member_id: string; display_name: string | null }[]> {
  const { rows } = await db.query<{ member_id: string; display_name: string | null }>(
    `select c.member_id, m.display_name
       from contacts c join members m on m.id = c.member_id
      where c.linked_user_id = $1 and c.status = 'active' and c.member_id <> $1
      group by c.member_id, m.display_name
      order by min(coalesce(c.responded_at, c.created_at)), c.member_id`,
    [payerId],
  );
  return rows;
}

export async function contactCount(db: Queryable, memberId: string): Promise<number> {
  const { rows } = await db.query<{ n: number }>('select count(*)::int as n from contacts where member_id = $1', [memberId]);
  return rows[0]!.n;
}

/** The member's own name for the watcher who pays for them (the contact's name). */
export async function contactNameOf(db: Queryable, memberId: string, userId: string): Promise<string | null> {
  const { rows } = await db.query<{ name: string }>(
    `select name from contacts where member_id = $1 and linked_user_id = $2 and status = 'active' order by created_at limit 1`,
    [memberId, userId],
  );
  return rows[0]?.name ?? null;
}
