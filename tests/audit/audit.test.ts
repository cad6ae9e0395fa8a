import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import pg from 'pg';
import { setAuditActor } from '../../src/audit/actor.js';
import { withTransaction } from '../../src/db/pool.js';
import { sweepOnce } from '../../src/incidents/sweep.js';
import { startTestApp, errorOf, type TestApp } from '../helpers/app.js';
import { alerts, memberWithContacts, sweepDeps, testClock, tokenFrom } from '../incidents/helpers.js';

type Entry = { id: string; at: string; actor: { type: string; id: string | null }; action: string; entity: { type: string; id: string | null }; changes: string[]; detail: Record<string, unknown> | null };

describe('the audit log', () => {
  const clock = testClock('2026-11-23T08:00:00Z');
  let t: TestApp;
  beforeAll(async () => {
    t = await startTestApp({ backend: 'postgres', clock: () => clock.now });
  });
  afterAll(() => t.close());

  async function trail(headers: { authorization: string }, query = ''): Promise<Entry[]> {
    const res = await t.app.inject({ method: 'GET', url: `/v1/audit${query}`, headers });
    expect(res.statusCode).toBe(200);
    return res.json().data as Entry[];
  }

  it("records who changed the member's account, contacts, schedules and pauses, naming fields but never their values", async () => {
    clock.set('2026-11-23T08:00:00Z');
    const m = await memberWithContacts(t, [1]);
    const contact = m.contacts[0]!;
    await t.app.inject({ method: 'PATCH', url: `/v1/contacts/${contact.id}`, headers: m.headers, payload: { phone: '+447700900999', tier: 2 } });
    await t.app.inject({ method: 'PATCH', url: `/v1/schedules/${m.scheduleId}`, headers: m.headers, payload: { grace_minutes: 45 } });
    const pause = await t.app.inject({ method: 'POST', url: '/v1/pauses', headers: m.headers, payload: { from: '2026-12-01T00:00:00Z', until: '2026-12-02T00:00:00Z' } });
    await t.app.inject({ method: 'DELETE', url: `/v1/pauses/${pause.json().id}`, headers: m.headers });

    const res = await t.app.inject({ method: 'GET', url: '/v1/audit', headers: m.headers });
    const entries = res.json().data as Entry[];
    const actions = entries.map((e) => e.action).reverse();
    expect(actions).toEqual(expect.arrayContaining(['member.created', 'member.updated', 'contact.created', 'contact.updated', 'schedule.created', 'schedule.updated', 'pause.created', 'pause.deleted']));
    expect(actions.indexOf('contact.created')).toBeLessThan(actions.indexOf('contact.updated'));
    const changed = entries.find((e) => e.action === 'contact.updated')!;
    expect(changed).toMatchObject({ actor: { type: 'member', id: m.sub }, entity: { type: 'contact', id: contact.id }, changes: expect.arrayContaining(['phone', 'tier']) });
    expect(changed.changes).not.toContain('name');
    expect(entries.find((e) => e.action === 'schedule.updated')!.changes).toEqual(['grace_minutes']);
    expect(res.body).not.toContain('+447700900999');
    expect(res.body).not.toContain(contact.email);
  });

  it('records the incident opening by the system, and the acknowledgement by the contact who gave it, but not the sweeper moving deadlines', async () => {
    clock.set('2026-11-23T08:00:00Z');
    const m = await memberWithContacts(t, [1, 2]);
    clock.set('2026-11-23T10:00:00Z');
    await sweepOnce(sweepDeps(t, clock));
    const { rows: [inc] } = await t.db.pool.query('select id from incidents where member_id = $1', [m.sub]);
    const first = (await alerts(t.db.pool, inc.id)).find((d) => d.channel === 'email')!;
    const ack = await t.app.inject({ method: 'POST', url: `/a/${tokenFrom(first.body)}/ack` });
    expect(ack.statusCode).toBe(200);
    await t.app.inject({ method: 'POST', url: `/v1/incidents/${inc.id}/resolve`, headers: m.headers });

    const entries = await trail(m.headers);
    const incidentRows = entries.filter((e) => e.entity.type === 'incident').reverse();
    expect(incidentRows.map((e) => [e.action, e.actor.type])).toEqual([
      ['incident.opened', 'system'], ['incident.acknowledged', 'contact'], ['incident.resolved', 'member'],
    ]);
    expect(incidentRows[1]!.actor.id).toBe(first.contact_id);
    expect(incidentRows[2]!.detail).toMatchObject({ resolution: 'member_resolved' });
    // The sweep moved the schedule to its next deadline: not a change anyone made.
    expect(entries.filter((e) => e.action === 'schedule.updated')).toEqual([]);
  });

  it('pages through the trail with next_cursor, and rejects a forged cursor in the error envelope', async () => {
    clock.set('2026-11-23T08:00:00Z');
    const m = await memberWithContacts(t, [1, 2]);
    const all = await trail(m.headers);
    expect(all.length).toBeGreaterThanOrEqual(5);
    const seen: string[] = [];
    let cursor: string | null = null;
    do {
      const res = await t.app.inject({ method: 'GET', url: `/v1/audit?limit=2${cursor === null ? '' : `&cursor=${cursor}`}`, headers: m.headers });
      const body = res.json() as { data: Entry[]; pagination: { next_cursor: string | null; has_more: boolean } };
      expect(body.data.length).toBeLessThanOrEqual(2);
      seen.push(...body.data.map((e) => e.id));
      cursor = body.pagination.next_cursor;
      expect(body.pagination.has_more).toBe(cursor !== null);
    } while (cursor !== null);
    expect(seen).toEqual(all.map((e) => e.id));

    const bad = await t.app.inject({ method: 'GET', url: '/v1/audit?cursor=bm90LWEtY3Vyc29y', headers: m.headers });
    expect(bad.statusCode).toBe(400);
    expect(errorOf(bad.body).code).toBe('VALIDATION_ERROR');
    const unauth = await t.app.inject({ method: 'GET', url: '/v1/audit' });
    expect(unauth.statusCode).toBe(401);
  });

  it('shows a member only their own trail', async () => {
    const a = await memberWithContacts(t, [1]);
    const other = randomUUID();
    const theirs = await trail(await t.as(other));
    expect(theirs.every((e) => e.entity.id !== a.contacts[0]!.id && e.actor.id !== a.sub)).toBe(true);
  });

  it('takes the actor the app names for its transaction over the inferred one', async () => {
    const m = await memberWithContacts(t, [1]);
    await withTransaction(t.db.pool, async (tx) => {
      await setAuditActor(tx, { type: 'operator', id: 'ops-jane' });
      await tx.query('update schedules set grace_minutes = 10 where id = $1', [m.scheduleId]);
    });
    const e = (await trail(m.headers)).find((x) => x.action === 'schedule.updated')!;
    expect(e.actor).toEqual({ type: 'operator', id: 'ops-jane' });
  });

  it('refuses every update, delete and truncate, even by the owner, and grants the app roles no write but insert', async () => {
    const m = await memberWithContacts(t, [1]);
    await expect(t.db.pool.query(`update audit_log set action = 'x' where member_id = $1`, [m.sub])).rejects.toThrow(/append-only/);
    await expect(t.db.pool.query('delete from audit_log where member_id = $1', [m.sub])).rejects.toThrow(/append-only/);
    await expect(t.db.pool.query('truncate audit_log')).rejects.toThrow(/append-only/);
    // The purge setting opens deletes of deleted members' rows only.
    await expect(withTransaction(t.db.pool, async (tx) => {
      await tx.query(`select set_config('pruuf.audit_purge', 'deleted_members', true)`);
      await tx.query('delete from audit_log where member_id = $1', [m.sub]);
    })).rejects.toThrow(/append-only/);

    const { rows } = await t.db.pool.query<{ role: string; priv: string; has: boolean }>(
      `select r as role, p as priv, has_table_privilege(r, 'public.audit_log', p) as has
         from unnest(array['anon', 'authenticated', 'service_role']) r, unnest(array['UPDATE', 'DELETE', 'TRUNCATE', 'INSERT', 'SELECT']) p`);
    const granted = rows.filter((r) => r.has).map((r) => `${r.role}:${r.priv}`).sort();
    expect(granted).toEqual(['authenticated:SELECT', 'service_role:INSERT', 'service_role:SELECT']);
  });

  it('lets a member read only their own rows through row level security', async () => {
    const a = await memberWithContacts(t, [1]);
    const b = await memberWithContacts(t, [1]);
    const c = new pg.Client({ connectionString: t.db.url });
    await c.connect();
    try {
      await c.query('begin');
      await c.query('set local role authenticated');
      await c.query(`select set_config('request.jwt.claims', $1, true)`, [JSON.stringify({ sub: a.sub, role: 'authenticated' })]);
      const { rows } = await c.query<{ member_id: string }>('select distinct member_id from audit_log');
      expect(rows.map((r) => r.member_id)).toEqual([a.sub]);
      await expect(c.query(`update audit_log set action = 'x' where member_id = $1`, [b.sub])).rejects.toThrow(/permission denied/);
      await c.query('rollback');
    } finally {
      await c.end();
    }
  });
});
