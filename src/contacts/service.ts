import type pg from 'pg';
import type { Principal } from '../auth/jwt.js';
import { entitlementsFor, type PlanSettings } from '../billing/entitlements.js';
import { withTransaction } from '../db/pool.js';
import { enqueueDeliveries, insertDeliveries } from '../delivery/outbox.js';
import { conflict, notFound, planLimit } from '../http/errors.js';
import { ensureMember } from '../members/repo.js';
import type { Logger } from '../observability/logger.js';
import type { QueueSystem } from '../queue/index.js';
import { memberLabel } from '../incidents/plan.js';
import { invitationDeliveries, type LinkSettings } from './invitation.js';
import * as repo from './repo.js';

export type ContactDeps = { pool: pg.Pool; queues: QueueSystem; log: Logger; links: LinkSettings; plans: PlanSettings };

function isUniqueViolation(err: unknown): boolean {
  return typeof err === 'object' && err !== null && (err as { code?: string }).code === '23505';
}

/**
 * Adds a contact within the plan's limit and queues the invitation in the same transaction. The
 * invitation asks for the consent alerts need, so like them it goes on every channel on every
 * plan (`alertChannels`): a contact with only a phone is asked by SMS on the free plan too.
 */
export async function addContact(deps: ContactDeps, who: Principal, input: repo.NewContact, now: Date): Promise<repo.ContactRow> {
  let deliveryIds: string[] = [];
  try {
    const contact = await withTransaction(deps.pool, async (tx) => {
      const member = await ensureMember(tx, who);
      const count = await repo.lockAndCountContacts(tx, who.id);
      const ent = await entitlementsFor(tx, who.id, deps.plans, now);
      if (count >= ent.maxContacts) {
        throw planLimit(`the ${ent.plan} plan allows ${ent.maxContacts} contacts`, { plan: ent.plan, max_contacts: ent.maxContacts });
      }
      const created = await repo.insertContact(tx, who.id, input, now);
      deliveryIds = await insertDeliveries(tx, invitationDeliveries(deps.links, created, memberLabel(member), ent.alertChannels));
      return created;
    });
    await enqueueDeliveries(deps.pool, deps.queues, deliveryIds, deps.log);
    return contact;
  } catch (err) {
    if (isUniqueViolation(err)) throw conflict('a contact with this email or phone already exists');
    throw err;
  }
}

export async function changeContact(deps: ContactDeps, who: Principal, id: string, patch: repo.ContactPatch, now: Date): Promise<repo.ContactRow> {
  let deliveryIds: string[] = [];
  try {
    const contact = await withTransaction(deps.pool, async (tx) => {
      const result = await repo.updateContact(tx, who.id, id, patch, now);
      if (result === undefined) throw notFound('contact');
      if (result.reinvite) {
        const member = await ensureMember(tx, who);
        const ent = await entitlementsFor(tx, who.id, deps.plans, now);
        deliveryIds = await insertDeliveries(tx, invitationDeliveries(deps.links, result.contact, memberLabel(member), ent.alertChannels));
      }
      return result.contact;
    });
    await enqueueDeliveries(deps.pool, deps.queues, deliveryIds, deps.log);
    return contact;
  } catch (err) {
    if (isUniqueViolation(err)) throw conflict('a contact with this email or phone already exists');
    throw err;
  }
}
