// Scenario definitions shared by `npm run bench:api` (Node) and the k6 scripts (k6/*.ts), so the
// two load the same endpoint with the same requests and judge them by the same targets.
// No imports and nothing Node- or k6-specific: both runtimes load this file as it is.

export const CHECK_IN_PATH = '/v1/check-ins';

/** The issue-7 targets for POST /v1/check-ins on a 2-core machine. */
export const CHECK_IN_TARGETS = {
  /** Service req/s over baseline req/s at maximum rate, in the same run. */
  minRatio: 0.8,
  /** The open-loop rate the latency target is measured at. */
  fixedRate: 1000,
  p99Ms: 50,
  /** Failed requests (non-2xx or no answer): none allowed. */
  maxErrorRate: 0,
} as const;

/** k6 checkin-load: ramp to the fixed rate, hold it, ramp down (seconds). */
export const CHECK_IN_LOAD = { rampSeconds: 30, holdSeconds: 60, downSeconds: 10 } as const;

/** k6 smoke: a few users for a short while; read-only, so it is safe against any deployment. */
export const SMOKE = { vus: 5, duration: '30s', p99Ms: 100, maxErrorRate: 0.01 } as const;

export type CheckInBody = {
  note?: string;
  location?: { lat: number; lng: number; accuracy_m?: number };
};

export type CheckInRequest = {
  body: CheckInBody;
  /** The app sends an Idempotency-Key when it retries a check-in the user tapped once. */
  idempotent: boolean;
};

// 32-bit integer mixer (the murmur3 finaliser): spreads consecutive indexes over the whole range.
function mix(x: number, seed: number): number {
  let h = (x ^ seed) >>> 0;
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b) >>> 0;
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35) >>> 0;
  return (h ^ (h >>> 16)) >>> 0;
}

const hex = (n: number, digits: number) => n.toString(16).padStart(digits, '0').slice(-digits);

/**
 * The synthetic member with index i: a valid v4-shaped UUID, unique per index (the last group
 * is the index itself) and spread over the key space like Supabase's random user ids, so
 * index inserts land all over the b-tree as in production.
 */
export function benchMemberId(i: number): string {
  const a = mix(i, 0x9e3779b9);
  const b = mix(i, 0x7f4a7c15);
  return `${hex(a, 8)}-${hex(b >>> 16, 4)}-4${hex(b, 3)}-8b0${hex(Math.floor(i / 0x1000000000000), 1)}-${hex(i, 12)}`;
}

const NOTES = [
  'All good, off to work',
  'Morning walk done',
  'Feeling a bit tired but fine',
  'Back from the doctor, everything OK',
  'Had breakfast, taking my pills now',
  'Going to the shops, back by noon',
  'Slept badly but I am fine',
  'Visiting my daughter today',
];

// Where members are: a few cities, jittered by up to ~2 km.
const PLACES: [number, number][] = [
  [51.5072, -0.1276], [48.8566, 2.3522], [40.7128, -74.006], [52.52, 13.405], [-33.8688, 151.2093], [35.6762, 139.6503],
];

/**
 * The i-th check-in of a load run: a realistic mix of what the app sends. About a third are a
 * bare tap, a third carry a short note, a third a location (half of those a note too); half
 * carry an Idempotency-Key. Deterministic in i, so every run sends the same requests.
 */
export function checkInRequest(i: number): CheckInRequest {
  const r = mix(i, 0x2545f491);
  const kind = r % 3;
  const body: CheckInBody = {};
  if (kind === 1 || (kind === 2 && (r >>> 8) % 2 === 0)) body.note = NOTES[(r >>> 4) % NOTES.length]!;
  if (kind === 2) {
    const [lat, lng] = PLACES[(r >>> 12) % PLACES.length]!;
    const jitter = (bits: number) => (((r >>> bits) & 0xff) - 128) / 6400;
    body.location = { lat: Number((lat + jitter(16)).toFixed(5)), lng: Number((lng + jitter(24)).toFixed(5)), accuracy_m: 5 + ((r >>> 20) % 60) };
  }
  return { body, idempotent: (r >>> 28) % 2 === 0 };
}

/** k6 ramping-arrival-rate stages to a rate: ramp, hold, ramp down. */
export function checkInLoadStages(rate: number, load: { rampSeconds: number; holdSeconds: number; downSeconds: number } = CHECK_IN_LOAD): { target: number; duration: string }[] {
  return [
    { target: rate, duration: `${load.rampSeconds}s` },
    { target: rate, duration: `${load.holdSeconds}s` },
    { target: 0, duration: `${load.downSeconds}s` },
  ];
}

/** k6 threshold expressions for a latency p99 and an error-rate ceiling. */
export function thresholds(p99Ms: number, maxErrorRate: number): { http_req_duration: string[]; http_req_failed: string[] } {
  return {
    http_req_duration: [`p(99)<${p99Ms}`],
    http_req_failed: [maxErrorRate === 0 ? 'rate==0' : `rate<${maxErrorRate}`],
  };
}

/**
 * Alert burst (bench:alerts, k6 alert-burst): members whose deadline passes at the same instant,
 * each with two contacts; judged by the time from alert_at to each incident's first alert (p99),
 * and (bench:alerts) by the pipeline's throughput as a share of sending the same messages
 * straight to the providers in the same run.
 */
export const ALERT_BURST = { members: 10_000, contactsPerMember: 2, dueInSeconds: 60, p99Seconds: 30, minFloorRatio: 0.8 } as const;

/** Stripe webhook burst (k6 stripe-webhook-burst): signed subscription events at a fixed rate. */
export const STRIPE_WEBHOOK_BURST = { rate: 200, durationSeconds: 60, p99Ms: 200, maxErrorRate: 0 } as const;
export const STRIPE_WEBHOOK_PATH = '/webhooks/stripe';
