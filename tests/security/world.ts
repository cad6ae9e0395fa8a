import { randomBytes, randomUUID } from 'node:crypto';
import type { InjectOptions, LightMyRequestResponse } from 'fastify';
import { startBillingApp, type BillingTest } from '../billing/helpers.js';
import type { TestAppOptions } from '../helpers/app.js';
import { OpenApiChecker } from '../helpers/openapi-check.js';
import { signToken } from '../helpers/tokens.js';

/** Twilio's webhooks exist only with credentials; the fuzz and the matrix must see every route. */
export const TWILIO_ENV = {
  TWILIO_ACCOUNT_SID: `AC${'0'.repeat(32)}`,
  TWILIO_AUTH_TOKEN: 'twilio-auth-token-for-security-tests',
  TWILIO_FROM_NUMBER: '+447700900100',
};

/** With a signature secret Vonage's receipts get past "not configured" to the signature check. */
export const VONAGE_ENV = { VONAGE_SIGNATURE_SECRET: 'vonage-signature-secret-for-security-tests' };

export type SecurityApp = BillingTest & {
  checker: OpenApiChecker;
  /** Every problem a response had against the OpenAPI document, for one assertion at the end. */
  conformance: string[];
  /** inject, then check the response against the document under the given route template. */
  call: (route: string, opts: InjectOptions) => Promise<LightMyRequestResponse>;
};

export async function startSecurityApp(opts: TestAppOptions = {}): Promise<SecurityApp> {
  const t = await startBillingApp({
    ...opts,
    env: { ...TWILIO_ENV, ...VONAGE_ENV, FREE_PLAN_CONTACTS: '50', ...opts.env },
    // Which route answered, so a response is checked against that route's schema (a URL with an
    // empty id can land on the list route).
    extend: (app) => {
      app.addHook('onSend', async (req, reply) => {
        void reply.header('x-test-route', req.routeOptions.url ?? '');
      });
      opts.extend?.(app);
    },
  });
  const checker = await OpenApiChecker.load(t.app);
  const conformance: string[] = [];
  return {
    ...t,
    checker,
    conformance,
    call: async (route, o) => {
      const res = await t.app.inject(o);
      const answered = res.headers['x-test-route'];
      conformance.push(...checker.problems(String(o.method ?? 'GET'), typeof answered === 'string' && answered !== '' ? answered : route, res));
      return res;
    },
  };
}

/** A member with one of everything, and markers that must never appear in another caller's answer. */
export type World = {
  sub: string;
  headers: { authorization: string };
  marker: string;
  contactEmail: string;
  contactPhone: string;
  ids: { contact: string; schedule: string; pause: string; device: string; incident: string; checkIn: string };
};

export async function makeWorld(t: SecurityApp, label = 'owner'): Promise<World> {
  const sub = randomUUID();
  const headers = { authorization: `Bearer ${await signToken({ sub, email: `${label}-${sub.slice(0, 6)}@example.test` })}` };
  const marker = `${label}-${randomBytes(6).toString('hex')}`;
  const contactEmail = `${marker}@contacts.example.test`;
  const contactPhone = `+4477009${String(Math.floor(Math.random() * 90_000) + 10_000)}`;
  const ok = async (route: string, o: InjectOptions, status: number) => {
    const res = await t.call(route, { ...o, headers: { ...headers, ...o.headers } });
    if (res.statusCode !== status) throw new Error(`${o.method} ${o.url}: ${res.statusCode} ${res.body}`);
    return res.json() as Record<string, unknown>;
  };
  await ok('/v1/me', { method: 'PATCH', url: '/v1/me', payload: { display_name: marker } }, 200);
  const contact = await ok('/v1/contacts', { method: 'POST', url: '/v1/contacts', payload: { name: `${marker} contact`, email: contactEmail, phone: contactPhone } }, 201);
  const schedule = await ok('/v1/schedules', { method: 'POST', url: '/v1/schedules', payload: { kind: 'daily', local_time: '09:30', time_zone: 'UTC' } }, 201);
  const until = new Date(Date.now() + 30 * 86_400_000).toISOString();
  const from = new Date(Date.now() + 20 * 86_400_000).toISOString();
  const pause = await ok('/v1/pauses', { method: 'POST', url: '/v1/pauses', payload: { from, until, reason: marker } }, 201);
  const device = await ok('/v1/devices', { method: 'POST', url: '/v1/devices', payload: { token: `push-${marker}`, platform: 'android' } }, 201);
  const checkIn = await ok('/v1/check-ins', { method: 'POST', url: '/v1/check-ins', payload: { note: marker } }, 201);
  const incident = await ok('/v1/sos', { method: 'POST', url: '/v1/sos', payload: { note: marker } }, 201);
  return {
    sub, headers, marker, contactEmail, contactPhone,
    ids: { contact: String(contact.id), schedule: String(schedule.id), pause: String(pause.id), device: String(device.id), incident: String(incident.id), checkIn: String(checkIn.id) },
  };
}

/** Everything of `w` that must not show up in someone else's response. */
export function secretsOf(w: World): string[] {
  return [w.sub, w.marker, w.contactEmail, w.contactPhone, ...Object.values(w.ids)];
}
