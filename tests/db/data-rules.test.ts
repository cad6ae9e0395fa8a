import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import type pg from 'pg';
import { asUser, createTestDatabase, type TestDatabase } from '../helpers/db.js';

const ANN = 'aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa';
const OLD = 'cccccccc-cccc-4ccc-8ccc-cccccccccccc';
const FAR = '9999-12-31T23:59:00Z';

/** As the service's own role (postgres), rolled back like asUser. */
async function asPostgres<T>(pool: pg.Pool, fn: (c: pg.PoolClient) => Promise<T>): Promise<T> {
  const c = await pool.connect();
  try {
    await c.query('begin');
    return await fn(c);
  } finally {
    await c.query('rollback');
    c.release();
  }
}

/** As Supabase's service_role (the server key: every table, no RLS), rolled back. */
async function asServiceRole<T>(pool: pg.Pool, fn: (c: pg.PoolClient) => Promise<T>): Promise<T> {
  return asPostgres(pool, async (c) => {
    await c.query('set local role service_role');
    return fn(c);
  });
}

// A Supabase client (authenticated) may write none of these columns at all: tests/db/rls.test.ts (R2).
type Writer = [string, (pool: pg.Pool, fn: (c: pg.PoolClient) => Promise<unknown>) => Promise<unknown>];
const WRITERS: Writer[] = [
  ['postgres', asPostgres],
  ['service_role (Supabase server key)', asServiceRole],
];

/** The refusal: a check_violation whose message names the table and column. */
async function refused(p: Promise<unknown>, column: string): Promise<void> {
  await expect(p).rejects.toMatchObject({ code: '23514', message: expect.stringContaining(column) });
}

const insertSchedule = (c: pg.PoolClient, cols: Record<string, unknown>) => {
  const all = { member_id: ANN, kind: 'daily', local_time: '09:00', window_start_at: new Date(), ...cols };
  const names = Object.keys(all);
  return c.query(`insert into schedules (${names.join(', ')}) values (${names.map((_, i) => `$${i + 1}`).join(', ')}) returning id`, Object.values(all));
};

describe('the database refuses the zones and instants the API refuses', () => {
  let db: TestDatabase;
  let annSchedule: string;
  let annPause: string;
  beforeAll(async () => {
    db = await createTestDatabase();
    await db.pool.query(`insert into members (id) values ($1)`, [ANN]);
    annSchedule = (await db.pool.query(`insert into schedules (member_id, kind, local_time, window_start_at) values ($1, 'daily', '09:00', now()) returning id`, [ANN])).rows[0].id;
    annPause = (await db.pool.query(`insert into pauses (member_id, starts_at, ends_at) values ($1, now(), now() + interval '1 day') returning id`, [ANN])).rows[0].id;
    // A member stored before the rules: a zone PostgreSQL dropped and a deadline past year 9999.
    const c = await db.pool.connect();
    try {
      await c.query('begin');
      await c.query('set local session_replication_role = replica');
      await c.query(`insert into members (id, time_zone) values ($1, 'US/Pacific-New')`, [OLD]);
      await c.query(`insert into schedules (member_id, kind, due_at, next_deadline_at, alert_at, window_start_at, time_zone) values ($1, 'once', $2, $2, '10000-01-01T00:29Z', now(), 'Canada/East-Saskatchewan')`, [OLD, FAR]);
      await c.query(`insert into pauses (member_id, starts_at, ends_at) values ($1, now(), '12000-01-01')`, [OLD]);
      await c.query('commit');
    } finally {
      c.release();
    }
  });
  afterAll(() => db.drop());

  describe.each(WRITERS)('written as %s', (_who, as) => {
    it.each(['US/Pacific-New', 'Canada/East-Saskatchewan', 'Mars/Olympus', 'UTC+2', '+02:00', 'posixrules'])('refuses members.time_zone %s', async (zone) => {
      await refused(as(db.pool, (c) => c.query('update members set time_zone = $2 where id = $1', [ANN, zone])), 'members.time_zone');
    });

    it('takes a zone PostgreSQL knows for members.time_zone', async () => {
      await as(db.pool, async (c) => expect((await c.query(`update members set time_zone = 'Europe/London' where id = $1`, [ANN])).rowCount).toBe(1));
    });

    it.each(['US/Pacific-New', 'Etc/GMT+99'])('refuses schedules.time_zone %s on insert and on update', async (zone) => {
      await refused(as(db.pool, (c) => insertSchedule(c, { time_zone: zone })), 'schedules.time_zone');
      await refused(as(db.pool, (c) => c.query('update schedules set time_zone = $2 where id = $1', [annSchedule, zone])), 'schedules.time_zone');
    });

    it.each([
      ['due_at', { kind: 'once', local_time: null, due_at: FAR }],
      ['next_deadline_at', { next_deadline_at: '2200-01-01T00:00:00Z' }],
      ['alert_at', { next_deadline_at: '2199-12-31T23:00:00Z', alert_at: '2200-01-01T00:29:00Z' }],
      ['following_deadline_at', { following_deadline_at: 'infinity' }],
    ])('refuses schedules.%s at or past 2200 on insert', async (column, cols) => {
      await refused(as(db.pool, (c) => insertSchedule(c, cols)), `schedules.${column}`);
    });

    it.each(['next_deadline_at', 'alert_at', 'following_deadline_at', 'next_reminder_at'])('refuses schedules.%s past 2200 on update', async (column) => {
      await refused(as(db.pool, (c) => c.query(`update schedules set ${column} = $2 where id = $1`, [annSchedule, FAR])), `schedules.${column}`);
    });

    it('takes instants before 2200 for a schedule', async () => {
      await as(db.pool, async (c) => {
        await insertSchedule(c, { kind: 'once', local_time: null, due_at: '2199-12-31T11:00:00Z', next_deadline_at: '2199-12-31T11:00:00Z', alert_at: '2199-12-31T23:00:00Z' });
      });
    });

    it.each([['starts_at', FAR, '12000-01-01'], ['ends_at', 'now()', FAR]])('refuses pauses.%s past 2200 on insert and on update', async (column, from, until) => {
      await refused(as(db.pool, (c) => c.query(`insert into pauses (member_id, starts_at, ends_at) values ($1, ${from === 'now()' ? 'now()' : `'${from}'`}, '${until}')`, [ANN])), `pauses.${column}`);
      await refused(as(db.pool, (c) => c.query(`update pauses set ends_at = '12000-01-01', starts_at = $2 where id = $1`, [annPause, column === 'starts_at' ? FAR : new Date()])), `pauses.${column}`);
    });

    it('refuses a check-in past 2200', async () => {
      await refused(as(db.pool, (c) => c.query(`insert into check_ins (member_id, checked_in_at) values ($1, $2)`, [ANN, FAR])), 'check_ins.checked_in_at');
    });
  });

  describe('rows stored before the rules', () => {
    it('keep taking updates of their other columns: a rule checks a column only when it changes', async () => {
      await asPostgres(db.pool, async (c) => {
        expect((await c.query(`update members set display_name = 'Old', time_zone = time_zone where id = $1`, [OLD])).rowCount).toBe(1);
        expect((await c.query(`update schedules set active = false, grace_minutes = 10, due_at = due_at where member_id = $1`, [OLD])).rowCount).toBe(1);
        expect((await c.query(`update pauses set reason = 'long' where member_id = $1`, [OLD])).rowCount).toBe(1);
      });
    });

    it('can be mended to a valid value', async () => {
      await asPostgres(db.pool, async (c) => {
        await c.query(`update members set time_zone = 'America/Los_Angeles' where id = $1`, [OLD]);
        await c.query(`update schedules set time_zone = null, due_at = '2027-01-01T00:00:00Z', next_deadline_at = null, alert_at = null where member_id = $1`, [OLD]);
      });
    });
  });

  it('lists the zones PostgreSQL knows, without fixed offsets, for every role to read', async () => {
    const names = await asUser(db.pool, ANN, async (c) => (await c.query<{ name: string }>('select name from time_zone_names')).rows.map((r) => r.name));
    expect(names).toEqual(expect.arrayContaining(['UTC', 'Europe/London', 'America/Los_Angeles', 'Etc/GMT+2']));
    expect(names).not.toEqual(expect.arrayContaining(['GMT+0']));
    expect(names.filter((n) => n.startsWith('posix/') || n === 'US/Pacific-New')).toEqual([]);
    await expect(asUser(db.pool, ANN, (c) => c.query(`insert into time_zone_names values ('Mars/Olympus')`))).rejects.toThrow(/permission denied/);
  });
});
