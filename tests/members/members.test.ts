import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { createSupabaseUserDeleter } from '../../src/members/supabase-admin.js';
import { errorOf, startTestApp, type TestApp } from '../helpers/app.js';

describe('GET and PATCH /v1/me', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await startTestApp();
  });
  afterAll(() => t.close());

  it('creates the profile on first call from the token claims, once', async () => {
    const sub = randomUUID();
    const headers = { authorization: `Bearer ${await t.token({ sub, email: 'ann@example.test' })}` };
    const first = await t.app.inject({ method: 'GET', url: '/v1/me', headers });
    expect(first.statusCode).toBe(200);
    expect(first.json()).toMatchObject({ id: sub, email: 'ann@example.test', display_name: null, time_zone: 'UTC', phone: null, phone_verified: false, sms_opted_out: false });
    const again = await t.app.inject({ method: 'GET', url: '/v1/me', headers });
    expect(again.json().created_at).toBe(first.json().created_at);
    const { rows } = await t.db.pool.query('select count(*)::int as n from members where id = $1', [sub]);
    expect(rows[0].n).toBe(1);
  });

  it('changes display name and time zone', async () => {
    const headers = await t.as(randomUUID());
    const res = await t.app.inject({ method: 'PATCH', url: '/v1/me', headers, payload: { display_name: ' Ann ', time_zone: 'Asia/Kolkata' } });
    expect(res.statusCode).toBe(200);
    expect(res.json()).toMatchObject({ display_name: 'Ann', time_zone: 'Asia/Kolkata' });
    const cleared = await t.app.inject({ method: 'PATCH', url: '/v1/me', headers, payload: { display_name: null } });
    expect(cleared.json()).toMatchObject({ display_name: null, time_zone: 'Asia/Kolkata' });
  });

  it('stores the phone in E.164 from what people type, returns it, and clears it with null', async () => {
    const headers = await t.as(randomUUID());
    const res = await t.app.inject({ method: 'PATCH', url: '/v1/me', headers, payload: { phone: '+44 (7700) 900-123' } });
    expect(res.statusCode).toBe(200);
    expect(res.json().phone).toBe('+447700900123');
    expect((await t.app.inject({ method: 'GET', url: '/v1/me', headers })).json().phone).toBe('+447700900123');
    const other = await t.app.inject({ method: 'PATCH', url: '/v1/me', headers, payload: { display_name: 'Ann' } });
    expect(other.json()).toMatchObject({ display_name: 'Ann', phone: '+447700900123' });
    const cleared = await t.app.inject({ method: 'PATCH', url: '/v1/me', headers, payload: { phone: null } });
    expect(cleared.json()).toMatchObject({ display_name: 'Ann', phone: null });
  });

  it("stores another member's phone unverified without a conflict, and changes neither profile otherwise", async () => {
    const a = await t.as(randomUUID());
    const b = await t.as(randomUUID());
    await t.app.inject({ method: 'PATCH', url: '/v1/me', headers: a, payload: { phone: '+447700900200' } });
    await t.app.inject({ method: 'PATCH', url: '/v1/me', headers: b, payload: { phone: '+447700900201', display_name: 'Bo' } });
    const res = await t.app.inject({ method: 'PATCH', url: '/v1/me', headers: b, payload: { phone: '+44 7700 900200', display_name: 'Bob' } });
    expect(res.statusCode).toBe(200);
    expect(res.json()).toMatchObject({ phone: '+447700900200', phone_verified: false, display_name: 'Bob' });
    expect((await t.app.inject({ method: 'GET', url: '/v1/me', headers: a })).json()).toMatchObject({ phone: '+447700900200', phone_verified: false });
  });

  it('forgets an SMS opt-out when the phone changes, and keeps it when the same phone is set again', async () => {
    const sub = randomUUID();
    const headers = await t.as(sub);
    await t.app.inject({ method: 'PATCH', url: '/v1/me', headers, payload: { phone: '+447700900300' } });
    await t.db.pool.query('update members set sms_opted_out = true where id = $1', [sub]);
    const same = await t.app.inject({ method: 'PATCH', url: '/v1/me', headers, payload: { phone: '+447700900300' } });
    expect(same.json().sms_opted_out).toBe(true);
    const changed = await t.app.inject({ method: 'PATCH', url: '/v1/me', headers, payload: { phone: '+447700900301' } });
    expect(changed.json()).toMatchObject({ phone: '+447700900301', sms_opted_out: false });
  });

  it.each([
    ['a phone without the country code', { phone: '07700 900123' }],
    ['a phone with letters', { phone: '+44 7700 CALLME' }],
    ['an unknown time zone', { time_zone: 'Mars/Olympus' }],
    ['an offset instead of a zone', { time_zone: 'UTC+2' }],
    ['an empty body', {}],
    ['an unknown field', { nickname: 'x' }],
    ['a name too long', { display_name: 'x'.repeat(101) }],
    ['a wrong type', { display_name: 42 }],
  ])('rejects %s with 400 and changes nothing', async (_name, payload) => {
    const sub = randomUUID();
    const headers = await t.as(sub);
    await t.app.inject({ method: 'GET', url: '/v1/me', headers });
    const before = await t.db.pool.query('select * from members where id = $1', [sub]);
    const res = await t.app.inject({ method: 'PATCH', url: '/v1/me', headers, payload });
    expect(res.statusCode).toBe(400);
    expect(errorOf(res.body).code).toBe('VALIDATION_ERROR');
    const after = await t.db.pool.query('select * from members where id = $1', [sub]);
    expect(after.rows).toEqual(before.rows);
  });
});

/** A local stand-in for Supabase Auth's admin endpoint, speaking its wire format. */
function supabaseStub(respond: (req: IncomingMessage) => number) {
  const calls: { method: string; url: string; apikey: string | undefined; authorization: string | undefined }[] = [];
  const server: Server = createServer((req, res) => {
    calls.push({ method: req.method ?? '', url: req.url ?? '', apikey: req.headers.apikey as string | undefined, authorization: req.headers.authorization });
    req.resume();
    req.on('end', () => {
      const code = respond(req);
      const body = code === 200 ? { id: req.url?.split('/').pop(), aud: 'authenticated' } : { code, msg: 'stub error', error_code: 'unexpected_failure' };
      res.writeHead(code, { 'content-type': 'application/json' }).end(JSON.stringify(body));
    });
  });
  return {
    calls,
    async start() {
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
      return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    },
    stop: () => new Promise((resolve) => server.close(resolve)),
  };
}

describe('DELETE /v1/me', () => {
  let t: TestApp;
  let failNext = false;
  const stub = supabaseStub(() => (failNext ? 500 : 200));
  beforeAll(async () => {
    const url = await stub.start();
    t = await startTestApp({ deleteAuthUser: createSupabaseUserDeleter(url, 'service-role-key-for-tests') });
  });
  afterAll(async () => {
    await t.close();
    await stub.stop();
  });

  it("erases the member's data and their Supabase Auth user", async () => {
    const sub = randomUUID();
    const headers = await t.as(sub);
    await t.app.inject({ method: 'POST', url: '/v1/devices', headers, payload: { token: `t-${randomUUID()}`, platform: 'ios' } });
    const res = await t.app.inject({ method: 'DELETE', url: '/v1/me', headers });
    expect(res.statusCode).toBe(204);
    const left = await t.db.pool.query('select (select count(*) from members where id = $1)::int + (select count(*) from devices where member_id = $1)::int as n', [sub]);
    expect(left.rows[0].n).toBe(0);
    const call = stub.calls.at(-1)!;
    expect(call).toMatchObject({ method: 'DELETE', url: `/auth/v1/admin/users/${sub}`, apikey: 'service-role-key-for-tests' });
    expect(call.authorization).toBe('Bearer service-role-key-for-tests');
  });

  it('refuses while a subscription will charge again, and goes ahead once it is set to end', async () => {
    const sub = randomUUID();
    const headers = await t.as(sub);
    await t.app.inject({ method: 'GET', url: '/v1/me', headers });
    const subId = `sub_${sub.slice(0, 8)}`;
    await t.db.pool.query(
      `insert into subscriptions (id, member_id, stripe_customer_id, plan, status, state_at) values ($1, $2, 'cus_del', 'plus', 'active', now())`, [subId, sub],
    );
    const refused = await t.app.inject({ method: 'DELETE', url: '/v1/me', headers });
    expect(refused.statusCode).toBe(409);
    expect(errorOf(refused.body)).toMatchObject({ code: 'CONFLICT', details: { subscriptions: 1 } });
    expect((await t.db.pool.query('select count(*)::int as n from members where id = $1', [sub])).rows[0].n).toBe(1);

    await t.db.pool.query(`update subscriptions set cancel_at_period_end = true where id = $1`, [subId]);
    expect((await t.app.inject({ method: 'DELETE', url: '/v1/me', headers })).statusCode).toBe(204);
  });

  it('keeps everything and answers 503 when Supabase Auth refuses, so the client can retry', async () => {
    const sub = randomUUID();
    const headers = await t.as(sub);
    await t.app.inject({ method: 'GET', url: '/v1/me', headers });
    failNext = true;
    const res = await t.app.inject({ method: 'DELETE', url: '/v1/me', headers });
    failNext = false;
    expect(res.statusCode).toBe(503);
    expect(res.headers['retry-after']).toBeDefined();
    expect(errorOf(res.body).code).toBe('SERVICE_UNAVAILABLE');
    const left = await t.db.pool.query('select count(*)::int as n from members where id = $1', [sub]);
    expect(left.rows[0].n).toBe(1);
  });
});
