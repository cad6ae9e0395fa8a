import type { ChannelName } from '../channels/types.js';
import type { Queryable } from '../db/pool.js';
import { callScript } from './calls.js';
import { channelText, planContact, renderAlertFor, type AlertRender } from './outbound.js';
import { getIncident, type IncidentRow } from './repo.js';

/**
 * Alerts the sweeper writes are rendered when they are sent, not when the incident opens: a burst
 * of missed deadlines then writes small rows (no HTML bodies) inside the claim. The text is a pure
 * function of the incident's snapshot (plan, deadline, note, last check-in: fixed at opening) and
 * of the row's `render` (the step's round, the contact, the signed link), so it is the same text
 * the claim would have rendered. Calls are always rendered this way (src/incidents/calls.ts).
 */

export type MessageText = { subject: string | null; body: string; html: string | null; data: Record<string, string> | null };

export type StoredMessage = {
  id: string;
  kind: string;
  channel: ChannelName;
  incident_id: string | null;
  contact_id: string | null;
  subject: string | null;
  body: string | null;
  html: string | null;
  data: Record<string, string> | null;
  render: AlertRender | null;
};

/** The text a delivery sends: the one stored with it, or its alert rendered now from its incident. */
/** `repeat`: a copy sent again through another provider: the alert says so, inside its SMS length. */
/** `incident`: how to read the incident (a batch's deliveries share one read); default one query. */
export async function messageText(
  db: Queryable, row: StoredMessage, opts: { repeat?: boolean; incident?: (id: string) => Promise<IncidentRow | undefined> } = {},
): Promise<MessageText> {
  if (row.body !== null) return { subject: row.subject, body: row.body, html: row.html, data: row.data };
  if (row.kind !== 'alert' || row.render === null || row.incident_id === null) {
    throw new Error(`delivery ${row.id} has neither a text nor what to render it from`);
  }
  const { round, ack_url: ackUrl } = row.render;
  if (!Number.isInteger(round) || round < 1 || round > 1000 || typeof ackUrl !== 'string' || !/^https?:\/\//.test(ackUrl)) {
    throw new Error(`delivery ${row.id}: its render data is not usable`);
  }
  const inc = opts.incident !== undefined ? await opts.incident(row.incident_id) : await getIncident(db, row.incident_id);
  if (inc === undefined) throw new Error(`delivery ${row.id}: its incident is gone`);
  // The plan snapshot names the contact; the row's contact_id may have been cleared since (contact deleted).
  const contact = planContact(inc.plan, row.render.contact_id);
  // A call's text is what it says (the dev outbox shows it; the TwiML route says it).
  if (row.channel === 'voice') return { subject: null, body: callScript(inc, contact).text, html: null, data: null };
  return channelText(row.channel, renderAlertFor(inc, { name: contact?.name ?? '', locale: contact?.locale }, round, ackUrl, opts.repeat === true));
}
