import { randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import twilio from 'twilio';
import { acceptCall, type AcceptedCall } from './twilio-voice.js';

/**
 * A local Twilio Messages API (POST /2010-04-01/Accounts/{AccountSid}/Messages.json) speaking
 * Twilio's wire format: Basic auth with the account sid and auth token, form-encoded parameters,
 * 201 with the Message resource, errors as {code, message, more_info, status}. The magic numbers
 * of Twilio's test credentials fail as they do there. Faults are drawn per request:
 * 500s, 429 (code 20429) with Retry-After, hangs (never answers) and connection resets, plus a
 * latency. Every accepted message is recorded with when it arrived, so a test can count them.
 * It also takes calls (POST …/Calls.json, tests/fakes/twilio-voice.ts: `calls`, and a driver that
 * answers them and presses keys).
 */

export const TWILIO_TEST_NUMBERS = {
  invalid: '+15005550001', // 21211
  unroutable: '+15005550002', // 21612
  noInternationalPermission: '+15005550003', // 21408
  optedOut: '+15005550004', // 21610
  notMobile: '+15005550009', // 21614
} as const;

export type TwilioErrorReply = { status: number; code: number; message: string; retryAfter?: string };

const MAGIC: Record<string, TwilioErrorReply> = {
  [TWILIO_TEST_NUMBERS.invalid]: { status: 400, code: 21211, message: "The 'To' number +15005550001 is not a valid phone number." },
  [TWILIO_TEST_NUMBERS.unroutable]: { status: 400, code: 21612, message: "The 'To' phone number: +15005550002, is not currently reachable using the 'From' phone number via SMS." },
  [TWILIO_TEST_NUMBERS.noInternationalPermission]: { status: 400, code: 21408, message: 'Permission to send an SMS has not been enabled for the region indicated by the \'To\' number: +15005550003.' },
  [TWILIO_TEST_NUMBERS.optedOut]: { status: 400, code: 21610, message: 'Attempt to send to unsubscribed recipient' },
  [TWILIO_TEST_NUMBERS.notMobile]: { status: 400, code: 21614, message: "'To' number +15005550009 is not a valid mobile number" },
};

export type FakeTwilioFaults = {
  /** Share of requests (0..1) answered 500. */
  error500?: number;
  /** Share answered 429 with code 20429 and Retry-After: retryAfterSeconds. */
  tooMany?: number;
  retryAfterSeconds?: number;
  /** Share that are read and never answered (until close). */
  hang?: number;
  /** Share whose connection is reset (TCP RST) after the request was read. */
  reset?: number;
};

export type FakeTwilioOptions = {
  accountSid?: string;
  authToken?: string;
  /** Fixed, or uniform in [min, max], before every answer. */
  latencyMs?: number | [number, number];
  faults?: FakeTwilioFaults;
  /** Extra per-number errors, on top of the magic test numbers. */
  numberErrors?: Record<string, TwilioErrorReply>;
  random?: () => number;
};

/** Runs after a message is accepted and before the answer leaves: Twilio's status callback winning the race with its own answer. */
export type BeforeAnswer = (message: AcceptedMessage) => Promise<void>;

export type AcceptedMessage = {
  sid: string;
  to: string;
  from: string | null;
  messagingServiceSid: string | null;
  body: string;
  validityPeriod: string | null;
  statusCallback: string | null;
  /** Date.now() when the request arrived. */
  receivedAt: number;
  params: Record<string, string>;
};

export type FakeTwilio = {
  /** The API base to give TWILIO_API_BASE. */
  url: string;
  accountSid: string;
  authToken: string;
  accepted: AcceptedMessage[];
  /** Calls accepted by the Calls API, in order. */
  calls: AcceptedCall[];
  /** Requests that reached the server, answered or not. */
  requests: () => number;
  /** Outcome counts: accepted, error400, error401, error404, error500, tooMany, hang, reset; and abandoned: hung requests the client gave up on. */
  outcomes: Record<string, number>;
  setFaults: (faults: FakeTwilioFaults) => void;
  setLatency: (latencyMs: number | [number, number]) => void;
  setNumberError: (to: string, reply: TwilioErrorReply | undefined) => void;
  /** undefined: answer at once (the default). */
  setBeforeAnswer: (hook: BeforeAnswer | undefined) => void;
  close: () => Promise<void>;
};

const E164 = /^\+[1-9]\d{6,14}$/;
const sid = (prefix: string) => `${prefix}${randomBytes(16).toString('hex')}`;

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
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text), ...headers });
  res.end(text);
}

function sendError(res: ServerResponse, e: TwilioErrorReply): void {
  sendJson(res, e.status, { code: e.code, message: e.message, more_info: `https://www.twilio.com/docs/errors/${e.code}`, status: e.status },
    e.retryAfter === undefined ? {} : { 'retry-after': e.retryAfter });
}

export async function startFakeTwilio(opts: FakeTwilioOptions = {}): Promise<FakeTwilio> {
  const accountSid = opts.accountSid ?? sid('AC');
  const authToken = opts.authToken ?? randomBytes(16).toString('hex');
  const random = opts.random ?? Math.random;
  let faults: FakeTwilioFaults = { ...opts.faults };
  let latency = opts.latencyMs ?? 0;
  let beforeAnswer: BeforeAnswer | undefined;
  const numberErrors = new Map(Object.entries({ ...MAGIC, ...opts.numberErrors }));
  const accepted: AcceptedMessage[] = [];
  const calls: AcceptedCall[] = [];
  const outcomes: Record<string, number> = {};
  const count = (o: string) => { outcomes[o] = (outcomes[o] ?? 0) + 1; };
  let requests = 0;
  const sockets = new Set<Socket>();
  const hung = new Set<ServerResponse>();

  const wait = () => {
    const ms = typeof latency === 'number' ? latency : latency[0] + random() * (latency[1] - latency[0]);
    return ms > 0 ? new Promise((r) => setTimeout(r, ms)) : Promise.resolve();
  };

  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    requests += 1;
    const receivedAt = Date.now();
    const raw = await readBody(req);
    // One draw decides the fault, so the shares add up as configured.
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
    if (hit(faults.error500)) {
      count('error500');
      sendJson(res, 500, { code: 20500, message: 'Internal Server Error', more_info: 'https://www.twilio.com/docs/errors/20500', status: 500 });
      return;
    }
    if (hit(faults.tooMany)) {
      count('tooMany');
      sendError(res, { status: 429, code: 20429, message: 'Too Many Requests', retryAfter: String(faults.retryAfterSeconds ?? 1) });
      return;
    }

    const match = /^\/2010-04-01\/Accounts\/([^/]+)\/(Messages|Calls)\.json$/.exec(req.url ?? '');
    if (req.method !== 'POST' || match === null) {
      count('error404');
      sendError(res, { status: 404, code: 20404, message: `The requested resource ${req.url ?? ''} was not found` });
      return;
    }
    const expected = `Basic ${Buffer.from(`${accountSid}:${authToken}`).toString('base64')}`;
    if (req.headers.authorization !== expected || match[1] !== accountSid) {
      count('error401');
      sendError(res, { status: 401, code: 20003, message: 'Authenticate' });
      return;
    }
    const form = new URLSearchParams(raw);
    if (match[2] === 'Calls') {
      const answer = acceptCall(form, accountSid, numberErrors, receivedAt);
      count(answer.call === undefined ? `error${answer.status}` : 'accepted');
      if (answer.call !== undefined) calls.push(answer.call);
      sendJson(res, answer.status, answer.body);
      return;
    }
    const params = Object.fromEntries(form.entries());
    const to = params.To;
    const invalid: TwilioErrorReply | undefined =
      to === undefined || to === '' ? { status: 400, code: 21604, message: "A 'To' phone number is required." }
        : params.From === undefined && params.MessagingServiceSid === undefined ? { status: 400, code: 21603, message: "A 'From' phone number is required." }
          : params.Body === undefined || params.Body === '' ? { status: 400, code: 21602, message: 'Message body is required.' }
            : params.Body.length > 1600 ? { status: 400, code: 21617, message: 'The concatenated message body exceeds the 1600 character limit.' }
              : numberErrors.get(to) ?? (E164.test(to) ? undefined : { status: 400, code: 21211, message: `The 'To' number ${to} is not a valid phone number.` });
    if (invalid !== undefined) {
      count(`error${invalid.status}`);
      sendError(res, invalid);
      return;
    }
    const message: AcceptedMessage = {
      sid: sid('SM'), to: to!, from: params.From ?? null, messagingServiceSid: params.MessagingServiceSid ?? null, body: params.Body!,
      validityPeriod: params.ValidityPeriod ?? null, statusCallback: params.StatusCallback ?? null, receivedAt, params,
    };
    accepted.push(message);
    count('accepted');
    if (beforeAnswer !== undefined) await beforeAnswer(message);
    const now = new Date().toUTCString().replace('GMT', '+0000');
    sendJson(res, 201, {
      account_sid: accountSid, api_version: '2010-04-01', body: message.body, date_created: now, date_sent: null, date_updated: now,
      direction: 'outbound-api', error_code: null, error_message: null, from: message.from, messaging_service_sid: message.messagingServiceSid,
      num_media: '0', num_segments: '1', price: null, price_unit: 'USD', sid: message.sid,
      status: message.messagingServiceSid === null ? 'queued' : 'accepted',
      subresource_uris: { media: `/2010-04-01/Accounts/${accountSid}/Messages/${message.sid}/Media.json` },
      to: message.to, uri: `/2010-04-01/Accounts/${accountSid}/Messages/${message.sid}.json`,
    });
  };

  const server = createServer((req, res) => {
    handle(req, res).catch((err: Error) => {
      if (!res.headersSent) sendJson(res, 500, { code: 20500, message: err.message, status: 500 });
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
    accountSid,
    authToken,
    accepted,
    calls,
    requests: () => requests,
    outcomes,
    setFaults: (f) => { faults = { ...f }; },
    setLatency: (l) => { latency = l; },
    setNumberError: (to, reply) => { if (reply === undefined) numberErrors.delete(to); else numberErrors.set(to, reply); },
    setBeforeAnswer: (hook) => { beforeAnswer = hook; },
    close: async () => {
      const stillHung = [...hung];
      hung.clear();
      for (const res of stillHung) res.destroy();
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** X-Twilio-Signature exactly as Twilio computes it: HMAC-SHA1 over the URL and the sorted parameters. */
export function twilioSignature(authToken: string, url: string, params: Record<string, string>): string {
  return twilio.getExpectedTwilioSignature(authToken, url, params);
}

/** The form parameters of a status callback for an outbound message, as Twilio posts them. */
export function statusCallbackParams(m: { sid: string; accountSid: string; to: string; from?: string | null }, status: string, errorCode?: string): Record<string, string> {
  return {
    SmsSid: m.sid, SmsStatus: status, MessageStatus: status, To: m.to, MessageSid: m.sid, AccountSid: m.accountSid,
    From: m.from ?? '+15550000000', ApiVersion: '2010-04-01',
    ...(errorCode === undefined ? {} : { ErrorCode: errorCode }),
  };
}

/** The form parameters of an incoming SMS webhook, as Twilio posts them. */
export function inboundParams(m: { from: string; to: string; body: string; sid?: string; accountSid: string }): Record<string, string> {
  const messageSid = m.sid ?? sid('SM');
  return {
    ToCountry: 'US', ToState: 'CA', SmsMessageSid: messageSid, NumMedia: '0', ToCity: '', FromZip: '', SmsSid: messageSid,
    FromState: '', SmsStatus: 'received', FromCity: '', Body: m.body, FromCountry: 'GB', To: m.to, ToZip: '',
    NumSegments: '1', MessageSid: messageSid, AccountSid: m.accountSid, From: m.from, ApiVersion: '2010-04-01',
  };
}

/**
 * Posts a signed webhook to a listening server (benchmarks and fault runs, where the app runs on
 * a real port and publicBaseUrl is that address). Tests with app.inject sign with twilioSignature.
 */
export async function postSignedWebhook(authToken: string, url: string, params: Record<string, string>): Promise<Response> {
  return fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', 'x-twilio-signature': twilioSignature(authToken, url, params) },
    body: new URLSearchParams(params).toString(),
  });
}
