import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import type pg from 'pg';
import { entitlementsFor } from '../../src/billing/entitlements.js';
import { asRole, asUser, createTestDatabase, type TestDatabase } from '../helpers/db.js';

const ANN = 'aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa';
const BOB = 'bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb';

describe('row level security with the authenticated role', () => {
  let db: TestDatabase;
  beforeAll(async () => {
    db = await createTestDatabase();
    await db.pool.query(`insert into members (id, display_name) values ($1, 'Ann'), ($2, 'Bob')`, [ANN, BOB]);
    await db.pool.query(`insert into devices (member_id, token, platform) values ($1, 'ann-token', 'ios'), ($2, 'bob-token', 'android')`, [ANN, BOB]);
    for (const m of [ANN, BOB]) {
      await db.pool.query(`insert into contacts (member_id, name, email) values ($1, 'c', $2)`, [m, `${m}@example.test`]);
      await db.pool.query(`insert into schedules (member_id, kind, local_time, window_start_at) values ($1, 'daily', '09:00', now())`, [m]);
      await db.pool.query(`insert into pauses (member_id, starts_at, ends_at) values ($1, now(), now() + interval '1 day')`, [m]);
      await db.pool.query(`insert into check_ins (member_id, checked_in_at) values ($1, now())`, [m]);
      await db.pool.query(`insert into deliveries (member_id, kind, channel, address, body) values ($1, 'invitation', 'email', 'x@example.test', 'b')`, [m]);
    }
  });

  it.each(['contacts', 'schedules', 'pauses', 'check_ins', 'deliveries'])("shows a member only their own %s", async (table) => {
    const owners = await asUser(db.pool, ANN, async (c) => (await c.query(`select distinct member_id from ${table}`)).rows.map((r) => r.member_id));
    expect(owners).toEqual([ANN]);
  });

  it('keeps the outbox internals away from members entirely', async () => {
    await expect(asUser(db.pool, ANN, (c) => c.query('select * from dev_outbox'))).rejects.toThrow(/permission denied/);
  });
  afterAll(() => db.drop());

  it('shows a member only their own profile and devices, even with direct SQL, and never a push token', async () => {
    const seen = await asUser(db.pool, ANN, async (c) => ({
      members: (await c.query('select id from members')).rows.map((r) => r.id),
      devices: (await c.query('select platform from devices')).rows.map((r) => r.platform),
    }));
    expect(seen).toEqual({ members: [ANN], devices: ['ios'] });
    await expect(asUser(db.pool, ANN, (c) => c.query('select token from devices'))).rejects.toThrow(/permission denied/);
  });

  it("cannot change or delete another member's rows", async () => {
    const counts = await asUser(db.pool, ANN, async (c) => ({
      update: (await c.query(`update members set display_name = 'pwned' where id = $1`, [BOB])).rowCount,
      delete: (await c.query('delete from devices where member_id = $1', [BOB])).rowCount,
    }));
    expect(counts).toEqual({ update: 0, delete: 0 });
  });

  it('cannot register a device directly, not even their own (POST /v1/devices only)', async () => {
    for (const owner of [BOB, ANN]) {
      await expect(
        asUser(db.pool, ANN, (c) => c.query(`insert into devices (member_id, token, platform) values ($1, 'x', 'ios')`, [owner])),
      ).rejects.toThrow(/permission denied/);
    }
  });

  it('sees nothing without claims', async () => {
    const c = await db.pool.connect();
    try {
      await c.query('begin');
      await c.query('set local role authenticated');
      const { rows } = await c.query('select id from members');
      expect(rows).toEqual([]);
    } finally {
      await c.query('rollback');
      c.release();
    }
  });

  it('has RLS enabled on every table in the public schema', async () => {
    const { rows } = await db.pool.query(
      `select c.relname from pg_class c join pg_namespace n on n.oid = c.relnamespace
       where n.nspname = 'public' and c.relkind in ('r', 'p') and not c.relrowsecurity order by 1`,
    );
    expect(rows.map((r) => r.relname)).toEqual([]);
  });
});

/** Issue 16's findings, each as the database role that reproduced it. */
describe('what a Supabase client can no longer do (issue 16 R1–R4)', () => {
  let db: TestDatabase;
  let annContact: string;
  let annSchedule: string;
  const plans = { freePlanContacts: 2 };
  const refused = (p: Promise<unknown>) => expect(p).rejects.toThrow(/permission denied/);
  /** Runs `sql` as Ann under a savepoint, then what the service would see in the same transaction. */
  async function tryAsAnn<T>(sql: string, params: unknown[], then: (c: pg.PoolClient) => Promise<T>): Promise<{ error: string | null; after: T }> {
    return asUser(db.pool, ANN, async (c) => {
      await c.query('savepoint try');
      const error = await c.query(sql, params).then(() => null, (err: Error) => err.message);
      if (error !== null) await c.query('rollback to savepoint try');
      await c.query('reset role');
      return { error, after: await then(c) };
    });
  }

  beforeAll(async () => {
    db = await createTestDatabase();
    await db.pool.query(`insert into members (id, display_name) values ($1, 'Ann'), ($2, 'Bob')`, [ANN, BOB]);
    // Bob pays for a family plan: it covers members whose linked, active contact he is.
    await db.pool.query(`insert into subscriptions (id, member_id, stripe_customer_id, plan, status, state_at) values ('sub_bob', $1, 'cus_bob', 'family', 'active', now())`, [BOB]);
    annContact = (await db.pool.query(`insert into contacts (member_id, name, email) values ($1, 'Bob', 'bob@example.test') returning id`, [ANN])).rows[0].id;
    annSchedule = (await db.pool.query(
      `insert into schedules (member_id, kind, local_time, window_start_at, next_deadline_at, alert_at) values ($1, 'daily', '09:00', now(), now() + interval '1 hour', now() + interval '90 minutes') returning id`,
      [ANN],
    )).rows[0].id;
  });
  afterAll(() => db.drop());

  it("R1: a member cannot accept their own invitation for someone else and take the payer's family plan", async () => {
    const { error, after } = await tryAsAnn(
      `update contacts set status = 'active', linked_user_id = $2 where id = $1`, [annContact, BOB],
      async (c) => (await entitlementsFor(c, ANN, plans)).plan,
    );
    expect({ error, plan: after }).toEqual({ error: 'permission denied for table contacts', plan: 'free' });
  });

  it.each([
    ['a contact born active and linked', `insert into contacts (member_id, name, email, status, linked_user_id) values ('${ANN}', 'x', 'x@example.test', 'active', '${BOB}')`],
    ["a contact's invitation answer", `update contacts set responded_at = now(), invited_at = now() where member_id = '${ANN}'`],
    ["a contact's channel flags", `update contacts set sms_opted_out = false, sms_disabled = false, email_disabled = false where member_id = '${ANN}'`],
    ["a contact's address (needs a new invitation)", `update contacts set email = 'other@example.test' where member_id = '${ANN}'`],
    ['their own SMS opt-out or phone', `update members set sms_opted_out = false, phone = '+447700900123' where id = '${ANN}'`],
    ['a schedule timer', `update schedules set next_deadline_at = now() + interval '1 year', next_reminder_at = null where member_id = '${ANN}'`],
    ["a schedule's zone fallback", `update schedules set zone_fallback_at = null where member_id = '${ANN}'`],
    ['a pause (it moves deadlines)', `insert into pauses (member_id, starts_at, ends_at) values ('${ANN}', now(), now() + interval '1 year')`],
    ['a check-in at a time of their choosing', `insert into check_ins (member_id, checked_in_at) values ('${ANN}', now() + interval '100 years')`],
  ])('R1: a member cannot write %s', async (_what, sql) => {
    await refused(asUser(db.pool, ANN, (c) => c.query(sql)));
  });

  it('R1: a member still renames a contact, moves it between tiers and removes it', async () => {
    const counts = await asUser(db.pool, ANN, async (c) => [
      (await c.query(`update contacts set name = 'Robert', tier = 2, notify_on_check_in = true where id = $1`, [annContact])).rowCount,
      (await c.query(`update members set display_name = 'Annie'`)).rowCount,
      (await c.query(`delete from contacts where id = $1`, [annContact])).rowCount,
    ]);
    expect(counts).toEqual([1, 1, 1]);
  });

  it.each([
    ['an unknown zone for the member', `update members set time_zone = 'Mars/Olympus' where id = '${ANN}'`],
    ['an unknown zone for a schedule', `update schedules set time_zone = 'Mars/Olympus' where member_id = '${ANN}'`],
    ['a past alert_at', `update schedules set alert_at = now() - interval '1 day' where member_id = '${ANN}'`],
    ['an alert_at past 2200', `update schedules set alert_at = '9999-12-31T23:59:00Z' where member_id = '${ANN}'`],
    ['a schedule with its own timers', `insert into schedules (member_id, kind, local_time, window_start_at, alert_at) values ('${ANN}', 'daily', '09:00', now(), now() - interval '1 day')`],
  ])('R2: a member cannot write %s', async (_what, sql) => {
    const { error, after } = await tryAsAnn(sql, [], async (c) => (await c.query(
      `select m.time_zone, s.time_zone as schedule_zone, s.alert_at > now() as alert_ahead, (select count(*)::int from schedules where member_id = $1) as schedules
         from members m join schedules s on s.member_id = m.id where s.id = $2`, [ANN, annSchedule],
    )).rows[0]);
    expect({ error, after }).toEqual({
      error: expect.stringMatching(/permission denied/),
      after: { time_zone: 'UTC', schedule_zone: null, alert_ahead: true, schedules: 1 },
    });
  });

  it.each(['anon', 'authenticated'] as const)('R3: %s cannot call audit_write() to forge audit rows', async (role) => {
    const forged = await asRole(db.pool, role, role === 'anon' ? null : ANN, async (c) => {
      await c.query('savepoint try');
      const error = await c.query(
        `select public.audit_write($1::uuid, 'operator', 'support', 'member.deleted', 'member', $1::text, '{}', null)`, [BOB],
      ).then(() => null, (err: Error) => err.message);
      if (error !== null) await c.query('rollback to savepoint try');
      await c.query('reset role');
      const { rows } = await c.query(`select count(*)::int as n from audit_log where actor_type = 'operator'`);
      return { error, rows: rows[0].n };
    });
    expect(forged).toEqual({ error: 'permission denied for function audit_write', rows: 0 });
  });

  it("R4: a member sees a delivery's status but not its message nor the contact's link", async () => {
    await db.pool.query(
      `insert into deliveries (member_id, contact_id, kind, channel, address, body, render) values ($1, $2, 'invitation', 'email', 'bob@example.test', 'https://pruuf.test/a/secret', '{"ack_url": "https://pruuf.test/a/secret"}')`,
      [ANN, annContact],
    );
    const status = await asUser(db.pool, ANN, async (c) => (await c.query('select kind, channel, status from deliveries')).rows);
    expect(status).toEqual([{ kind: 'invitation', channel: 'email', status: 'pending' }]);
    for (const col of ['body', 'subject', 'html', 'render', 'data', 'address', 'last_error', '*']) {
      await refused(asUser(db.pool, ANN, (c) => c.query(`select ${col} from deliveries`)));
    }
  });

  it('R4: a member cannot delete their account directly (DELETE /v1/me checks the subscription and deletes the sign-in)', async () => {
    const { error, after } = await tryAsAnn(`delete from members where id = $1`, [ANN], async (c) => (await c.query('select count(*)::int as n from members where id = $1', [ANN])).rows[0].n);
    expect({ error, after }).toEqual({ error: 'permission denied for table members', after: 1 });
  });
});
