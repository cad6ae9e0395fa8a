import { randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import Stripe from 'stripe';

/**
 * A local stand-in for the few Stripe API calls Pruuf makes (customers.create,
 * checkout.sessions.create, billingPortal.sessions.create, subscriptions.retrieve), speaking
 * Stripe's wire format: form-encoded bracket parameters in, JSON objects and Stripe's error
 * envelope out, Bearer secret keys, Idempotency-Key replays. The real SDK's request code runs
 * against it (STRIPE_API_BASE). Builders below make webhook payloads in Stripe's shapes.
 */

export type RecordedRequest = { method: string; path: string; params: Record<string, unknown>; idempotencyKey: string | undefined; stripeVersion: string | undefined };

export type StripeFake = {
  base: string;
  apiKey: string;
  requests: RecordedRequest[];
  /** Subscriptions as Stripe holds them now: what subscriptions.retrieve answers. */
  subscriptions: Map<string, Record<string, unknown>>;
  /** The next `times` requests whose path starts with `pathPrefix` answer `status`. */
  failNext: (pathPrefix: string, status: number, times?: number) => void;
  calls: (method: string, pathPrefix: string) => RecordedRequest[];
  close: () => Promise<void>;
};

/** `a[b][0][c]=1` → { a: { b: [ { c: '1' } ] } }, as Stripe reads it. */
export function parseForm(body: string): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [key, value] of new URLSearchParams(body)) {
    const parts = key.replace(/\]/g, '').split('[');
    let node: Record<string, unknown> = out;
    parts.forEach((part, i) => {
      if (i === parts.length - 1) {
        node[part] = value;
        return;
      }
      const next = parts[i + 1]!;
      node[part] ??= /^\d+$/.test(next) ? [] : {};
      node = node[part] as Record<string, unknown>;
    });
  }
  return out;
}

const readBody = (req: IncomingMessage) =>
  new Promise<string>((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });

const newId = (prefix: string) => `${prefix}_${randomBytes(8).toString('hex')}`;

export async function startStripeFake(apiKey = `sk_test_${randomBytes(8).toString('hex')}`): Promise<StripeFake> {
  const requests: RecordedRequest[] = [];
  const subscriptions = new Map<string, Record<string, unknown>>();
  const replays = new Map<string, { status: number; body: unknown }>();
  const failures: { prefix: string; status: number; left: number }[] = [];

  const route = (method: string, path: string, params: Record<string, unknown>): { status: number; body: unknown } => {
    const failure = failures.find((f) => f.left > 0 && path.startsWith(f.prefix));
    if (failure !== undefined) {
      failure.left -= 1;
      return { status: failure.status, body: { error: { type: 'api_error', message: 'fake outage' } } };
    }
    const now = Math.floor(Date.now() / 1000);
    if (method === 'POST' && path === '/v1/customers') {
      return { status: 200, body: { id: newId('cus'), object: 'customer', created: now, email: params.email ?? null, metadata: params.metadata ?? {}, livemode: false } };
    }
    if (method === 'POST' && path === '/v1/checkout/sessions') {
      const id = newId('cs_test');
      return {
        status: 200,
        body: {
          id, object: 'checkout.session', mode: params.mode, customer: params.customer ?? null, client_reference_id: params.client_reference_id ?? null,
          success_url: params.success_url, cancel_url: params.cancel_url, metadata: params.metadata ?? {}, status: 'open', subscription: null,
          url: `https://checkout.stripe.test/c/pay/${id}`, created: now, livemode: false,
        },
      };
    }
    if (method === 'POST' && path === '/v1/billing_portal/sessions') {
      const id = newId('bps');
      return { status: 200, body: { id, object: 'billing_portal.session', customer: params.customer, return_url: params.return_url ?? null, url: `https://billing.stripe.test/p/session/${id}`, created: now, livemode: false } };
    }
    const sub = /^\/v1\/subscriptions\/([^/]+)$/.exec(path);
    if (method === 'GET' && sub !== null) {
      const found = subscriptions.get(decodeURIComponent(sub[1]!));
      if (found !== undefined) return { status: 200, body: found };
      return { status: 404, body: { error: { type: 'invalid_request_error', code: 'resource_missing', param: 'id', message: `No such subscription: '${sub[1]}'` } } };
    }
    return { status: 404, body: { error: { type: 'invalid_request_error', message: `Unrecognized request URL (${method}: ${path})` } } };
  };

  const server: Server = createServer((req, res) => {
    void (async () => {
      const raw = await readBody(req);
      const url = new URL(req.url ?? '/', 'http://stripe.fake');
      const method = req.method ?? 'GET';
      const params = method === 'GET' ? parseForm(url.search.slice(1)) : parseForm(raw);
      const idempotencyKey = req.headers['idempotency-key'] as string | undefined;
      requests.push({ method, path: url.pathname, params, idempotencyKey, stripeVersion: req.headers['stripe-version'] as string | undefined });
      const send = (status: number, body: unknown) => {
        res.writeHead(status, { 'content-type': 'application/json', 'request-id': newId('req') });
        res.end(JSON.stringify(body));
      };
      if (req.headers.authorization !== `Bearer ${apiKey}`) {
        send(401, { error: { type: 'invalid_request_error', message: 'Invalid API Key provided' } });
        return;
      }
      const replay = idempotencyKey === undefined ? undefined : replays.get(`${method} ${url.pathname} ${idempotencyKey}`);
      if (replay !== undefined) {
        send(replay.status, replay.body);
        return;
      }
      const out = route(method, url.pathname, params);
      if (idempotencyKey !== undefined && out.status < 500) replays.set(`${method} ${url.pathname} ${idempotencyKey}`, out);
      send(out.status, out.body);
    })();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    base: `http://127.0.0.1:${port}`,
    apiKey,
    requests,
    subscriptions,
    failNext: (prefix, status, times = 1) => failures.push({ prefix, status, left: times }),
    calls: (method, prefix) => requests.filter((r) => r.method === method && r.path.startsWith(prefix)),
    close: () => new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    }),
  };
}

// ---- Stripe objects and events (API version "basil" and later: periods on items) ----

export type SubscriptionSpec = {
  id: string;
  customer: string;
  status: string;
  price: string;
  periodEnd: number;
  periodStart?: number;
  cancelAtPeriodEnd?: boolean;
  cancelAt?: number | null;
  trialEnd?: number | null;
  canceledAt?: number | null;
  endedAt?: number | null;
  metadata?: Record<string, string>;
  created?: number;
};

export function subscriptionObject(s: SubscriptionSpec): Record<string, unknown> {
  const start = s.periodStart ?? s.periodEnd - 30 * 86400;
  return {
    id: s.id, object: 'subscription', customer: s.customer, status: s.status, created: s.created ?? start, start_date: s.created ?? start,
    cancel_at_period_end: s.cancelAtPeriodEnd ?? false, cancel_at: s.cancelAt ?? null, canceled_at: s.canceledAt ?? null, ended_at: s.endedAt ?? null,
    trial_end: s.trialEnd ?? null, trial_start: null, metadata: s.metadata ?? {}, livemode: false, currency: 'gbp', collection_method: 'charge_automatically',
    latest_invoice: null,
    items: {
      object: 'list', has_more: false, url: `/v1/subscription_items?subscription=${s.id}`,
      data: [{
        id: `si_${s.id}`, object: 'subscription_item', subscription: s.id, quantity: 1, created: start, metadata: {},
        current_period_start: start, current_period_end: s.periodEnd,
        price: { id: s.price, object: 'price', active: true, currency: 'gbp', recurring: { interval: 'month', interval_count: 1 }, unit_amount: 500 },
      }],
    },
  };
}

export function invoiceObject(o: { id?: string; subscription: string; customer: string; status: 'paid' | 'open' }): Record<string, unknown> {
  return {
    id: o.id ?? newId('in'), object: 'invoice', customer: o.customer, status: o.status, billing_reason: 'subscription_cycle', livemode: false,
    parent: { type: 'subscription_details', quote_details: null, subscription_details: { subscription: o.subscription, metadata: {} } },
  };
}

export function checkoutSessionObject(o: { customer: string; subscription: string | null; clientReferenceId: string | null; mode?: string }): Record<string, unknown> {
  return {
    id: newId('cs_test'), object: 'checkout.session', mode: o.mode ?? 'subscription', status: 'complete', payment_status: 'paid',
    customer: o.customer, subscription: o.subscription, client_reference_id: o.clientReferenceId, metadata: {}, livemode: false,
  };
}

export function eventOf(type: string, object: Record<string, unknown>, created: number, id = newId('evt')): Record<string, unknown> {
  return { id, object: 'event', type, created, api_version: '2026-10-28.endive', livemode: false, pending_webhooks: 1, request: { id: null, idempotency_key: null }, data: { object } };
}

/** The body and headers Stripe would POST, signed with the endpoint's secret by the SDK's own test helper. */
export function signedDelivery(event: Record<string, unknown>, secret: string, timestampSeconds: number): { payload: string; headers: Record<string, string> } {
  const payload = JSON.stringify(event);
  const signature = Stripe.webhooks.generateTestHeaderString({ payload, secret, timestamp: timestampSeconds });
  return { payload, headers: { 'content-type': 'application/json; charset=utf-8', 'stripe-signature': signature } };
}
