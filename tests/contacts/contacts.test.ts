import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { errorOf, startTestApp, type TestApp } from '../helpers/app.js';

describe('contacts', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await startTestApp({ env: { FREE_PLAN_CONTACTS: '3' } });
  });
  afterAll(() => t.close());

  it('adds a contact with a normalised phone and email, invited, and queues the invitation', async () => {
    const sub = randomUUID();
    const headers = await t.as(sub);
    const res = await t.app.inject({ method: 'POST', url: '/v1/contacts', headers, payload: { name: 'Bea', email: ' Bea@Example.TEST ', phone: '+44 (7700) 900-123' } });
    expect(res.statusCode).toBe(201);
    const c = res.json();
    expect(c).toMatchObject({ name: 'Bea', email: 'bea@example.test', phone: '+447700900123', tier: 1, status: 'invited', notify_on_check_in: false, linked: false });
    // Invited contacts get alerts by email only: no SMS without consent.
    expect(c).toMatchObject({ channels: ['email'], reachable: true, unreachable_reason: null });
    // The invitation asks for that consent on every address, SMS included, on the free plan too.
    const { rows } = await t.db.pool.query('select kind, channel, address, body from deliveries where contact_id = $1 order by channel', [c.id]);
    expect(rows).toHaveLength(2);
    expect(rows[0]).toMatchObject({ kind: 'invitation', channel: 'email', address: 'bea@example.test' });
    expect(rows[1]).toMatchObject({ kind: 'invitation', channel: 'sms', address: '+447700900123' });
    for (const r of rows) expect(r.body).toMatch(/http:\/\/pruuf\.test\/i\/[\w-]+/);
  });

  it('lists, reads, changes and removes contacts, only the owner', async () => {
    const owner = await t.as(randomUUID());
    const other = await t.as(randomUUID());
    const created = (await t.app.inject({ method: 'POST', url: '/v1/contacts', headers: owner, payload: { name: 'Cy', email: 'cy@example.test', tier: 2 } })).json();
    expect((await t.app.inject({ method: 'GET', url: '/v1/contacts', headers: owner })).json().data.map((c: { id: string }) => c.id)).toEqual([created.id]);
    expect((await t.app.inject({ method: 'GET', url: '/v1/contacts', headers: other })).json().data).toEqual([]);
    for (const [method, payload] of [['GET', undefined], ['PATCH', { tier: 3 }], ['DELETE', undefined]] as const) {
      const res = await t.app.inject({ method, url: `/v1/contacts/${created.id}`, headers: other, payload });
      expect(res.statusCode).toBe(404);
      expect(errorOf(res.body).code).toBe('NOT_FOUND');
    }
    const patched = await t.app.inject({ method: 'PATCH', url: `/v1/contacts/${created.id}`, headers: owner, payload: { tier: 3, notify_on_check_in: true } });
    expect(patched.json()).toMatchObject({ tier: 3, notify_on_check_in: true, status: 'invited' });
    expect((await t.app.inject({ method: 'DELETE', url: `/v1/contacts/${created.id}`, headers: owner })).statusCode).toBe(204);
    expect((await t.app.inject({ method: 'GET', url: `/v1/contacts/${created.id}`, headers: owner })).statusCode).toBe(404);
  });

  it.each([
    ['no name', { email: 'a@example.test' }],
    ['neither email nor phone', { name: 'A' }],
    ['a bad email', { name: 'A', email: 'not-an-email' }],
    ['a local phone number', { name: 'A', phone: '07700 900123' }],
    ['a tier out of range', { name: 'A', email: 'a@example.test', tier: 4 }],
    ['an unknown field', { name: 'A', email: 'a@example.test', role: 'admin' }],
  ])('rejects %s with 400 and creates nothing', async (_name, payload) => {
    const sub = randomUUID();
    const res = await t.app.inject({ method: 'POST', url: '/v1/contacts', headers: await t.as(sub), payload });
    expect(res.statusCode).toBe(400);
    expect(errorOf(res.body).code).toBe('VALIDATION_ERROR');
    const { rows } = await t.db.pool.query('select count(*)::int as n from contacts where member_id = $1', [sub]);
    expect(rows[0].n).toBe(0);
  });

  it('refuses a duplicate address with 409', async () => {
    const headers = await t.as(randomUUID());
    await t.app.inject({ method: 'POST', url: '/v1/contacts', headers, payload: { name: 'D', email: 'd@example.test' } });
    const dup = await t.app.inject({ method: 'POST', url: '/v1/contacts', headers, payload: { name: 'D again', email: 'D@example.test' } });
    expect(dup.statusCode).toBe(409);
    expect(errorOf(dup.body).code).toBe('CONFLICT');
  });

  it('enforces the plan limit with 402 PLAN_LIMIT, even for concurrent adds', async () => {
    const sub = randomUUID();
    const headers = await t.as(sub);
    const results = await Promise.all(
      Array.from({ length: 6 }, (_, i) => t.app.inject({ method: 'POST', url: '/v1/contacts', headers, payload: { name: `C${i}`, email: `c${i}@example.test` } })),
    );
    const codes = results.map((r) => r.statusCode).sort();
    expect(codes).toEqual([201, 201, 201, 402, 402, 402]);
    const limited = results.find((r) => r.statusCode === 402)!;
    expect(errorOf(limited.body)).toMatchObject({ code: 'PLAN_LIMIT' });
    const { rows } = await t.db.pool.query('select count(*)::int as n from contacts where member_id = $1', [sub]);
    expect(rows[0].n).toBe(3);
  });

  it('asks for fresh consent when the email changes', async () => {
    const headers = await t.as(randomUUID());
    const c = (await t.app.inject({ method: 'POST', url: '/v1/contacts', headers, payload: { name: 'E', email: 'e1@example.test' } })).json();
    await t.db.pool.query(`update contacts set status = 'active' where id = $1`, [c.id]);
    const patched = await t.app.inject({ method: 'PATCH', url: `/v1/contacts/${c.id}`, headers, payload: { email: 'e2@example.test' } });
    expect(patched.json()).toMatchObject({ status: 'invited', email: 'e2@example.test' });
    const { rows } = await t.db.pool.query(`select address from deliveries where contact_id = $1 and kind = 'invitation' order by created_at`, [c.id]);
    expect(rows.map((r) => r.address)).toEqual(['e1@example.test', 'e2@example.test']);
    const both = await t.app.inject({ method: 'PATCH', url: `/v1/contacts/${c.id}`, headers, payload: { email: null } });
    expect(both.statusCode).toBe(400);
  });
});
