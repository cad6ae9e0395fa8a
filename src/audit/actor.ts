import type { Queryable } from '../db/pool.js';

/**
 * Names who acts for the rest of the current transaction's audit rows (the triggers infer it
 * otherwise: the member for their own settings, the contact for invitation answers and
 * acknowledgements, Stripe for subscriptions, 'system' for the rest). Call it inside a
 * transaction: the setting is transaction-local.
 */
export type AuditActor = { type: 'member' | 'contact' | 'stripe' | 'provider' | 'system' | 'operator'; id?: string };

export async function setAuditActor(tx: Queryable, actor: AuditActor): Promise<void> {
  await tx.query(`select set_config('pruuf.actor', $1, true)`, [actor.id === undefined ? actor.type : `${actor.type}:${actor.id}`]);
}
