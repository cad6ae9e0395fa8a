import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { signLink } from '../../src/links/tokens.js';
import { errorOf, startTestApp, type TestApp } from '../helpers/app.js';
import { TEST_LINK_SECRET } from '../helpers/tokens.js';

let now = new Date('2026-11-23T08:00:00Z');

async function invite(t: TestApp, memberSub: string, email: string): Promise<{ contactId: string; token: string }> {
  const headers = await t.as(memberSub);
  await t.app.inject({ method: 'PATCH', url: '/v1/me', headers, payload: { display_name: 'Gran <Ada>' } });
  const c = (await t.app.inject({ method: 'POST', url: '/v1/contacts', headers, payload: { name: 'Kim', email } })).json();
  const { rows } = await t.db.pool.query(`select body from deliveries where contact_id = $1 and kind = 'invitation' order by created_at desc limit 1`, [c.id]);
  const token = /\/i\/([\w-]+)/.exec(rows[0].body)![1]!;
  return { contactId: c.id, token };
}

describe('invitation links', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await startTestApp({ clock: () => now });
  });
  afterAll(() => t.close());

  it('shows a page naming the member, escaped, with confirm and decline forms that work without JavaScript', async () => {
    const { token } = await invite(t, randomUUID(), 'kim1@example.test');
    const res = await t.app.inject({ method: 'GET', url: `/i/${token}`, headers: { accept: 'text/html,application/xhtml+xml' } });
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toContain('text/html');
    expect(res.body).toContain('Gran &lt;Ada&gt; asked you');
    expect(res.body).not.toContain('<Ada>');
    expect(res.body).toContain(`action="/i/${token}/accept"`);
    expect(res.body).toContain(`action="/i/${token}/decline"`);
    expect(res.body).not.toContain('<script');
  });

  it('accepts from the page form and makes the contact active', async () => {
    const { contactId, token } = await invite(t, randomUUID(), 'kim2@example.test');
    const res = await t.app.inject({ method: 'POST', url: `/i/${token}/accept`, headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'text/html,application/xhtml+xml' }, payload: '' });
    expect(res.statusCode).toBe(200);
    expect(res.body).toContain('Thank you');
    const { rows } = await t.db.pool.query('select status, linked_user_id from contacts where id = $1', [contactId]);
    expect(rows[0]).toEqual({ status: 'active', linked_user_id: null });
  });

  it('links the contact to the app user who accepts with a bearer token, and shows the member in /v1/watching', async () => {
    const memberSub = randomUUID();
    const watcher = randomUUID();
    const { contactId, token } = await invite(t, memberSub, 'kim3@example.test');
    const res = await t.app.inject({ method: 'POST', url: `/i/${token}/accept`, headers: await t.as(watcher) });
    expect(res.statusCode).toBe(200);
    expect(res.json()).toEqual({ status: 'active', linked: true });
    const { rows } = await t.db.pool.query('select linked_user_id from contacts where id = $1', [contactId]);
    expect(rows[0].linked_user_id).toBe(watcher);

    const w = await t.app.inject({ method: 'GET', url: '/v1/watching', headers: await t.as(watcher) });
    expect(w.statusCode).toBe(200);
    expect(w.json().data).toEqual([
      { member_id: memberSub, display_name: 'Gran <Ada>', tier: 1, today: 'pending', last_check_in_at: null, next_deadline_at: null, open_incident: null },
    ]);
    // A stranger watches nobody.
    expect((await t.app.inject({ method: 'GET', url: '/v1/watching', headers: await t.as(randomUUID()) })).json().data).toEqual([]);
  });

  it("tells a watcher how the member's day goes: pending, checked in, late within grace, missed", async () => {
    now = new Date('2026-11-23T08:00:00Z');
    const memberSub = randomUUID();
    const watcher = randomUUID();
    const { token } = await invite(t, memberSub, 'kim7@example.test');
    await t.app.inject({ method: 'POST', url: `/i/${token}/accept`, headers: await t.as(watcher) });
    const member = await t.as(memberSub);
    await t.app.inject({ method: 'POST', url: '/v1/schedules', headers: member, payload: { kind: 'daily', local_time: '09:30', time_zone: 'UTC', grace_minutes: 30 } });
    const today = async () => (await t.app.inject({ method: 'GET', url: '/v1/watching', headers: await t.as(watcher) })).json().data[0];
    expect(await today()).toMatchObject({ today: 'pending', next_deadline_at: '2026-11-23T09:30:00.000Z' });
    now = new Date('2026-11-23T09:40:00Z');
    expect((await today()).today).toBe('late');
    now = new Date('2026-11-23T10:01:00Z');
    expect((await today()).today).toBe('missed');
    await t.app.inject({ method: 'POST', url: '/v1/check-ins', headers: member });
    expect(await today()).toMatchObject({ today: 'checked_in', last_check_in_at: '2026-11-23T10:01:00.000Z', next_deadline_at: '2026-11-24T09:30:00.000Z' });
  });

  it('declines, and a declined contact gets no channel', async () => {
    const memberSub = randomUUID();
    const { contactId, token } = await invite(t, memberSub, 'kim4@example.test');
    const res = await t.app.inject({ method: 'POST', url: `/i/${token}/decline`, headers: {} });
    expect(res.json()).toEqual({ status: 'declined', linked: false });
    const c = (await t.app.inject({ method: 'GET', url: `/v1/contacts/${contactId}`, headers: await t.as(memberSub) })).json();
    expect(c).toMatchObject({ status: 'declined', channels: [] });
  });

  it('rejects a tampered link with 404 and an expired one with 410, as a page and as JSON', async () => {
    const { contactId, token } = await invite(t, randomUUID(), 'kim5@example.test');
    const tampered = `${token.slice(0, -2)}xx`;
    const page = await t.app.inject({ method: 'GET', url: `/i/${tampered}`, headers: { accept: 'text/html,application/xhtml+xml' } });
    expect(page.statusCode).toBe(404);
    expect(page.body).toContain('This link is not valid');
    const json = await t.app.inject({ method: 'POST', url: `/i/${tampered}/accept`, headers: {} });
    expect(json.statusCode).toBe(404);
    expect(errorOf(json.body).code).toBe('NOT_FOUND');

    const { rows } = await t.db.pool.query('select invited_at from contacts where id = $1', [contactId]);
    const expired = signLink(TEST_LINK_SECRET, 'invite', contactId, new Date(now.getTime() - 1000), String(rows[0].invited_at.getTime()));
    const gone = await t.app.inject({ method: 'GET', url: `/i/${expired}`, headers: { accept: 'text/html,application/xhtml+xml' } });
    expect(errorOf((await t.app.inject({ method: 'GET', url: `/i/${expired}` })).body).code).toBe('LINK_EXPIRED');
    expect(gone.statusCode).toBe(410);
    expect(gone.body).toContain('expired');
    // A link signed for another purpose (an acknowledgement link) is not an invitation.
    const ack = signLink(TEST_LINK_SECRET, 'ack', contactId, new Date(now.getTime() + 86_400_000), String(rows[0].invited_at.getTime()));
    expect((await t.app.inject({ method: 'POST', url: `/i/${ack}/accept`, headers: {} })).statusCode).toBe(404);
    const { rows: after } = await t.db.pool.query('select status from contacts where id = $1', [contactId]);
    expect(after[0].status).toBe('invited');
  });

  it('invalidates the old link when a new invitation replaces it', async () => {
    const memberSub = randomUUID();
    const { contactId, token } = await invite(t, memberSub, 'kim6@example.test');
    now = new Date(now.getTime() + 60_000);
    await t.app.inject({ method: 'PATCH', url: `/v1/contacts/${contactId}`, headers: await t.as(memberSub), payload: { email: 'kim6b@example.test' } });
    const res = await t.app.inject({ method: 'POST', url: `/i/${token}/accept`, headers: {} });
    expect(res.statusCode).toBe(404);
  });

  describe('an invitation is answered once (a forwarded or leaked link changes nothing)', () => {
    it('a second signed-in user replaying an accepted link gets 409; the contact stays linked to the first, whose watching view is intact', async () => {
      const memberSub = randomUUID();
      const contact = randomUUID();
      const thief = randomUUID();
      const { contactId, token } = await invite(t, memberSub, 'kim20@example.test');
      expect((await t.app.inject({ method: 'POST', url: `/i/${token}/accept`, headers: await t.as(contact) })).json()).toEqual({ status: 'active', linked: true });
      const replay = await t.app.inject({ method: 'POST', url: `/i/${token}/accept`, headers: await t.as(thief) });
      expect(replay.statusCode).toBe(409);
      expect(errorOf(replay.body).code).toBe('ALREADY_ANSWERED');
      const { rows } = await t.db.pool.query('select status, linked_user_id from contacts where id = $1', [contactId]);
      expect(rows[0]).toEqual({ status: 'active', linked_user_id: contact });
      expect((await t.app.inject({ method: 'GET', url: '/v1/watching', headers: await t.as(contact) })).json().data).toHaveLength(1);
      expect((await t.app.inject({ method: 'GET', url: '/v1/watching', headers: await t.as(thief) })).json().data).toHaveLength(0);
      // Nor can the link be used to silence the contact.
      const decline = await t.app.inject({ method: 'POST', url: `/i/${token}/decline`, headers: {} });
      expect(decline.statusCode).toBe(409);
      expect((await t.db.pool.query('select status from contacts where id = $1', [contactId])).rows[0].status).toBe('active');
    });

    it('the same user repeating the same answer gets the same 200 and nothing changes', async () => {
      const contact = randomUUID();
      const { contactId, token } = await invite(t, randomUUID(), 'kim21@example.test');
      const first = await t.app.inject({ method: 'POST', url: `/i/${token}/accept`, headers: await t.as(contact) });
      const { rows: [before] } = await t.db.pool.query('select responded_at, updated_at from contacts where id = $1', [contactId]);
      now = new Date(now.getTime() + 60_000);
      const again = await t.app.inject({ method: 'POST', url: `/i/${token}/accept`, headers: await t.as(contact) });
      expect(again.statusCode).toBe(200);
      expect(again.json()).toEqual(first.json());
      const { rows: [after] } = await t.db.pool.query('select responded_at, updated_at from contacts where id = $1', [contactId]);
      expect(after).toEqual(before);
      // An anonymous accept is repeated anonymously; a declined one can be declined again.
      const anon = await invite(t, randomUUID(), 'kim22@example.test');
      expect((await t.app.inject({ method: 'POST', url: `/i/${anon.token}/accept`, headers: {} })).statusCode).toBe(200);
      expect((await t.app.inject({ method: 'POST', url: `/i/${anon.token}/accept`, headers: {} })).json()).toEqual({ status: 'active', linked: false });
      // ...but it cannot be claimed afterwards by whoever holds the link.
      expect((await t.app.inject({ method: 'POST', url: `/i/${anon.token}/accept`, headers: await t.as(randomUUID()) })).statusCode).toBe(409);
      const declined = await invite(t, randomUUID(), 'kim23@example.test');
      await t.app.inject({ method: 'POST', url: `/i/${declined.token}/decline`, headers: {} });
      expect((await t.app.inject({ method: 'POST', url: `/i/${declined.token}/decline`, headers: {} })).statusCode).toBe(200);
      expect((await t.app.inject({ method: 'POST', url: `/i/${declined.token}/accept`, headers: {} })).statusCode).toBe(409);
    });

    it('the member cannot accept their own contact\'s invitation', async () => {
      const memberSub = randomUUID();
      const { contactId, token } = await invite(t, memberSub, 'kim24@example.test');
      const res = await t.app.inject({ method: 'POST', url: `/i/${token}/accept`, headers: await t.as(memberSub) });
      expect(res.statusCode).toBe(409);
      expect(errorOf(res.body).code).toBe('OWN_INVITATION');
      expect((await t.db.pool.query('select status, linked_user_id from contacts where id = $1', [contactId])).rows[0]).toEqual({ status: 'invited', linked_user_id: null });
    });

    it('an answered link shows what was answered, without forms; a new invitation (changed address) can be answered again', async () => {
      const memberSub = randomUUID();
      const { contactId, token } = await invite(t, memberSub, 'kim25@example.test');
      await t.app.inject({ method: 'POST', url: `/i/${token}/accept`, headers: {} });
      const page = await t.app.inject({ method: 'GET', url: `/i/${token}`, headers: { accept: 'text/html' } });
      expect(page.statusCode).toBe(200);
      expect(page.body).toContain('You have confirmed');
      expect(page.body).not.toContain('<form');
      const html = await t.app.inject({ method: 'POST', url: `/i/${token}/decline`, headers: { accept: 'text/html', 'content-type': 'application/x-www-form-urlencoded' }, payload: '' });
      expect(html.statusCode).toBe(409);
      expect(html.body).toContain('already answered');
      await t.app.inject({ method: 'PATCH', url: `/v1/contacts/${contactId}`, headers: await t.as(memberSub), payload: { email: 'kim25b@example.test' } });
      const { rows } = await t.db.pool.query(`select body from deliveries where contact_id = $1 and kind = 'invitation' order by created_at desc limit 1`, [contactId]);
      const fresh = /\/i\/([\w-]+)/.exec(rows[0].body)![1]!;
      expect((await t.app.inject({ method: 'POST', url: `/i/${fresh}/decline`, headers: {} })).json()).toEqual({ status: 'declined', linked: false });
    });
  });
});
