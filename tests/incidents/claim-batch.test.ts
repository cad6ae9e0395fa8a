import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { setAuditActor } from '../../src/audit/actor.js';
import { withTransaction } from '../../src/db/pool.js';
import { openIncidents } from '../../src/incidents/engine.js';
import { incidentSettings } from '../../src/incidents/settings.js';
import { sweepOnce } from '../../src/incidents/sweep.js';
import { nextDeadline } from '../../src/schedules/deadline.js';
import { startTestApp, type TestApp } from '../helpers/app.js';
import { TEST_LINK_SECRET } from '../helpers/tokens.js';
import { memberWithContacts, sweepDeps, testClock } from './helpers.js';

// One claimed batch is a few set-based statements: these pin that each row of a batch still gets
// its own result (next deadlines, audit entries) and that a batch skips a deadline already opened.

const clock = testClock('2026-11-23T08:00:00Z'); // a Monday

describe('a batch of missed deadlines', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await startTestApp({ clock: () => clock.now });
  });
  afterAll(() => t.close());

  it('moves each schedule of a batch to its own next deadlines, whatever its time, weekdays and zone', async () => {
    clock.set('2026-11-23T08:00:00Z');
    const rules = [
      { kind: 'daily', local_time: '09:30', time_zone: 'UTC' },
      { kind: 'daily', local_time: '09:30', time_zone: 'UTC', days: [1, 2] },
      { kind: 'daily', local_time: '09:30', time_zone: 'UTC', days: [1, 3, 5] },
      { kind: 'daily', local_time: '09:45', time_zone: 'UTC' },
      { kind: 'daily', local_time: '09:30', time_zone: 'Europe/Lisbon', days: [1, 2] },
      { kind: 'daily', local_time: '04:30', time_zone: 'America/New_York' },
    ];
    const members = [];
    for (const rule of rules) members.push(await memberWithContacts(t, [1], { ...rule, grace_minutes: 30 }));
    // The precomputed deadline-after-next missing for some: the sweep computes those itself.
    await t.db.pool.query('update schedules set following_deadline_at = null where id = any($1)', [[members[2]!.scheduleId, members[5]!.scheduleId]]);
    clock.set('2026-11-23T10:30:00Z');
    const r = await sweepOnce({ ...sweepDeps(t, clock), lanes: 1 });
    expect(r.missed).toBe(rules.length);

    for (const [i, rule] of rules.entries()) {
      const { rows: [s] } = await t.db.pool.query('select next_deadline_at, following_deadline_at from schedules where id = $1', [members[i]!.scheduleId]);
      const { rows: [inc] } = await t.db.pool.query('select deadline_at from incidents where schedule_id = $1', [members[i]!.scheduleId]);
      const r2 = { kind: 'daily' as const, localTime: rule.local_time, days: rule.days ?? [1, 2, 3, 4, 5, 6, 7], timeZone: rule.time_zone };
      const next = nextDeadline(r2, inc.deadline_at)!;
      expect({ rule: i, next: s.next_deadline_at, following: s.following_deadline_at }).toEqual({ rule: i, next, following: nextDeadline(r2, next) });
    }
    // Spot checks, by hand: Mondays and Tuesdays go on to next Monday; Lisbon is on UTC in winter.
    const { rows: [two] } = await t.db.pool.query('select following_deadline_at from schedules where id = $1', [members[1]!.scheduleId]);
    expect(two.following_deadline_at.toISOString()).toBe('2026-11-30T09:30:00.000Z');
  });

  it('writes one incident.opened entry per incident: by the system for a miss, by the member for an SOS, by whoever the transaction names', async () => {
    clock.set('2026-11-23T08:00:00Z');
    const a = await memberWithContacts(t, [1]);
    const b = await memberWithContacts(t, [1]);
    clock.set('2026-11-23T10:00:00Z');
    await sweepOnce(sweepDeps(t, clock));
    const sos = await t.app.inject({ method: 'POST', url: '/v1/sos', headers: a.headers, payload: {} });
    const named = await withTransaction(t.db.pool, async (tx) => {
      await setAuditActor(tx, { type: 'operator', id: 'ops-7' });
      return openIncidents(tx, incidentSettings(t.config, TEST_LINK_SECRET), [{ member_id: b.sub, schedule_id: null, kind: 'sos', deadline_at: null, alert_at: null }], clock.now);
    });
    const { rows } = await t.db.pool.query<{ entity_id: string; member_id: string; actor_type: string; actor_id: string | null; detail: object; kind: string }>(
      `select a.entity_id, a.member_id, a.actor_type, a.actor_id, a.detail, i.kind from audit_log a join incidents i on i.id::text = a.entity_id
        where a.action = 'incident.opened' and a.member_id = any($1) order by i.kind, a.member_id, a.actor_type`,
      [[a.sub, b.sub]],
    );
    const { rows: incidents } = await t.db.pool.query<{ id: string }>('select id from incidents where member_id = any($1)', [[a.sub, b.sub]]);
    expect(rows.map((x) => x.entity_id).sort()).toEqual(incidents.map((x) => x.id).sort());
    const missed = rows.filter((x) => x.kind === 'missed');
    expect(missed.map((x) => [x.member_id, x.actor_type, x.actor_id, x.detail]).sort()).toEqual(
      [[a.sub, 'system', null, { kind: 'missed' }], [b.sub, 'system', null, { kind: 'missed' }]].sort(),
    );
    expect(rows.find((x) => x.entity_id === sos.json().id)).toMatchObject({ actor_type: 'member', actor_id: a.sub, detail: { kind: 'sos' } });
    expect(rows.find((x) => x.entity_id === named.incidentIds[0])).toMatchObject({ actor_type: 'operator', actor_id: 'ops-7' });
  });

  it('skips a deadline that already has its incident, with its messages and timeline, and still moves the schedule on', async () => {
    clock.set('2026-11-23T08:00:00Z');
    const m = await memberWithContacts(t, [1]);
    clock.set('2026-11-23T10:00:00Z');
    await sweepOnce(sweepDeps(t, clock));
    const { rows: [first] } = await t.db.pool.query('select id from incidents where member_id = $1', [m.sub]);
    const count = async () => (await t.db.pool.query(
      `select (select count(*)::int from incidents where member_id = $1) as incidents,
              (select count(*)::int from deliveries where member_id = $1 and kind = 'alert') as alerts,
              (select count(*)::int from incident_events where incident_id = $2) as events`,
      [m.sub, first.id],
    )).rows[0];
    const before = await count();
    expect(before).toEqual({ incidents: 1, alerts: 2, events: 2 }); // email and SMS: alerts use every channel on every plan
    // The schedule is put back on the deadline that was already opened (as a restore from backup would).
    await t.db.pool.query(
      `update schedules set next_deadline_at = '2026-11-23T09:30:00Z', alert_at = '2026-11-23T10:00:00Z', following_deadline_at = '2026-11-24T09:30:00Z' where id = $1`,
      [m.scheduleId],
    );
    const r = await sweepOnce(sweepDeps(t, clock));
    expect(r.missed).toBe(0);
    expect(await count()).toEqual(before);
    const { rows: [s] } = await t.db.pool.query('select next_deadline_at from schedules where id = $1', [m.scheduleId]);
    expect(s.next_deadline_at.toISOString()).toBe('2026-11-24T09:30:00.000Z');
  });
});
