import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { CheckInBatcher } from '../../src/checkins/batcher.js';
import type { CheckInInput } from '../../src/checkins/repo.js';
import { startTestApp, type TestApp } from '../helpers/app.js';

const now = new Date('2026-11-23T09:10:00Z');

describe('check-ins that arrive together', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await startTestApp({ clock: () => now });
  });
  afterAll(() => t.close());

  async function memberWithSchedule(): Promise<{ sub: string; headers: { authorization: string } }> {
    const sub = randomUUID();
    const headers = await t.asNamed(sub);
    const res = await t.app.inject({ method: 'POST', url: '/v1/schedules', headers, payload: { kind: 'daily', local_time: '09:30', time_zone: 'UTC' } });
    expect(res.statusCode).toBe(201);
    return { sub, headers };
  }
  const input = (memberId: string, extra: Partial<CheckInInput> = {}): CheckInInput => ({
    memberId, email: null, at: now, source: 'app', note: null, location: null, idempotencyKey: null, requestHash: null, ...extra,
  });

  it('each get their own answer and advance their own schedule once', async () => {
    const members = await Promise.all(Array.from({ length: 40 }, memberWithSchedule));
    const answers = await Promise.all(members.map((m, i) =>
      t.app.inject({ method: 'POST', url: '/v1/check-ins', headers: m.headers, payload: { note: `n${i}` } })));
    expect(answers.map((a) => a.statusCode)).toEqual(members.map(() => 201));
    expect(new Set(answers.map((a) => a.json().id)).size).toBe(40);
    expect(answers.every((a) => a.json().next_deadline_at === '2026-11-24T09:30:00.000Z')).toBe(true);
    const { rows } = await t.db.pool.query<{ member_id: string; note: string }>(
      'select member_id, note from check_ins where member_id = any($1::uuid[])', [members.map((m) => m.sub)]);
    expect(rows).toHaveLength(40);
    const byMember = new Map(rows.map((r) => [r.member_id, r.note]));
    members.forEach((m, i) => expect(byMember.get(m.sub)).toBe(`n${i}`));
    const { rows: s } = await t.db.pool.query<{ n: number }>(
      `select count(*)::int as n from schedules where member_id = any($1::uuid[]) and next_deadline_at = '2026-11-24T09:30:00Z'`, [members.map((m) => m.sub)]);
    expect(s[0]!.n).toBe(40);
  });

  it('of one member are written one after the other, so a double tap advances once', async () => {
    const m = await memberWithSchedule();
    const answers = await Promise.all(Array.from({ length: 3 }, () => t.app.inject({ method: 'POST', url: '/v1/check-ins', headers: m.headers, payload: {} })));
    expect(answers.map((a) => a.statusCode)).toEqual([201, 201, 201]);
    const { rows } = await t.db.pool.query<{ next_deadline_at: Date }>('select next_deadline_at from schedules where member_id = $1', [m.sub]);
    expect(rows[0]!.next_deadline_at.toISOString()).toBe('2026-11-24T09:30:00.000Z');
  });

  it('leave each answer stored for replays and the deadline after next precomputed, pauses included', async () => {
    const members = await Promise.all(Array.from({ length: 12 }, memberWithSchedule));
    const paused = members[0]!;
    const pause = await t.app.inject({ method: 'POST', url: '/v1/pauses', headers: paused.headers, payload: { from: '2026-11-25T00:00:00Z', until: '2026-11-26T00:00:00Z' } });
    expect(pause.statusCode).toBe(201);
    const answers = await Promise.all(members.map((m) => t.app.inject({ method: 'POST', url: '/v1/check-ins', headers: m.headers, payload: {} })));
    const ids = members.map((m) => m.sub);
    const settled = async () => {
      const { rows } = await t.db.pool.query<{ member_id: string; following: Date | null; answered: Date | null }>(
        `select s.member_id, s.following_deadline_at as following, c.next_deadline_at as answered
         from schedules s join check_ins c on c.member_id = s.member_id where s.member_id = any($1::uuid[])`, [ids]);
      return rows.length === ids.length && rows.every((r) => r.following !== null && r.answered !== null) ? rows : undefined;
    };
    let rows = await settled();
    for (let i = 0; i < 100 && rows === undefined; i++) {
      await new Promise((r) => setTimeout(r, 20));
      rows = await settled();
    }
    expect(rows).toBeDefined();
    for (const r of rows!) {
      expect(r.answered!.toISOString()).toBe('2026-11-24T09:30:00.000Z');
      expect(r.following!.toISOString()).toBe(r.member_id === paused.sub ? '2026-11-26T09:30:00.000Z' : '2026-11-25T09:30:00.000Z');
    }
    expect(answers.map((a) => a.json().next_deadline_at)).toEqual(ids.map(() => '2026-11-24T09:30:00.000Z'));
  });

  it('are not held up by one stuck on a lock taken elsewhere', async () => {
    const batcher = new CheckInBatcher(t.db.pool, 1, 200, 100);
    const [stuck, free] = await Promise.all([memberWithSchedule(), memberWithSchedule()]);
    const locker = await t.db.pool.connect();
    try {
      await locker.query('begin');
      await locker.query('select 1 from schedules where member_id = $1 for update', [stuck.sub]);
      let stuckDone = false;
      const stuckCheckIn = batcher.record(input(stuck.sub)).then((r) => {
        stuckDone = true;
        return r;
      });
      await new Promise((r) => setTimeout(r, 20));
      const freeResult = await batcher.record(input(free.sub));
      expect(freeResult.created).not.toBeNull();
      expect(stuckDone).toBe(false);
      await locker.query('commit');
      expect((await stuckCheckIn).created).not.toBeNull();
    } finally {
      locker.release();
    }
  });

  it('do not fail together when one of them cannot be written', async () => {
    const batcher = new CheckInBatcher(t.db.pool, 1);
    const good = await Promise.all(Array.from({ length: 5 }, memberWithSchedule));
    // Holds the only slot, so the rest queue up and go out as one statement.
    const first = batcher.record(input(randomUUID()));
    const rest = [
      ...good.map((m) => batcher.record(input(m.sub))),
      batcher.record(input(randomUUID(), { source: 'carrier pigeon' as CheckInInput['source'] })),
    ];
    await first;
    const settled = await Promise.allSettled(rest);
    expect(settled.slice(0, 5).every((r) => r.status === 'fulfilled' && r.value.created !== null)).toBe(true);
    expect(settled[5]!.status).toBe('rejected');
    const { rows } = await t.db.pool.query<{ n: number }>('select count(*)::int as n from check_ins where member_id = any($1::uuid[])', [good.map((m) => m.sub)]);
    expect(rows[0]!.n).toBe(5);
  });
});
