import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { asUser, createTestDatabase, type TestDatabase } from '../helpers/db.js';

const ANN = 'aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa';
const BOB = 'bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb';

describe('billing rows under row level security', () => {
  let db: TestDatabase;
  beforeAll(async () => {
    db = await createTestDatabase();
    await db.pool.query(`insert into members (id) values ($1), ($2)`, [ANN, BOB]);
    for (const [m, n] of [[ANN, 'ann'], [BOB, 'bob']]) {
      await db.pool.query(`insert into billing_customers (member_id, stripe_customer_id) values ($1, $2)`, [m, `cus_${n}`]);
      await db.pool.query(
        `insert into subscriptions (id, member_id, stripe_customer_id, plan, status, state_at) values ($1, $2, $3, 'plus', 'active', now())`,
        [`sub_${n}`, m, `cus_${n}`],
      );
      await db.pool.query(`insert into billing_audit (at, member_id, subscription_id, actor, action) values (now(), $1, $2, 'stripe', 'customer.subscription.created')`, [m, `sub_${n}`]);
    }
    // A subscription whose payer is not known yet belongs to nobody.
    await db.pool.query(`insert into subscriptions (id, stripe_customer_id, plan, status, state_at) values ('sub_orphan', 'cus_x', 'family', 'active', now())`);
  });
  afterAll(() => db.drop());

  it.each(['billing_customers', 'subscriptions', 'billing_audit'])('shows a member only their own %s', async (table) => {
    const owners = await asUser(db.pool, ANN, async (c) => (await c.query(`select distinct member_id from ${table}`)).rows.map((r) => r.member_id));
    expect(owners).toEqual([ANN]);
  });

  it.each([
    ['grant themself a plan', `update subscriptions set plan = 'family' where member_id = '${ANN}'`],
    ['insert a subscription', `insert into subscriptions (id, member_id, stripe_customer_id, plan, status, state_at) values ('sub_mine', '${ANN}', 'cus_ann', 'family', 'active', now())`],
    ["take another member's customer", `update billing_customers set member_id = '${ANN}' where member_id = '${BOB}'`],
    ['rewrite the audit trail', `delete from billing_audit`],
  ])('cannot %s', async (_what, sql) => {
    await expect(asUser(db.pool, ANN, (c) => c.query(sql))).rejects.toThrow(/permission denied/);
  });

  it('sees no billing rows without claims', async () => {
    const c = await db.pool.connect();
    try {
      await c.query('begin');
      await c.query('set local role authenticated');
      expect((await c.query('select id from subscriptions')).rows).toEqual([]);
    } finally {
      await c.query('rollback');
      c.release();
    }
  });
});
