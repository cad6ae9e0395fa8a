import { createHash, createHmac, randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import type { VonageSignatureMethod } from '../../src/config.js';
import { smsSegments } from '../../src/incidents/sms.js';

/**
 * A local Vonage SMS API (POST /sms/json) speaking Vonage's wire format: credentials as Basic
 * auth (what SDK 3 sends) or api_key/api_secret in the body or query (the older form), the body
 * as JSON or form. It answers HTTP 200 with {"message-count", "messages": [...]}, one message per
 * SMS part, each with `status` "0" and a `message-id`, or a non-zero `status` and `error-text`
 * when it refuses (bad credentials: 4; missing from/to/text: 2; a malformed number: 3). Faults are
 * drawn per request: HTTP 500, HTTP 429 with Retry-After, status 1 (throttled), hangs and
 * connection resets, plus a latency. Per-number status codes stand in for numbers Vonage refuses.
 *
 * Delivery receipts: `receipt()` builds a signed DLR the way Vonage signs them (sig over the
 * sorted parameters with the signature secret and method); `postReceipt` sends one to a listening
 * server as GET, form or JSON. With `receipts: 'delivered'` every accepted part gets a
 * "delivered" receipt through `onReceipt` (default: posted to the message's callback); with
 * 'never' (the default) Vonage accepts and never reports, like a carrier that sends no DLR.
 */

export type VonageStatusReply = { status: string; errorText: string };

/** Numbers Vonage refuses (the documented statuses); E.164 as our contacts hold them. */
export const VONAGE_TEST_NUMBERS = {
  unknownPrefix: '+447700900901', // 6 invalid message
  barred: '+447700900902', // 7 number barred
  deactivated: '+447700900903', // 33 number de-activated
  notWhitelisted: '+447700900904', // 29 demo account
} as const;

const MAGIC: Record<string, VonageStatusReply> = {
  [VONAGE_TEST_NUMBERS.unknownPrefix]: { status: '6', errorText: 'Invalid Message' },
  [VONAGE_TEST_NUMBERS.barred]: { status: '7', errorText: 'Number barred.' },
  [VONAGE_TEST_NUMBERS.deactivated]: { status: '33', errorText: 'Number de-activated.' },
  [VONAGE_TEST_NUMBERS.notWhitelisted]: { status: '29', errorText: 'Non White-listed Destination - rejected' },
};

export type FakeVonageFaults = {
  /** Share of requests (0..1) answered HTTP 500. */
  error500?: number;
  /** Share answered HTTP 429 with Retry-After: retryAfterSeconds. */
  tooMany?: number;
  retryAfterSeconds?: number;
  /** Share answered 200 with status 1 (throttled). */
  throttled?: number;
  /** Share that are read and never answered (until close). */
  hang?: number;
  /** Share whose connection is reset (TCP RST) after the request was read. */
  reset?: number;
};

export type AcceptedVonageMessage = {
  /** One per SMS part. */
  messageIds: string[];
  /** As sent on the wire (no leading +). */
  to: string;
  from: string;
  text: string;
  type: string | null;
  clientRef: string | null;
  callback: string | null;
  ttl: string | null;
  statusReportReq: string | null;
  /** How the credentials came: Basic auth or api_key/api_secret parameters. */
  auth: 'basic' | 'params';
  contentType: string;
  /** Date.now() when the request arrived. */
  receivedAt: number;
  params: Record<string, string>;
};

export type ReceiptFormat = 'json' | 'form' | 'get';

export type FakeVonageOptions = {
  apiKey?: string;
  apiSecret?: string;
  signatureSecret?: string;
  signatureMethod?: VonageSignatureMethod;
  /** Fixed, or uniform in [min, max], before every answer. */
  latencyMs?: number | [number, number];
  faults?: FakeVonageFaults;
  numberStatus?: Record<string, VonageStatusReply>;
  receipts?: 'never' | 'delivered';
  /** Where automatic receipts go. Default: POSTed (JSON) to the message's callback. */
  onReceipt?: (message: AcceptedVonageMessage, params: Record<string, string>) => Promise<void>;
  /** The time receipts are signed with (default: now). */
  clock?: () => Date;
  random?: () => number;
};

export type FakeVonage = {
  /** The restHost to give VONAGE_API_BASE. */
  url: string;
  apiKey: string;
  apiSecret: string;
  signatureSecret: string;
  signatureMethod: VonageSignatureMethod;
  accepted: AcceptedVonageMessage[];
  /** Requests that reached the server, answered or not. */
  requests: () => number;
  /** Outcome counts: accepted, refused (non-zero status), error500, tooMany, throttled, hang, reset, abandoned, error404. */
  outcomes: Record<string, number>;
  setFaults: (faults: FakeVonageFaults) => void;
  setLatency: (latencyMs: number | [number, number]) => void;
  setNumberStatus: (to: string, reply: VonageStatusReply | undefined) => void;
  setReceipts: (mode: 'never' | 'delivered') => void;
  /** The signed parameters of a delivery receipt for one part (default the first) of a message. */
  receipt: (message: AcceptedVonageMessage, status: string, opts?: ReceiptOptions) => Record<string, string>;
  close: () => Promise<void>;
};

export type ReceiptOptions = {
  errCode?: string;
  part?: number;
  /** Signed at (default: the fake's clock). */
  at?: Date;
  /** Extra or replaced parameters, signed with the rest. */
  extra?: Record<string, string>;
  secret?: string;
  method?: VonageSignatureMethod;
};

const HMAC: Record<Exclude<VonageSignatureMethod, 'md5hash'>, string> = { md5hmac: 'md5', sha1hmac: 'sha1', sha256hmac: 'sha256', sha512hmac: 'sha512' };

/**
 * Vonage's webhook signature, written from its documentation ("Signing messages": sorted
 * `&key=value` pairs, `&` and `=` in values replaced by `_`; MD5 of that plus the secret, or an
 * HMAC keyed by it), independently of src/ so a test can hold the two against each other and
 * against the SDK's verifySignature.
 */
export function signVonageParams(params: Record<string, string>, secret: string, method: VonageSignatureMethod): string {
  const s = Object.keys(params).filter((k) => k !== 'sig').sort().map((k) => `&${k}=${params[k]!.replace(/[&=]/g, '_')}`).join('');
  return method === 'md5hash' ? createHash('md5').update(s + secret).digest('hex') : createHmac(HMAC[method], secret).update(s).digest('hex').toUpperCase();
}

const pad = (n: number) => String(n).padStart(2, '0');
/** "2026-11-24 09:00:00", UTC, as Vonage writes message-timestamp. */
export const vonageTime = (d: Date) => `${d.getUTCFullYear()}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())} ${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())}`;
/** scts: YYMMDDHHMM. */
const scts = (d: Date) => vonageTime(d).replace(/^\d\d(\d\d)-(\d\d)-(\d\d) (\d\d):(\d\d):\d\d$/, '$1$2$3$4$5');

/** A delivery receipt as Vonage sends it, signed (timestamp, nonce, sig added). */
export function signedReceipt(
  m: { messageId: string; to: string; from: string; clientRef?: string | null; apiKey: string },
  status: string, secret: string, method: VonageSignatureMethod, at: Date, errCode = status === 'delivered' || status === 'accepted' || status === 'buffered' ? '0' : '1',
  extra: Record<string, string> = {},
): Record<string, string> {
  const params: Record<string, string> = {
    msisdn: m.to.replace(/^\+/, ''), to: m.from, 'network-code': '23410', messageId: m.messageId, price: '0.03330000', status,
    scts: scts(at), 'err-code': errCode, 'api-key': m.apiKey, 'message-timestamp': vonageTime(at),
    ...(m.clientRef === undefined || m.clientRef === null ? {} : { 'client-ref': m.clientRef }),
    timestamp: String(Math.floor(at.getTime() / 1000)), nonce: randomBytes(8).toString('hex'), ...extra,
  };
  return { ...params, sig: signVonageParams(params, secret, method) };
}

/** Sends a signed receipt to a listening server (benchmarks and fault runs; tests with app.inject build it with `receipt`). */
export async function postReceipt(url: string, params: Record<string, string>, format: ReceiptFormat = 'json'): Promise<Response> {
  if (format === 'get') return fetch(`${url}?${new URLSearchParams(params).toString()}`);
  return fetch(url, format === 'json'
    ? { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(params) }
    : { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams(params).toString() });
}

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), ...headers });
  res.end(text);
}

const messageId = () => randomBytes(8).toString('hex').toUpperCase();

export async function startFakeVonage(opts: FakeVonageOptions = {}): Promise<FakeVonage> {
  const apiKey = opts.apiKey ?? randomBytes(4).toString('hex');
  const apiSecret = opts.apiSecret ?? randomBytes(8).toString('hex');
  const signatureSecret = opts.signatureSecret ?? randomBytes(24).toString('hex');
  const signatureMethod = opts.signatureMethod ?? 'sha256hmac';
  const random = opts.random ?? Math.random;
  const clock = opts.clock ?? (() => new Date());
  let faults: FakeVonageFaults = { ...opts.faults };
  let latency = opts.latencyMs ?? 0;
  let receipts = opts.receipts ?? 'never';
  const numberStatus = new Map(Object.entries({ ...MAGIC, ...opts.numberStatus }));
  const accepted: AcceptedVonageMessage[] = [];
  const outcomes: Record<string, number> = {};
  const count = (o: string) => { outcomes[o] = (outcomes[o] ?? 0) + 1; };
  let requests = 0;
  const sockets = new Set<Socket>();
  const hung = new Set<ServerResponse>();

  let closed = false;
  const waiting = new Map<NodeJS.Timeout, () => void>();
  const wait = () => {
    const ms = typeof latency === 'number' ? latency : latency[0] + random() * (latency[1] - latency[0]);
    if (ms <= 0) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const timer = setTimeout(() => { waiting.delete(timer); resolve(); }, ms);
      waiting.set(timer, resolve);
    });
  };

  const receipt = (message: AcceptedVonageMessage, status: string, o: ReceiptOptions = {}) => signedReceipt(
    { messageId: message.messageIds[o.part ?? 0]!, to: message.to, from: message.from, clientRef: message.clientRef, apiKey },
    status, o.secret ?? signatureSecret, o.method ?? signatureMethod, o.at ?? clock(), o.errCode, o.extra,
  );
  const deliverReceipts = async (message: AcceptedVonageMessage) => {
    for (let part = 0; part < message.messageIds.length; part++) {
      const params = receipt(message, 'delivered', { part });
      if (opts.onReceipt !== undefined) await opts.onReceipt(message, params);
      else if (message.callback !== null) await postReceipt(message.callback, params, 'json').catch(() => undefined);
    }
  };

  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    requests += 1;
    const receivedAt = Date.now();
    const raw = await readBody(req);
    const draw = random();
    let edge = 0;
    const hit = (share: number | undefined) => {
      edge += share ?? 0;
      return draw < edge;
    };
    if (hit(faults.reset)) {
      count('reset');
      req.socket.resetAndDestroy();
      return;
    }
    if (hit(faults.hang)) {
      count('hang');
      hung.add(res);
      res.on('close', () => {
        if (hung.delete(res)) count('abandoned');
      });
      return;
    }
    await wait();
    if (closed || res.destroyed) return;
    if (hit(faults.error500)) {
      count('error500');
      sendJson(res, 500, { type: 'https://developer.nexmo.com/api-errors#internal-error', title: 'Internal Error' });
      return;
    }
    if (hit(faults.tooMany)) {
      count('tooMany');
      sendJson(res, 429, { type: 'https://developer.nexmo.com/api-errors#throttled', title: 'Too Many Requests' }, { 'retry-after': String(faults.retryAfterSeconds ?? 1) });
      return;
    }
    const url = new URL(req.url ?? '/', 'http://fake');
    if (req.method !== 'POST' || url.pathname !== '/sms/json') {
      count('error404');
      sendJson(res, 404, { type: 'https://developer.nexmo.com/api-errors#not-found', title: 'Not Found' });
      return;
    }
    const contentType = (req.headers['content-type'] ?? '').split(';')[0]!.trim();
    let body: Record<string, unknown> = {};
    try {
      body = contentType === 'application/json' ? JSON.parse(raw) as Record<string, unknown> : Object.fromEntries(new URLSearchParams(raw));
    } catch {
      sendJson(res, 400, { type: 'https://developer.nexmo.com/api-errors#bad-request', title: 'Bad Request' });
      return;
    }
    const params: Record<string, string> = { ...Object.fromEntries(url.searchParams) };
    for (const [k, v] of Object.entries(body)) params[k] = String(v);

    const refuse = (reply: VonageStatusReply, to?: string) => {
      count('refused');
      sendJson(res, 200, { 'message-count': '1', messages: [{ ...(to === undefined ? {} : { to }), status: reply.status, 'error-text': reply.errorText }] });
    };
    if (hit(faults.throttled)) {
      refuse({ status: '1', errorText: 'Throughput Rate Exceeded - please wait [ 1000 ] and retry' }, params.to);
      return;
    }
    const basic = `Basic ${Buffer.from(`${apiKey}:${apiSecret}`).toString('base64')}`;
    const auth = req.headers.authorization === basic ? 'basic' : params.api_key === apiKey && params.api_secret === apiSecret ? 'params' : undefined;
    if (auth === undefined) {
      refuse({ status: '4', errorText: 'Bad Credentials' });
      return;
    }
    const { to, from, text } = params;
    if (to === undefined || to === '' || from === undefined || from === '' || text === undefined || text === '') {
      refuse({ status: '2', errorText: `Missing ${to === undefined || to === '' ? 'to' : from === undefined || from === '' ? 'from' : 'text'} param` }, to);
      return;
    }
    const e164 = `+${to}`;
    const special = numberStatus.get(e164) ?? numberStatus.get(to);
    if (special !== undefined) {
      refuse(special, to);
      return;
    }
    if (!/^[1-9]\d{6,14}$/.test(to)) {
      refuse({ status: '3', errorText: 'Invalid to address' }, to);
      return;
    }
    const parts = smsSegments(text);
    const message: AcceptedVonageMessage = {
      messageIds: Array.from({ length: parts }, messageId), to, from, text, type: params.type ?? null,
      clientRef: params['client-ref'] ?? null, callback: params.callback ?? null, ttl: params.ttl ?? null,
      statusReportReq: params['status-report-req'] ?? null, auth, contentType, receivedAt, params,
    };
    accepted.push(message);
    count('accepted');
    sendJson(res, 200, {
      'message-count': String(parts),
      messages: message.messageIds.map((id) => ({
        to, 'message-id': id, status: '0', 'remaining-balance': '15.53590000', 'message-price': '0.03330000', network: '23410',
        ...(message.clientRef === null ? {} : { 'client-ref': message.clientRef }),
      })),
    });
    if (receipts === 'delivered') void deliverReceipts(message);
  };

  const server = createServer((req, res) => {
    handle(req, res).catch((err: Error) => {
      if (!res.headersSent) sendJson(res, 500, { title: err.message });
    });
  });
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;

  return {
    url: `http://127.0.0.1:${port}`,
    apiKey,
    apiSecret,
    signatureSecret,
    signatureMethod,
    accepted,
    requests: () => requests,
    outcomes,
    setFaults: (f) => { faults = { ...f }; },
    setLatency: (l) => { latency = l; },
    setNumberStatus: (to, reply) => { if (reply === undefined) numberStatus.delete(to); else numberStatus.set(to, reply); },
    setReceipts: (mode) => { receipts = mode; },
    receipt,
    close: async () => {
      closed = true;
      for (const [timer, resolve] of waiting) {
        clearTimeout(timer);
        resolve();
      }
      waiting.clear();
      const stillHung = [...hung];
      hung.clear();
      for (const r of stillHung) r.destroy();
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
