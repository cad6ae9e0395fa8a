import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { createDevOutboxChannel } from '../../src/channels/dev-outbox/index.js';
import { processDelivery } from '../../src/delivery/deliver.js';
import { sweepOnce } from '../../src/incidents/sweep.js';
import { createLogger } from '../../src/observability/logger.js';
import { startTestApp, type TestApp } from '../helpers/app.js';
import { OpenApiChecker } from '../helpers/openapi-check.js';
import { signToken } from '../helpers/tokens.js';
import { sweepDeps, testClock } from '../incidents/helpers.js';

/**
 * Issue 17 #9: safety is not a paid feature. Alerts (and what belongs to an incident, and the
 * invitation asking for consent) reach every contact by SMS on every plan; reminders to the member
 * stay gated by the plan. Consent still holds, so some contacts stay unreachable, and the contact
 * says so and why.
 */
const clock = testClock('2026-11-23T08:00:00Z');

describe('alerts reach every contact by SMS on every plan', () => {
  let t: TestApp;
  let checker: OpenApiChecker;
  beforeAll(async () => {
    t = await startTestApp({ clock: () => clock.now, env: { FREE_PLAN_CONTACTS: '6' } });
    checker = await OpenApiChecker.load(t.app);
  });
  afterAll(() => t.close());

  /** An API call whose answer must agree with the served OpenAPI document. */
  async function call(method: 'GET' | 'POST' | 'PATCH', route: string, url: string, headers: Record<string, string>, payload?: object) {
    const res = await t.app.inject({ method, url, headers, ...(payload === undefined ? {} : { payload }) });
    expect(checker.problems(method, route, res)).toEqual([]);
    return res;
  }

  const deliveries = async (where: string, params: unknown[]) =>
    (await t.db.pool.query(`select id, kind, channel, address from deliveries where ${where} order by kind, channel`, params)).rows;

  /** Sends pending deliveries through the dev outbox channel, as a worker with no providers does. */
  async function sendAll(ids: string[]): Promise<void> {
    const dev = createDevOutboxChannel(t.db.pool);
    const deps = { pool: t.db.pool, channels: { push: dev, sms: dev, email: dev }, clock: () => clock.now, log: createLogger('silent') };
    for (const id of ids) expect(await processDelivery(deps, id, 0, 3)).toBe('sent');
  }

  /** A free-plan member with a name and one contact who has only a phone, who accepted the invitation. */
  async function phoneOnlyContact(phone: string) {
    const sub = randomUUID();
    const headers = await t.asNamed(sub, 'Ann');
    const created = await call('POST', '/v1/contacts', '/v1/contacts', headers, { name: 'Pat', phone });
    expect(created.statusCode).toBe(201);
    const contact = created.json();
    // The invitation asks for consent by SMS, on the free plan too.
    const invitation = await t.db.pool.query(`select body from deliveries where contact_id = $1 and kind = 'invitation' and channel = 'sms'`, [contact.id]);
    expect(invitation.rows).toHaveLength(1);
    const token = /\/i\/([\w-]+)/.exec(invitation.rows[0].body)![1]!;
    expect((await t.app.inject({ method: 'POST', url: `/i/${token}/accept` })).statusCode).toBe(200);
    return { sub, headers, contactId: contact.id as string, created: contact };
  }

  it('alerts a phone-only contact of a free-plan member by SMS when a check-in is missed, and sends the all clear the same way', async () => {
    clock.set('2026-11-23T08:00:00Z');
    const phone = '+447700900501';
    const m = await phoneOnlyContact(phone);
    expect((await t.app.inject({ method: 'GET', url: '/v1/billing', headers: m.headers })).json().entitlements)
      .toMatchObject({ plan: 'free', channels: ['push', 'email'], alert_channels: ['push', 'sms', 'email'] });
    const shown = await call('GET', '/v1/contacts/:id', `/v1/contacts/${m.contactId}`, m.headers);
    expect(shown.json()).toMatchObject({ status: 'active', channels: ['sms'], reachable: true, unreachable_reason: null });

    expect((await t.app.inject({ method: 'POST', url: '/v1/schedules', headers: m.headers, payload: { kind: 'daily', local_time: '09:30', time_zone: 'UTC', grace_minutes: 30 } })).statusCode).toBe(201);
    clock.set('2026-11-23T10:01:00Z');
    await sweepOnce(sweepDeps(t, clock));
    const incidents = (await t.app.inject({ method: 'GET', url: '/v1/incidents', headers: m.headers })).json().data;
    expect(incidents).toHaveLength(1);
    const alerts = await deliveries('incident_id = $1', [incidents[0].id]);
    expect(alerts.map((d) => [d.kind, d.channel, d.address])).toEqual([['alert', 'sms', phone]]);

    await sendAll(alerts.map((d) => d.id));
    const outbox = (await t.app.inject({ method: 'GET', url: '/dev/outbox', headers: { accept: 'application/json' } })).json().data;
    const sms = outbox.filter((o: { to: string; kind: string }) => o.to === phone && o.kind === 'alert');
    expect(sms).toHaveLength(1);
    expect(sms[0]).toMatchObject({ channel: 'sms', incident_id: incidents[0].id });
    expect(sms[0].body).toContain('/a/');

    expect((await t.app.inject({ method: 'POST', url: '/v1/check-ins', headers: m.headers, payload: {} })).statusCode).toBe(201);
    const clear = await deliveries(`incident_id = $1 and kind = 'all_clear'`, [incidents[0].id]);
    expect(clear.map((d) => [d.channel, d.address])).toEqual([['sms', phone]]);
  });

  it("alerts a free-plan member's phone-only contact by SMS on an SOS", async () => {
    clock.set('2026-11-23T08:00:00Z');
    const phone = '+447700900502';
    const m = await phoneOnlyContact(phone);
    const sos = await t.app.inject({ method: 'POST', url: '/v1/sos', headers: m.headers, payload: {} });
    expect(sos.statusCode).toBe(201);
    const alerts = await deliveries(`incident_id = $1`, [sos.json().id]);
    // SOS also calls the number (VOICE_SOS), on every plan.
    expect(alerts.map((d) => [d.kind, d.channel, d.address])).toEqual([['alert', 'sms', phone], ['alert', 'voice', phone]]);
  });

  it('keeps SMS reminders to the member gated by the plan: on free, push and email only', async () => {
    clock.set('2026-11-23T08:00:00Z');
    const sub = randomUUID();
    const headers = { authorization: `Bearer ${await signToken({ sub, email: `${sub.slice(0, 8)}@example.test` })}` };
    expect((await t.app.inject({ method: 'PATCH', url: '/v1/me', headers, payload: { display_name: 'Rae', phone: '+447700900503' } })).statusCode).toBe(200);
    expect((await t.app.inject({ method: 'POST', url: '/v1/schedules', headers, payload: { kind: 'daily', local_time: '09:30', time_zone: 'UTC', reminder_minutes: [30] } })).statusCode).toBe(201);
    clock.set('2026-11-23T09:00:30Z');
    await sweepOnce(sweepDeps(t, clock));
    const reminders = await deliveries(`member_id = $1 and kind = 'reminder'`, [sub]);
    expect(reminders.map((d) => d.channel)).toEqual(['email']);
  });

  it('says which contacts an alert cannot reach and why, and still adds and changes them', async () => {
    clock.set('2026-11-23T08:00:00Z');
    const sub = randomUUID();
    const headers = await t.asNamed(sub, 'Ann');
    const add = async (payload: object) => {
      const res = await call('POST', '/v1/contacts', '/v1/contacts', headers, payload);
      expect(res.statusCode).toBe(201);
      return res.json();
    };
    const get = async (id: string) => (await call('GET', '/v1/contacts/:id', `/v1/contacts/${id}`, headers)).json();

    // Invited with only a phone: no SMS alert without consent, and no email to fall back on.
    const invited = await add({ name: 'Ivy', phone: '+447700900504' });
    expect(invited).toMatchObject({ status: 'invited', channels: [], reachable: false, unreachable_reason: { code: 'awaiting_consent_no_email' } });
    expect(invited.unreachable_reason.message).toContain('until they do, alerts go by email only');

    // Invited with an email too: reachable by email meanwhile. Removing the email leaves them unreachable, and says so.
    const both = await add({ name: 'Bo', email: 'bo@example.test', phone: '+447700900505' });
    expect(both).toMatchObject({ channels: ['email'], reachable: true, unreachable_reason: null });
    const patched = await call('PATCH', '/v1/contacts/:id', `/v1/contacts/${both.id}`, headers, { email: null });
    expect(patched.statusCode).toBe(200);
    expect(patched.json()).toMatchObject({ status: 'invited', reachable: false, unreachable_reason: { code: 'awaiting_consent_no_email' } });

    // Declined: nothing.
    const declining = await add({ name: 'Dan', email: 'dan@example.test' });
    const { rows: [inv] } = await t.db.pool.query(`select body from deliveries where contact_id = $1 and kind = 'invitation'`, [declining.id]);
    const token = /\/i\/([\w-]+)/.exec(inv.body)![1]!;
    expect((await t.app.inject({ method: 'POST', url: `/i/${token}/decline` })).statusCode).toBe(200);
    expect(await get(declining.id)).toMatchObject({ status: 'declined', reachable: false, unreachable_reason: { code: 'declined' } });

    // Active, but texted STOP and has no email; and active with every address turned off.
    const stopped = await add({ name: 'Sid', phone: '+447700900506' });
    const dead = await add({ name: 'Eve', email: 'eve@example.test', phone: '+447700900507' });
    await t.db.pool.query(`update contacts set status = 'active' where id = any($1::uuid[])`, [[stopped.id, dead.id]]);
    expect(await get(stopped.id)).toMatchObject({ channels: ['sms'], reachable: true, unreachable_reason: null });
    await t.db.pool.query(`update contacts set sms_opted_out = true where id = $1`, [stopped.id]);
    await t.db.pool.query(`update contacts set sms_disabled = true, sms_disabled_reason = 'landline', email_disabled = true, email_disabled_reason = 'bounced' where id = $1`, [dead.id]);
    expect(await get(stopped.id)).toMatchObject({ reachable: false, unreachable_reason: { code: 'sms_opted_out_no_email' } });
    expect(await get(dead.id)).toMatchObject({ reachable: false, unreachable_reason: { code: 'addresses_disabled' } });

    const list = await call('GET', '/v1/contacts', '/v1/contacts', headers);
    expect(Object.fromEntries(list.json().data.map((c: { name: string; reachable: boolean; unreachable_reason: { code: string } | null }) => [c.name, c.unreachable_reason?.code ?? c.reachable])))
      .toEqual({ Ivy: 'awaiting_consent_no_email', Bo: 'awaiting_consent_no_email', Dan: 'declined', Sid: 'sms_opted_out_no_email', Eve: 'addresses_disabled' });
  });
});
