import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { asUser, createTestDatabase, type TestDatabase } from '../helpers/db.js';

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

  it('shows a member only their own profile and devices, even with direct SQL', async () => {
    const seen = await asUser(db.pool, ANN, async (c) => ({
      members: (await c.query('select id from members')).rows.map((r) => r.id),
      devices: (await c.query('select token from devices')).rows.map((r) => r.token),
    }));
    expect(seen).toEqual({ members: [ANN], devices: ['ann-token'] });
  });

  it("cannot change or delete another member's rows", async () => {
    const counts = await asUser(db.pool, ANN, async (c) => ({
      update: (await c.query(`update members set display_name = 'pwned' where id = $1`, [BOB])).rowCount,
      delete: (await c.query('delete from devices where member_id = $1', [BOB])).rowCount,
    }));
    expect(counts).toEqual({ update: 0, delete: 0 });
  });

  it('cannot register a device in the name of another member', async () => {
    await expect(
      asUser(db.pool, ANN, (c) => c.query(`insert into devices (member_id, token, platform) values ($1, 'x', 'ios')`, [BOB])),
    ).rejects.toThrow(/row-level security/);
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
