import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { sweepOnce } from '../../src/incidents/sweep.js';
import { signLink } from '../../src/links/tokens.js';
import { errorOf, startTestApp, type TestApp } from '../helpers/app.js';
import { TEST_LINK_SECRET } from '../helpers/tokens.js';
import { memberWithContacts, sweepDeps, testClock, tokenFrom } from '../incidents/helpers.js';

/**
 * After DELETE /v1/me nothing of the account works any more: not its links as someone's watcher,
 * not its audit trail, not the links in the messages it was sent or caused. The access token stays
 * valid until it expires and re-creates a profile with the same id on its next call: that profile
 * starts empty and revives none of it.
 */
const clock = testClock('2026-11-23T08:00:00Z');
const html = { accept: 'text/html,application/xhtml+xml' };

describe('a deleted account', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await startTestApp({ clock: () => clock.now });
  });
  afterAll(() => t.close());

  const call = (method: 'GET' | 'POST' | 'DELETE', url: string, headers: Record<string, string> = {}) => t.app.inject({ method, url, headers });

  async function inviteLink(contactId: string): Promise<string> {
    const { rows: [d] } = await t.db.pool.query<{ body: string }>(`select body from deliveries where contact_id = $1 and kind = 'invitation' order by created_at desc limit 1`, [contactId]);
    return /\/i\/([\w-]+)/.exec(d!.body)![1]!;
  }

  it("no longer watches anyone: the contacts linked to it are unlinked at once, even after its token re-creates the profile", async () => {
    clock.set('2026-11-23T08:00:00Z');
    const m = await memberWithContacts(t, [1]);
    const watcherSub = randomUUID();
    const watcher = await t.as(watcherSub);
    await t.db.pool.query(`update contacts set status = 'invited' where id = $1`, [m.contacts[0]!.id]);
    const accept = await t.app.inject({ method: 'POST', url: `/i/${await inviteLink(m.contacts[0]!.id)}/accept`, headers: watcher });
    expect(accept.json()).toEqual({ status: 'active', linked: true });
    expect((await call('GET', '/v1/watching', watcher)).json().data.map((w: { member_id: string }) => w.member_id)).toEqual([m.sub]);

    expect((await call('DELETE', '/v1/me', watcher)).statusCode).toBe(204);
    expect((await call('GET', `/v1/contacts/${m.contacts[0]!.id}`, m.headers)).json()).toMatchObject({ status: 'active', linked: false });
    expect((await call('GET', '/v1/me', watcher)).statusCode).toBe(200);
    expect((await call('GET', '/v1/watching', watcher)).json().data).toEqual([]);
    // The member's trail says the system unlinked it, naming nobody.
    const audit = (await call('GET', '/v1/audit', m.headers)).json().data as { action: string; actor: { type: string; id: string | null } }[];
    expect(audit.find((e) => e.action === 'contact.unlinked')).toMatchObject({ actor: { type: 'system', id: null } });
    expect(JSON.stringify(audit)).not.toContain(watcherSub);
  });

  it('shows its audit trail to nobody: not to the old token, before or after it re-creates the profile', async () => {
    const m = await memberWithContacts(t, [1]);
    const before = (await call('GET', '/v1/audit', m.headers)).json().data as { action: string }[];
    expect(before.map((e) => e.action)).toEqual(expect.arrayContaining(['contact.created', 'schedule.created']));

    expect((await call('DELETE', '/v1/me', m.headers)).statusCode).toBe(204);
    const gone = await call('GET', '/v1/audit', m.headers);
    expect(gone.statusCode).toBe(200);
    expect(gone.json().data).toEqual([]);

    const again = await call('GET', '/v1/me', m.headers);
    expect(again.statusCode).toBe(200);
    const fresh = (await call('GET', '/v1/audit', m.headers)).json().data as { action: string; at: string }[];
    expect(fresh.map((e) => e.action)).toEqual(['member.created']);
    expect(Date.parse(fresh[0]!.at)).toBeGreaterThanOrEqual(Date.parse(again.json().created_at));
  });

  it("answers its reminders' check-in links with 410, as JSON and as a page, even after its token re-creates the profile; the new profile's links work", async () => {
    clock.set('2026-11-23T08:00:00Z');
    const m = await memberWithContacts(t, []);
    clock.set('2026-11-23T09:00:00Z');
    await sweepOnce(sweepDeps(t, clock));
    const reminderLink = async () => {
      const { rows } = await t.db.pool.query<{ body: string }>(`select body from deliveries where member_id = $1 and kind = 'reminder' and channel = 'email' order by created_at desc limit 1`, [m.sub]);
      return /\/c\/([\w-]+)/.exec(rows[0]!.body)![1]!;
    };
    const link = await reminderLink();
    expect((await call('GET', `/c/${link}`, html)).statusCode).toBe(200);

    expect((await call('DELETE', '/v1/me', m.headers)).statusCode).toBe(204);
    const gone = async () => {
      for (const method of ['GET', 'POST'] as const) {
        const json = await call(method, `/c/${link}`);
        expect({ method, status: json.statusCode }).toEqual({ method, status: 410 });
        expect(errorOf(json.body).code).toBe('ACCOUNT_DELETED');
        const page = await call(method, `/c/${link}`, html);
        expect(page.statusCode).toBe(410);
        expect(page.body).toContain('This link no longer works');
        expect(page.body).toContain('account it belongs to was deleted');
        expect(page.body).not.toContain("I'm OK");
      }
    };
    await gone();

    expect((await call('GET', '/v1/me', m.headers)).statusCode).toBe(200);
    await gone();
    expect((await t.db.pool.query('select 1 from check_ins where member_id = $1', [m.sub])).rowCount).toBe(0);

    // The re-created profile's own reminders carry links that work (and the old one still does not).
    // (A new profile has no name yet: arming a schedule needs one.)
    expect((await t.app.inject({ method: 'PATCH', url: '/v1/me', headers: m.headers, payload: { display_name: 'Ann again' } })).statusCode).toBe(200);
    expect((await t.app.inject({ method: 'POST', url: '/v1/schedules', headers: m.headers, payload: { kind: 'daily', local_time: '10:30', time_zone: 'UTC' } })).statusCode).toBe(201);
    clock.set('2026-11-23T10:00:00Z');
    await sweepOnce(sweepDeps(t, clock));
    const fresh = await reminderLink();
    expect(fresh).not.toBe(link);
    expect((await call('GET', `/c/${fresh}`, html)).statusCode).toBe(200);
    expect((await call('POST', `/c/${fresh}`)).statusCode).toBe(201);
    await gone();
  });

  it('answers the invitation and alert links it caused with 410 ACCOUNT_DELETED, and a removed contact still as CONTACT_REMOVED', async () => {
    clock.set('2026-11-23T08:00:00Z');
    const m = await memberWithContacts(t, [1, 1]);
    const invite = await inviteLink(m.contacts[0]!.id);
    await t.db.pool.query(`update contacts set status = 'invited' where id = $1`, [m.contacts[0]!.id]);
    const sos = await call('POST', '/v1/sos', m.headers);
    expect(sos.statusCode).toBe(201);
    const { rows: [alert] } = await t.db.pool.query<{ body: string; render: { ack_url?: string } | null }>(
      `select body, render from deliveries where incident_id = $1 and contact_id = $2 and kind = 'alert' and channel = 'email'`, [sos.json().id, m.contacts[1]!.id]);
    const ack = alert!.body === null ? alert!.render!.ack_url!.split('/a/')[1]! : tokenFrom(alert!.body);
    expect((await call('GET', `/a/${ack}`, html)).statusCode).toBe(200);
    expect((await call('GET', `/i/${invite}`, html)).statusCode).toBe(200);
    // Another member's removed contact: its links keep saying so.
    const other = await memberWithContacts(t, [1]);
    const removedInvite = await inviteLink(other.contacts[0]!.id);
    expect((await call('DELETE', `/v1/contacts/${other.contacts[0]!.id}`, other.headers)).statusCode).toBe(204);

    expect((await call('DELETE', '/v1/me', m.headers)).statusCode).toBe(204);
    expect((await call('GET', '/v1/me', m.headers)).statusCode).toBe(200);
    for (const [method, url] of [['GET', `/a/${ack}`], ['POST', `/a/${ack}/ack`], ['POST', `/a/${ack}/escalate`], ['GET', `/i/${invite}`], ['POST', `/i/${invite}/accept`], ['POST', `/i/${invite}/decline`]] as const) {
      const json = await call(method, url);
      expect({ url, status: json.statusCode, code: errorOf(json.body).code }).toEqual({ url, status: 410, code: 'ACCOUNT_DELETED' });
      const page = await call(method, url, html);
      expect(page.statusCode).toBe(410);
      expect(page.body).toContain('This link no longer works');
      expect(page.body).toContain('deleted');
    }
    expect(errorOf((await call('GET', `/i/${removedInvite}`)).body).code).toBe('CONTACT_REMOVED');
    // A link that was never ours stays a 404.
    const forged = signLink('another-secret-that-is-at-least-32-characters', 'ack', m.contacts[1]!.id, new Date(clock.now.getTime() + 86_400_000), sos.json().id);
    expect((await call('GET', `/a/${forged}`)).statusCode).toBe(404);
    const unknownIncident = signLink(TEST_LINK_SECRET, 'ack', randomUUID(), new Date(clock.now.getTime() + 86_400_000), randomUUID());
    expect((await call('GET', `/a/${unknownIncident}`)).statusCode).toBe(404);
  });

  it('records a deletion made around the API (a Supabase client under RLS, psql) the same way', async () => {
    clock.set('2026-11-23T08:00:00Z');
    const m = await memberWithContacts(t, [1]);
    const link = signLink(TEST_LINK_SECRET, 'checkin', m.sub, new Date(clock.now.getTime() + 3_600_000));
    expect((await call('GET', `/c/${link}`)).statusCode).toBe(200);
    await t.db.pool.query('delete from members where id = $1', [m.sub]);
    expect((await call('GET', '/v1/me', m.headers)).statusCode).toBe(200);
    expect((await call('GET', `/c/${link}`)).statusCode).toBe(410);
    const { rows } = await t.db.pool.query('select deletions, cardinality(contact_ids) as contacts from deleted_accounts where member_id = $1', [m.sub]);
    expect(rows).toEqual([{ deletions: 1, contacts: 1 }]);
  });
});
