import { randomBytes } from 'node:crypto';
import twilio from 'twilio';
import type { TwilioErrorReply } from './twilio.js';

/**
 * Twilio's Calls API in the fake (tests/fakes/twilio.ts serves it beside Messages): POST
 * /2010-04-01/Accounts/{Sid}/Calls.json with a form body → 201 with the Call resource
 * ({sid: 'CA…', status: 'queued', …}), errors as Twilio's {code, message, more_info, status}.
 * Nothing rings: a test drives each call with `callDriver`, which does what Twilio does once the
 * phone is answered (or not): fetch the TwiML URL, post the keys to the <Gather> action, post the
 * status callbacks; every request signed with X-Twilio-Signature like Twilio's.
 */

export type AcceptedCall = {
  sid: string;
  to: string;
  from: string;
  url: string;
  method: string;
  statusCallback: string | null;
  statusCallbackEvents: string[];
  machineDetection: string | null;
  timeout: string | null;
  receivedAt: number;
  params: Record<string, string>;
};

const E164 = /^\+[1-9]\d{6,14}$/;

const error = (e: TwilioErrorReply) => ({
  status: e.status, body: { code: e.code, message: e.message, more_info: `https://www.twilio.com/docs/errors/${e.code}`, status: e.status },
});

/** One POST to Calls.json (authenticated already): the answer to send, and the call when accepted. */
export function acceptCall(form: URLSearchParams, accountSid: string, numberErrors: Map<string, TwilioErrorReply>, receivedAt: number):
{ status: number; body: unknown; call?: AcceptedCall } {
  const to = form.get('To') ?? '';
  const from = form.get('From') ?? '';
  const url = form.get('Url') ?? '';
  const invalid: TwilioErrorReply | undefined =
    to === '' ? { status: 400, code: 21201, message: "No 'To' number is specified" }
      : from === '' ? { status: 400, code: 21213, message: "No 'From' number is specified" }
        : url === '' && form.get('Twiml') === null ? { status: 400, code: 21205, message: 'Url parameter is required.' }
          : numberErrors.get(to) ?? (E164.test(to) ? undefined : { status: 400, code: 21211, message: `Invalid 'To' Phone Number: ${to}` });
  if (invalid !== undefined) return error(invalid);
  const call: AcceptedCall = {
    sid: `CA${randomBytes(16).toString('hex')}`, to, from, url, method: form.get('Method') ?? 'POST',
    statusCallback: form.get('StatusCallback'), statusCallbackEvents: form.getAll('StatusCallbackEvent'),
    machineDetection: form.get('MachineDetection'), timeout: form.get('Timeout'), receivedAt, params: Object.fromEntries(form.entries()),
  };
  const now = new Date().toUTCString().replace('GMT', '+0000');
  return {
    status: 201,
    call,
    body: {
      sid: call.sid, account_sid: accountSid, to, to_formatted: to, from, from_formatted: from, status: 'queued', direction: 'outbound-api',
      api_version: '2010-04-01', date_created: now, date_updated: now, start_time: null, end_time: null, duration: null, price: null,
      price_unit: 'USD', answered_by: null, caller_name: null, forwarded_from: null, group_sid: null, parent_call_sid: null,
      phone_number_sid: null, queue_time: '0', trunk_sid: null,
      uri: `/2010-04-01/Accounts/${accountSid}/Calls/${call.sid}.json`, subresource_uris: {},
    },
  };
}

/** How a signed webhook reaches the app: app.inject in tests, fetch against a listening server elsewhere. */
export type WebhookPost = (url: string, params: Record<string, string>, signature: string) => Promise<{ status: number; body: string }>;

export const fetchPost: WebhookPost = async (url, params, signature) => {
  const res = await fetch(url, {
    method: 'POST', body: new URLSearchParams(params).toString(),
    headers: { 'content-type': 'application/x-www-form-urlencoded', 'x-twilio-signature': signature },
  });
  return { status: res.status, body: await res.text() };
};

/** What one driven call went through: each TwiML document the app answered, and every webhook's HTTP status. */
export type CallRun = { twiml: string[]; statuses: number[] };

export type CallDriver = {
  /** The latest call to this number. */
  callTo: (to: string) => AcceptedCall | undefined;
  /** Answered by a person: fetches the TwiML, presses each key in turn on the <Gather> there is, hangs up (completed). */
  answer: (call: AcceptedCall, opts?: { digits?: string | string[]; answeredBy?: string; duration?: number }) => Promise<CallRun>;
  /** Rang out unanswered, or the line was busy, or Twilio could not place it. */
  noAnswer: (call: AcceptedCall) => Promise<CallRun>;
  busy: (call: AcceptedCall) => Promise<CallRun>;
  failed: (call: AcceptedCall, errorCode?: string) => Promise<CallRun>;
  /** Answered by voicemail (machine detection): the TwiML is fetched with AnsweredBy, then completed. */
  machine: (call: AcceptedCall) => Promise<CallRun>;
};

/** The action URL of the document's <Gather>, or undefined when it asks nothing. */
export function gatherAction(twiml: string): string | undefined {
  const m = /<Gather\b[^>]*\baction="([^"]+)"/.exec(twiml);
  return m?.[1]?.replace(/&amp;/g, '&');
}

export function callDriver(fake: { accountSid: string; authToken: string; calls: AcceptedCall[] }, post: WebhookPost = fetchPost): CallDriver {
  const base = (c: AcceptedCall, status: string): Record<string, string> => ({
    AccountSid: fake.accountSid, ApiVersion: '2010-04-01', CallSid: c.sid, CallStatus: status, Called: c.to, Caller: c.from,
    Direction: 'outbound-api', From: c.from, To: c.to,
  });
  const signed = async (run: CallRun, url: string, params: Record<string, string>) => {
    const res = await post(url, params, twilio.getExpectedTwilioSignature(fake.authToken, url, params));
    run.statuses.push(res.status);
    return res;
  };
  let sequence = 0;
  const status = async (run: CallRun, c: AcceptedCall, s: string, event: string, extra: Record<string, string> = {}) => {
    // Progress events only when asked for; the final status always (as Twilio does).
    if (c.statusCallback === null || (event !== 'completed' && !c.statusCallbackEvents.includes(event))) return;
    await signed(run, c.statusCallback, {
      ...base(c, s), CallbackSource: 'call-progress-events', SequenceNumber: String(sequence++), Timestamp: new Date().toUTCString(), ...extra,
    });
  };
  const twiml = async (run: CallRun, url: string, params: Record<string, string>) => {
    const res = await signed(run, url, params);
    run.twiml.push(res.body);
    return res.body;
  };
  const unanswered = async (c: AcceptedCall, final: string, extra: Record<string, string> = {}) => {
    const run: CallRun = { twiml: [], statuses: [] };
    await status(run, c, 'initiated', 'initiated');
    if (final !== 'failed') await status(run, c, 'ringing', 'ringing');
    await status(run, c, final, 'completed', { CallDuration: '0', ...extra });
    return run;
  };
  return {
    callTo: (to) => [...fake.calls].reverse().find((c) => c.to === to),
    async answer(c, opts = {}) {
      const run: CallRun = { twiml: [], statuses: [] };
      const answeredBy = opts.answeredBy ?? 'human';
      await status(run, c, 'initiated', 'initiated');
      await status(run, c, 'ringing', 'ringing');
      let doc = await twiml(run, c.url, { ...base(c, 'in-progress'), AnsweredBy: answeredBy });
      await status(run, c, 'in-progress', 'answered', { AnsweredBy: answeredBy });
      const keys = opts.digits === undefined ? [] : Array.isArray(opts.digits) ? opts.digits : [opts.digits];
      for (const digits of keys) {
        const action = gatherAction(doc);
        if (action === undefined) break;
        doc = await twiml(run, action, { ...base(c, 'in-progress'), Digits: digits, FinishedOnKey: '' });
      }
      await status(run, c, 'completed', 'completed', { CallDuration: String(opts.duration ?? 42), AnsweredBy: answeredBy });
      return run;
    },
    noAnswer: (c) => unanswered(c, 'no-answer'),
    busy: (c) => unanswered(c, 'busy'),
    failed: (c, errorCode) => unanswered(c, 'failed', errorCode === undefined ? {} : { ErrorCode: errorCode }),
    async machine(c) {
      const run: CallRun = { twiml: [], statuses: [] };
      await status(run, c, 'initiated', 'initiated');
      await status(run, c, 'ringing', 'ringing');
      await twiml(run, c.url, { ...base(c, 'in-progress'), AnsweredBy: 'machine_start' });
      await status(run, c, 'in-progress', 'answered', { AnsweredBy: 'machine_start' });
      await status(run, c, 'completed', 'completed', { CallDuration: '3', AnsweredBy: 'machine_start' });
      return run;
    },
  };
}
