import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import pg from 'pg';
import { sweepOnce } from '../../src/incidents/sweep.js';
import { startTestApp, type TestApp } from '../helpers/app.js';
import { sweepDeps, testClock } from './helpers.js';

const clock = testClock('2026-11-23T10:00:00Z');

describe('sweepers racing', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await startTestApp({ clock: () => clock.now });
  });
  afterAll(() => t.close());

  it('two sweepers on 5,000 due schedules create exactly 5,000 incidents', async () => {
    await t.db.pool.query(`
      with m as (
        insert into members (id, display_name, time_zone)
        select gen_random_uuid(), 'M' || g, 'UTC' from generate_series(1, 5000) g returning id
      )
      insert into schedules (member_id, kind, local_time, next_deadline_at, alert_at, window_start_at, following_deadline_at)
      select id, 'daily', '09:30', '2026-11-23T09:30:00Z', '2026-11-23T09:59:00Z', '2026-11-22T09:30:00Z', '2026-11-24T09:30:00Z' from m`);
    const pools = [new pg.Pool({ connectionString: t.db.url, max: 2 }), new pg.Pool({ connectionString: t.db.url, max: 2 })];
    try {
      const results = await Promise.all(pools.map((pool) => sweepOnce({ ...sweepDeps(t, clock, pool), batchSize: 100 })));
      expect(results[0]!.missed + results[1]!.missed).toBe(5000);
      // Both did part of the work: they really ran side by side.
      expect(Math.min(results[0]!.missed, results[1]!.missed)).toBeGreaterThan(0);
    } finally {
      await Promise.all(pools.map((p) => p.end()));
    }
    const { rows } = await t.db.pool.query('select count(*)::int as n, count(distinct schedule_id)::int as s from incidents');
    expect(rows[0]).toEqual({ n: 5000, s: 5000 });
    const { rows: left } = await t.db.pool.query(`select count(*)::int as n from schedules where alert_at <= $1`, [clock.now]);
    expect(left[0].n).toBe(0);
  }, 120_000);
});
