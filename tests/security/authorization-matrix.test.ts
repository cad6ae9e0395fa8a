import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { randomInt, randomUUID } from 'node:crypto';
import type { InjectOptions } from 'fastify';
import { routeTable } from '../helpers/route-table.js';
import { signLink } from '../../src/links/tokens.js';
import { errorOf } from '../helpers/app.js';
import { signToken, TEST_LINK_SECRET, unsignedToken } from '../helpers/tokens.js';
import { makeWorld, secretsOf, startSecurityApp, type SecurityApp, type World } from './world.js';

/**
 * The authorization matrix, derived from Fastify's route table: every route the app serves must
 * have a rule below, so a route added later without one fails here. Member routes are checked for
 * five callers: no token, an expired token, a token for another audience, another member (with
 * the owner's ids), and the owner. No answer to anyone but the owner may carry the owner's data.
 */

type Req = { url: string; payload?: unknown };
type MemberRule = { kind: 'member'; owner: number; other: number; req: (w: World, fresh: Fresh) => Promise<Req> | Req };
type PublicRule = { kind: 'public'; why: string; status: number; url?: string; leaks?: 'may show contact addresses' };
type Fresh = { contact: () => Promise<string>; schedule: () => Promise<string>; pause: () => Promise<string>; device: () => Promise<string>; incident: () => Promise<string> };

const BOGUS_LINK = 'AQEAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA';
const m = (owner: number, other: number, req: MemberRule['req']): MemberRule => ({ kind: 'member', owner, other, req });
const own = (url: string, payload?: unknown) => () => ({ url, ...(payload === undefined ? {} : { payload }) });

const RULES: Record<string, MemberRule | PublicRule> = {
  'GET /v1/me': m(200, 200, own('/v1/me')),
  'PATCH /v1/me': m(200, 200, own('/v1/me', { time_zone: 'Europe/London' })),
  // A fresh number each time: the answer never depends on who else uses it.
  'POST /v1/me/phone/verification': m(202, 202, () => ({ url: '/v1/me/phone/verification', payload: { phone: `+4477009${String(randomInt(10_000, 100_000))}` } })),
  // No code was asked for that number by this caller: nothing to confirm, whoever asks.
  'POST /v1/me/phone/verification/confirm': m(400, 400, () => ({ url: '/v1/me/phone/verification/confirm', payload: { phone: `+4477009${String(randomInt(10_000, 100_000))}`, code: '123456' } })),
  'GET /v1/devices': m(200, 200, own('/v1/devices')),
  'POST /v1/devices': m(201, 201, () => ({ url: '/v1/devices', payload: { token: `push-${randomUUID()}`, platform: 'ios' } })),
  'DELETE /v1/devices/:id': m(204, 404, async (_w, f) => ({ url: `/v1/devices/${await f.device()}` })),
  'GET /v1/billing': m(200, 200, own('/v1/billing')),
  'POST /v1/billing/checkout': m(200, 200, own('/v1/billing/checkout', { plan: 'plus' })),
  // The other member ran its own checkout in the cell before, so it has a billing account of its own.
  'POST /v1/billing/portal': m(200, 200, own('/v1/billing/portal')),
  'GET /v1/contacts': m(200, 200, own('/v1/contacts')),
  'POST /v1/contacts': m(201, 201, () => ({ url: '/v1/contacts', payload: { name: 'New contact', email: `${randomUUID()}@example.test` } })),
  'GET /v1/contacts/:id': m(200, 404, (w) => ({ url: `/v1/contacts/${w.ids.contact}` })),
  'PATCH /v1/contacts/:id': m(200, 404, (w) => ({ url: `/v1/contacts/${w.ids.contact}`, payload: { tier: 2 } })),
  'DELETE /v1/contacts/:id': m(204, 404, async (_w, f) => ({ url: `/v1/contacts/${await f.contact()}` })),
  'POST /v1/check-ins': m(201, 201, own('/v1/check-ins', {})),
  'GET /v1/check-ins': m(200, 200, own('/v1/check-ins')),
  'GET /v1/schedules': m(200, 200, own('/v1/schedules')),
  'POST /v1/schedules': m(201, 201, own('/v1/schedules', { kind: 'daily', local_time: '08:00', time_zone: 'UTC' })),
  'GET /v1/schedules/:id': m(200, 404, (w) => ({ url: `/v1/schedules/${w.ids.schedule}` })),
  'PATCH /v1/schedules/:id': m(200, 404, (w) => ({ url: `/v1/schedules/${w.ids.schedule}`, payload: { grace_minutes: 45 } })),
  'DELETE /v1/schedules/:id': m(204, 404, async (_w, f) => ({ url: `/v1/schedules/${await f.schedule()}` })),
  'POST /v1/sos': m(201, 201, own('/v1/sos', {})),
  'GET /v1/pauses': m(200, 200, own('/v1/pauses')),
  'POST /v1/pauses': m(201, 201, own('/v1/pauses', { from: new Date(Date.now() + 100 * 86_400_000).toISOString(), until: new Date(Date.now() + 101 * 86_400_000).toISOString() })),
  'DELETE /v1/pauses/:id': m(204, 404, async (_w, f) => ({ url: `/v1/pauses/${await f.pause()}` })),
  'GET /v1/watching': m(200, 200, own('/v1/watching')),
  'GET /v1/audit': m(200, 200, own('/v1/audit')),
  'GET /v1/incidents': m(200, 200, own('/v1/incidents')),
  'GET /v1/incidents/:id': m(200, 404, (w) => ({ url: `/v1/incidents/${w.ids.incident}` })),
  'POST /v1/incidents/:id/resolve': m(200, 404, async (_w, f) => ({ url: `/v1/incidents/${await f.incident()}/resolve` })),
  // Last: the owner deletes itself, and the other member its own account.
  'DELETE /v1/me': m(204, 204, own('/v1/me')),

  'GET /healthz': { kind: 'public', why: 'liveness probe for the orchestrator; says only "ok"', status: 200 },
  'GET /readyz': { kind: 'public', why: 'readiness probe; names dependencies, never data', status: 200 },
  'GET /metrics': { kind: 'public', why: 'Prometheus scrape (network-restricted in production); counters only', status: 200 },
  'GET /openapi.json': { kind: 'public', why: 'the API contract is public', status: 200 },
  'GET /docs': { kind: 'public', why: 'API documentation UI', status: 200 },
  'GET /docs/*': { kind: 'public', why: 'API documentation UI assets', status: 404, url: '/docs/nothing-here' },
  'GET /docs/static/index.html': { kind: 'public', why: 'API documentation UI (redirects to /docs)', status: 302 },
  'GET /docs/static/swagger-initializer.js': { kind: 'public', why: 'API documentation UI', status: 200 },
  'GET /docs/json': { kind: 'public', why: 'the API contract is public', status: 200 },
  'GET /docs/yaml': { kind: 'public', why: 'the API contract is public', status: 200 },
  'GET /dev/outbox': { kind: 'public', why: 'development only (never registered in production): what the dev channels "sent"', status: 200, leaks: 'may show contact addresses' },
  'GET /billing/return': { kind: 'public', why: "Stripe's return page after checkout: static text", status: 200 },
  'OPTIONS *': { kind: 'public', why: 'CORS preflight', status: 404, url: '/v1/me' },
  'POST /webhooks/stripe': { kind: 'public', why: 'Stripe: Stripe-Signature over the raw body instead of a bearer token', status: 400 },
  'POST /webhooks/sendgrid/events': { kind: 'public', why: 'SendGrid: signed event webhook instead of a bearer token', status: 401 },
  'POST /webhooks/postmark/events': { kind: 'public', why: 'Postmark: HTTP basic auth (POSTMARK_WEBHOOK_USER/PASSWORD) instead of a bearer token', status: 401 },
  'POST /webhooks/twilio/status': { kind: 'public', why: 'Twilio: X-Twilio-Signature instead of a bearer token', status: 403 },
  'POST /webhooks/twilio/inbound': { kind: 'public', why: 'Twilio: X-Twilio-Signature instead of a bearer token', status: 403 },
  'POST /webhooks/vonage/status': { kind: 'public', why: 'Vonage: signed delivery receipt (sig + timestamp) instead of a bearer token', status: 401 },
  'GET /webhooks/vonage/status': { kind: 'public', why: 'Vonage: signed delivery receipt (sig + timestamp) instead of a bearer token', status: 401 },
  'POST /webhooks/twilio/voice/twiml': { kind: 'public', why: 'Twilio call: X-Twilio-Signature and a signed call token instead of a bearer token', status: 403 },
  'POST /webhooks/twilio/voice/gather': { kind: 'public', why: 'Twilio call: X-Twilio-Signature and a signed call token instead of a bearer token', status: 403 },
  'POST /webhooks/twilio/voice/status': { kind: 'public', why: 'Twilio call: X-Twilio-Signature and a signed call token instead of a bearer token', status: 403 },
  'GET /webhooks/vonage/voice/answer': { kind: 'public', why: 'Vonage call: its bearer JWT (HS256, the signature secret) and a signed call token instead of a member token', status: 401 },
  'POST /webhooks/vonage/voice/answer': { kind: 'public', why: 'Vonage call: its bearer JWT (HS256, the signature secret) and a signed call token instead of a member token', status: 401 },
  'POST /webhooks/vonage/voice/input': { kind: 'public', why: 'Vonage call: its bearer JWT (HS256, the signature secret) and a signed call token instead of a member token', status: 401 },
  'POST /webhooks/vonage/voice/event': { kind: 'public', why: 'Vonage call: its bearer JWT (HS256, the signature secret) and a signed call token instead of a member token', status: 401 },
  'GET /i/:token': { kind: 'public', why: 'contact invitation page: the signed link is the credential', status: 404 },
  'POST /i/:token/accept': { kind: 'public', why: 'contact invitation answer: the signed link is the credential', status: 404 },
  'POST /i/:token/decline': { kind: 'public', why: 'contact invitation answer: the signed link is the credential', status: 404 },
  'GET /c/:token': { kind: 'public', why: 'check-in page from a reminder: the signed link is the credential', status: 404 },
  'POST /c/:token': { kind: 'public', why: 'check-in through a reminder link: the signed link is the credential', status: 404 },
  'GET /a/:token': { kind: 'public', why: 'alert page for a contact: the signed link is the credential', status: 404 },
  'POST /a/:token/ack': { kind: 'public', why: 'acknowledgement by a contact: the signed link is the credential', status: 404 },
  'POST /a/:token/escalate': { kind: 'public', why: 'escalation by a contact: the signed link is the credential', status: 404 },
};

describe('authorization matrix over the route table', () => {
  let t: SecurityApp;
  let owner: World;
  let other: World;
  let cells = 0;
  beforeAll(async () => {
    t = await startSecurityApp();
    owner = await makeWorld(t, 'owner');
    other = await makeWorld(t, 'other');
  });
  afterAll(async () => {
    process.stdout.write(`authorization matrix: ${cells} cells checked\n`);
    await t.shutdown();
  });

  const routes = () => routeTable(t.app).filter((r) => r.method !== 'HEAD');
  const key = (r: { method: string; url: string }) => `${r.method} ${r.url}`;

  it('has a rule for every route the app serves, and the OpenAPI document agrees on which need a token', () => {
    const missing = routes().map(key).filter((k) => RULES[k] === undefined);
    expect(missing).toEqual([]);
    const stale = Object.keys(RULES).filter((k) => !routes().some((r) => key(r) === k));
    expect(stale).toEqual([]);
    for (const [k, rule] of Object.entries(RULES)) {
      const [method, url] = k.split(' ') as [string, string];
      if (!t.checker.hasOperation(method, url)) continue;
      const path = t.checker.doc.paths[url.replace(/:([a-z]+)/g, '{$1}')]![method.toLowerCase()]!;
      const bearer = (path.security ?? []).some((s) => 'bearerAuth' in s);
      const required = bearer && !(path.security ?? []).some((s) => Object.keys(s).length === 0);
      expect({ k, required }).toEqual({ k, required: rule.kind === 'member' });
    }
  });

  it("lets no other member take the owner's push device by its token: the answer is a fresh token's, and the owner keeps its device", async () => {
    const ownerToken = `push-${owner.marker}`;
    const list = async (w: World) => (await t.call('/v1/devices', { method: 'GET', url: '/v1/devices', headers: w.headers })).json().data as { id: string }[];
    const before = await list(owner);
    expect(before.map((d) => d.id)).toContain(owner.ids.device);
    const shape = (res: { statusCode: number; body: string; json: () => Record<string, unknown> }) => ({ status: res.statusCode, keys: Object.keys(res.json()).sort() });
    const post = (w: World, payload: Record<string, unknown>) => t.call('/v1/devices', { method: 'POST', url: '/v1/devices', headers: w.headers, payload });
    const fresh = shape(await post(other, { token: `push-${randomUUID()}`, platform: 'ios' }));
    expect(fresh).toEqual({ status: 201, keys: ['created_at', 'device_secret', 'id', 'last_seen_at', 'platform'] });
    for (const extra of [{}, { previous_device_secret: 'guessed' }, { previous_device_secret: 'A'.repeat(43) }]) {
      const res = await post(other, { token: ownerToken, platform: 'android', ...extra });
      cells += 1;
      expect(shape(res)).toEqual(fresh);
      for (const secret of secretsOf(owner)) expect(res.body).not.toContain(secret);
      await t.call('/v1/devices/:id', { method: 'DELETE', url: `/v1/devices/${String(res.json().id)}`, headers: other.headers });
    }
    expect(await list(owner)).toEqual(before);
  });

  it('invitations: an answered one cannot be answered again by anyone else, nor a member accept their own contact\'s, and nothing moves', async () => {
    // Worlds of their own: the other cells expect owner and other not to watch each other.
    const [inviter, taker, third] = [await makeWorld(t, 'inviter'), await makeWorld(t, 'taker'), await makeWorld(t, 'third')];
    const { rows: [c] } = await t.db.pool.query<{ invited_at: Date }>('select invited_at from contacts where id = $1', [inviter.ids.contact]);
    const link = signLink(TEST_LINK_SECRET, 'invite', inviter.ids.contact, new Date(Date.now() + 86_400_000), String(c!.invited_at.getTime()));
    const answer = (what: 'accept' | 'decline', headers?: Record<string, string>) =>
      t.call('/i/:token/accept', { method: 'POST', url: `/i/${link}/${what}`, headers: { accept: 'application/json', ...headers } });
    const state = async () => (await t.db.pool.query('select status, linked_user_id from contacts where id = $1', [inviter.ids.contact])).rows[0];
    const own = await answer('accept', inviter.headers);
    cells += 1;
    expect(own.statusCode).toBe(409);
    expect(own.json().error.code).toBe('OWN_INVITATION');
    const before = await state();
    const first = await answer('accept', taker.headers);
    expect(first.statusCode).toBe(200);
    const linked = await state();
    expect(linked).toMatchObject({ status: 'active', linked_user_id: taker.sub });
    for (const [what, headers] of [['accept', third.headers], ['decline', undefined], ['decline', taker.headers]] as const) {
      const res = await answer(what, headers);
      cells += 1;
      expect({ what, status: res.statusCode, code: res.json().error?.code }).toEqual({ what, status: 409, code: 'ALREADY_ANSWERED' });
      expect(await state()).toEqual(linked);
    }
    expect(before).toMatchObject({ status: 'invited' });
  });

  it('refuses no, expired, wrong-audience and unsigned tokens with 401, another member with 404 (or its own data), serves the owner, and leaks nothing across members', async () => {
    const expired = { authorization: `Bearer ${await signToken({ sub: owner.sub, expiresIn: Math.floor(Date.now() / 1000) - 60 })}` };
    const wrongAud = { authorization: `Bearer ${await signToken({ sub: owner.sub, aud: 'anon' })}` };
    const unsigned = { authorization: `Bearer ${unsignedToken(owner.sub as ReturnType<typeof randomUUID>)}` };
    const create = async (url: string, payload: unknown) => {
      const res = await t.call(url, { method: 'POST', url, headers: owner.headers, payload: payload as InjectOptions['payload'] });
      return String(res.json().id);
    };
    const fresh: Fresh = {
      contact: () => create('/v1/contacts', { name: 'Spare', email: `${randomUUID()}@example.test` }),
      schedule: () => create('/v1/schedules', { kind: 'daily', local_time: '07:00' }),
      pause: () => create('/v1/pauses', { from: new Date(Date.now() + 200 * 86_400_000).toISOString(), until: new Date(Date.now() + 201 * 86_400_000).toISOString() }),
      device: () => create('/v1/devices', { token: `push-${randomUUID()}`, platform: 'web' }),
      incident: () => create('/v1/sos', {}),
    };
    const ownerSecrets = secretsOf(owner);
    const failures: string[] = [];
    const member = Object.entries(RULES).filter((e): e is [string, MemberRule] => e[1].kind === 'member');
    for (const [k, rule] of member) {
      const [method, route] = k.split(' ') as [InjectOptions['method'] & string, string];
      const cell = async (who: string, headers: Record<string, string>, expected: number, leakCheck: boolean) => {
        const { url, payload } = await rule.req(owner, fresh);
        const res = await t.call(route, { method, url, headers, ...(payload === undefined ? {} : { payload: payload as InjectOptions['payload'] }) });
        cells += 1;
        if (res.statusCode !== expected) failures.push(`${k} as ${who}: ${res.statusCode} (expected ${expected}) ${res.body.slice(0, 200)}`);
        if (leakCheck) for (const s of ownerSecrets) if (res.body.includes(s)) failures.push(`${k} as ${who}: body carries the owner's ${s}`);
      };
      await cell('no token', {}, 401, true);
      await cell('an expired token', expired, 401, true);
      await cell('a token for another audience', wrongAud, 401, true);
      await cell('an unsigned (alg none) token', unsigned, 401, true);
      await cell('another member', other.headers, rule.other, true);
      await cell('the owner', owner.headers, rule.owner, false);
      if (method === 'GET') {
        const head = await t.app.inject({ method: 'HEAD', url: (await rule.req(owner, fresh)).url });
        cells += 1;
        if (head.statusCode !== 401) failures.push(`HEAD ${route} without a token: ${head.statusCode}`);
      }
    }
    expect(failures).toEqual([]);
    // The owner deleted itself last: nothing of it is left for anyone.
    const left = await t.db.pool.query('select 1 from contacts where member_id = $1 union all select 1 from schedules where member_id = $1', [owner.sub]);
    expect(left.rowCount).toBe(0);
  });

  it('answers public routes the same with or without a token, and their bodies carry no member data', async () => {
    const w = await makeWorld(t, 'public');
    const failures: string[] = [];
    for (const [k, rule] of Object.entries(RULES)) {
      if (rule.kind !== 'public') continue;
      const [method, route] = k.split(' ') as [InjectOptions['method'] & string, string];
      const url = rule.url ?? route.replace(':token', BOGUS_LINK).replace('*', 'x');
      for (const headers of [{}, w.headers]) {
        const res = await t.call(route, { method, url, headers: { ...headers, ...(method === 'OPTIONS' ? { origin: 'https://evil.example', 'access-control-request-method': 'GET' } : {}) }, ...(method === 'POST' ? { payload: {} } : {}) });
        cells += 1;
        if (res.statusCode !== rule.status) failures.push(`${k} (${Object.keys(headers).length > 0 ? 'with' : 'without'} a token): ${res.statusCode}, expected ${rule.status}`);
        if (rule.leaks === undefined) for (const s of secretsOf(w)) if (res.body.includes(s)) failures.push(`${k}: body carries member data ${s}`);
      }
    }
    expect(failures).toEqual([]);
  });

  it('deleted accounts: every link of the account answers 410 ACCOUNT_DELETED (also after its token re-creates the profile), its trail is unreadable, and it watches nobody', async () => {
    const host = await makeWorld(t, 'host');
    const gone = await makeWorld(t, 'gone');
    // The deleted account is also the host's linked contact (a watcher).
    await t.db.pool.query(`update contacts set status = 'active', linked_user_id = $1 where id = $2`, [gone.sub, host.ids.contact]);
    expect((await t.call('/v1/watching', { method: 'GET', url: '/v1/watching', headers: gone.headers })).json().data).toHaveLength(1);
    // The links its messages carried: a reminder's check-in link, its contact's invitation and alert links.
    const later = new Date(Date.now() + 86_400_000);
    const { rows: [c] } = await t.db.pool.query<{ invited_at: Date }>('select invited_at from contacts where id = $1', [gone.ids.contact]);
    const { rows: [alert] } = await t.db.pool.query<{ body: string }>(
      `select body from deliveries where incident_id = $1 and contact_id = $2 and kind = 'alert' and channel = 'email'`, [gone.ids.incident, gone.ids.contact]);
    const links: Record<string, string> = {
      '/c/': signLink(TEST_LINK_SECRET, 'checkin', gone.sub, later),
      '/i/': signLink(TEST_LINK_SECRET, 'invite', gone.ids.contact, later, String(c!.invited_at.getTime())),
      '/a/': /\/a\/([\w-]+)/.exec(alert!.body)![1]!,
    };
    const linkRoutes = routes().filter((r) => r.url.includes(':token'));
    expect(linkRoutes.length).toBeGreaterThanOrEqual(8);
    const failures: string[] = [];
    const check = async (when: string) => {
      for (const r of linkRoutes) {
        const prefix = Object.keys(links).find((p) => r.url.startsWith(p));
        if (prefix === undefined) { failures.push(`${key(r)}: no link of a deleted account checked for this route`); continue; }
        const res = await t.call(r.url, { method: r.method as 'GET', url: r.url.replace(':token', links[prefix]!), ...(r.method === 'POST' ? { payload: {} } : {}) });
        cells += 1;
        const code = res.statusCode === 410 ? errorOf(res.body).code : res.body.slice(0, 120);
        if (res.statusCode !== 410 || code !== 'ACCOUNT_DELETED') failures.push(`${key(r)} ${when}: ${res.statusCode} ${code}`);
        for (const secret of secretsOf(gone)) if (res.body.includes(secret)) failures.push(`${key(r)} ${when}: body carries ${secret}`);
      }
    };
    expect((await t.call('/v1/me', { method: 'DELETE', url: '/v1/me', headers: gone.headers })).statusCode).toBe(204);
    await check('after the deletion');
    expect((await t.call('/v1/audit', { method: 'GET', url: '/v1/audit', headers: gone.headers })).json().data).toEqual([]);
    expect((await t.call('/v1/me', { method: 'GET', url: '/v1/me', headers: gone.headers })).statusCode).toBe(200);
    await check('after its token re-created the profile');
    const audit = (await t.call('/v1/audit', { method: 'GET', url: '/v1/audit', headers: gone.headers })).json().data as { action: string }[];
    expect(audit.map((e) => e.action)).toEqual(['member.created']);
    expect((await t.call('/v1/watching', { method: 'GET', url: '/v1/watching', headers: gone.headers })).json().data).toEqual([]);
    expect((await t.call('/v1/contacts/:id', { method: 'GET', url: `/v1/contacts/${host.ids.contact}`, headers: host.headers })).json().linked).toBe(false);
    expect(failures).toEqual([]);
  });

  it('saw only responses that conform to the served OpenAPI document', () => {
    expect(t.conformance).toEqual([]);
    if (t.checker.undeclared.size > 0) process.stdout.write(`error statuses not declared in the OpenAPI document: ${[...t.checker.undeclared].sort().join('; ')}\n`);
  });
});
