import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import type { Credential } from 'firebase-admin/app';
import { seededRandom } from './random.js';

/**
 * A local FCM HTTP v1 server: POST /v1/projects/<id>/messages:send with a bearer token, JSON
 * `{message: {token, ...}}`, answering `{name}` or Google's JSON error with an FcmError detail,
 * as fcm.googleapis.com does. The channel's real SDK code talks to it over HTTP/1.1 through
 * `fake.connect` (the channel's `connect` option) and authenticates with `fake.credential`.
 *
 * Faults: per token (`setToken`), or at random rates (`configure`) for benchmarks and fault
 * runs, reproducible from a seed. Every accepted message is recorded in `accepted`.
 */

/** How the fake answers a token. */
export type TokenBehaviour =
  | 'unregistered' // 404 UNREGISTERED: the app was uninstalled
  | 'invalid-argument' // 400 INVALID_ARGUMENT: a message FCM refuses
  | 'sender-id-mismatch' // 403 SENDER_ID_MISMATCH: a token of another Firebase project
  | 'permission-denied' // 403 PERMISSION_DENIED without FcmError detail: our service account may not send
  | 'quota-exceeded' // 429 QUOTA_EXCEEDED with Retry-After
  | 'unavailable' // 503 UNAVAILABLE with Retry-After
  | 'internal' // 500 INTERNAL
  | 'third-party-auth' // 401 THIRD_PARTY_AUTH_ERROR: the APNs certificate or key is wrong
  | 'hang' // never answers
  | 'reset'; // resets the connection

export type FaultRates = {
  /** Share of requests answered 500 INTERNAL. */
  error500: number;
  /** Share answered 429 QUOTA_EXCEEDED or 503 UNAVAILABLE (half each), with Retry-After. */
  throttle: number;
  /** Share that never answer (the client times out). */
  hang: number;
  /** Share whose connection is reset. */
  reset: number;
};

export type FakeFcmOptions = {
  projectId?: string;
  /** The bearer token the fake accepts; `credential` hands it out. */
  accessToken?: string;
  /** Delay before each answer: fixed, or uniform in [min, max]. */
  latencyMs?: number | { min: number; max: number };
  faults?: Partial<FaultRates>;
  /** Retry-After of the 429/503 answers, in seconds (default 1). */
  retryAfterSeconds?: number;
  /** Seed of the fault dice. */
  seed?: number;
};

export type AcceptedMessage = { name: string; token: string; message: Record<string, any>; at: number };

export type FakeFcmStats = { requests: number; accepted: number; unauthorized: number; error500: number; throttled: number; hung: number; reset: number; tokenFaults: number };

export type FakeFcm = {
  readonly port: number;
  readonly projectId: string;
  readonly accessToken: string;
  /** Every accepted message, in order of acceptance. */
  readonly accepted: AcceptedMessage[];
  readonly stats: FakeFcmStats;
  /** A credential that needs no network; `accessToken` overrides the one it hands out (a wrong one: 401). */
  credential(accessToken?: string): Credential;
  /** Dials the fake: the channel's `connect` option. */
  connect: () => net.Socket;
  /** `times` answers with `behaviour` for this token (default: every one), then normal again. */
  setToken(token: string, behaviour: TokenBehaviour, times?: number): void;
  configure(opts: Pick<FakeFcmOptions, 'latencyMs' | 'faults' | 'retryAfterSeconds'>): void;
  /** Accepted messages for one token. */
  acceptedFor(token: string): AcceptedMessage[];
  /** Requests the fake is holding unanswered whose client is still connected. */
  hanging(): number;
  close(): Promise<void>;
};

const FCM_ERROR_TYPE = 'type.googleapis.com/google.firebase.fcm.v1.FcmError';

type GoogleError = { http: number; status: string; message: string; errorCode?: string; retryAfter?: boolean };

const ERRORS: Record<Exclude<TokenBehaviour, 'hang' | 'reset'>, GoogleError> = {
  'unregistered': { http: 404, status: 'NOT_FOUND', message: 'Requested entity was not found.', errorCode: 'UNREGISTERED' },
  'invalid-argument': { http: 400, status: 'INVALID_ARGUMENT', message: 'Request contains an invalid argument.', errorCode: 'INVALID_ARGUMENT' },
  'sender-id-mismatch': { http: 403, status: 'PERMISSION_DENIED', message: 'SenderId mismatch', errorCode: 'SENDER_ID_MISMATCH' },
  'permission-denied': { http: 403, status: 'PERMISSION_DENIED', message: "Permission 'cloudmessaging.messages.create' denied on resource (or it may not exist)." },
  'quota-exceeded': { http: 429, status: 'RESOURCE_EXHAUSTED', message: 'Quota exceeded.', errorCode: 'QUOTA_EXCEEDED', retryAfter: true },
  'unavailable': { http: 503, status: 'UNAVAILABLE', message: 'The service is currently unavailable.', errorCode: 'UNAVAILABLE', retryAfter: true },
  'internal': { http: 500, status: 'INTERNAL', message: 'Internal error encountered.', errorCode: 'INTERNAL' },
  'third-party-auth': { http: 401, status: 'UNAUTHENTICATED', message: 'Auth error from APNS or Web Push Service', errorCode: 'THIRD_PARTY_AUTH_ERROR' },
};


function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

export async function startFakeFcm(opts: FakeFcmOptions = {}): Promise<FakeFcm> {
  const projectId = opts.projectId ?? 'pruuf-test';
  const accessToken = opts.accessToken ?? 'fake-fcm-access-token';
  let settings: Required<Pick<FakeFcmOptions, 'latencyMs' | 'retryAfterSeconds'>> & { faults: FaultRates } = {
    latencyMs: opts.latencyMs ?? 0,
    retryAfterSeconds: opts.retryAfterSeconds ?? 1,
    faults: { error500: 0, throttle: 0, hang: 0, reset: 0, ...opts.faults },
  };
  const random = seededRandom(opts.seed ?? 1);
  const tokens = new Map<string, { behaviour: TokenBehaviour; left: number }>();
  const accepted: AcceptedMessage[] = [];
  const stats: FakeFcmStats = { requests: 0, accepted: 0, unauthorized: 0, error500: 0, throttled: 0, hung: 0, reset: 0, tokenFaults: 0 };
  const hung = new Set<ServerResponse>();
  let messageSeq = 0;

  const latency = (): number => {
    const l = settings.latencyMs;
    return typeof l === 'number' ? l : l.min + random() * (l.max - l.min);
  };

  const sendError = (res: ServerResponse, e: GoogleError): void => {
    const headers: Record<string, string> = { 'content-type': 'application/json; charset=UTF-8' };
    if (e.retryAfter === true) headers['retry-after'] = String(settings.retryAfterSeconds);
    const details = e.errorCode === undefined ? [] : [{ '@type': FCM_ERROR_TYPE, errorCode: e.errorCode }];
    res.writeHead(e.http, headers).end(JSON.stringify({ error: { code: e.http, message: e.message, status: e.status, details } }));
  };

  /** Answers with a fault, or returns false to answer normally. */
  const fault = (req: IncomingMessage, res: ServerResponse, behaviour: TokenBehaviour | undefined): boolean => {
    if (behaviour === 'hang') {
      hung.add(res);
      res.on('close', () => hung.delete(res));
      return true;
    }
    if (behaviour === 'reset') {
      req.socket.resetAndDestroy();
      return true;
    }
    if (behaviour !== undefined) {
      sendError(res, ERRORS[behaviour]);
      return true;
    }
    return false;
  };

  const randomFault = (): TokenBehaviour | undefined => {
    const f = settings.faults;
    let r = random();
    if ((r -= f.error500) < 0) { stats.error500++; return 'internal'; }
    if ((r -= f.throttle) < 0) { stats.throttled++; return random() < 0.5 ? 'quota-exceeded' : 'unavailable'; }
    if ((r -= f.hang) < 0) { stats.hung++; return 'hang'; }
    if ((r -= f.reset) < 0) { stats.reset++; return 'reset'; }
    return undefined;
  };

  const tokenFault = (token: string): TokenBehaviour | undefined => {
    const t = tokens.get(token);
    if (t === undefined) return undefined;
    if (--t.left <= 0) tokens.delete(token);
    stats.tokenFaults++;
    return t.behaviour;
  };

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    stats.requests++;
    const body = await readBody(req);
    const wait = latency();
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    if (req.method !== 'POST' || req.url !== `/v1/projects/${projectId}/messages:send`) {
      sendError(res, { http: 404, status: 'NOT_FOUND', message: `no route ${req.method} ${req.url}` });
      return;
    }
    if (req.headers.authorization !== `Bearer ${accessToken}`) {
      stats.unauthorized++;
      sendError(res, { http: 401, status: 'UNAUTHENTICATED', message: 'Request had invalid authentication credentials. Expected OAuth 2 access token.' });
      return;
    }
    let message: Record<string, any> | undefined;
    try {
      message = (JSON.parse(body) as { message?: Record<string, any> }).message;
    } catch {
      message = undefined;
    }
    if (message === undefined || typeof message.token !== 'string' || message.token === '') {
      sendError(res, ERRORS['invalid-argument']);
      return;
    }
    const token = message.token;
    if (fault(req, res, tokenFault(token) ?? randomFault())) return;
    const name = `projects/${projectId}/messages/${++messageSeq}`;
    accepted.push({ name, token, message, at: Date.now() });
    stats.accepted++;
    res.writeHead(200, { 'content-type': 'application/json; charset=UTF-8' }).end(JSON.stringify({ name }));
  };

  const server: Server = createServer((req, res) => {
    handle(req, res).catch(() => res.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;

  return {
    port,
    projectId,
    accessToken,
    accepted,
    stats,
    credential: (token = accessToken) => ({ getAccessToken: async () => ({ access_token: token, expires_in: 3600 }) }),
    connect: () => net.connect(port, '127.0.0.1'),
    setToken: (token, behaviour, times = Number.POSITIVE_INFINITY) => { tokens.set(token, { behaviour, left: times }); },
    configure: (next) => {
      settings = {
        latencyMs: next.latencyMs ?? settings.latencyMs,
        retryAfterSeconds: next.retryAfterSeconds ?? settings.retryAfterSeconds,
        faults: { ...settings.faults, ...next.faults },
      };
    },
    acceptedFor: (token) => accepted.filter((m) => m.token === token),
    hanging: () => hung.size,
    close: async () => {
      for (const res of hung) res.destroy();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
