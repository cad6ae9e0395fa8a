// k6 check-in load: POST /v1/check-ins at a ramping arrival rate (ramp, hold, ramp down) with
// the request mix and the targets of `npm run bench:api` (bench/lib/scenarios.ts), failing the
// run when p99 or the error rate misses them.
//
//   k6 run -e BASE_URL=https://staging.example -e JWT_SECRET=… k6/checkin-load.ts
//   k6 run -e BASE_URL=… -e TOKENS_FILE=tokens.txt -e RATE=200 -e HOLD_S=300 k6/checkin-load.ts
//
// Every request is a real check-in: it satisfies that member's deadline. Run it against a
// deployment of your own, with synthetic members (JWT_SECRET) or test accounts only, never with
// real members' tokens: a load test must not suppress a real alert. Synthetic members are
// created on their first check-in; delete them afterwards with
//   delete from members where email like '%@load.test';
// All requests come from one address: raise RATE_LIMIT_IP_PER_MINUTE on the deployment under
// test (default 600/min) or most answers will be 429.
//
// Options (-e NAME=value): RATE (req/s, default 1000), RAMP_S, HOLD_S, DOWN_S (seconds),
// MEMBERS (synthetic members to spread over, default 10000; each may check in 120 times a
// minute), P99_MS and MAX_ERROR_RATE (thresholds), MAX_VUS.
import http from 'k6/http';
import { check } from 'k6';
import exec from 'k6/execution';
import type { Options } from 'k6/options';
import { CHECK_IN_LOAD, CHECK_IN_PATH, CHECK_IN_TARGETS, checkInLoadStages, checkInRequest, thresholds } from '../bench/lib/scenarios.ts';
import { tokenSource } from './lib/auth.ts';
import { num } from './lib/env.ts';

const BASE_URL = __ENV.BASE_URL ?? 'http://localhost:3000';
const RATE = num('RATE', CHECK_IN_TARGETS.fixedRate);
const token = tokenSource(num('MEMBERS', 10_000));

export const options: Options = {
  scenarios: {
    checkins: {
      executor: 'ramping-arrival-rate',
      startRate: 0,
      timeUnit: '1s',
      stages: checkInLoadStages(RATE, {
        rampSeconds: num('RAMP_S', CHECK_IN_LOAD.rampSeconds),
        holdSeconds: num('HOLD_S', CHECK_IN_LOAD.holdSeconds),
        downSeconds: num('DOWN_S', CHECK_IN_LOAD.downSeconds),
      }),
      // Enough users for the target rate at ~100 ms a request; k6 adds more up to MAX_VUS if answers slow down.
      preAllocatedVUs: Math.max(10, Math.ceil(RATE / 10)),
      maxVUs: num('MAX_VUS', Math.max(50, RATE)),
    },
  },
  thresholds: thresholds(num('P99_MS', CHECK_IN_TARGETS.p99Ms), num('MAX_ERROR_RATE', CHECK_IN_TARGETS.maxErrorRate)),
};

/** Tags this run's Idempotency-Keys, so a second run is not answered with the first one's replays. */
export function setup(): { run: string } {
  return { run: `k6-${Date.now().toString(36)}` };
}

export default function checkinLoad(data: { run: string }): void {
  const i = exec.scenario.iterationInTest;
  const req = checkInRequest(i);
  const headers: Record<string, string> = { 'content-type': 'application/json', authorization: `Bearer ${token(i)}` };
  if (req.idempotent) headers['idempotency-key'] = `${data.run}-${i}`;
  const res = http.post(`${BASE_URL}${CHECK_IN_PATH}`, JSON.stringify(req.body), { headers, tags: { name: `POST ${CHECK_IN_PATH}` } });
  check(res, { 'check-in answered 201': (r) => r.status === 201 });
}
