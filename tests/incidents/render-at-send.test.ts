import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import type { Channel, Channels, OutboundMessage } from '../../src/channels/types.js';
import { processDelivery } from '../../src/delivery/deliver.js';
import { renderAlert, type AlertInput } from '../../src/incidents/messages.js';
import { sweepOnce } from '../../src/incidents/sweep.js';
import { verifyLink } from '../../src/links/tokens.js';
import { createLogger } from '../../src/observability/logger.js';
import { startTestApp, type TestApp } from '../helpers/app.js';
import { TEST_LINK_SECRET } from '../helpers/tokens.js';
import { memberWithContacts, sweepDeps, testClock } from './helpers.js';

// The sweeper writes alerts without their text (render at send time): these tests pin that what
// the worker sends is exactly the message the claim used to render and store.

const clock = testClock('2026-11-23T08:00:00Z');

type Row = { id: string; channel: 'push' | 'sms' | 'email' | 'voice'; contact_id: string | null; step_no: number; body: string | null; html: string | null; render: { round: number; contact_id: string; ack_url: string } | null };

/** Each channel's part of a rendered alert, spelled out here rather than taken from the code under test. */
function expected(channel: Row['channel'], input: AlertInput): Pick<OutboundMessage, 'subject' | 'body' | 'html' | 'data'> {
  const r = renderAlert(input);
  if (channel === 'email') return { subject: r.email.subject, body: r.email.text, html: r.email.html, data: null };
  if (channel === 'sms') return { subject: null, body: r.sms, html: null, data: null };
  return { subject: r.push.title, body: r.push.body, html: null, data: r.push.data };
}

describe('alerts the sweeper leaves to the worker to render', () => {
  let t: TestApp;
  const sent = new Map<string, OutboundMessage>();
  const capture: Channel = {
    provider: 'capture',
    async send(msg) {
      sent.set(msg.deliveryId, msg);
      return { provider: 'capture', providerMessageId: randomUUID() };
    },
  };
  const channels: Channels = { push: capture, sms: capture, email: capture };
  const send = (id: string) => processDelivery({ pool: t.db.pool, channels, clock: () => clock.now, log: createLogger('silent') }, id, 0, 8);
  const rows = async (incidentId: string) => (await t.db.pool.query<Row>(
    `select id, channel, contact_id, step_no, body, html, render from deliveries where incident_id = $1 and kind = 'alert' order by step_no, channel, id`, [incidentId],
  )).rows;

  beforeAll(async () => {
    t = await startTestApp({ clock: () => clock.now, env: { FREE_PLAN_CHANNELS: 'push,sms,email', FREE_PLAN_CONTACTS: '10' } });
  });
  afterAll(() => t.close());

  it('stores no text, and sends on every channel the text the claim would have stored: late, with the last check-in and its location', async () => {
    clock.set('2026-11-23T08:00:00Z');
    const m = await memberWithContacts(t, [1, 2]);
    // Contact 0 is also an app user with a phone: push too.
    const appUser = randomUUID();
    await t.db.pool.query(`insert into members (id, display_name) values ($1, 'Bob')`, [appUser]);
    await t.db.pool.query(`insert into devices (member_id, token, platform) values ($1, $2, 'ios')`, [appUser, `tok-${appUser}`]);
    await t.db.pool.query('update contacts set linked_user_id = $2 where id = $1', [m.contacts[0]!.id, appUser]);
    // Checks in for today (with a location), then misses tomorrow; our sweeper is 45 minutes late.
    const checkIn = await t.app.inject({ method: 'POST', url: '/v1/check-ins', headers: m.headers, payload: { location: { lat: 51.50735, lng: -0.12776 } } });
    expect(checkIn.statusCode).toBe(201);
    clock.set('2026-11-24T10:45:00Z');
    await sweepOnce(sweepDeps(t, clock));
    const { rows: [inc] } = await t.db.pool.query('select id, opened_at from incidents where member_id = $1', [m.sub]);

    const written = await rows(inc.id);
    expect(written.map((r) => r.channel)).toEqual(['email', 'push', 'sms']);
    for (const r of written) {
      expect({ body: r.body, html: r.html }).toEqual({ body: null, html: null });
      expect(r.render).toMatchObject({ round: 1, contact_id: m.contacts[0]!.id });
      const link = verifyLink(TEST_LINK_SECRET, 'ack', r.render!.ack_url.replace('http://pruuf.test/a/', ''), clock.now);
      expect({ contact: link.s, incident: link.x }).toEqual({ contact: m.contacts[0]!.id, incident: inc.id });
    }

    for (const r of written) {
      expect(await send(r.id)).toBe('sent');
      const msg = sent.get(r.id)!;
      expect({ subject: msg.subject, body: msg.body, html: msg.html, data: msg.data ?? null }).toEqual(expected(r.channel, {
        memberName: 'Ann', contactName: 'Contact 0', kind: 'missed', deadlineAt: new Date('2026-11-24T09:30:00Z'), openedAt: inc.opened_at,
        timeZone: 'UTC', lastCheckInAt: new Date('2026-11-23T08:00:00Z'), lastLocation: { lat: 51.50735, lng: -0.12776 }, note: null,
        ackUrl: r.render!.ack_url, delayedByMinutes: 45, round: 1, incidentId: inc.id,
      }));
      expect(msg.to).toBe(r.channel === 'push' ? `user:${appUser}` : r.channel === 'sms' ? m.contacts[0]!.phone : m.contacts[0]!.email);
    }
    expect(sent.get(written.find((r) => r.channel === 'email')!.id)!.body).toContain('This alert is 45 min late');
  });

  it('renders a later round as a reminder, and keeps the greeting of a contact deleted before the send', async () => {
    clock.set('2026-11-23T08:00:00Z');
    const m = await memberWithContacts(t, [1]);
    clock.set('2026-11-23T10:00:00Z');
    await sweepOnce(sweepDeps(t, clock));
    const { rows: [inc] } = await t.db.pool.query('select id, opened_at from incidents where member_id = $1', [m.sub]);
    clock.add(15);
    await sweepOnce(sweepDeps(t, clock)); // one tier: step 2 is round 2, every tier again
    // Step 2 also calls tier 1 (src/incidents/calls.ts); the call's text is rendered when placed, too.
    const step2 = (await rows(inc.id)).filter((r) => r.step_no === 2 && r.channel !== 'voice');
    expect(step2.map((r) => [r.channel, r.body, r.render?.round])).toEqual([['email', null, 2], ['sms', null, 2]]);
    expect((await rows(inc.id)).filter((r) => r.channel === 'voice').map((r) => [r.step_no, r.body, r.render?.round])).toEqual([[2, null, 2]]);

    const del = await t.app.inject({ method: 'DELETE', url: `/v1/contacts/${m.contacts[0]!.id}`, headers: m.headers });
    expect(del.statusCode).toBe(204);
    for (const r of await rows(inc.id)) expect(r.contact_id).toBeNull();

    for (const r of step2) {
      expect(await send(r.id)).toBe('sent');
      const msg = sent.get(r.id)!;
      expect({ subject: msg.subject, body: msg.body, html: msg.html, data: msg.data ?? null }).toEqual(expected(r.channel, {
        memberName: 'Ann', contactName: 'Contact 0', kind: 'missed', deadlineAt: new Date('2026-11-23T09:30:00Z'), openedAt: inc.opened_at,
        timeZone: 'UTC', lastCheckInAt: null, lastLocation: null, note: null,
        ackUrl: r.render!.ack_url, delayedByMinutes: 0, round: 2, incidentId: inc.id,
      }));
    }
    expect(sent.get(step2[0]!.id)!.subject).toBe('Reminder: Ann missed a check-in');
    expect(sent.get(step2[0]!.id)!.body).toMatch(/^Hi Contact 0,/);
  });

  it('keeps rendering at once what a request writes (an SOS), and refuses a row with neither text nor what to render', async () => {
    clock.set('2026-11-23T08:00:00Z');
    const m = await memberWithContacts(t, [1]);
    const sos = await t.app.inject({ method: 'POST', url: '/v1/sos', headers: m.headers, payload: { note: 'fell' } });
    const written = await rows(sos.json().id);
    expect(written.length).toBeGreaterThan(0);
    for (const r of written.filter((w) => w.channel !== 'voice')) expect({ text: r.body !== null, render: r.render }).toEqual({ text: true, render: null });
    // SOS calls too; a call's words are always rendered when it is placed (and for each TwiML fetch).
    expect(written.filter((w) => w.channel === 'voice').map((r) => ({ text: r.body !== null, round: r.render?.round }))).toEqual([{ text: false, round: 1 }]);

    await expect(t.db.pool.query(
      `insert into deliveries (member_id, kind, channel, address, body) values ($1, 'reminder', 'email', 'ann@example.test', null)`, [m.sub],
    )).rejects.toMatchObject({ code: '23514' });
    await expect(t.db.pool.query(
      `insert into deliveries (member_id, kind, channel, address, body, incident_id, render) values ($1, 'alert', 'email', 'x@example.test', null, $2, '{"round": 1}')`,
      [m.sub, sos.json().id],
    )).rejects.toMatchObject({ code: '23514' });
  });
});
