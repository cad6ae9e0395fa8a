// k6 alert burst: MEMBERS synthetic members each add two contacts and a `once` schedule due at
// the same instant (DUE_IN_S from the start, no grace), then poll GET /v1/incidents until their
// incident is open. Measures, per member, the time from the shared deadline to the moment the API
// shows the incident with its first step sent (`alert_burst_open_s`), with the same p99 target as
// `npm run bench:alerts` (bench/lib/scenarios.ts).
//
//   k6 run -e BASE_URL=https://staging.example -e JWT_SECRET=… -e MEMBERS=1000 k6/alert-burst.ts
//
// THIS SENDS REAL ALERTS to the contacts it creates: their addresses are @load.test emails and
// +1555 fiction numbers, so point it only at a deployment whose providers are test accounts or
// fakes. Each member resolves its incident at the end, which also sends the all clear. Delete
// the synthetic members afterwards: delete from members where email like '%@load.test';
// Rate limits: MEMBERS requests arrive from one address at once: raise RATE_LIMIT_IP_PER_MINUTE.
// Options (-e NAME=value): MEMBERS, DUE_IN_S (time to set everything up), POLL_S, P99_S.
import http from 'k6/http';
import { check, sleep } from 'k6';
import exec from 'k6/execution';
import { Trend } from 'k6/metrics';
import type { Options } from 'k6/options';
import { ALERT_BURST } from '../bench/lib/scenarios.ts';
import { tokenSource } from './lib/auth.ts';
import { num } from './lib/env.ts';

const BASE_URL = __ENV.BASE_URL ?? 'http://localhost:3000';
const MEMBERS = num('MEMBERS', 1000);
const DUE_IN_S = num('DUE_IN_S', ALERT_BURST.dueInSeconds);
const POLL_S = num('POLL_S', 1);
const P99_S = num('P99_S', ALERT_BURST.p99Seconds);
const token = tokenSource(MEMBERS);
const openedAfter = new Trend('alert_burst_open_s');

export const options: Options = {
  scenarios: {
    members: { executor: 'per-vu-iterations', vus: MEMBERS, iterations: 1, maxDuration: `${DUE_IN_S + 10 * 60}s` },
  },
  thresholds: {
    alert_burst_open_s: [`p(99)<${P99_S}`],
    checks: ['rate==1'],
  },
};

/** One shared deadline for every member, DUE_IN_S from the start of the run. */
export function setup(): { dueAt: string } {
  return { dueAt: new Date(Date.now() + DUE_IN_S * 1000).toISOString() };
}

export default function (data: { dueAt: string }): void {
  const i = exec.vu.idInTest - 1;
  const headers = { authorization: `Bearer ${token(i)}`, 'content-type': 'application/json' };
  // A schedule is armed only for a member with a display name (400 DISPLAY_NAME_REQUIRED otherwise).
  const named = http.patch(`${BASE_URL}/v1/me`, JSON.stringify({ display_name: `k6 member ${i}` }), { headers, tags: { name: '/v1/me' } });
  if (!check(named, { 'display name set': (r) => r.status === 200 })) return;
  for (let c = 0; c < ALERT_BURST.contactsPerMember; c++) {
    const contact = http.post(`${BASE_URL}/v1/contacts`, JSON.stringify({
      name: `Contact ${c}`, email: `k6-${i}-${c}@load.test`, phone: `+1555${String(i * ALERT_BURST.contactsPerMember + c).padStart(7, '0')}`, tier: 1,
    }), { headers, tags: { name: '/v1/contacts' } });
    check(contact, { 'contact created (201) or already there (409)': (r) => r.status === 201 || r.status === 409 });
  }
  const schedule = http.post(`${BASE_URL}/v1/schedules`, JSON.stringify({ kind: 'once', due_at: data.dueAt, grace_minutes: 0 }), { headers, tags: { name: '/v1/schedules' } });
  if (!check(schedule, { 'schedule created': (r) => r.status === 201 })) return;

  const due = Date.parse(data.dueAt);
  sleep(Math.max(0, (due - Date.now()) / 1000));
  const giveUp = Date.now() + 10 * 60_000;
  while (Date.now() < giveUp) {
    const res = http.get(`${BASE_URL}/v1/incidents?limit=1`, { headers, tags: { name: '/v1/incidents' } });
    const first = res.status === 200 ? (res.json('data.0') as { id?: string; steps_sent?: number } | null) : null;
    if (first?.id !== undefined && (first.steps_sent ?? 0) >= 1) {
      openedAfter.add((Date.now() - due) / 1000);
      const resolved = http.post(`${BASE_URL}/v1/incidents/${first.id}/resolve`, null, { headers, tags: { name: '/v1/incidents/:id/resolve' } });
      check(resolved, { 'incident resolved': (r) => r.status === 200 });
      return;
    }
    sleep(POLL_S);
  }
  check(null, { 'incident opened within 10 minutes': () => false });
}
