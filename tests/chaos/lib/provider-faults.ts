// The chaos run's provider phase (issue 18): the primary SMS and email providers fail, or accept
// and never deliver, during a burst, and every alert must still reach its contact through the
// secondary provider of its channel: lost 0, at most one copy per provider per alert.
//
// Its own processes (API, one worker, a PostgreSQL and a Redis of its own) with two providers per
// channel: Twilio then Vonage for SMS, SendGrid then Postmark for email, each a local fake speaking
// its wire format through the provider's own SDK. Delivery receipts come back as each provider
// sends them: Vonage and Postmark post theirs by themselves; for Twilio and SendGrid this
// conductor posts a signed status callback / event for every message they accept, while they
// "deliver". Three bursts of the same size, one after the other:
//   clean     every provider up and delivering: what "on time" is here;
//   silent    Twilio and SendGrid accept but never deliver (no receipt): after
//             RECEIPT_TIMEOUT_SECONDS each alert is repeated through Vonage and Postmark;
//   down      Twilio and SendGrid answer 500 to every call: alerts move to Vonage and Postmark.
import { generateKeyPairSync, randomUUID, sign } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { freePort, startServer, type Server } from '../../../bench/lib/processes.js';
import { summarize } from '../../../bench/lib/stats.js';
import { startFakeFcm } from '../../fakes/fcm.js';
import { startFakePostmark, webhookVia, type FakePostmark } from '../../fakes/postmark.js';
import { seededRandom } from '../../fakes/random.js';
import { startFakeSendGrid, type FakeSendGrid } from '../../fakes/sendgrid.js';
import { postSignedWebhook, startFakeTwilio, statusCallbackParams, type FakeTwilio } from '../../fakes/twilio.js';
import { startFakeVonage, type FakeVonage } from '../../fakes/vonage.js';
import { startPostgres, startRedis, type PgServer, type RedisServer } from './services.js';
import { email, phone, seed, type Seeded } from './seed.js';

export type Check = { name: string; ok: boolean; detail: string };
export type ProviderPhaseResult = { rows: [string, string][]; checks: Check[]; table: string[] };

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const LATENCY: [number, number] = [50, 150];
const RECEIPT_SECONDS = 6;
const JWT_SECRET = 'chaos-jwt-secret-of-at-least-32-characters';
const WEBHOOK_USER = 'pruuf-chaos';
const WEBHOOK_PASSWORD = 'chaos-webhook-password-32-chars!';

type Fakes = { twilio: FakeTwilio; sendgrid: FakeSendGrid; vonage: FakeVonage; postmark: FakePostmark; fcm: Awaited<ReturnType<typeof startFakeFcm>> };

/** provider → key (channel:address) → acceptance times, with the text each time. */
type Accepted = Map<string, Map<string, { at: number; text: string }[]>>;

function accepted(f: Fakes): Accepted {
  const m: Accepted = new Map();
  const add = (provider: string, key: string, at: number, text: string) => {
    const byKey = m.get(provider) ?? m.set(provider, new Map()).get(provider)!;
    byKey.set(key, [...(byKey.get(key) ?? []), { at, text }]);
  };
  for (const a of f.twilio.accepted) add('twilio', `sms:${a.to}`, a.receivedAt, a.body);
  for (const a of f.vonage.accepted) add('vonage', `sms:+${a.to.replace(/^\+/, '')}`, a.receivedAt, a.text);
  for (const a of f.sendgrid.accepted) for (const to of a.to) add('sendgrid', `email:${to}`, a.receivedAt.getTime(), a.subject);
  for (const a of f.postmark.accepted) add('postmark', `email:${a.to}`, a.submittedAt.getTime(), a.subject);
  return m;
}

/** The SMS and email alerts a burst owes: member n's Ann and Bob, on email and SMS each. */
function owed(s: Seeded): string[] {
  return s.missing.flatMap((m) => [`email:${email('ann', m.n)}`, `sms:${phone(2 * m.n)}`, `email:${email('bob', m.n)}`, `sms:${phone(2 * m.n + 1)}`]);
}

/**
 * Posts the receipts Twilio and SendGrid would send, for every message they accept while
 * `delivering` is on (retried while the API does not answer 2xx). Off: they accept and stay silent.
 */
class PrimaryReceipts {
  delivering = true;
  private seen = { twilio: 0, sendgrid: 0 };
  private timer: NodeJS.Timeout | undefined;
  private inFlight = new Set<Promise<void>>();
  posted = 0;
  constructor(private readonly f: Fakes, private readonly base: string, private readonly sendgridKey: ReturnType<typeof generateKeyPairSync>['privateKey']) {}

  start(): void {
    this.timer = setInterval(() => this.tick(), 100);
  }

  private tick(): void {
    const tw = this.f.twilio.accepted.slice(this.seen.twilio);
    const sg = this.f.sendgrid.accepted.slice(this.seen.sendgrid);
    this.seen = { twilio: this.f.twilio.accepted.length, sendgrid: this.f.sendgrid.accepted.length };
    if (!this.delivering) return;
    for (const m of tw) this.track(this.retry(() => postSignedWebhook(this.f.twilio.authToken, `${this.base}/webhooks/twilio/status`,
      statusCallbackParams({ sid: m.sid, accountSid: this.f.twilio.accountSid, to: m.to }, 'delivered'))));
    for (const m of sg) {
      const body = JSON.stringify(m.to.map((to) => ({
        email: to, event: 'delivered', timestamp: Math.floor(Date.now() / 1000), sg_event_id: randomUUID(), sg_message_id: `${m.messageId}.filter`, ...m.customArgs,
      })));
      const timestamp = String(Math.floor(Date.now() / 1000));
      const signature = sign('sha256', Buffer.concat([Buffer.from(timestamp), Buffer.from(body)]), this.sendgridKey).toString('base64');
      this.track(this.retry(() => fetch(`${this.base}/webhooks/sendgrid/events`, {
        method: 'POST', body,
        headers: { 'content-type': 'application/json', 'x-twilio-email-event-webhook-signature': signature, 'x-twilio-email-event-webhook-timestamp': timestamp },
      })));
    }
  }

  private track(p: Promise<void>): void {
    this.inFlight.add(p);
    void p.finally(() => this.inFlight.delete(p));
  }

  private async retry(post: () => Promise<Response>): Promise<void> {
    for (let i = 0; i < 20; i += 1) {
      const res = await post().catch(() => undefined);
      if (res !== undefined && res.status < 300) {
        this.posted += 1;
        return;
      }
      await sleep(250);
    }
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    await Promise.allSettled([...this.inFlight]);
  }
}

export async function providerPhase(o: { members: number; concurrency: number; sweepMs: number; keep: boolean; say: (msg: string) => void }): Promise<ProviderPhaseResult> {
  const { say } = o;
  const dir = mkdtempSync(path.join(os.tmpdir(), 'pruuf-chaos-providers-'));
  const checks: Check[] = [];
  const check = (name: string, ok: boolean, detail: string) => {
    checks.push({ name: `providers: ${name}`, ok, detail });
    say(`${ok ? 'ok  ' : 'FAIL'} providers: ${name}: ${detail}`);
  };
  const sendgridKeys = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  const fakes: Fakes = {
    fcm: await startFakeFcm({ latencyMs: { min: LATENCY[0], max: LATENCY[1] }, seed: 11 }),
    twilio: await startFakeTwilio({ latencyMs: LATENCY, random: seededRandom(13) }),
    sendgrid: await startFakeSendGrid({ latencyMs: { min: LATENCY[0], max: LATENCY[1] }, random: seededRandom(17) }),
    vonage: await startFakeVonage({ latencyMs: LATENCY, receipts: 'delivered', random: seededRandom(19) }),
    postmark: await startFakePostmark({ latencyMs: { min: LATENCY[0], max: LATENCY[1] }, random: seededRandom(23) }),
  };
  let pgs: PgServer | undefined;
  let redis: RedisServer | undefined;
  let pool: pg.Pool | undefined;
  let receipts: PrimaryReceipts | undefined;
  const servers: Server[] = [];
  try {
    pgs = await startPostgres(dir);
    redis = await startRedis(dir);
    pool = new pg.Pool({ connectionString: pgs.url, max: 4 });
    const apiPort = await freePort();
    const base = `http://127.0.0.1:${apiPort}`;
    fakes.postmark.setWebhooks({ send: webhookVia(`${base}/webhooks/postmark/events`), auth: { user: WEBHOOK_USER, password: WEBHOOK_PASSWORD } });
    const env: Record<string, string> = {
      NODE_ENV: 'production', HOST: '127.0.0.1', LOG_LEVEL: 'warn',
      DATABASE_URL: pgs.url, REDIS_URL: redis.url, QUEUE_PREFIX: 'chaos-providers',
      SUPABASE_JWT_SECRET: JWT_SECRET, LINK_SIGNING_SECRET: 'chaos-link-secret-of-at-least-32-characters', PUBLIC_BASE_URL: base,
      RATE_LIMIT_IP_PER_MINUTE: '1000000', RATE_LIMIT_MEMBER_PER_MINUTE: '1000000',
      FREE_PLAN_CHANNELS: 'push,sms,email', DELIVERY_CONCURRENCY: String(o.concurrency), SWEEP_EVERY_MS: String(o.sweepMs),
      RECEIPT_TIMEOUT_SECONDS: String(RECEIPT_SECONDS),
      TWILIO_ACCOUNT_SID: fakes.twilio.accountSid, TWILIO_AUTH_TOKEN: fakes.twilio.authToken, TWILIO_API_BASE: fakes.twilio.url,
      TWILIO_MESSAGING_SERVICE_SID: 'MGchaos', SMS_RATE_PER_SECOND: '1000',
      VONAGE_API_KEY: fakes.vonage.apiKey, VONAGE_API_SECRET: fakes.vonage.apiSecret, VONAGE_FROM: 'Pruuf', VONAGE_API_BASE: fakes.vonage.url,
      VONAGE_SIGNATURE_SECRET: fakes.vonage.signatureSecret, VONAGE_SIGNATURE_METHOD: fakes.vonage.signatureMethod,
      SENDGRID_API_KEY: fakes.sendgrid.apiKey, SENDGRID_API_BASE: fakes.sendgrid.url, SENDGRID_FROM_EMAIL: 'alerts@chaos.test',
      SENDGRID_WEBHOOK_PUBLIC_KEY: sendgridKeys.publicKey.export({ type: 'spki', format: 'der' }).toString('base64'),
      POSTMARK_SERVER_TOKEN: fakes.postmark.serverToken, POSTMARK_API_BASE: fakes.postmark.url, POSTMARK_FROM_EMAIL: 'alerts@chaos.test',
      POSTMARK_WEBHOOK_USER: WEBHOOK_USER, POSTMARK_WEBHOOK_PASSWORD: WEBHOOK_PASSWORD,
      CHAOS_FCM_PORT: String(fakes.fcm.port), CHAOS_FCM_PROJECT: fakes.fcm.projectId, CHAOS_FCM_TOKEN: fakes.fcm.accessToken,
    };
    servers.push(await startServer({ name: 'api', script: 'src/server.ts', env: { ...env, PORT: String(apiPort) }, port: apiPort, readyPath: '/readyz', logFile: path.join(dir, 'api.log') }));
    const workerPort = await freePort();
    servers.push(await startServer({ name: 'worker', script: 'tests/chaos/worker.ts', env: { ...env, METRICS_PORT: String(workerPort) }, port: workerPort, readyPath: '/healthz', logFile: path.join(dir, 'worker.log') }));
    const ready = (await (await fetch(`${base}/readyz`)).json()) as { providers?: Record<string, string[]> };
    check('both providers of each channel configured, in order', JSON.stringify(ready.providers?.sms) === '["twilio","vonage"]' && JSON.stringify(ready.providers?.email) === '["sendgrid","postmark"]',
      `/readyz providers ${JSON.stringify(ready.providers)}`);
    receipts = new PrimaryReceipts(fakes, base, sendgridKeys.privateKey);
    receipts.start();

    const table = ['| phase | SMS + email alerts | first accepted by (primary / secondary) | lost | most copies of one alert through one provider | alert_at → first acceptance p50 / p99 | alert_at → accepted by the secondary p50 / p99 |', '|---|---|---|---|---|---|---|'];
    let from = 5_000_000;
    let clean: { p50: number; p99: number } | undefined;
    const phases: { name: string; setup: () => void; viaSecondary: boolean }[] = [
      { name: 'clean: every provider up and delivering', setup: () => { /* as started */ }, viaSecondary: false },
      // Silent before down: the down phase opens the primaries' breakers, which would send the
      // silent phase's alerts straight to the secondaries instead of testing the receipts.
      { name: 'silent: Twilio and SendGrid accept, never deliver', setup: () => { receipts!.delivering = false; }, viaSecondary: true },
      { name: 'down: Twilio and SendGrid answer 500 to every call', setup: () => { fakes.twilio.setFaults({ error500: 1 }); fakes.sendgrid.setFaults({ serverErrorPct: 100 }); }, viaSecondary: true },
    ];
    for (const phase of phases) {
      phase.setup();
      const alertAt = new Date(Date.now() + 3000);
      const seeded = await seed(pool, alertAt, { from, members: o.members, early: 0 });
      from += 1_000_000;
      const keys = owed(seeded);
      say(`providers: ${phase.name}: ${o.members} members miss a deadline at ${alertAt.toISOString()} (${keys.length} SMS and email alerts)`);
      const secondaryOf = (k: string) => (k.startsWith('sms:') ? 'vonage' : 'postmark');
      const primaryOf = (k: string) => (k.startsWith('sms:') ? 'twilio' : 'sendgrid');
      const done = (acc: Accepted) => keys.every((k) => (phase.viaSecondary ? acc.get(secondaryOf(k))?.has(k) : acc.get(primaryOf(k))?.has(k) || acc.get(secondaryOf(k))?.has(k)));
      const until = Date.now() + 120_000 + RECEIPT_SECONDS * 1000;
      while (!done(accepted(fakes)) && Date.now() < until) await sleep(200);
      await sleep(RECEIPT_SECONDS * 1000 + 3 * o.sweepMs); // anything that would repeat wrongly has had its chance
      const acc = accepted(fakes);
      const firsts: number[] = [];
      const bySecondary: number[] = [];
      let lost = 0;
      let maxCopies = 0;
      let firstBy = { primary: 0, secondary: 0 };
      let unmarkedRepeats = 0;
      for (const k of keys) {
        const p = acc.get(primaryOf(k))?.get(k) ?? [];
        const s = acc.get(secondaryOf(k))?.get(k) ?? [];
        maxCopies = Math.max(maxCopies, p.length, s.length);
        if (p.length + s.length === 0 || (phase.viaSecondary && s.length === 0)) { lost += 1; continue; }
        const first = Math.min(...[...p, ...s].map((a) => a.at));
        firsts.push(first - alertAt.getTime());
        if (p.length > 0 && p[0]!.at === first) firstBy = { ...firstBy, primary: firstBy.primary + 1 };
        else firstBy = { ...firstBy, secondary: firstBy.secondary + 1 };
        if (s.length > 0) bySecondary.push(s[0]!.at - alertAt.getTime());
        // In the silent phase the secondary's copy is a repeat: it must say so.
        if (phase.name.startsWith('silent') && s.length > 0 && !/^Pruuf \(sent again\):|^\(Sent again\) /.test(s[0]!.text)) unmarkedRepeats += 1;
      }
      const lat = summarize(firsts);
      const sec = summarize(bySecondary);
      if (phase.name.startsWith('clean')) clean = { p50: lat.p50, p99: lat.p99 };
      const s = (ms: number) => `${(ms / 1000).toFixed(2)} s`;
      table.push(`| ${phase.name} | ${keys.length} | ${firstBy.primary} / ${firstBy.secondary} | ${lost} | ${maxCopies} | ${s(lat.p50)} / ${s(lat.p99)} | ${bySecondary.length === 0 ? '—' : `${s(sec.p50)} / ${s(sec.p99)}`} |`);
      check(`${phase.name}: none lost`, lost === 0, `${keys.length - lost}/${keys.length} reached their contact${phase.viaSecondary ? ' through the secondary' : ''}`);
      check(`${phase.name}: at most one copy per provider per alert`, maxCopies <= 1, `most copies of one alert through one provider: ${maxCopies}`);
      if (phase.name.startsWith('silent')) check(`${phase.name}: every repeat says it is one`, unmarkedRepeats === 0, `${unmarkedRepeats} repeats without the marker`);
      if (phase.name.startsWith('clean')) check(`${phase.name}: nothing repeated while receipts come`, firstBy.secondary === 0 && bySecondary.length === 0, `${bySecondary.length} alerts went through a secondary`);
      if (clean !== undefined && !phase.name.startsWith('clean')) {
        // What the contact feels: the alert that reached them is the secondary's.
        table.push(`| ↳ added latency against clean (the secondary's acceptance) | | | | | +${s(sec.p50 - clean.p50)} / +${s(sec.p99 - clean.p99)} | |`);
      }
    }
    const { rows: events } = await pool.query<{ n: number }>(`select count(*)::int as n from incident_events where type = 'provider_failover'`);
    const { rows: reasons } = await pool.query<{ reason: string; n: number }>(
      `select left(regexp_replace(detail->>'reason', '[0-9a-f-]{36}', '…', 'g'), 80) as reason, count(*)::int as n from incident_events
        where type = 'provider_failover' group by 1 order by 2 desc limit 5`);
    const { rows: copies } = await pool.query<{ n: number }>('select count(*)::int as n from deliveries where copy_no > 0');
    return {
      rows: [
        ['provider phase: failovers on incident timelines', `${events[0]!.n} (${reasons.map((r) => `${r.n}× ${r.reason}`).join('; ')})`],
        ['provider phase: repeat copies after no receipt', String(copies[0]!.n)],
        ['provider phase: receipts posted for Twilio and SendGrid', String(receipts.posted)],
      ],
      checks,
      table,
    };
  } finally {
    await receipts?.stop();
    await Promise.allSettled(servers.map((s) => s.stop()));
    await pool?.end().catch(() => undefined);
    await Promise.allSettled([redis?.destroy(), pgs?.destroy(), fakes.fcm.close(), fakes.twilio.close(), fakes.sendgrid.close(), fakes.vonage.close(), fakes.postmark.close()]);
    if (o.keep) say(`providers: logs kept in ${dir}`);
    else rmSync(dir, { recursive: true, force: true });
  }
}
