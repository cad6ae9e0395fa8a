import type pg from 'pg';
import { withTransaction, type Queryable } from '../db/pool.js';
import { callScript, spokenContact, spokenName } from './calls.js';
import { acknowledge, escalateByContact, type IncidentSettings } from './engine.js';
import { strings, type Strings } from './locales/index.js';
import { planContact, type AlertRender } from './outbound.js';
import type { PlanContact } from './plan.js';
import * as repo from './repo.js';

/**
 * What a call says and does while it is up (the channel's TwiML routes turn these turns into
 * TwiML). The keys act as the contact's alert page does, through the same engine functions:
 * 1 = "I'm on it" (acknowledge: escalation stops, the others are told), 2 = "this needs more help"
 * (escalateByContact), 9 = hear it again. Every key pressed is on the timeline (`call_key`), and
 * how the call ended (`call_outcome`, from Twilio's status callback) says which key it was.
 */
export type CallTurn =
  /** Say `say` while listening for one key; no key: say `noKey` and hang up. */
  | { kind: 'ask'; language: string; say: string; noKey: string }
  /** Say it and hang up. */
  | { kind: 'end'; language: string; say: string }
  | { kind: 'hangup' };

type Call = { inc: repo.IncidentRow; contact: PlanContact; present: boolean; t: Strings };

async function loadCall(db: Queryable, deliveryId: string, lock: boolean): Promise<Call | undefined> {
  const { rows } = await db.query<{ incident_id: string | null; contact_id: string | null; render: AlertRender | null }>(
    `select incident_id, contact_id, render from deliveries where id = $1 and channel = 'voice' and kind = 'alert'`, [deliveryId],
  );
  const row = rows[0];
  if (row?.incident_id == null) return undefined;
  const inc = await repo.getIncident(db, row.incident_id, { lock });
  // The snapshot names the contact; the row's contact_id is cleared when the contact is deleted.
  const contactId = row.render?.contact_id ?? row.contact_id;
  const contact = inc === undefined || typeof contactId !== 'string' ? undefined : planContact(inc.plan, contactId);
  if (inc === undefined || contact === undefined) return undefined;
  const present = (await repo.presentContacts(db, [contact.id])).has(contact.id);
  return { inc, contact, present, t: strings(contact.locale) };
}

/** A call whose delivery or incident is gone (the member deleted their account meanwhile). */
const GONE: CallTurn = { kind: 'end', language: strings('en').call.language, say: strings('en').call.gone };

/** Nothing to ask any more: the contact was removed, or the member is OK. */
function settled(c: Call): CallTurn | undefined {
  const say = (text: string): CallTurn => ({ kind: 'end', language: c.t.call.language, say: text });
  if (!c.present) return say(c.t.call.gone);
  if (c.inc.state === 'resolved') return say(c.t.call.allClear(spokenName(c.inc.plan.member_name, c.t)));
  return undefined;
}

function ask(c: Call, prefix = ''): CallTurn {
  const script = callScript(c.inc, c.contact);
  return { kind: 'ask', language: script.language, say: prefix === '' ? script.text : `${prefix} ${c.t.call.keys}`, noKey: c.t.call.noKey };
}

function opening(c: Call): CallTurn {
  const done = settled(c);
  if (done !== undefined) return done;
  if (c.inc.state === 'acknowledged') {
    const member = spokenName(c.inc.plan.member_name, c.t);
    const say = c.inc.acknowledged_by === c.contact.id ? c.t.call.thanks(member) : c.t.call.alreadyOn(spokenContact(c.inc, c.inc.acknowledged_by, c.t), member);
    return { kind: 'end', language: c.t.call.language, say };
  }
  return ask(c);
}

/** The call was answered: what to say first. A machine (voicemail) is hung up on: it cannot press a key. */
export async function callOpening(db: Queryable, deliveryId: string, answeredBy: string | undefined): Promise<CallTurn> {
  if (answeredBy !== undefined && isMachine(answeredBy)) return { kind: 'hangup' };
  const c = await loadCall(db, deliveryId, false);
  return c === undefined ? GONE : opening(c);
}

export const isMachine = (answeredBy: string): boolean => answeredBy.startsWith('machine') || answeredBy === 'fax';

/** A key pressed during the call: acts like the alert page's buttons, in one transaction. */
export async function pressKey(
  pool: pg.Pool, s: IncidentSettings, deliveryId: string, digits: string, now: Date,
): Promise<{ turn: CallTurn; deliveryIds: string[] }> {
  return withTransaction(pool, async (tx) => {
    const c = await loadCall(tx, deliveryId, true);
    if (c === undefined) return { turn: GONE, deliveryIds: [] };
    await repo.addEvent(tx, c.inc.id, now, 'call_key', { contact_id: c.contact.id, detail: { delivery_id: deliveryId, key: digits } });
    const member = spokenName(c.inc.plan.member_name, c.t);
    const end = (say: string, deliveryIds: string[]) => ({ turn: { kind: 'end', language: c.t.call.language, say } as CallTurn, deliveryIds });
    if (digits === '9') return { turn: opening(c), deliveryIds: [] };
    if (digits !== '1' && digits !== '2') return { turn: ask(c, c.t.call.badKey), deliveryIds: [] };
    const done = settled(c);
    if (done !== undefined) return { turn: done, deliveryIds: [] };
    if (digits === '1') return end(c.t.call.thanks(member), await acknowledge(tx, c.inc, c.contact.id, now));
    return end(c.t.call.escalated(member), await escalateByContact(tx, s, c.inc, c.contact.id, now));
  });
}

export type CallOutcome = 'completed' | 'busy' | 'no-answer' | 'failed' | 'canceled' | 'answering_machine';

/**
 * How the call ended, on the incident's timeline with the key that counted (1 or 2, else the last
 * one pressed, else null) and every key pressed. Inside the transaction that recorded the status.
 */
export async function recordCallOutcome(
  tx: Queryable, ref: { id: string; incident_id: string | null; contact_id: string | null }, outcome: CallOutcome,
  extra: { answered_by: string | null; duration_seconds: number | null }, now: Date,
): Promise<void> {
  if (ref.incident_id === null) return;
  const { rows } = await tx.query<{ key: string }>(
    `select detail->>'key' as key from incident_events
      where incident_id = $1 and type = 'call_key' and detail->>'delivery_id' = $2 order by at, id`,
    [ref.incident_id, ref.id],
  );
  const keys = rows.map((r) => r.key);
  const key = [...keys].reverse().find((k) => k === '1' || k === '2') ?? keys.at(-1) ?? null;
  await repo.addEvent(tx, ref.incident_id, now, 'call_outcome', {
    ...(ref.contact_id === null ? {} : { contact_id: ref.contact_id }),
    detail: { delivery_id: ref.id, outcome, key, keys, ...extra },
  });
}
