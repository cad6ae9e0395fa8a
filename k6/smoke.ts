// k6 smoke test for a running Pruuf: liveness, readiness and the caller's profile. Read-only,
// so it is safe against any deployment (your own only).
//   TOKEN=$(npm run --silent token) k6 run -e BASE_URL=http://localhost:3000 -e TOKEN=$TOKEN k6/smoke.ts
import http from 'k6/http';
import { check, sleep } from 'k6';
import type { Options } from 'k6/options';
import { SMOKE, thresholds } from '../bench/lib/scenarios.ts';

export const options: Options = {
  vus: SMOKE.vus,
  duration: SMOKE.duration,
  thresholds: thresholds(SMOKE.p99Ms, SMOKE.maxErrorRate),
};

const BASE_URL = __ENV.BASE_URL ?? 'http://localhost:3000';
const TOKEN = __ENV.TOKEN ?? '';

export default function smoke(): void {
  const health = http.get(`${BASE_URL}/healthz`, { tags: { name: 'GET /healthz' } });
  check(health, { 'healthz is 200': (r) => r.status === 200 });
  const ready = http.get(`${BASE_URL}/readyz`, { tags: { name: 'GET /readyz' } });
  check(ready, { 'readyz is 200': (r) => r.status === 200 });
  const me = http.get(`${BASE_URL}/v1/me`, { headers: { Authorization: `Bearer ${TOKEN}` }, tags: { name: 'GET /v1/me' } });
  check(me, { 'GET /v1/me is 200': (r) => r.status === 200 });
  sleep(0.1);
}
