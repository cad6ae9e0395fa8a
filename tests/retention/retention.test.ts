import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { Redis } from 'ioredis';
import type pg from 'pg';
import { createLogger } from '../../src/observability/logger.js';
import { createMetrics } from '../../src/observability/metrics.js';
import { DEFAULT_RETENTION_SETTINGS, runRetention } from '../../src/retention/retention.js';
import { startTestApp, type TestApp } from '../helpers/app.js';
import { TEST_REDIS_URL } from '../helpers/env.js';
import { memberWithContacts } from '../incidents/helpers.js';

const log = createLogger('silent');
const HOUR = 3_600_000;
const DAY = 24 * HOUR;

/** Every row of every table in the public schema whose text holds `needle`. */
async function rowsMentioning(pool: pg.Pool, needle: string): Promise<Record<string, number>> {
  const { rows: tables } = await pool.query<{ name: string }>(`select table_name as name from information_schema.tables where table_schema = 'public' and table_type = 'BASE TABLE'`);
  const found: Record<string, number> = {};
  for (const { name } of tables) {
    const { rows } = await pool.query<{ n: number }>(`select count(*)::int as n from public.${name} x where x::text ilike '%' || $1 || '%'`, [needle]);
    if (rows[0]!.n > 0) found[name] = rows[0]!.n;
  }
  return found;
}

describe('data retention', () => {
  let t: TestApp;
  const metrics = createMetrics();
  const run = (at: Date) => runRetention({ pool: t.db.pool, clock: () => at, log, metrics, settings: DEFAULT_RETENTION_SETTINGS });

  beforeAll(async () => {
    t = await startTestApp({ backend: 'redis' });
  });
  afterAll(() => t.close());

  it('blanks message bodies and delivery payloads older than 90 days, keeping the facts and anything still pending', async () => {
    const { sub } = await memberWithContacts(t, [1]);
    const { rows } = await t.db.pool.query<{ id: string; age: string }>(
      `insert into deliveries (member_id, kind, channel, address, subject, body, html, status, attempts, last_error, provider, created_at, sent_at)
       select $1, 'reminder', 'email', 'ann@example.test', 'Check in', 'Hello Ann', '<p>Hello Ann</p>', s, 1, 'boom for ann@example.test', 'sendgrid',
              now() - make_interval(days => d), now() - make_interval(days => d)
         from (values ('sent', 91, 'old'), ('pending', 91, 'old-pending'), ('sent', 89, 'recent')) v(s, d, tag)
       returning id, case when status = 'pending' then 'old-pending' when created_at < now() - interval '90 days' then 'old' else 'recent' end as age`,
      [sub]);
    const id = (age: string) => rows.find((r) => r.age === age)!.id;
    await t.db.pool.query(`insert into delivery_attempts (delivery_id, attempted_at, provider, outcome, error) values ($1, now() - interval '91 days', 'sendgrid', 'failed', 'ann@example.test bounced')`, [id('old')]);
    await t.db.pool.query(`insert into dev_outbox (delivery_id, channel, "to", body, kind) values ($1, 'email', 'ann@example.test', 'Hello Ann', 'reminder')`, [id('old')]);

    const result = await run(new Date());
    expect(result.delivery_payloads).toBe(1);

    const { rows: after } = await t.db.pool.query(`select id, kind, channel, status, attempts, provider, sent_at, created_at, subject, body, html, address, last_error, payload_purged_at from deliveries where member_id = $1`, [sub]);
    const old = after.find((r) => r.id === id('old'));
    expect(old).toMatchObject({ kind: 'reminder', channel: 'email', status: 'sent', attempts: 1, provider: 'sendgrid', subject: null, body: '', html: null, address: '', last_error: null });
    expect(old.sent_at).toBeInstanceOf(Date);
    expect(old.payload_purged_at).toBeInstanceOf(Date);
    expect(after.find((r) => r.id === id('recent'))).toMatchObject({ body: 'Hello Ann', payload_purged_at: null });
    expect(after.find((r) => r.id === id('old-pending'))).toMatchObject({ body: 'Hello Ann', payload_purged_at: null });
    expect((await t.db.pool.query('select error from delivery_attempts where delivery_id = $1', [id('old')])).rows).toEqual([{ error: null }]);
    expect((await t.db.pool.query('select 1 from dev_outbox where delivery_id = $1', [id('old')])).rowCount).toBe(0);
    expect(await metrics.registry.getSingleMetricAsString('pruuf_retention_purged_total')).toMatch(/what="delivery_payloads"\} [1-9]/);

    // A second run finds nothing left to do.
    expect((await run(new Date())).delivery_payloads).toBe(0);
  });

  it('drops shared check-in locations after 24 hours and check-in notes after 90 days', async () => {
    const { sub, headers } = await memberWithContacts(t, [1]);
    const res = await t.app.inject({ method: 'POST', url: '/v1/check-ins', headers, payload: { note: 'at the lake', location: { lat: 51.5, lng: -0.12, accuracy_m: 20 } } });
    expect(res.statusCode).toBe(201);
    const located = () => t.db.pool.query('select latitude, longitude, accuracy_m, note from check_ins where member_id = $1', [sub]).then((r) => r.rows[0]);

    await run(new Date(Date.now() + 23 * HOUR));
    expect(await located()).toEqual({ latitude: 51.5, longitude: -0.12, accuracy_m: 20, note: 'at the lake' });
    for (let i = 0; i < 5 && (await located()).latitude !== null; i++) await run(new Date(Date.now() + 25 * HOUR));
    expect(await located()).toEqual({ latitude: null, longitude: null, accuracy_m: null, note: 'at the lake' });
    // A row locked at that moment (the check-in's own after-response bookkeeping) is skipped and
    // left for the next run, as in production: a few runs, never an endless wait.
    for (let i = 0; i < 5 && (await located()).note !== null; i++) await run(new Date(Date.now() + 91 * DAY));
    expect((await located()).note).toBeNull();
  });

  it("drops an incident's location, and the alerts that quote it, 24 hours after it was resolved; its plan's addresses after 90 days", async () => {
    const { sub, headers, contacts } = await memberWithContacts(t, [1]);
    const sos = await t.app.inject({ method: 'POST', url: '/v1/sos', headers, payload: { location: { lat: 48.8566, lng: 2.3522 } } });
    expect(sos.statusCode).toBe(201);
    const { rows: [inc] } = await t.db.pool.query('select id from incidents where member_id = $1', [sub]);
    await t.db.pool.query(`update deliveries set status = 'sent', sent_at = now() where incident_id = $1`, [inc.id]);
    const quoting = await t.db.pool.query(`select count(*)::int as n from deliveries where incident_id = $1 and body like '%48.8566%'`, [inc.id]);
    expect(quoting.rows[0].n).toBeGreaterThan(0);

    // Open for two days: contacts still need to know where the member is.
    await run(new Date(Date.now() + 2 * DAY));
    expect((await t.db.pool.query('select latitude from incidents where id = $1', [inc.id])).rows[0].latitude).toBe(48.8566);

    await t.app.inject({ method: 'POST', url: `/v1/incidents/${inc.id}/resolve`, headers });
    await run(new Date(Date.now() + 25 * HOUR));
    const { rows: [gone] } = await t.db.pool.query('select latitude, longitude, last_latitude, plan from incidents where id = $1', [inc.id]);
    expect(gone).toMatchObject({ latitude: null, longitude: null, last_latitude: null });
    // The whole coordinate: a bare '48.85' also matches a timestamp such as 16:12:48.853.
    expect(await rowsMentioning(t.db.pool, '48.8566')).toEqual({});
    expect(JSON.stringify(gone.plan)).toContain(contacts[0]!.email);

    await run(new Date(Date.now() + 91 * DAY));
    const { rows: [stripped] } = await t.db.pool.query('select plan from incidents where id = $1', [inc.id]);
    const text = JSON.stringify(stripped.plan);
    expect(text).not.toContain(contacts[0]!.email);
    expect(text).not.toContain(contacts[0]!.phone);
    expect(text).toContain(contacts[0]!.name);
  });

  it('leaves nothing of a deleted member in any table or queue payload after the next run but its tombstone, and that once its links have expired', async () => {
    const m = await memberWithContacts(t, [1]);
    const memberEmail = `${m.sub.slice(0, 8)}@member.test`;
    await t.db.pool.query('update members set email = $2, phone = $3 where id = $1', [m.sub, memberEmail, '+447700900777']);
    await t.app.inject({ method: 'POST', url: '/v1/check-ins', headers: m.headers, payload: { location: { lat: 40.4, lng: -3.7 } } });
    await t.app.inject({ method: 'POST', url: '/v1/sos', headers: m.headers, payload: {} });
    // The member is also someone else's emergency contact, linked to their app account.
    const other = await memberWithContacts(t, [1]);
    await t.db.pool.query('update contacts set linked_user_id = $1 where id = $2', [m.sub, other.contacts[0]!.id]);
    const { rows: deliveryIds } = await t.db.pool.query<{ id: string }>('select id from deliveries where member_id = $1', [m.sub]);
    expect(deliveryIds.length).toBeGreaterThan(0);

    const del = await t.app.inject({ method: 'DELETE', url: '/v1/me', headers: m.headers });
    expect(del.statusCode).toBe(204);
    expect(Object.keys(await rowsMentioning(t.db.pool, m.sub))).toEqual(expect.arrayContaining(['audit_log']));

    const result = await run(new Date());
    expect(result.deleted_members).toBe(1);
    expect(result.deleted_member_audit_rows).toBeGreaterThan(0);
    // (The contacts' phone numbers of this helper are shared by every test member: not a needle.)
    // The tombstone (the id, when, how often, the contacts' ids) keeps old links dead while they could be valid.
    for (const needle of [memberEmail, '+447700900777', m.contacts[0]!.email, ...deliveryIds.map((d) => d.id)]) {
      expect({ needle, found: await rowsMentioning(t.db.pool, needle) }).toEqual({ needle, found: {} });
    }
    expect(await rowsMentioning(t.db.pool, m.sub)).toEqual({ deleted_accounts: 1 });
    expect((await run(new Date(Date.now() + 30 * DAY))).deleted_account_tombstones).toBe(0);
    expect((await run(new Date(Date.now() + 32 * DAY))).deleted_account_tombstones).toBeGreaterThanOrEqual(1);
    for (const needle of [m.sub, m.contacts[0]!.id]) expect({ needle, found: await rowsMentioning(t.db.pool, needle) }).toEqual({ needle, found: {} });
    // The other member's trail records the unlinking; their contact stays.
    const { rows: [kept] } = await t.db.pool.query('select linked_user_id from contacts where id = $1', [other.contacts[0]!.id]);
    expect(kept.linked_user_id).toBeNull();
    const { rows: unlinked } = await t.db.pool.query(`select actor_type from audit_log where member_id = $1 and action = 'contact.unlinked'`, [other.sub]);
    expect(unlinked).toEqual([{ actor_type: 'system' }]);

    // Queue payloads carry ids only: nothing names the member or their contacts.
    const redis = new Redis(TEST_REDIS_URL);
    try {
      const keys = await redis.keys(`${t.config.QUEUE_PREFIX}:*`);
      let dump = '';
      for (const key of keys) {
        const type = await redis.type(key);
        if (type === 'hash') dump += JSON.stringify(await redis.hgetall(key));
        else if (type === 'string') dump += await redis.get(key);
      }
      expect(keys.length).toBeGreaterThan(0);
      for (const needle of [m.sub, memberEmail, '+447700900777', m.contacts[0]!.email]) expect(dump).not.toContain(needle);
    } finally {
      redis.disconnect();
    }
  });

  it("purges a deleted account's trail even after a still-valid token re-created the profile, keeping the new profile's trail and its tombstone", async () => {
    const m = await memberWithContacts(t, [1]);
    expect((await t.app.inject({ method: 'DELETE', url: '/v1/me', headers: m.headers })).statusCode).toBe(204);
    expect((await t.app.inject({ method: 'GET', url: '/v1/me', headers: m.headers })).statusCode).toBe(200);
    await t.app.inject({ method: 'PATCH', url: '/v1/me', headers: m.headers, payload: { display_name: 'Again' } });
    const actions = async () => (await t.db.pool.query<{ action: string }>('select action from audit_log where member_id = $1 order by id', [m.sub])).rows.map((r) => r.action);
    expect(await actions()).toEqual(expect.arrayContaining(['contact.created', 'schedule.created', 'member.deleted', 'member.created', 'member.updated']));
    const result = await run(new Date());
    expect(result.deleted_member_audit_rows).toBeGreaterThan(0);
    expect(await actions()).toEqual(['member.created', 'member.updated']);
    // The profile has the id again: its tombstone stays (it keeps links from before the deletion dead).
    await run(new Date(Date.now() + 400 * DAY));
    expect((await t.db.pool.query('select deletions from deleted_accounts where member_id = $1', [m.sub])).rows).toEqual([{ deletions: 1 }]);
    expect(await actions()).toEqual(['member.created', 'member.updated']);
  });

  it("keeps a living member's audit trail however old it is", async () => {
    const m = await memberWithContacts(t, [1]);
    const before = (await t.db.pool.query('select count(*)::int as n from audit_log where member_id = $1', [m.sub])).rows[0].n;
    await run(new Date(Date.now() + 400 * DAY));
    expect((await t.db.pool.query('select count(*)::int as n from audit_log where member_id = $1', [m.sub])).rows[0].n).toBe(before);
  });

  it('an incident plan of an odd shape neither fails its batch nor keeps its addresses, and every other purge still runs', async () => {
    const odd = await memberWithContacts(t, [1]);
    const fine = await memberWithContacts(t, [1]);
    for (const m of [odd, fine]) {
      const sos = await t.app.inject({ method: 'POST', url: '/v1/sos', headers: m.headers });
      expect(sos.statusCode).toBe(201);
      await t.app.inject({ method: 'POST', url: `/v1/incidents/${sos.json().id}/resolve`, headers: m.headers });
    }
    // Shapes an older version (or a hand) could have left: tiers not a list, a contact not an object.
    await t.db.pool.query(`update incidents set plan = jsonb_build_object('member_name', 'Ann', 'tiers', 'sms:${odd.contacts[0]!.phone}') where member_id = $1`, [odd.sub]);
    await t.db.pool.query(`update incidents set plan = jsonb_set(plan, '{tiers,0,contacts}', plan #> '{tiers,0,contacts}' || '["${fine.contacts[0]!.phone}"]'::jsonb) where member_id = $1`, [fine.sub]);
    await t.db.pool.query(`insert into check_ins (member_id, checked_in_at, latitude, longitude) values ($1, now() - interval '2 days', 12.3456, 65.4321)`, [fine.sub]);
    const result = await run(new Date(Date.now() + 91 * DAY));
    expect(result.incident_payloads).toBeGreaterThanOrEqual(2);
    expect(result.check_in_locations).toBeGreaterThanOrEqual(1);
    const { rows } = await t.db.pool.query<{ plan: object }>('select plan from incidents where member_id = any($1)', [[odd.sub, fine.sub]]);
    for (const r of rows) {
      expect(JSON.stringify(r.plan)).not.toContain(odd.contacts[0]!.phone);
      expect(JSON.stringify(r.plan)).not.toContain(fine.contacts[0]!.phone);
    }
    expect(await rowsMentioning(t.db.pool, '12.3456')).toEqual({});
  });
});
