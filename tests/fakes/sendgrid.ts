import { randomBytes } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { seededRandom } from './random.js';

/**
 * A local SendGrid v3 Mail Send server: the real @sendgrid/mail request code runs against it.
 * It answers as SendGrid does (202 + X-Message-Id, error bodies `{"errors": [...]}`, 429 with
 * X-RateLimit-*), and can misbehave on purpose: scripted answers for contract tests, and random
 * fault rates with latency for benchmarks and fault runs. Every accepted message is recorded with
 * its custom_args, so a test counts what really left.
 *
 * A request with several personalizations (one per recipient, each with its own subject,
 * substitutions and custom_args) is recorded as one accepted message per personalization, as the
 * recipient gets it: the substitutions applied to the shared content, the request's custom_args
 * under the personalization's own, all sharing the request's X-Message-Id. Like SendGrid it
 * refuses the whole request (400, naming the personalization's field) for one bad address in it,
 * and for an address that appears twice.
 */

export const FAKE_SENDGRID_API_KEY = 'SG.fake-key.for-local-tests-only';

/** A scripted answer: a status (with headers/body), a request that never gets an answer, or a TCP reset. */
export type ScriptedAnswer = { status: number; headers?: Record<string, string>; body?: unknown } | 'hang' | 'reset';

/** Percentages (0–100) of requests that fail each way, decided independently per request. */
export type SendGridFaults = { serverErrorPct?: number; rateLimitPct?: number; hangPct?: number; resetPct?: number };

export type FakeSendGridOptions = {
  apiKey?: string;
  /** Added before answering; a range picks uniformly within it. */
  latencyMs?: number | { min: number; max: number };
  faults?: SendGridFaults;
  /** A 429's X-RateLimit-Reset is this many seconds ahead (epoch seconds, rounded up). */
  rateLimitResetSeconds?: number;
  /** Deterministic fault runs pass a seeded generator. */
  random?: () => number;
  /** SendGrid refuses bodies above 30 MB with 413. */
  maxBodyBytes?: number;
};

/** One recipient's message (one personalization of a request), as the recipient gets it. */
export type AcceptedMail = {
  /** The request's X-Message-Id: shared by every personalization of one request. */
  messageId: string;
  to: string[];
  from: { email: string; name?: string };
  subject: string;
  content: { type: string; value: string }[];
  customArgs: Record<string, string>;
  trackingSettings: Record<string, unknown> | undefined;
  body: Record<string, unknown>;
  authorization: string | undefined;
  receivedAt: Date;
};

export type Outcome = 'accepted' | 'server_error' | 'rate_limited' | 'hang' | 'reset' | 'unauthorized' | 'bad_request' | 'too_large' | 'scripted';

export type FakeSendGrid = {
  /** Base URL for SENDGRID_API_BASE. */
  url: string;
  apiKey: string;
  /** One entry per personalization accepted (a request with many gives many). */
  accepted: AcceptedMail[];
  /** Every request answered 202, with how many personalizations it carried. */
  requests: { messageId: string; personalizations: number }[];
  /** Requests by outcome, for fault-run reports. */
  outcomes: Record<Outcome, number>;
  acceptedFor: (deliveryId: string) => AcceptedMail[];
  /** The next requests get these answers, in order, before any fault rate applies. */
  respondNext: (...answers: ScriptedAnswer[]) => void;
  setFaults: (faults: SendGridFaults) => void;
  setLatency: (latency: FakeSendGridOptions['latencyMs']) => void;
  reset: () => void;
  close: () => Promise<void>;
};

export { seededRandom };

const EMAIL = /^[^\s@<>]+@[^\s@<>]+\.[^\s@<>]+$/;

/** SendGrid's documented limits for v3 Mail Send. */
export const MAX_PERSONALIZATIONS = 1000;
export const MAX_SUBSTITUTION_BYTES = 10_000;

const stringMap = (v: unknown): boolean =>
  v === undefined || (typeof v === 'object' && v !== null && !Array.isArray(v) && Object.values(v).every((x) => typeof x === 'string'));

/** Legacy substitutions, as SendGrid applies them: every tag replaced by its value, literally. */
function substitute(text: string, substitutions: Record<string, string> | undefined): string {
  let out = text;
  for (const [tag, value] of Object.entries(substitutions ?? {})) out = out.split(tag).join(value);
  return out;
}

const errors = (message: string, field: string | null = null, help: string | null = null) => ({ errors: [{ message, field, help }] });

/** The checks SendGrid makes that our requests could fail; first problem wins, like its 400s. */
function validate(body: Record<string, unknown>): { message: string; field: string | null } | undefined {
  const personalizations = body.personalizations;
  if (!Array.isArray(personalizations) || personalizations.length === 0) {
    return { message: 'The personalizations field is required and must have at least one personalization.', field: 'personalizations' };
  }
  if (personalizations.length > MAX_PERSONALIZATIONS) {
    return { message: `The personalization block is limited to ${MAX_PERSONALIZATIONS} personalizations per API request. You have provided ${personalizations.length} personalizations. Please consider splitting this into multiple requests and resending your request.`, field: 'personalizations' };
  }
  const seen = new Set<string>();
  for (const [i, p] of personalizations.entries()) {
    const to = (p as { to?: unknown }).to;
    if (!Array.isArray(to) || to.length === 0) return { message: 'The to array is required for all personalization objects, and must have at least one email object with a valid email address.', field: `personalizations.${i}.to` };
    for (const [j, r] of to.entries()) {
      const email = (r as { email?: unknown }).email;
      if (typeof email !== 'string' || !EMAIL.test(email)) return { message: 'Does not contain a valid address.', field: `personalizations.${i}.to.${j}.email` };
      if (seen.has(email.toLowerCase())) {
        return { message: 'Each unique email address in the personalizations array should only be included once. You have included an address more than once.', field: null };
      }
      seen.add(email.toLowerCase());
    }
    const { subject, custom_args: args, substitutions } = p as { subject?: unknown; custom_args?: unknown; substitutions?: unknown };
    if (subject !== undefined && (typeof subject !== 'string' || subject === '')) return { message: 'The subject of a personalization must be a string at least one character in length.', field: `personalizations.${i}.subject` };
    if (!stringMap(args)) return { message: 'Custom args must be an object whose values are strings.', field: `personalizations.${i}.custom_args` };
    if (!stringMap(substitutions)) return { message: 'Substitutions must be an object whose values are strings.', field: `personalizations.${i}.substitutions` };
    if (substitutions !== undefined && Buffer.byteLength(JSON.stringify(substitutions)) > MAX_SUBSTITUTION_BYTES) {
      return { message: `The total size of your substitutions may not exceed ${MAX_SUBSTITUTION_BYTES} bytes per personalization object.`, field: `personalizations.${i}.substitutions` };
    }
  }
  const from = body.from as { email?: unknown } | undefined;
  if (typeof from?.email !== 'string' || !EMAIL.test(from.email)) return { message: 'The from object must be provided for every email send. It is an object that requires the email parameter, but may also contain a name parameter.', field: 'from.email' };
  const everyHasSubject = personalizations.every((p) => typeof (p as { subject?: unknown }).subject === 'string');
  if (!everyHasSubject && (typeof body.subject !== 'string' || body.subject.trim() === '')) return { message: 'The subject is required. You can get around this requirement if you use a template with a subject defined or if every personalization has a subject defined.', field: 'subject' };
  const content = body.content;
  if (!Array.isArray(content) || content.length === 0) return { message: 'Unless a valid template_id is provided, the content parameter is required.', field: 'content' };
  for (const [i, c] of content.entries()) {
    const { type, value } = c as { type?: unknown; value?: unknown };
    if (typeof type !== 'string' || typeof value !== 'string' || value === '') return { message: 'The content value must be a string at least one character in length.', field: `content.${i}.value` };
  }
  if (content.length > 1 && (content[0] as { type: string }).type !== 'text/plain') return { message: 'If present, text/plain content must be first, followed by any other content.', field: 'content.0.type' };
  const args = body.custom_args;
  if (args !== undefined && (typeof args !== 'object' || args === null || Object.values(args).some((v) => typeof v !== 'string'))) {
    return { message: 'Custom args must be an object whose values are strings.', field: 'custom_args' };
  }
  return undefined;
}

export async function startFakeSendGrid(opts: FakeSendGridOptions = {}): Promise<FakeSendGrid> {
  const apiKey = opts.apiKey ?? FAKE_SENDGRID_API_KEY;
  const random = opts.random ?? Math.random;
  const maxBodyBytes = opts.maxBodyBytes ?? 30 * 1024 * 1024;
  let faults: SendGridFaults = { ...opts.faults };
  let latency = opts.latencyMs;
  const script: ScriptedAnswer[] = [];
  const accepted: AcceptedMail[] = [];
  const requests: FakeSendGrid['requests'] = [];
  const outcomes = {} as Record<Outcome, number>;
  const count = (o: Outcome) => { outcomes[o] = (outcomes[o] ?? 0) + 1; };

  const send = (res: http.ServerResponse, status: number, body?: unknown, headers: Record<string, string> = {}) => {
    const text = body === undefined ? '' : JSON.stringify(body);
    res.writeHead(status, { ...(text === '' ? {} : { 'content-type': 'application/json' }), ...headers });
    res.end(text);
  };

  const delay = () => {
    const ms = latency === undefined ? 0 : typeof latency === 'number' ? latency : latency.min + random() * (latency.max - latency.min);
    return ms > 0 ? new Promise((r) => setTimeout(r, ms)) : Promise.resolve();
  };

  /** One roll per request, so the rates add up exactly as configured. */
  const pickFault = (): 'reset' | 'hang' | 'rate_limited' | 'server_error' | undefined => {
    const roll = random() * 100;
    let edge = 0;
    for (const [name, pct] of [['reset', faults.resetPct], ['hang', faults.hangPct], ['rate_limited', faults.rateLimitPct], ['server_error', faults.serverErrorPct]] as const) {
      edge += pct ?? 0;
      if (roll < edge) return name;
    }
    return undefined;
  };

  const rateLimited = (res: http.ServerResponse) => {
    const reset = Math.ceil(Date.now() / 1000 + (opts.rateLimitResetSeconds ?? 1));
    send(res, 429, errors('too many requests'), { 'x-ratelimit-limit': '600', 'x-ratelimit-remaining': '0', 'x-ratelimit-reset': String(reset) });
  };

  const handle = async (req: http.IncomingMessage, res: http.ServerResponse, raw: Buffer) => {
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
    if (fault === 'rate_limited') { count('rate_limited'); rateLimited(res); return; }
    if (fault === 'server_error') { count('server_error'); send(res, 500, errors('internal error')); return; }

    if (req.headers.authorization !== `Bearer ${apiKey}`) {
      count('unauthorized');
      send(res, 401, errors('The provided authorization grant is invalid, expired, or revoked'));
      return;
    }
    let body: Record<string, unknown>;
    try {
      body = JSON.parse(raw.toString('utf8')) as Record<string, unknown>;
      if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new Error('not an object');
    } catch {
      count('bad_request');
      send(res, 400, errors('Bad Request'));
      return;
    }
    const problem = validate(body);
    if (problem !== undefined) {
      count('bad_request');
      send(res, 400, errors(problem.message, problem.field));
      return;
    }
    // One X-Message-Id per request, shared by its personalizations (as SendGrid does).
    const messageId = randomBytes(16).toString('base64url').slice(0, 22);
    type P = { to: { email: string }[]; subject?: string; custom_args?: Record<string, string>; substitutions?: Record<string, string> };
    const receivedAt = new Date();
    const content = body.content as AcceptedMail['content'];
    accepted.push(...(body.personalizations as P[]).map((p): AcceptedMail => ({
      messageId,
      to: p.to.map((t) => t.email),
      from: body.from as AcceptedMail['from'],
      subject: substitute(p.subject ?? (body.subject as string), p.substitutions),
      content: content.map((c) => ({ ...c, value: substitute(c.value, p.substitutions) })),
      customArgs: { ...(body.custom_args as Record<string, string> | undefined), ...p.custom_args },
      trackingSettings: body.tracking_settings as Record<string, unknown> | undefined,
      body,
      authorization: req.headers.authorization,
      receivedAt,
    })));
    requests.push({ messageId, personalizations: (body.personalizations as unknown[]).length });
    count('accepted');
    send(res, 202, undefined, { 'x-message-id': messageId });
  };

  const server = http.createServer((req, res) => {
    if (req.method !== 'POST' || req.url !== '/v3/mail/send') {
      send(res, 404, errors('resource not found'));
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    let tooLarge = false;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > maxBodyBytes) tooLarge = true;
      else chunks.push(c);
    });
    req.on('end', () => {
      if (tooLarge) {
        count('too_large');
        send(res, 413, errors('The JSON payload you have included in your request is too large.'));
        return;
      }
      handle(req, res, Buffer.concat(chunks)).catch(() => res.destroy());
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;

  return {
    url: `http://127.0.0.1:${port}`,
    apiKey,
    accepted,
    requests,
    outcomes,
    acceptedFor: (id) => accepted.filter((m) => m.customArgs.delivery_id === id),
    respondNext: (...answers) => { script.push(...answers); },
    setFaults: (f) => { faults = { ...f }; },
    setLatency: (l) => { latency = l; },
    reset: () => {
      accepted.length = 0;
      requests.length = 0;
      script.length = 0;
      for (const k of Object.keys(outcomes)) delete outcomes[k as Outcome];
    },
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
