import { createHash, createSecretKey, generateKeyPairSync, randomBytes, randomUUID, type KeyObject } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { jwtVerify, SignJWT } from 'jose';

/**
 * A local Vonage Voice API (POST /v1/calls on the apiHost) speaking Vonage's wire format. Each
 * request must carry `Authorization: Bearer <JWT>`, RS256, signed with the application's private
 * key: the fake verifies it with the application's public key (and its application_id claim), as
 * Vonage does, and answers 401 {type, title, detail, instance} otherwise. A call is JSON in snake
 * case ({to: [{type: 'phone', number}], from: {type: 'phone', number}, answer_url: [url],
 * event_url: [url], ringing_timer, machine_detection}); a missing or malformed field is 400 with
 * `invalid_parameters`; an accepted one 201 {uuid, status: 'started', direction: 'outbound',
 * conversation_uuid}. `setFaults({ error500 })` answers a share of calls with 500.
 *
 * Nothing rings: a test drives each call with `vonageCallDriver`, which does what Vonage does
 * once it rings: post the events, fetch the NCCO from the answer URL, post each key to the
 * input's event URL (and the input timing out when no key is left), each request signed as
 * Vonage signs webhooks (a bearer JWT, HS256 with the account's signature secret, with
 * payload_hash for a body).
 */

export type AcceptedVonageCall = {
  uuid: string;
  conversationUuid: string;
  /** As sent on the wire (no leading +). */
  to: string;
  from: string;
  answerUrl: string;
  eventUrl: string | null;
  ringingTimer: number | null;
  machineDetection: string | null;
  body: Record<string, unknown>;
  receivedAt: number;
};

export type FakeVonageVoice = {
  /** The apiHost to give VONAGE_VOICE_API_BASE. */
  url: string;
  applicationId: string;
  /** The application's private key, PEM (VONAGE_PRIVATE_KEY). */
  privateKey: string;
  signatureSecret: string;
  apiKey: string;
  calls: AcceptedVonageCall[];
  /** Every request's outcome: accepted, unauthorized, invalid, error500, not_found. */
  outcomes: Record<string, number>;
  setFaults: (faults: { error500?: number }) => void;
  close: () => Promise<void>;
};

const error = (status: number, title: string, detail: string, extra: Record<string, unknown> = {}) => ({
  status, body: { type: `https://developer.vonage.com/api-errors#${title.toLowerCase().replace(/ /g, '-')}`, title, detail, instance: randomUUID(), ...extra },
});

function invalidCall(b: Record<string, unknown>): string | undefined {
  const to = Array.isArray(b.to) ? b.to[0] as Record<string, unknown> | undefined : undefined;
  const from = b.from as Record<string, unknown> | undefined;
  if (to?.type !== 'phone' || typeof to.number !== 'string' || !/^[1-9]\d{6,14}$/.test(to.number)) return 'to';
  if (from?.type !== 'phone' || typeof from.number !== 'string' || !/^[1-9]\d{6,14}$/.test(from.number)) return 'from';
  if (!Array.isArray(b.answer_url) || b.answer_url.length !== 1 || typeof b.answer_url[0] !== 'string') return 'answer_url';
  if (b.event_url !== undefined && (!Array.isArray(b.event_url) || typeof b.event_url[0] !== 'string')) return 'event_url';
  return undefined;
}

export async function startFakeVonageVoice(opts: { signatureSecret?: string; random?: () => number } = {}): Promise<FakeVonageVoice> {
  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const applicationId = randomUUID();
  const random = opts.random ?? Math.random;
  const calls: AcceptedVonageCall[] = [];
  const outcomes: Record<string, number> = {};
  let faults: { error500?: number } = {};
  const count = (k: string) => { outcomes[k] = (outcomes[k] ?? 0) + 1; };
  const fail = (k: string, e: { status: number; body: unknown }) => {
    count(k);
    return e;
  };

  const authorized = async (req: IncomingMessage, key: KeyObject): Promise<boolean> => {
    const m = /^Bearer (.+)$/.exec(req.headers.authorization ?? '');
    if (m === null) return false;
    try {
      const { payload } = await jwtVerify(m[1]!, key, { algorithms: ['RS256'] });
      return payload['application_id'] === applicationId && typeof payload.jti === 'string';
    } catch {
      return false;
    }
  };
  const handle = async (req: IncomingMessage, raw: string): Promise<{ status: number; body: unknown }> => {
    if (req.method !== 'POST' || req.url !== '/v1/calls') return fail('not_found', error(404, 'Not Found', `no route ${req.method ?? ''} ${req.url ?? ''}`));
    if (!(await authorized(req, publicKey))) return fail('unauthorized', error(401, 'Unauthorized', 'You did not provide correct credentials.'));
    if ((faults.error500 ?? 0) > random()) return fail('error500', error(500, 'Internal Server Error', 'fault injected'));
    let b: Record<string, unknown>;
    try {
      b = JSON.parse(raw) as Record<string, unknown>;
    } catch {
      return fail('invalid', error(400, 'Bad Request', 'The request body is not JSON'));
    }
    const bad = invalidCall(b);
    if (bad !== undefined) return fail('invalid', error(400, 'Bad Request', 'The request failed due to validation errors', { invalid_parameters: [{ name: bad, reason: 'Is invalid' }] }));
    const call: AcceptedVonageCall = {
      uuid: randomUUID(), conversationUuid: `CON-${randomUUID()}`,
      to: ((b.to as Record<string, string>[])[0]!).number!, from: (b.from as Record<string, string>).number!,
      answerUrl: (b.answer_url as string[])[0]!, eventUrl: (b.event_url as string[] | undefined)?.[0] ?? null,
      ringingTimer: typeof b.ringing_timer === 'number' ? b.ringing_timer : null,
      machineDetection: typeof b.machine_detection === 'string' ? b.machine_detection : null, body: b, receivedAt: Date.now(),
    };
    calls.push(call);
    count('accepted');
    return { status: 201, body: { uuid: call.uuid, status: 'started', direction: 'outbound', conversation_uuid: call.conversationUuid } };
  };

  const sockets = new Set<Socket>();
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      void handle(req, Buffer.concat(chunks).toString('utf8')).then(({ status, body }) => {
        res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
      });
    });
  });
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    applicationId,
    privateKey: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
    signatureSecret: opts.signatureSecret ?? randomBytes(24).toString('hex'),
    apiKey: randomBytes(4).toString('hex'),
    calls,
    outcomes,
    setFaults: (f) => { faults = f; },
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** A webhook as Vonage signs it: `Authorization: Bearer` HS256 with the signature secret; payload_hash over a body. */
export async function signVonageWebhook(
  secret: string, claims: { apiKey: string; applicationId: string }, body: unknown, at: Date, over: Record<string, unknown> = {},
): Promise<string> {
  const payloadHash = body === undefined ? {} : { payload_hash: createHash('sha256').update(JSON.stringify(body)).digest('hex') };
  return new SignJWT({ api_key: claims.apiKey, application_id: claims.applicationId, ...payloadHash, ...over })
    .setProtectedHeader({ alg: 'HS256', typ: 'JWT' }).setIssuedAt(Math.floor(at.getTime() / 1000)).setJti(randomUUID()).setIssuer('Vonage')
    .sign(createSecretKey(Buffer.from(secret, 'utf8')));
}

/** How a signed webhook reaches the app: app.inject in tests, fetch against a listening server elsewhere. */
export type VonageWebhook = (method: 'GET' | 'POST', url: string, body: unknown, authorization: string) => Promise<{ status: number; body: string }>;

export const fetchWebhook: VonageWebhook = async (method, url, body, authorization) => {
  const res = await fetch(url, {
    method, headers: { authorization, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  return { status: res.status, body: await res.text() };
};

export type NccoAction = { action: string; text?: string; language?: string; eventUrl?: string[]; [k: string]: unknown };
/** What one driven call went through: each NCCO the app answered, and every webhook's HTTP status. */
export type VonageCallRun = { ncco: NccoAction[][]; statuses: number[] };

/** The event URL of the NCCO's input, or undefined when it asks nothing. */
export const inputUrlOf = (ncco: NccoAction[]): string | undefined => ncco.find((a) => a.action === 'input')?.eventUrl?.[0];

export function vonageCallDriver(fake: FakeVonageVoice, send: VonageWebhook = fetchWebhook, clock: () => Date = () => new Date()) {
  const signedSend = async (run: VonageCallRun, method: 'GET' | 'POST', url: string, body: unknown) => {
    const auth = `Bearer ${await signVonageWebhook(fake.signatureSecret, fake, body, clock())}`;
    const res = await send(method, url, body, auth);
    run.statuses.push(res.status);
    return res;
  };
  const common = (c: AcceptedVonageCall) => ({ from: c.from, to: c.to, uuid: c.uuid, conversation_uuid: c.conversationUuid, timestamp: clock().toISOString() });
  const event = async (run: VonageCallRun, c: AcceptedVonageCall, status: string, extra: Record<string, unknown> = {}) => {
    if (c.eventUrl !== null) await signedSend(run, 'POST', c.eventUrl, { ...common(c), status, direction: 'outbound', ...extra });
  };
  const ncco = async (run: VonageCallRun, method: 'GET' | 'POST', url: string, body: unknown) => {
    const res = await signedSend(run, method, url, body);
    const doc = res.status === 200 ? JSON.parse(res.body) as NccoAction[] : [];
    run.ncco.push(doc);
    return doc;
  };
  const unanswered = async (c: AcceptedVonageCall, final: string, extra: Record<string, unknown> = {}) => {
    const run: VonageCallRun = { ncco: [], statuses: [] };
    await event(run, c, 'started');
    if (final !== 'failed' && final !== 'rejected') await event(run, c, 'ringing');
    await event(run, c, final, extra);
    return run;
  };
  return {
    /** The latest call to this number (E.164, as our contacts hold it). */
    callTo: (to: string) => [...fake.calls].reverse().find((c) => `+${c.to}` === to),
    /** Answered by a person: the NCCO, each key in turn on the input there is (then the input timing out), completed. */
    async answer(c: AcceptedVonageCall, opts: { digits?: string | string[]; duration?: number } = {}): Promise<VonageCallRun> {
      const run: VonageCallRun = { ncco: [], statuses: [] };
      await event(run, c, 'started');
      await event(run, c, 'ringing');
      await event(run, c, 'answered');
      const q = new URLSearchParams({ to: c.to, from: c.from, uuid: c.uuid, conversation_uuid: c.conversationUuid });
      let doc = await ncco(run, 'GET', `${c.answerUrl}&${q.toString()}`, undefined);
      const keys = opts.digits === undefined ? [] : Array.isArray(opts.digits) ? opts.digits : [opts.digits];
      for (const digits of [...keys, '']) {
        const input = inputUrlOf(doc);
        if (input === undefined) break;
        doc = await ncco(run, 'POST', input, { ...common(c), dtmf: { digits, timed_out: digits === '' }, speech: { results: [] } });
      }
      await event(run, c, 'completed', { duration: String(opts.duration ?? 42), start_time: clock().toISOString(), rate: '0.01', price: '0.01', network: '23410' });
      return run;
    },
    noAnswer: (c: AcceptedVonageCall) => unanswered(c, 'timeout'),
    busy: (c: AcceptedVonageCall) => unanswered(c, 'busy'),
    rejected: (c: AcceptedVonageCall, detail = 'restricted') => unanswered(c, 'rejected', { detail }),
    /** Answered by voicemail: Vonage hangs up on it (machine_detection hangup). */
    async machine(c: AcceptedVonageCall): Promise<VonageCallRun> {
      const run: VonageCallRun = { ncco: [], statuses: [] };
      for (const s of ['started', 'ringing', 'answered', 'machine']) await event(run, c, s);
      await event(run, c, 'completed', { duration: '3' });
      return run;
    },
  };
}
export type VonageCallDriver = ReturnType<typeof vonageCallDriver>;
