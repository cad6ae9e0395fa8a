import { randomInt, randomUUID } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { seededRandom } from './random.js';

/**
 * A local Postmark Email API (POST /email) speaking Postmark's wire format: the server token in
 * X-Postmark-Server-Token, a JSON message, 200 with {To, SubmittedAt, MessageID, ErrorCode: 0,
 * Message: "OK"}, refusals as 422 {ErrorCode, Message} (401 for a bad token, 429 when rate
 * limited, 5xx). The real `postmark` SDK runs against it (its `requestHost` + `useHttps: false`).
 *
 * It checks what Postmark checks that our requests could fail (token, From as a sender signature
 * when `senderSignatures` is given, the To address, a body, the message stream) and refuses
 * inactive recipients with 406. It misbehaves on purpose: scripted answers, random fault rates,
 * latency. With `webhooks` set it posts Delivery records back to us for every message it accepts,
 * as Postmark does, except while `neverDeliver` is on ("accepted, then nothing": the silent
 * failure redundancy is for) and for addresses set to bounce, which get a Bounce record instead.
 *
 * POST /email/batch takes a JSON array of up to 500 such messages and answers 200 with one result
 * per message, in order: each checked and accepted or refused on its own ({ErrorCode, Message}
 * with no MessageID), as Postmark's batch endpoint does. Token, faults, scripted answers and
 * latency apply to the request as a whole; each accepted message is recorded on its own.
 */

/** Postmark's limit of messages in one /email/batch call. */
export const MAX_BATCH_MESSAGES = 500;

export const FAKE_POSTMARK_SERVER_TOKEN = 'fake-postmark-server-token-0000-local';

/** A scripted answer: a status (with headers/body), a request that never gets an answer, or a TCP reset. */
export type ScriptedAnswer = { status: number; headers?: Record<string, string>; body?: unknown } | 'hang' | 'reset';

/** Percentages (0–100) of requests that fail each way, decided independently per request. */
export type PostmarkFaults = { serverErrorPct?: number; rateLimitPct?: number; hangPct?: number; resetPct?: number };

export type WebhookAuth = { user: string; password: string };
/** Sends one webhook request to our app: over HTTP (webhookVia) or through app.inject (webhookViaInject). */
export type WebhookSender = (body: string, headers: Record<string, string>) => Promise<{ status: number; body: string }>;
export type FakeWebhooks = { send: WebhookSender; auth: WebhookAuth; /** Delay before the Delivery record; default 0. */ delayMs?: number };

export type FakePostmarkOptions = {
  serverToken?: string;
  /** When given, a From address outside it is refused with ErrorCode 400, as Postmark refuses an unknown sender. */
  senderSignatures?: string[];
  /** Message streams of the server; default ['outbound']. */
  messageStreams?: string[];
  latencyMs?: number | { min: number; max: number };
  faults?: PostmarkFaults;
  /** Retry-After (seconds) on a fault-rate 429; none when undefined. */
  retryAfterSeconds?: number;
  random?: () => number;
  webhooks?: FakeWebhooks;
};

export type AcceptedEmail = {
  messageId: string;
  from: string;
  to: string;
  subject: string;
  textBody: string | undefined;
  htmlBody: string | undefined;
  messageStream: string | undefined;
  metadata: Record<string, string>;
  trackOpens: unknown;
  trackLinks: unknown;
  body: Record<string, unknown>;
  serverToken: string | undefined;
  submittedAt: Date;
  /** Whether it came in a /email/batch request. */
  viaBatch: boolean;
};

export type Outcome = 'accepted' | 'server_error' | 'rate_limited' | 'hang' | 'reset' | 'unauthorized' | 'refused' | 'scripted';
export type WebhookPost = { messageId: string; recordType: string; status: number };

export type FakePostmark = {
  /** Base URL for POSTMARK_API_BASE. */
  url: string;
  serverToken: string;
  accepted: AcceptedEmail[];
  outcomes: Record<Outcome, number>;
  acceptedFor: (deliveryId: string) => AcceptedEmail[];
  /** The next requests get these answers, in order, before any fault rate applies. */
  respondNext: (...answers: ScriptedAnswer[]) => void;
  setFaults: (faults: PostmarkFaults) => void;
  setLatency: (latency: FakePostmarkOptions['latencyMs']) => void;
  /** Postmark refuses further sends to the address with 406 (after a hard bounce, a complaint or a suppression). */
  deactivate: (address: string) => void;
  /** Accept, then never post a Delivery record (while on). */
  setNeverDeliver: (on: boolean) => void;
  /** Messages to this address get a Bounce record of this type instead of a Delivery (auto webhooks only). */
  bounceAddress: (address: string, type?: string) => void;
  setWebhooks: (webhooks: FakeWebhooks | undefined) => void;
  /** Webhook records the fake posted by itself, with our answer's status. */
  webhookPosts: WebhookPost[];
  /** Waits until every automatic webhook started so far has been answered. */
  settled: () => Promise<void>;
  reset: () => void;
  close: () => Promise<void>;
};

export { seededRandom };

const ADDRESS = /^[^\s@<>]+@[^\s@<>]+\.[^\s@<>]+$/;
/** "Name <a@b.c>" or a@b.c → a@b.c; undefined when it is neither. */
function addressOf(value: string): string | undefined {
  const m = /<([^<>]*)>\s*$/.exec(value);
  const addr = (m === null ? value : m[1]!).trim();
  return ADDRESS.test(addr) ? addr : undefined;
}

const refusal = (ErrorCode: number, Message: string) => ({ ErrorCode, Message });

export async function startFakePostmark(opts: FakePostmarkOptions = {}): Promise<FakePostmark> {
  const serverToken = opts.serverToken ?? FAKE_POSTMARK_SERVER_TOKEN;
  const random = opts.random ?? Math.random;
  const streams = new Set(opts.messageStreams ?? ['outbound']);
  const senders = opts.senderSignatures === undefined ? undefined : new Set(opts.senderSignatures.map((s) => s.toLowerCase()));
  let faults: PostmarkFaults = { ...opts.faults };
  let latency = opts.latencyMs;
  let webhooks = opts.webhooks;
  let neverDeliver = false;
  const inactive = new Set<string>();
  const bouncing = new Map<string, string>();
  const script: ScriptedAnswer[] = [];
  const accepted: AcceptedEmail[] = [];
  const webhookPosts: WebhookPost[] = [];
  const pending = new Set<Promise<void>>();
  const outcomes = {} as Record<Outcome, number>;
  const count = (o: Outcome) => { outcomes[o] = (outcomes[o] ?? 0) + 1; };

  const send = (res: http.ServerResponse, status: number, body?: unknown, headers: Record<string, string> = {}) => {
    const text = body === undefined ? '' : JSON.stringify(body);
    res.writeHead(status, { ...(text === '' ? {} : { 'content-type': 'application/json; charset=utf-8' }), ...headers });
    res.end(text);
  };

  const delay = () => {
    const ms = latency === undefined ? 0 : typeof latency === 'number' ? latency : latency.min + random() * (latency.max - latency.min);
    // Unref'd: a slow answer nobody waits for any more does not keep the test process alive.
    return ms > 0 ? new Promise((r) => setTimeout(r, ms).unref()) : Promise.resolve();
  };

  const pickFault = (): 'reset' | 'hang' | 'rate_limited' | 'server_error' | undefined => {
    const roll = random() * 100;
    let edge = 0;
    for (const [name, pct] of [['reset', faults.resetPct], ['hang', faults.hangPct], ['rate_limited', faults.rateLimitPct], ['server_error', faults.serverErrorPct]] as const) {
      edge += pct ?? 0;
      if (roll < edge) return name;
    }
    return undefined;
  };

  /** The checks Postmark makes that our requests could fail; the first problem wins. */
  const validate = (body: Record<string, unknown>): { ErrorCode: number; Message: string } | undefined => {
    const from = typeof body.From === 'string' ? body.From : '';
    const fromAddress = addressOf(from);
    if (fromAddress === undefined) return refusal(300, `Error parsing 'From': Illegal email address '${from}'. It must contain the '@' symbol.`);
    if (senders !== undefined && !senders.has(fromAddress.toLowerCase())) {
      return refusal(400, `The 'From' address you supplied (${from}) is not a Sender Signature on your account. Please add and confirm this address in order to be able to use it in the 'From' field of your messages.`);
    }
    const to = typeof body.To === 'string' ? body.To : '';
    if (to.trim() === '') return refusal(300, 'Zero recipients specified');
    if (addressOf(to) === undefined) return refusal(300, `Error parsing 'To': Illegal email address '${to}'. It must contain the '@' symbol.`);
    if (typeof body.TextBody !== 'string' && typeof body.HtmlBody !== 'string') return refusal(300, 'Provide either email TextBody or HtmlBody or both.');
    const stream = body.MessageStream;
    if (stream !== undefined && (typeof stream !== 'string' || !streams.has(stream))) {
      // The code is this fake's own pick; the channel reads the wording ("message stream").
      return refusal(1235, `The message stream '${String(stream)}' was not found on this server.`);
    }
    const metadata = body.Metadata;
    if (metadata !== undefined && (typeof metadata !== 'object' || metadata === null || Object.values(metadata).some((v) => typeof v !== 'string'))) {
      return refusal(300, 'Metadata values must be strings.');
    }
    if (inactive.has(addressOf(to)!.toLowerCase())) {
      return refusal(406, `You tried to send to recipient(s) that have been marked as inactive. Found inactive addresses: ${addressOf(to)}. Inactive recipients are ones that have generated a hard bounce, a spam complaint, or a manual suppression.`);
    }
    return undefined;
  };

  /** The automatic webhook for an accepted message, as Postmark posts it once the receiving server answered. */
  const autoWebhook = (m: AcceptedEmail) => {
    const hook = webhooks;
    if (hook === undefined || neverDeliver) return;
    const bounceType = bouncing.get(m.to.toLowerCase());
    const record = bounceType === undefined ? deliveryRecord(m) : bounceRecord(m, bounceType);
    const p = (async () => {
      if ((hook.delayMs ?? 0) > 0) await new Promise((r) => setTimeout(r, hook.delayMs));
      const res = await postWebhook(hook.send, record, hook.auth).catch(() => ({ status: 0, body: '' }));
      webhookPosts.push({ messageId: m.messageId, recordType: record.RecordType as string, status: res.status });
    })();
    pending.add(p);
    void p.finally(() => pending.delete(p));
  };

  const handle = async (req: http.IncomingMessage, res: http.ServerResponse, raw: Buffer, batch: boolean) => {
    await delay();
    if (res.destroyed) return;
    const scripted = script.shift();
    const fault = scripted === undefined ? pickFault() : undefined;
    if (scripted === 'reset' || fault === 'reset') {
      count('reset');
      req.socket.resetAndDestroy();
      return;
    }
    if (scripted === 'hang' || fault === 'hang') {
      count('hang'); // never answered: the client's own deadline has to end it
      return;
    }
    if (scripted !== undefined) {
      count('scripted');
      send(res, scripted.status, scripted.body, scripted.headers);
      return;
    }
    if (fault === 'rate_limited') {
      count('rate_limited');
      send(res, 429, refusal(429, 'Rate limit exceeded.'), opts.retryAfterSeconds === undefined ? {} : { 'retry-after': String(opts.retryAfterSeconds) });
      return;
    }
    if (fault === 'server_error') { count('server_error'); send(res, 500, refusal(0, 'Internal server error.')); return; }

    const token = req.headers['x-postmark-server-token'];
    if (typeof token !== 'string' || token === '') {
      count('unauthorized');
      send(res, 401, refusal(10, 'No Account or Server API tokens were supplied in the HTTP headers. Please add a header for either X-Postmark-Server-Token or X-Postmark-Account-Token.'));
      return;
    }
    if (token !== serverToken) {
      count('unauthorized');
      send(res, 401, refusal(10, 'Request does not contain a valid Server token.'));
      return;
    }
    let json: unknown;
    try {
      json = JSON.parse(raw.toString('utf8'));
    } catch {
      json = undefined;
    }
    if (batch) {
      if (!Array.isArray(json) || json.some((b) => typeof b !== 'object' || b === null || Array.isArray(b))) {
        count('refused');
        send(res, 422, refusal(402, 'Received invalid JSON input.'));
        return;
      }
      if (json.length > MAX_BATCH_MESSAGES) {
        // The code is this fake's own pick; what matters is that the whole request is refused.
        count('refused');
        send(res, 422, refusal(300, `Batch requests may contain at most ${MAX_BATCH_MESSAGES} messages; this one has ${json.length}.`));
        return;
      }
      const taken: AcceptedEmail[] = [];
      const results = (json as Record<string, unknown>[]).map((b) => {
        const problem = validate(b);
        if (problem !== undefined) return { ...problem, To: b.To };
        const m = accept(b, token, true);
        taken.push(m);
        return { To: b.To, SubmittedAt: m.submittedAt.toISOString(), MessageID: m.messageId, ErrorCode: 0, Message: 'OK' };
      });
      count(taken.length > 0 ? 'accepted' : 'refused');
      send(res, 200, results);
      for (const m of taken) autoWebhook(m);
      return;
    }
    if (typeof json !== 'object' || json === null || Array.isArray(json)) {
      count('refused');
      send(res, 422, refusal(402, 'Received invalid JSON input.'));
      return;
    }
    const body = json as Record<string, unknown>;
    const problem = validate(body);
    if (problem !== undefined) {
      count('refused');
      send(res, 422, problem);
      return;
    }
    const m = accept(body, token, false);
    count('accepted');
    send(res, 200, { To: body.To, SubmittedAt: m.submittedAt.toISOString(), MessageID: m.messageId, ErrorCode: 0, Message: 'OK' });
    autoWebhook(m);
  };

  /** Records one message Postmark accepted. */
  const accept = (body: Record<string, unknown>, token: string, viaBatch: boolean): AcceptedEmail => {
    const m: AcceptedEmail = {
      messageId: randomUUID(),
      from: body.From as string,
      to: addressOf(body.To as string)!,
      subject: typeof body.Subject === 'string' ? body.Subject : '',
      textBody: typeof body.TextBody === 'string' ? body.TextBody : undefined,
      htmlBody: typeof body.HtmlBody === 'string' ? body.HtmlBody : undefined,
      messageStream: typeof body.MessageStream === 'string' ? body.MessageStream : undefined,
      metadata: (body.Metadata ?? {}) as Record<string, string>,
      trackOpens: body.TrackOpens,
      trackLinks: body.TrackLinks,
      body,
      serverToken: token,
      submittedAt: new Date(),
      viaBatch,
    };
    accepted.push(m);
    return m;
  };

  const server = http.createServer((req, res) => {
    if (req.method !== 'POST' || (req.url !== '/email' && req.url !== '/email/batch')) {
      send(res, 404, refusal(0, 'Not found.'));
      return;
    }
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      handle(req, res, Buffer.concat(chunks), req.url === '/email/batch').catch(() => res.destroy());
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;

  return {
    url: `http://127.0.0.1:${port}`,
    serverToken,
    accepted,
    outcomes,
    acceptedFor: (id) => accepted.filter((m) => m.metadata.delivery_id === id),
    respondNext: (...answers) => { script.push(...answers); },
    setFaults: (f) => { faults = { ...f }; },
    setLatency: (l) => { latency = l; },
    deactivate: (address) => { inactive.add(address.toLowerCase()); },
    setNeverDeliver: (on) => { neverDeliver = on; },
    bounceAddress: (address, type = 'HardBounce') => { bouncing.set(address.toLowerCase(), type); },
    setWebhooks: (w) => { webhooks = w; },
    webhookPosts,
    settled: async () => { await Promise.all([...pending]); },
    reset: () => {
      accepted.length = 0;
      script.length = 0;
      webhookPosts.length = 0;
      inactive.clear();
      bouncing.clear();
      neverDeliver = false;
      for (const k of Object.keys(outcomes)) delete outcomes[k as Outcome];
    },
    close: async () => {
      await Promise.all([...pending]);
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

type MessageRef = Pick<AcceptedEmail, 'messageId' | 'to' | 'metadata'> & Partial<Pick<AcceptedEmail, 'subject' | 'from' | 'messageStream'>>;

/** A Delivery record as Postmark posts it. */
export function deliveryRecord(m: MessageRef, at: Date = new Date()): Record<string, unknown> {
  return {
    RecordType: 'Delivery', ServerID: 23, MessageStream: m.messageStream ?? 'outbound', MessageID: m.messageId, Recipient: m.to,
    Tag: '', DeliveredAt: at.toISOString(), Details: `smtp;250 2.0.0 OK ${randomInt(1e9)} - gsmtp`, Metadata: m.metadata,
  };
}

const BOUNCE_TEXT: Record<string, { code: number; name: string; description: string; details: string; inactive: boolean }> = {
  HardBounce: { code: 1, name: 'Hard bounce', description: 'The server was unable to deliver your message (ex: unknown user, mailbox not found).', details: 'smtp;550 5.1.1 The email account that you tried to reach does not exist.', inactive: true },
  SoftBounce: { code: 4096, name: 'Soft bounce/Undeliverable', description: 'Unable to temporarily deliver this email.', details: 'smtp;452 4.2.2 The email account that you tried to reach is over quota.', inactive: false },
  Transient: { code: 2, name: 'Message delayed/Undeliverable', description: 'The server could not temporarily deliver your message (ex: Message is delayed due to network troubles).', details: 'smtp;421 4.4.2 connection timed out', inactive: false },
  AutoResponder: { code: 64, name: 'Auto responder', description: 'Automatic email responder (ex: "Out of Office" or "On Vacation").', details: 'Out of office until Monday', inactive: false },
  BadEmailAddress: { code: 100000, name: 'Invalid email address', description: 'The address is not a valid email address.', details: 'Invalid email address', inactive: true },
};

/** A Bounce record as Postmark posts it (ID: Postmark's bounce id, a large integer). */
export function bounceRecord(m: MessageRef, type = 'HardBounce', extra: Record<string, unknown> = {}, at: Date = new Date()): Record<string, unknown> {
  const t = BOUNCE_TEXT[type] ?? { code: 2048, name: type, description: type, details: type, inactive: false };
  return {
    RecordType: 'Bounce', ID: randomInt(1e12), Type: type, TypeCode: t.code, Name: t.name, Tag: '', MessageID: m.messageId,
    Metadata: m.metadata, ServerID: 23, MessageStream: m.messageStream ?? 'outbound', Description: t.description, Details: t.details,
    Email: m.to, From: m.from ?? 'alerts@pruuf.test', BouncedAt: at.toISOString(), DumpAvailable: true, Inactive: t.inactive,
    CanActivate: true, Subject: m.subject ?? 'Test subject', Content: '', ...extra,
  };
}

/** A SpamComplaint record as Postmark posts it. */
export function spamComplaintRecord(m: MessageRef, at: Date = new Date()): Record<string, unknown> {
  return {
    ...bounceRecord(m, 'SpamComplaint', {}, at), RecordType: 'SpamComplaint', TypeCode: 512, Name: 'Spam complaint',
    Description: 'The subscriber explicitly marked this message as spam.', Details: 'Test spam complaint details', Inactive: true,
  };
}

/** The Authorization header Postmark sends for a webhook URL with user:password@ in it. */
export function basicAuth(auth: WebhookAuth): string {
  return `Basic ${Buffer.from(`${auth.user}:${auth.password}`, 'utf8').toString('base64')}`;
}

/** Posts one record to our webhook as Postmark does: JSON, with basic auth (none when `auth` is undefined). */
export function postWebhook(sender: WebhookSender, record: unknown, auth: WebhookAuth | undefined): Promise<{ status: number; body: string }> {
  return sender(JSON.stringify(record), {
    'content-type': 'application/json', 'user-agent': 'Postmark',
    ...(auth === undefined ? {} : { authorization: basicAuth(auth) }),
  });
}

/** Over HTTP, to our app listening at `url` (the full webhook URL). */
export function webhookVia(url: string): WebhookSender {
  return async (body, headers) => {
    const res = await fetch(url, { method: 'POST', headers, body });
    return { status: res.status, body: await res.text() };
  };
}

type Injectable = { inject: (opts: { method: 'POST'; url: string; headers: Record<string, string>; payload: string }) => PromiseLike<{ statusCode: number; body: string }> };

/** Through Fastify's inject, for tests that do not listen on a port. */
export function webhookViaInject(app: Injectable, path = '/webhooks/postmark/events'): WebhookSender {
  return async (body, headers) => {
    const res = await app.inject({ method: 'POST', url: path, headers, payload: body });
    return { status: res.statusCode, body: res.body };
  };
}
