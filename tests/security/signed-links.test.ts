import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { signLink } from '../../src/links/tokens.js';
import { errorOf } from '../helpers/app.js';
import { changedTables, snapshot, snapshotQuery } from '../helpers/db-snapshot.js';
import { TEST_LINK_SECRET } from '../helpers/tokens.js';
import { memberWithContacts, testClock, tokenFrom } from '../incidents/helpers.js';
import { startSecurityApp, type SecurityApp } from './world.js';

/** Contact links are credentials: expired, tampered, borrowed or replayed ones change nothing. */
const clock = testClock('2026-11-23T08:00:00Z');

describe('signed contact links under attack', () => {
  let t: SecurityApp;
  let sql: string;
  beforeAll(async () => {
    t = await startSecurityApp({ clock: () => clock.now, env: { FREE_PLAN_CHANNELS: 'push,sms,email', ACK_LINK_TTL_DAYS: '7' } });
    sql = await snapshotQuery(t.db.pool);
  });
  afterAll(() => t.shutdown());

  async function sos(headers: { authorization: string }) {
    const res = await t.call('/v1/sos', { method: 'POST', url: '/v1/sos', headers, payload: {} });
    expect(res.statusCode).toBe(201);
    const id = String(res.json().id);
    const { rows } = await t.db.pool.query<{ contact_id: string; body: string }>(`select contact_id, body from deliveries where incident_id = $1 and kind = 'alert' and channel = 'email' order by contact_id`, [id]);
    return { id, links: rows.map((r) => ({ contactId: r.contact_id, token: tokenFrom(r.body) })) };
  }

  /** Asserts every request is refused with `status` and that no table changed. */
  async function refused(status: number, requests: { route: string; url: string; method: 'GET' | 'POST' }[], title?: string) {
    const before = await snapshot(t.db.pool, sql);
    for (const r of requests) {
      const res = await t.call(r.route, { method: r.method, url: r.url });
      expect({ url: r.url, status: res.statusCode }).toEqual({ url: r.url, status });
      errorOf(res.body);
      const page = await t.app.inject({ method: r.method, url: r.url, headers: { accept: 'text/html' } });
      expect(page.statusCode).toBe(status);
      expect(page.body).toContain(title ?? (status === 410 ? 'This link has expired' : status === 409 ? 'All clear' : 'This link is not valid'));
    }
    expect(changedTables(before, await snapshot(t.db.pool, sql))).toEqual([]);
  }
  const ackRequests = (token: string) => [
    { route: '/a/:token', url: `/a/${token}`, method: 'GET' as const },
    { route: '/a/:token/ack', url: `/a/${token}/ack`, method: 'POST' as const },
    { route: '/a/:token/escalate', url: `/a/${token}/escalate`, method: 'POST' as const },
  ];

  it('refuses tampered acknowledgement links: any flipped character, a truncated or padded token', async () => {
    clock.set('2026-11-23T08:00:00Z');
    const m = await memberWithContacts(t, [1, 1]);
    const { links } = await sos(m.headers);
    const token = links[0]!.token;
    const flip = (i: number) => token.slice(0, i) + (token[i] === 'A' ? 'B' : 'A') + token.slice(i + 1);
    const tampered = [flip(2), flip(10), flip(30), flip(token.length - 3), token.slice(0, -1), `${token}A`, token.slice(0, 40)];
    for (const bad of tampered) await refused(404, ackRequests(bad).slice(0, 2));
  });

  it('refuses a genuine link of one incident used for another, and links of the wrong purpose', async () => {
    clock.set('2026-11-23T08:00:00Z');
    const a = await memberWithContacts(t, [1]);
    const b = await memberWithContacts(t, [1]);
    const incA = await sos(a.headers);
    const incB = await sos(b.headers);
    const later = new Date(clock.now.getTime() + 86_400_000);
    // Correctly signed, but the contact belongs to another member's incident.
    const borrowed = signLink(TEST_LINK_SECRET, 'ack', incA.links[0]!.contactId, later, incB.id);
    await refused(404, ackRequests(borrowed));
    // A check-in link or an invitation link is not an acknowledgement link, and the other way round.
    await refused(404, ackRequests(signLink(TEST_LINK_SECRET, 'checkin', a.sub, later)));
    await refused(404, ackRequests(signLink(TEST_LINK_SECRET, 'invite', incA.links[0]!.contactId, later, String(Date.now()))));
    const before = await snapshot(t.db.pool, sql);
    const asCheckIn = await t.call('/c/:token', { method: 'POST', url: `/c/${incA.links[0]!.token}` });
    expect(asCheckIn.statusCode).toBe(404);
    expect(changedTables(before, await snapshot(t.db.pool, sql))).toEqual([]);
    // Signed with another secret: refused too.
    await refused(404, ackRequests(signLink('another-secret-that-is-at-least-32-characters', 'ack', incA.links[0]!.contactId, later, incA.id)));
    const { rows: [state] } = await t.db.pool.query('select state from incidents where id = $1', [incB.id]);
    expect(state.state).toBe('open');
  });

  it('shows an expired link as expired (410) and lets it do nothing', async () => {
    clock.set('2026-11-23T08:00:00Z');
    const m = await memberWithContacts(t, [1]);
    const { id, links } = await sos(m.headers);
    clock.set('2026-11-30T08:00:01Z');
    await refused(410, ackRequests(links[0]!.token));
    const { rows: [inc] } = await t.db.pool.query('select state, acknowledged_by from incidents where id = $1', [id]);
    expect(inc).toEqual({ state: 'open', acknowledged_by: null });
  });

  it('a removed contact\'s alert links answer 410 and show nothing of the member: no name, note or location, no button, and nothing changes', async () => {
    clock.set('2026-11-23T08:00:00Z');
    const m = await memberWithContacts(t, [1, 1]);
    await t.call('/v1/me', { method: 'PATCH', url: '/v1/me', headers: m.headers, payload: { display_name: 'Zelda Secret' } });
    await t.call('/v1/check-ins', { method: 'POST', url: '/v1/check-ins', headers: m.headers, payload: { note: 'the key is under the mat', location: { lat: 51.5, lng: -0.12 } } });
    const { id, links } = await sos(m.headers);
    const gone = links.find((l) => l.contactId === m.contacts[1]!.id)!;
    expect((await t.app.inject({ method: 'GET', url: `/a/${gone.token}`, headers: { accept: 'text/html' } })).body).toContain('Zelda Secret');
    expect((await t.call('/v1/contacts/:id', { method: 'DELETE', url: `/v1/contacts/${gone.contactId}`, headers: m.headers })).statusCode).toBe(204);
    await refused(410, ackRequests(gone.token), 'This link no longer works');
    for (const accept of ['text/html', 'application/json']) {
      const res = await t.app.inject({ method: 'GET', url: `/a/${gone.token}`, headers: { accept } });
      expect(res.body).not.toMatch(/Zelda|under the mat|maps\.google|51\.5|I'm on it/);
    }
    const { rows: [inc] } = await t.db.pool.query('select state, acknowledged_by from incidents where id = $1', [id]);
    expect(inc).toEqual({ state: 'open', acknowledged_by: null });
    // The contact still on the list keeps a working link.
    const kept = links.find((l) => l.contactId === m.contacts[0]!.id)!;
    expect((await t.call('/a/:token/ack', { method: 'POST', url: `/a/${kept.token}/ack` })).json()).toMatchObject({ state: 'acknowledged' });
  });

  it('refuses an acknowledgement replayed after the incident was resolved, and says all is clear', async () => {
    clock.set('2026-11-23T08:00:00Z');
    const m = await memberWithContacts(t, [1, 1]);
    const { id, links } = await sos(m.headers);
    const first = await t.call('/a/:token/ack', { method: 'POST', url: `/a/${links[0]!.token}/ack` });
    expect(first.json()).toMatchObject({ state: 'acknowledged' });
    clock.add(5);
    const resolved = await t.call('/v1/incidents/:id/resolve', { method: 'POST', url: `/v1/incidents/${id}/resolve`, headers: m.headers });
    expect(resolved.statusCode).toBe(200);
    await refused(409, ackRequests(links[0]!.token).slice(1));
    await refused(409, ackRequests(links[1]!.token).slice(1));
    const page = await t.app.inject({ method: 'GET', url: `/a/${links[1]!.token}`, headers: { accept: 'text/html' } });
    expect(page.statusCode).toBe(200);
    expect(page.body).toContain('All clear');
    expect(page.body).not.toContain("I'm on it");
  });

  it('refuses tampered, expired and (410) removed-contact invitation links and tampered or expired check-in links', async () => {
    clock.set('2026-11-23T08:00:00Z');
    const m = await memberWithContacts(t, [1]);
    const { rows: [c] } = await t.db.pool.query<{ id: string; invited_at: Date }>('select id, invited_at from contacts where member_id = $1', [m.sub]);
    const soon = new Date(clock.now.getTime() + 86_400_000);
    const invite = signLink(TEST_LINK_SECRET, 'invite', c!.id, soon, String(c!.invited_at.getTime()));
    const inviteRequests = (tk: string) => [
      { route: '/i/:token', url: `/i/${tk}`, method: 'GET' as const },
      { route: '/i/:token/accept', url: `/i/${tk}/accept`, method: 'POST' as const },
      { route: '/i/:token/decline', url: `/i/${tk}/decline`, method: 'POST' as const },
    ];
    await refused(404, inviteRequests(`${invite.slice(0, 20)}${invite[20] === 'A' ? 'B' : 'A'}${invite.slice(21)}`));
    // A removed contact's invitation is gone with it.
    const other = await t.call('/v1/contacts', { method: 'POST', url: '/v1/contacts', headers: m.headers, payload: { name: 'Gone soon', email: 'gone@example.test' } });
    const { rows: [g] } = await t.db.pool.query<{ invited_at: Date }>('select invited_at from contacts where id = $1', [other.json().id]);
    const goneLink = signLink(TEST_LINK_SECRET, 'invite', String(other.json().id), soon, String(g!.invited_at.getTime()));
    expect((await t.call('/i/:token', { method: 'GET', url: `/i/${goneLink}` })).statusCode).toBe(200);
    expect((await t.call('/v1/contacts/:id', { method: 'DELETE', url: `/v1/contacts/${other.json().id}`, headers: m.headers })).statusCode).toBe(204);
    await refused(410, inviteRequests(goneLink), 'This link no longer works');
    const { rows: [fresh] } = await t.db.pool.query<{ invited_at: Date }>('select invited_at from contacts where id = $1', [c!.id]);
    const current = signLink(TEST_LINK_SECRET, 'invite', c!.id, soon, String(fresh!.invited_at.getTime()));
    clock.set('2026-11-24T08:00:01Z');
    await refused(410, inviteRequests(current));

    clock.set('2026-11-23T08:00:00Z');
    const checkin = signLink(TEST_LINK_SECRET, 'checkin', m.sub, new Date(clock.now.getTime() + 3_600_000));
    const checkinRequests = (tk: string) => [
      { route: '/c/:token', url: `/c/${tk}`, method: 'GET' as const },
      { route: '/c/:token', url: `/c/${tk}`, method: 'POST' as const },
    ];
    await refused(404, checkinRequests(`${checkin.slice(0, -2)}${checkin.endsWith('AA') ? 'BB' : 'AA'}`));
    clock.set('2026-11-23T09:00:01Z');
    await refused(410, checkinRequests(checkin));
    expect(t.conformance).toEqual([]);
  });
});
