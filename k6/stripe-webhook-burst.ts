// k6 Stripe webhook burst: signed `customer.subscription.updated` events at a fixed rate to
// POST /webhooks/stripe, signed exactly as Stripe signs them (HMAC-SHA256 over "t.payload" with
// the endpoint's signing secret). Each event has its own id, so every one is applied; a tenth are
// sent twice (Stripe retries) and must be acknowledged as duplicates.
//
//   k6 run -e BASE_URL=https://staging.example -e STRIPE_WEBHOOK_SECRET=whsec_… k6/stripe-webhook-burst.ts
//
// Run it against a deployment of your own with a test-mode secret: the events name subscription
// ids of the form sub_k6_<n> and customers cus_k6_<n> that belong to no member, so they change
// no one's plan (they are stored as subscriptions of an unknown customer). Delete them afterwards:
//   delete from subscriptions where id like 'sub_k6_%';
// Options (-e NAME=value): RATE (events/s), DURATION_S, SUBSCRIPTIONS (distinct ids), P99_MS,
// MAX_ERROR_RATE, PRICE (a price id of the deployment; default price_k6).
import http from 'k6/http';
import { check } from 'k6';
import { hmac } from 'k6/crypto';
import exec from 'k6/execution';
import type { Options } from 'k6/options';
import { STRIPE_WEBHOOK_BURST, STRIPE_WEBHOOK_PATH, thresholds } from '../bench/lib/scenarios.ts';
import { num } from './lib/env.ts';

const BASE_URL = __ENV.BASE_URL ?? 'http://localhost:3000';
const SECRET = __ENV.STRIPE_WEBHOOK_SECRET ?? '';
if (SECRET === '') throw new Error('set STRIPE_WEBHOOK_SECRET (the endpoint signing secret of the deployment under test)');
const RATE = num('RATE', STRIPE_WEBHOOK_BURST.rate);
const SUBSCRIPTIONS = num('SUBSCRIPTIONS', 1000);
const PRICE = __ENV.PRICE ?? 'price_k6';

export const options: Options = {
  scenarios: {
    events: {
      executor: 'constant-arrival-rate',
      rate: RATE,
      timeUnit: '1s',
      duration: `${num('DURATION_S', STRIPE_WEBHOOK_BURST.durationSeconds)}s`,
      preAllocatedVUs: Math.max(10, Math.ceil(RATE / 10)),
      maxVUs: Math.max(50, RATE),
    },
  },
  thresholds: thresholds(num('P99_MS', STRIPE_WEBHOOK_BURST.p99Ms), num('MAX_ERROR_RATE', STRIPE_WEBHOOK_BURST.maxErrorRate)),
};

/** A subscription object as the 2025 "basil" API sends it (period fields on the item). */
function subscription(n: number, created: number): Record<string, unknown> {
  const id = `sub_k6_${n % SUBSCRIPTIONS}`;
  return {
    id, object: 'subscription', customer: `cus_k6_${n % SUBSCRIPTIONS}`, status: 'active', cancel_at_period_end: false,
    cancel_at: null, canceled_at: null, ended_at: null, trial_end: null, created, metadata: {},
    items: { object: 'list', data: [{ id: `si_k6_${n}`, price: { id: PRICE }, current_period_start: created, current_period_end: created + 30 * 86_400 }] },
  };
}

function post(payload: string): ReturnType<typeof http.post> {
  const t = Math.floor(Date.now() / 1000);
  const signature = hmac('sha256', SECRET, `${t}.${payload}`, 'hex');
  return http.post(`${BASE_URL}${STRIPE_WEBHOOK_PATH}`, payload, {
    headers: { 'content-type': 'application/json; charset=utf-8', 'stripe-signature': `t=${t},v1=${signature}` },
    tags: { name: STRIPE_WEBHOOK_PATH },
  });
}

export default function (data: { run: string }): void {
  const n = exec.scenario.iterationInTest;
  const created = Math.floor(Date.now() / 1000);
  const event = {
    id: `evt_k6_${data.run}_${n}`, object: 'event', type: 'customer.subscription.updated', created, livemode: false,
    api_version: '2025-03-31.basil', data: { object: subscription(n, created) },
  };
  const payload = JSON.stringify(event);
  const first = post(payload);
  check(first, { 'event accepted': (r) => r.status === 200 });
  if (n % 10 === 0) {
    const again = post(payload);
    check(again, { 'replay acknowledged as duplicate': (r) => r.status === 200 && (r.json('duplicate') as boolean) === true });
  }
}

export function setup(): { run: string } {
  return { run: Date.now().toString(36) };
}
