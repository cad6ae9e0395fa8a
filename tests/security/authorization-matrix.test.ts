import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { randomInt, randomUUID } from 'node:crypto';
import type { InjectOptions } from 'fastify';
import { routeTable } from '../helpers/route-table.js';
import { signToken, unsignedToken } from '../helpers/tokens.js';
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
  'POST /webhooks/twilio/status': { kind: 'public', why: 'Twilio: X-Twilio-Signature instead of a bearer token', status: 403 },
  'POST /webhooks/twilio/inbound': { kind: 'public', why: 'Twilio: X-Twilio-Signature instead of a bearer token', status: 403 },
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

  it('saw only responses that conform to the served OpenAPI document', () => {
    expect(t.conformance).toEqual([]);
    if (t.checker.undeclared.size > 0) process.stdout.write(`error statuses not declared in the OpenAPI document: ${[...t.checker.undeclared].sort().join('; ')}\n`);
  });
});
