// k6 smoke test for a running Pruuf: liveness, readiness and the caller's profile.
//   TOKEN=$(npm run --silent token) k6 run -e BASE_URL=http://localhost:3000 -e TOKEN=$TOKEN k6/smoke.ts
// Bounded: a few virtual users for 30 s against the URL you give (your own server only).
import http from 'k6/http';
import { check, sleep } from 'k6';
import type { Options } from 'k6/options';

export const options: Options = {
  vus: 5,
  duration: '30s',
  thresholds: {
    http_req_failed: ['rate<0.01'],
    http_req_duration: ['p(99)<100'],
  },
};

const BASE_URL = __ENV.BASE_URL ?? 'http://localhost:3000';
const TOKEN = __ENV.TOKEN ?? '';

export default function smoke(): void {
  const health = http.get(`${BASE_URL}/healthz`);
  check(health, { 'healthz is 200': (r) => r.status === 200 });
  const ready = http.get(`${BASE_URL}/readyz`);
  check(ready, { 'readyz is 200': (r) => r.status === 200 });
  const me = http.get(`${BASE_URL}/v1/me`, { headers: { Authorization: `Bearer ${TOKEN}` } });
  check(me, { 'GET /v1/me is 200': (r) => r.status === 200 });
  sleep(0.1);
}
