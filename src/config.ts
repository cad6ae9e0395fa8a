import { createPrivateKey } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { z } from 'zod';

/**
 * The only reader of process.env. Everything else receives a typed, frozen Config.
 * A bad value stops the process with a message naming the variable.
 */

/** A comma-separated order of known provider names, each at most once. */
const providerOrder = <const N extends string>(known: readonly [N, ...N[]]) => z
  .string()
  .default(known.join(','))
  .transform((v) => v.split(',').map((x) => x.trim().toLowerCase()).filter(Boolean))
  .pipe(z.array(z.enum(known)).min(1).refine((a) => new Set(a).size === a.length, 'names a provider twice'));

const int = (def: number, min = 0, max = Number.MAX_SAFE_INTEGER) =>
  z.coerce.number().int().min(min).max(max).default(def);
const optionalString = z
  .string()
  .optional()
  .transform((v) => (v === undefined || v.trim() === '' ? undefined : v));
const optionalUrl = optionalString.pipe(z.url().optional());
const priceIds = z
  .string()
  .default('')
  .transform((v) => v.split(',').map((x) => x.trim()).filter(Boolean))
  .pipe(z.array(z.string().regex(/^[A-Za-z0-9_]{1,255}$/, 'must be Stripe price ids (price_…), comma-separated')));

/** Vonage's webhook signature methods (dashboard → Settings → signature method), as the SDK names them. */
export const VONAGE_SIGNATURE_METHODS = ['md5hash', 'md5hmac', 'sha1hmac', 'sha256hmac', 'sha512hmac'] as const;
export type VonageSignatureMethod = (typeof VONAGE_SIGNATURE_METHODS)[number];
const VONAGE_SENDER = /^(?:\+[1-9][0-9]{6,14}|(?=[A-Za-z0-9 ]*[A-Za-z])[A-Za-z0-9][A-Za-z0-9 ]{0,10})$/;

const PROXY_NAMES = new Set(['loopback', 'linklocal', 'uniquelocal']);
function isProxyEntry(v: string): boolean {
  if (PROXY_NAMES.has(v)) return true;
  const [addr, bits, ...rest] = v.split('/');
  const family = isIP(addr ?? '');
  if (family === 0 || rest.length > 0) return false;
  if (bits === undefined) return true;
  if (!/^\d{1,3}$/.test(bits)) return false;
  return Number(bits) <= (family === 4 ? 32 : 128);
}
const trustedProxies = z
  .string()
  .default('')
  .refine((v) => !['true', '1', 'yes'].includes(v.trim().toLowerCase()),
    'trusting every sender lets any client choose its address: list your proxies instead (addresses, CIDRs, or loopback/linklocal/uniquelocal)')
  .transform((v) => (['false', '0', 'no'].includes(v.trim().toLowerCase()) ? [] : v.split(',').map((x) => x.trim()).filter(Boolean)))
  .pipe(z.array(z.string().refine(isProxyEntry, 'each entry must be an IP address, a CIDR (10.0.0.0/8) or loopback/linklocal/uniquelocal')));

const schema = z
  .object({
    NODE_ENV: z.enum(['development', 'test', 'production']).default('development'),
    HOST: z.string().min(1).default('0.0.0.0'),
    PORT: int(3000, 0, 65535),
    PUBLIC_BASE_URL: optionalUrl,
    LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
    DATA_DIR: z.string().min(1).default('.pruuf'),

    DATABASE_URL: optionalUrl,
    DATABASE_POOL_MAX: int(10, 1, 200),
    EMBEDDED_PG_PORT: int(54329, 1, 65535),
    REDIS_URL: optionalUrl,
    QUEUE_PREFIX: z.string().regex(/^[a-zA-Z0-9_-]+$/).default('pruuf'),

    SUPABASE_URL: optionalUrl,
    SUPABASE_SERVICE_ROLE_KEY: optionalString,
    SUPABASE_JWT_SECRET: optionalString,
    SUPABASE_JWKS_URL: optionalUrl,
    SUPABASE_JWKS: optionalString,
    SUPABASE_JWT_ISSUER: optionalString,

    LINK_SIGNING_SECRET: optionalString,
    INVITATION_TTL_DAYS: int(30, 1, 365),
    FREE_PLAN_CONTACTS: int(2, 1, 100),
    FREE_PLAN_CHANNELS: z
      .string()
      .default('push,email')
      .transform((v) => v.split(',').map((x) => x.trim()).filter(Boolean))
      .pipe(z.array(z.enum(['push', 'sms', 'email'])).min(1)),
    ESCALATION_MINUTES: int(15, 1, 240),
    MAX_ESCALATION_ROUNDS: int(3, 1, 10),
    ACK_TIMEOUT_MINUTES: int(60, 1, 1440),
    ACK_LINK_TTL_DAYS: int(7, 1, 60),
    SWEEP_EVERY_MS: int(1000, 100, 60_000),
    /** Deliveries one worker process sends at once (provider calls are I/O: mostly waiting). */
    DELIVERY_CONCURRENCY: int(20, 1, 1000),
    /** A worker-only process (start:worker) serves /metrics and /healthz on this port; unset: none. */
    METRICS_PORT: z.coerce.number().int().min(0).max(65535).optional(),
    /**
     * Set on any process: /metrics (and /healthz) on METRICS_PORT, bound to METRICS_HOST (private by
     * default), and the API's public port no longer serves /metrics.
     */
    METRICS_HOST: z.string().min(1).default('127.0.0.1'),
    /** When set, /metrics answers only `Authorization: Bearer <METRICS_TOKEN>` (at least 32 characters). */
    METRICS_TOKEN: optionalString.pipe(z.string().min(32, 'must be at least 32 characters').optional()),
    /** /healthz and /readyz requests per address per minute (each), far above probing; a flood gets 429. */
    PROBE_RATE_PER_MINUTE: int(600, 1),

    CORS_ORIGINS: optionalString,
    BODY_LIMIT_BYTES: int(64 * 1024, 1024, 10 * 1024 * 1024),
    RATE_LIMIT_IP_PER_MINUTE: int(600, 1),
    RATE_LIMIT_MEMBER_PER_MINUTE: int(120, 1),
    REQUEST_TIMEOUT_MS: int(15000, 1000),
    SHUTDOWN_TIMEOUT_MS: int(20000, 100),
    /**
     * The proxies whose X-Forwarded-For is believed, comma-separated: addresses, CIDRs, or
     * proxy-addr's names (loopback, linklocal, uniquelocal). Empty or false: none. `true` (every
     * sender) is refused: anyone could then choose the address the rate limits see.
     */
    TRUST_PROXY: trustedProxies,

    STRIPE_SECRET_KEY: optionalString,
    STRIPE_WEBHOOK_SECRET: optionalString,
    STRIPE_API_BASE: optionalUrl,
    /** Stripe price ids per plan, comma-separated (e.g. monthly,yearly); the first is offered at checkout. */
    STRIPE_PRICE_PLUS: priceIds,
    STRIPE_PRICE_FAMILY: priceIds,
    /** Where Stripe sends the payer back after checkout and the portal (default: our own return page). */
    BILLING_SUCCESS_URL: optionalUrl,
    BILLING_CANCEL_URL: optionalUrl,
    BILLING_PORTAL_RETURN_URL: optionalUrl,
    PLUS_PLAN_CONTACTS: int(5, 1, 100),
    FAMILY_PLAN_CONTACTS: int(10, 1, 100),
    /** Members a subscription covers besides the payer: members the payer watches, earliest link first. */
    PLUS_PLAN_COVERED_MEMBERS: int(1, 0, 100),
    FAMILY_PLAN_COVERED_MEMBERS: int(5, 0, 100),
    FIREBASE_SERVICE_ACCOUNT_JSON: optionalString,
    FIREBASE_SERVICE_ACCOUNT_PATH: optionalString,
    FIREBASE_PROJECT_ID: optionalString,
    SENDGRID_API_KEY: optionalString,
    SENDGRID_API_BASE: optionalUrl,
    SENDGRID_FROM_EMAIL: optionalString.pipe(z.email().optional()),
    SENDGRID_FROM_NAME: z.string().min(1).max(100).default('Pruuf'),
    /** The event webhook's verification key (base64 DER or PEM of the ECDSA public key). */
    SENDGRID_WEBHOOK_PUBLIC_KEY: optionalString,
    /** Postmark (issue 18: a second email provider). The Server API token of a Postmark server. */
    POSTMARK_SERVER_TOKEN: optionalString,
    /** A proxy or a local fake: scheme, host, port (and path prefix) of Postmark's API; default Postmark's own. */
    POSTMARK_API_BASE: optionalUrl,
    /** A confirmed sender signature, or an address on a verified domain. */
    POSTMARK_FROM_EMAIL: optionalString.pipe(z.email().optional()),
    POSTMARK_FROM_NAME: z.string().min(1).max(100).default('Pruuf'),
    /** A transactional message stream of that server. */
    POSTMARK_MESSAGE_STREAM: z.string().regex(/^[A-Za-z0-9_-]{1,100}$/, 'must be a message stream id like outbound').default('outbound'),
    /** The HTTP basic auth Postmark sends on its webhooks (set in the webhook URL): both or neither. */
    POSTMARK_WEBHOOK_USER: optionalString.pipe(z.string().max(200).refine((v) => !v.includes(':'), 'must not contain ":" (basic auth splits on it)').optional()),
    POSTMARK_WEBHOOK_PASSWORD: optionalString.pipe(z.string().min(16, 'must be at least 16 characters').max(200).optional()),
    TWILIO_ACCOUNT_SID: optionalString,
    TWILIO_AUTH_TOKEN: optionalString,
    TWILIO_API_BASE: optionalUrl,
    TWILIO_FROM_NUMBER: optionalString.pipe(z.string().regex(/^\+[1-9][0-9]{6,14}$/, 'must be an E.164 number like +447700900123').optional()),
    TWILIO_MESSAGING_SERVICE_SID: optionalString,
    /** Vonage SMS API (a second SMS provider): key and secret go together, with a sender. */
    VONAGE_API_KEY: optionalString,
    VONAGE_API_SECRET: optionalString,
    /** An E.164 number, or an alphanumeric sender id where the destination country allows one. */
    VONAGE_FROM: optionalString.pipe(z.string().regex(VONAGE_SENDER, 'must be an E.164 number like +447700900123 or an alphanumeric sender id (1-11 letters, digits or spaces, at least one letter)').optional()),
    /** Signed delivery receipts: the signature secret and method set in the Vonage dashboard. */
    VONAGE_SIGNATURE_SECRET: optionalString,
    VONAGE_SIGNATURE_METHOD: z.string().optional().transform((v) => (v === undefined || v.trim() === '' ? 'sha256hmac' : v.trim().toLowerCase()))
      .pipe(z.enum(VONAGE_SIGNATURE_METHODS, `must be one of ${VONAGE_SIGNATURE_METHODS.join(', ')} (the signature method chosen in the Vonage dashboard)`)),
    /** The SDK's restHost: a proxy, or the local fake in tests. Default https://rest.nexmo.com. */
    VONAGE_API_BASE: optionalUrl,
    /** Twilio drops an SMS not delivered within this many seconds: a stale alert is worse than none. */
    SMS_VALIDITY_SECONDS: int(1800, 60, 36_000),
    /** Messages per second one sender may hand to Twilio (a long code: 1; a short code: 100). */
    SMS_RATE_PER_SECOND: int(1, 1, 1000),
    /** Phone calls (src/channels/voice-twilio): the caller id, E.164; default TWILIO_FROM_NUMBER. */
    TWILIO_VOICE_FROM: optionalString.pipe(z.string().regex(/^\+[1-9][0-9]{6,14}$/, 'must be an E.164 number like +447700900123').optional()),
    /**
     * A missed check-in whose incident is still open (nobody said "I'm on it") when escalation step
     * N + 1 comes due calls every tier-1 contact with a phone. 0: missed check-ins never call.
     */
    VOICE_CALL_AFTER_STEPS: int(1, 0, 20),
    /** SOS calls every contact with a phone at once, beside the messages. */
    VOICE_SOS: z.enum(['true', 'false', '1', '0', 'yes', 'no']).default('true').transform((v) => ['true', '1', 'yes'].includes(v)),
    /** How long a call rings before Twilio gives up (no-answer). */
    VOICE_CALL_TIMEOUT_SECONDS: int(30, 5, 120),
    /** Calls per second handed to Twilio, shared by every worker (Twilio's default for an account: 1). */
    VOICE_CALLS_PER_SECOND: int(1, 1, 100),
    /**
     * Phone calls through Vonage's Voice API (src/channels/voice-vonage): a Vonage application with
     * Voice enabled, its private key (PEM text, `\n` escapes allowed, or a file path), and the caller
     * id, E.164. The webhooks it calls are verified with VONAGE_SIGNATURE_SECRET (required with it).
     */
    VONAGE_APPLICATION_ID: optionalString.pipe(z.string().regex(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i, 'must be a Vonage application id (a UUID)').optional()),
    VONAGE_PRIVATE_KEY: optionalString,
    VONAGE_VOICE_FROM: optionalString.pipe(z.string().regex(/^\+[1-9][0-9]{6,14}$/, 'must be an E.164 number like +447700900123').optional()),
    /** The SDK's apiHost: a proxy, or the local fake in tests. Default https://api.nexmo.com. */
    VONAGE_VOICE_API_BASE: optionalUrl,
    /** A provider whose breaker stays open this long: its channels count as down in incident timelines. */
    PROVIDER_FAILOVER_MINUTES: int(5, 1, 120),
    /**
     * The order SMS and email providers are tried in, among those configured (credentials set): a
     * delivery moves to the next at once when one fails transiently or its breaker is open.
     */
    SMS_PROVIDERS: providerOrder(['twilio', 'vonage']),
    EMAIL_PROVIDERS: providerOrder(['sendgrid', 'postmark']),
    /** The same for phone calls: a call Twilio cannot place (down, 5xx, timeout) goes through Vonage at once. */
    VOICE_PROVIDERS: providerOrder(['twilio-voice', 'vonage-voice']),
    /**
     * An SMS or email alert with no "delivered" receipt this long after its provider accepted it is
     * sent again through the next provider of its channel (a copy that says it is a repeat; one copy
     * per provider at most). 0 turns it off.
     */
    RECEIPT_TIMEOUT_SECONDS: int(120, 0, 3600),
    /** Webhook bodies above this are refused before any signature check. */
    WEBHOOK_BODY_LIMIT_BYTES: int(256 * 1024, 1024, 5 * 1024 * 1024),

    /** Message bodies and delivery payloads older than this are purged (the facts stay). */
    RETENTION_DAYS: int(90, 1, 3650),
    /** Shared locations (check-ins, resolved incidents and the alerts quoting them) are purged after this. */
    LOCATION_RETENTION_HOURS: int(24, 1, 24 * 365),
    /** Called (GET) after every audit that finds all timers on schedule: an outside dead man's switch. */
    HEARTBEAT_URL: optionalUrl,
    /** A timer this late past its due time counts as overdue for the auditor. */
    AUDITOR_LATE_SECONDS: int(30, 5, 3600),
    /** A delivery still pending this long is overdue (its whole retry plan, deferrals included, fits well within). */
    AUDITOR_DELIVERY_MAX_MINUTES: int(15, 1, 1440),
  })
  .superRefine((env, ctx) => {
    if (env.SUPABASE_JWKS !== undefined) {
      try {
        const parsed = JSON.parse(env.SUPABASE_JWKS) as { keys?: unknown };
        if (!Array.isArray(parsed.keys)) throw new Error('no keys array');
      } catch {
        ctx.addIssue({ code: 'custom', path: ['SUPABASE_JWKS'], message: 'must be a JWKS JSON document: {"keys": [...]}' });
      }
    }
    if (env.SUPABASE_SERVICE_ROLE_KEY !== undefined && env.SUPABASE_URL === undefined) {
      ctx.addIssue({ code: 'custom', path: ['SUPABASE_URL'], message: 'is required when SUPABASE_SERVICE_ROLE_KEY is set' });
    }
    const hasAuthKey = env.SUPABASE_JWT_SECRET ?? env.SUPABASE_JWKS_URL ?? env.SUPABASE_JWKS;
    if (env.NODE_ENV === 'production') {
      if (hasAuthKey === undefined) {
        ctx.addIssue({
          code: 'custom',
          path: ['SUPABASE_JWT_SECRET'],
          message: 'production needs SUPABASE_JWT_SECRET, SUPABASE_JWKS_URL or SUPABASE_JWKS (no development secret in production)',
        });
      }
      if (env.DATABASE_URL === undefined) {
        ctx.addIssue({ code: 'custom', path: ['DATABASE_URL'], message: 'is required in production (the embedded database is for development)' });
      }
      if (env.PUBLIC_BASE_URL === undefined) {
        ctx.addIssue({ code: 'custom', path: ['PUBLIC_BASE_URL'], message: 'is required in production (links in messages)' });
      }
    }
    if (env.FIREBASE_SERVICE_ACCOUNT_JSON !== undefined) {
      try {
        const sa = JSON.parse(env.FIREBASE_SERVICE_ACCOUNT_JSON) as Record<string, unknown>;
        if (typeof sa.client_email !== 'string' || typeof sa.private_key !== 'string') throw new Error('incomplete');
      } catch {
        ctx.addIssue({ code: 'custom', path: ['FIREBASE_SERVICE_ACCOUNT_JSON'], message: 'must be a service-account JSON document with client_email and private_key' });
      }
    }
    if (env.SENDGRID_API_KEY !== undefined && env.SENDGRID_FROM_EMAIL === undefined) {
      ctx.addIssue({ code: 'custom', path: ['SENDGRID_FROM_EMAIL'], message: 'is required when SENDGRID_API_KEY is set (the verified sender)' });
    }
    if (env.POSTMARK_SERVER_TOKEN !== undefined && env.POSTMARK_FROM_EMAIL === undefined) {
      ctx.addIssue({ code: 'custom', path: ['POSTMARK_FROM_EMAIL'], message: 'is required when POSTMARK_SERVER_TOKEN is set (a confirmed sender signature)' });
    }
    if ((env.POSTMARK_WEBHOOK_USER === undefined) !== (env.POSTMARK_WEBHOOK_PASSWORD === undefined)) {
      ctx.addIssue({ code: 'custom', path: [env.POSTMARK_WEBHOOK_USER === undefined ? 'POSTMARK_WEBHOOK_USER' : 'POSTMARK_WEBHOOK_PASSWORD'], message: 'POSTMARK_WEBHOOK_USER and POSTMARK_WEBHOOK_PASSWORD go together' });
    }
    if ((env.TWILIO_ACCOUNT_SID === undefined) !== (env.TWILIO_AUTH_TOKEN === undefined)) {
      ctx.addIssue({ code: 'custom', path: [env.TWILIO_ACCOUNT_SID === undefined ? 'TWILIO_ACCOUNT_SID' : 'TWILIO_AUTH_TOKEN'], message: 'TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN go together' });
    }
    if (env.TWILIO_ACCOUNT_SID !== undefined && env.TWILIO_FROM_NUMBER === undefined && env.TWILIO_MESSAGING_SERVICE_SID === undefined) {
      ctx.addIssue({ code: 'custom', path: ['TWILIO_FROM_NUMBER'], message: 'TWILIO_FROM_NUMBER or TWILIO_MESSAGING_SERVICE_SID is required with TWILIO_ACCOUNT_SID' });
    }
    if ((env.VONAGE_API_KEY === undefined) !== (env.VONAGE_API_SECRET === undefined)) {
      ctx.addIssue({ code: 'custom', path: [env.VONAGE_API_KEY === undefined ? 'VONAGE_API_KEY' : 'VONAGE_API_SECRET'], message: 'VONAGE_API_KEY and VONAGE_API_SECRET go together' });
    }
    if (env.VONAGE_API_KEY !== undefined && env.VONAGE_FROM === undefined) {
      ctx.addIssue({ code: 'custom', path: ['VONAGE_FROM'], message: 'is required with VONAGE_API_KEY (an E.164 number or an alphanumeric sender id)' });
    }
    if ((env.VONAGE_APPLICATION_ID === undefined) !== (env.VONAGE_PRIVATE_KEY === undefined)) {
      ctx.addIssue({ code: 'custom', path: [env.VONAGE_APPLICATION_ID === undefined ? 'VONAGE_APPLICATION_ID' : 'VONAGE_PRIVATE_KEY'], message: 'VONAGE_APPLICATION_ID and VONAGE_PRIVATE_KEY go together' });
    }
    if (env.VONAGE_APPLICATION_ID !== undefined) {
      if (env.VONAGE_VOICE_FROM === undefined) {
        ctx.addIssue({ code: 'custom', path: ['VONAGE_VOICE_FROM'], message: 'is required with VONAGE_APPLICATION_ID (the number calls come from, E.164)' });
      }
      if (env.VONAGE_SIGNATURE_SECRET === undefined) {
        ctx.addIssue({ code: 'custom', path: ['VONAGE_SIGNATURE_SECRET'], message: 'is required with VONAGE_APPLICATION_ID: every webhook of a call is verified with it (signed webhooks on the application)' });
      }
    }
    if (env.VONAGE_PRIVATE_KEY !== undefined && !isPrivateKey(env.VONAGE_PRIVATE_KEY)) {
      ctx.addIssue({ code: 'custom', path: ['VONAGE_PRIVATE_KEY'], message: 'must be the application\'s private key: PEM text (-----BEGIN PRIVATE KEY-----…) or the path of a file holding it' });
    }
    if (env.NODE_ENV === 'production' && env.LINK_SIGNING_SECRET === undefined) {
      ctx.addIssue({ code: 'custom', path: ['LINK_SIGNING_SECRET'], message: 'is required in production (signs the links in messages)' });
    }
    if (env.LINK_SIGNING_SECRET !== undefined && env.LINK_SIGNING_SECRET.length < 32) {
      ctx.addIssue({ code: 'custom', path: ['LINK_SIGNING_SECRET'], message: 'must be at least 32 characters' });
    }
    const shared = env.STRIPE_PRICE_PLUS.filter((id) => env.STRIPE_PRICE_FAMILY.includes(id));
    if (shared.length > 0) {
      ctx.addIssue({ code: 'custom', path: ['STRIPE_PRICE_FAMILY'], message: `a price cannot belong to two plans: ${shared.join(', ')}` });
    }
    if (env.NODE_ENV === 'production' && env.STRIPE_SECRET_KEY !== undefined) {
      if (env.STRIPE_WEBHOOK_SECRET === undefined) {
        ctx.addIssue({ code: 'custom', path: ['STRIPE_WEBHOOK_SECRET'], message: 'is required with STRIPE_SECRET_KEY in production (subscriptions arrive by webhook)' });
      }
      if (env.STRIPE_PRICE_PLUS.length === 0 && env.STRIPE_PRICE_FAMILY.length === 0) {
        ctx.addIssue({ code: 'custom', path: ['STRIPE_PRICE_PLUS'], message: 'STRIPE_PRICE_PLUS or STRIPE_PRICE_FAMILY is required with STRIPE_SECRET_KEY in production' });
      }
    }
    if (env.SUPABASE_JWT_SECRET !== undefined && env.SUPABASE_JWT_SECRET.length < 32) {
      ctx.addIssue({ code: 'custom', path: ['SUPABASE_JWT_SECRET'], message: 'must be at least 32 characters' });
    }
  });

/** A PEM private key given as text (real line breaks or `\n` escapes, as an env file may hold it), or the path of a file holding one. */
export function privateKeyPem(value: string): string {
  const text = value.trim().startsWith('-----BEGIN') ? value : existsSync(value) ? readFileSync(value, 'utf8') : '';
  return text.replace(/\\n/g, '\n');
}

function isPrivateKey(value: string): boolean {
  try {
    createPrivateKey(privateKeyPem(value));
    return true;
  } catch {
    return false;
  }
}

type Env = z.output<typeof schema>;

export type Config = Readonly<
  Env & {
    publicBaseUrl: string;
    corsOrigins: string[] | boolean;
    queueBackend: 'redis' | 'postgres';
  }
>;

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`Invalid configuration:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    this.name = 'ConfigError';
  }
}

export function loadConfig(env: Record<string, string | undefined> = process.env): Config {
  const result = schema.safeParse(env);
  if (!result.success) {
    const problems = result.error.issues.map((issue) => {
      const name = issue.path.join('.') || '(environment)';
      const shown = typeof issue.path[0] === 'string' ? env[issue.path[0]] : undefined;
      const secret = /SECRET|KEY|TOKEN|JSON|PASSWORD|URL/.test(name);
      const got = shown === undefined ? '' : secret ? ' (value hidden)' : ` (got "${shown}")`;
      return `${name}: ${issue.message}${got}`;
    });
    throw new ConfigError(problems);
  }
  const e = result.data;
  const cors = e.CORS_ORIGINS;
  return Object.freeze({
    ...e,
    publicBaseUrl: (e.PUBLIC_BASE_URL ?? `http://localhost:${e.PORT}`).replace(/\/+$/, ''),
    corsOrigins: cors === undefined ? false : cors === '*' ? true : cors.split(',').map((s) => s.trim()).filter(Boolean),
    queueBackend: e.REDIS_URL === undefined ? 'postgres' : 'redis',
  });
}
