import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { Duplex } from 'node:stream';
import { cert, deleteApp, initializeApp, type App, type Credential } from 'firebase-admin/app';
import { getMessaging, type BatchResponse, type TokenMessage } from 'firebase-admin/messaging';
import { ConfigError, type Config } from '../../config.js';
import { prepared, type Queryable } from '../../db/pool.js';
import type { Logger } from '../../observability/logger.js';
import { ChannelError, type Channel, type OutboundMessage, type SendResult } from '../types.js';
import { classifyDeviceError, errorCodeOf, withoutToken, type DeviceFailure } from './errors.js';
import { CallWire, FcmAgent, withWire } from './wire.js';

/**
 * Push through Firebase Cloud Messaging: one delivery goes to every device of the member named
 * by its address (`user:<uuid>`, see pushAddress). Accepted once any device accepted. A member
 * holds a token at most once (devices are unique per member and token), so one message reaches
 * each token once even when another member registered the same token too.
 *
 * The SDK runs on its HTTP/1.1 transport (`enableLegacyHttpTransport`), in production too: its
 * HTTP/2 transport opens a new session per sendEach call (nothing to reuse for our one- to
 * three-device sends), takes no agent, and could not be cut short by the delivery's deadline nor
 * watched for Retry-After (see wire.ts). The tests therefore run the transport production runs.
 *
 * Bulk (sendMany, issue 19): FCM's HTTP v1 API has no multi-message request (its batch endpoint
 * was shut down in 2024); sendEach is one request per device message, over HTTP/1.1 here on the
 * agent's pooled keep-alive connections. What a batch of deliveries shares is the rest: one
 * query for every member's devices, and one delete of every dead token. Each delivery's devices
 * still go in a sendEach of their own, watched by their own CallWire, so its Retry-After, its
 * SENDER_ID_MISMATCH and its deadline are its own, and its outcome is exactly what `send` gives
 * (on the wire it is the same as one sendEach of every device message: N requests either way).
 */

export const FCM_PROVIDER = 'fcm';

/** sendEach's own limit; a member with more devices than this is not a real member. */
const MAX_DEVICES = 500;
/** Deliveries per sendMany: their devices are looked up in one query. */
export const FCM_MAX_BATCH = 500;

export type FcmChannelOptions = {
  pool: Queryable;
  log: Logger;
  projectId: string;
  /** Production: cert(serviceAccount). Tests: any `{ getAccessToken }`, no network needed. */
  credential: Credential;
  /** Tests and benchmarks only: where each HTTP/1.1 connection goes instead of TLS to fcm.googleapis.com. */
  connect?: () => Duplex;
};

export type FcmChannel = Channel & {
  /** The channel's own named firebase-admin App. */
  readonly app: App;
  /** Deletes the App and closes the agent's connections; later sends fail as transient. */
  close(): Promise<void>;
};

type Device = { id: string; token: string; platform: string };

const MEMBER_ADDRESS = /^user:([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})$/i;

/** FCM data values must be strings; anything else in a stored payload is left out. */
function stringValues(data: Record<string, unknown> | null | undefined): Record<string, string> {
  return Object.fromEntries(Object.entries(data ?? {}).filter((e): e is [string, string] => typeof e[1] === 'string'));
}

export function buildFcmMessage(msg: OutboundMessage, token: string): TokenMessage {
  // One incident, one notification on the phone: the all clear replaces the alert it answers.
  const collapseKey = msg.incidentId ?? msg.deliveryId;
  return {
    token,
    notification: { title: msg.subject ?? 'Pruuf', body: msg.body },
    // The rendered payload (the link to open, its type), then our ids, which always win.
    data: { ...stringValues(msg.data), delivery_id: msg.deliveryId, kind: msg.kind, ...(msg.incidentId === null ? {} : { incident_id: msg.incidentId }) },
    android: { priority: 'high', collapseKey, notification: { sound: 'default' } },
    apns: {
      headers: { 'apns-priority': '10', 'apns-collapse-id': collapseKey, 'apns-push-type': 'alert' },
      // Time-sensitive breaks through Focus modes and scheduled summaries (iOS 15+).
      payload: { aps: { sound: 'default', 'interruption-level': 'time-sensitive' } },
    },
    webpush: { headers: { Urgency: 'high' } },
  };
}

/** Rejects as soon as `signal` aborts, after stopping every request of the call. */
function untilAborted<T>(work: Promise<T>, signal: AbortSignal, wire: CallWire): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const abort = () => {
      const reason = new ChannelError('fcm did not answer before the delivery deadline', 'transient', wire.retryAfterMs());
      wire.abort(reason);
      reject(reason);
    };
    if (signal.aborted) {
      abort();
      return;
    }
    signal.addEventListener('abort', abort, { once: true });
    work.then(resolve, reject).finally(() => signal.removeEventListener('abort', abort));
  });
}

export function createFcmChannel(opts: FcmChannelOptions): FcmChannel {
  const agent = new FcmAgent(opts.connect);
  const app = initializeApp({ credential: opts.credential, projectId: opts.projectId, httpAgent: agent }, `pruuf-fcm-${randomUUID()}`);
  const messaging = getMessaging(app);
  messaging.enableLegacyHttpTransport();
  let closed = false;

  function memberOf(msg: OutboundMessage): string {
    const memberId = MEMBER_ADDRESS.exec(msg.to)?.[1];
    if (memberId === undefined) throw new ChannelError('fcm: a push address must be user:<member id>', 'permanent');
    return memberId.toLowerCase();
  }

  /** Each member's devices (most recently seen first, at most MAX_DEVICES), in one query. */
  async function devicesOf(memberIds: readonly string[]): Promise<Map<string, Device[]>> {
    const { rows } = await opts.pool.query<Device & { member_id: string }>(prepared(
      'fcm.devices-of',
      `select member_id, id, token, platform from (
         select member_id, id, token, platform, last_seen_at,
                row_number() over (partition by member_id order by last_seen_at desc, id) as n
           from devices where member_id = any($1::uuid[])
       ) d where n <= $2 order by member_id, last_seen_at desc, id`,
      [[...new Set(memberIds)], MAX_DEVICES],
    ));
    const out = new Map<string, Device[]>();
    for (const { member_id: memberId, ...device } of rows) out.set(memberId, [...(out.get(memberId) ?? []), device]);
    return out;
  }

  /** Deletes the dead devices found by one call (one statement for all of its deliveries). */
  async function forget(found: readonly { msg: OutboundMessage; dead: Device[] }[]): Promise<void> {
    const withDead = found.filter((f) => f.dead.length > 0);
    if (withDead.length === 0) return;
    const ids = withDead.map((f) => f.msg.deliveryId);
    const deliveryIds = ids.length === 1 ? { delivery_id: ids[0] } : { delivery_ids: ids };
    const devices = withDead.flatMap((f) => f.dead);
    try {
      // A dead token is dead for every member who registered it (devices are per member and token):
      // every row holding it goes, not only the row of the member this message was for.
      const { rowCount } = await opts.pool.query('delete from devices where token = any($1::text[])', [[...new Set(devices.map((d) => d.token))]]);
      opts.log.info({ ...deliveryIds, device_ids: devices.map((d) => d.id), rows_deleted: rowCount ?? 0 }, 'fcm: deleted devices whose push token is dead');
    } catch (err) {
      // The send's outcome stands; the next send finds the same dead tokens and tries again.
      opts.log.warn({ ...deliveryIds, err: { message: (err as Error).message } }, 'fcm: could not delete dead devices');
    }
  }

  type Outcome = { messageId: string | undefined; failures: DeviceFailure[]; dead: Device[]; codes: string[] };

  function outcome(msg: OutboundMessage, devices: Device[], batch: BatchResponse, wire: CallWire): Outcome {
    const out: Outcome = { messageId: undefined, failures: [], dead: [], codes: [] };
    batch.responses.forEach((r, i) => {
      const device = devices[i]!;
      if (r.success) {
        out.messageId ??= r.messageId ?? `${FCM_PROVIDER}-accepted-${msg.deliveryId}`;
        return;
      }
      const failure = classifyDeviceError(r.error, wire);
      const code = errorCodeOf(r.error);
      out.failures.push(failure);
      out.codes.push(code);
      if (failure === 'dead') out.dead.push(device);
      if (failure === 'bug') {
        opts.log.error(
          { delivery_id: msg.deliveryId, device_id: device.id, platform: device.platform, code, error: withoutToken(r.error?.message ?? '', device.token) },
          'fcm refused the message we built (a bug, not a bad token)',
        );
      }
    });
    return out;
  }

  /** One delivery to its devices: its outcome (a SendResult or the ChannelError `send` throws) and its dead devices. */
  async function attempt(msg: OutboundMessage, devices: Device[], signal: AbortSignal): Promise<{ outcome: SendResult | ChannelError; dead: Device[] }> {
    if (devices.length === 0) return { outcome: new ChannelError('fcm: the member has no registered devices', 'permanent'), dead: [] };
    const wire = new CallWire();
    let batch: BatchResponse;
    try {
      batch = await untilAborted(withWire(wire, () => messaging.sendEach(devices.map((d) => buildFcmMessage(msg, d.token)))), signal, wire);
    } catch (err) {
      if (err instanceof ChannelError) return { outcome: err, dead: [] };
      // The whole call failed before any device was tried (credentials, project id).
      const failure = classifyDeviceError(err, wire);
      const errorClass = failure === 'bug' || failure === 'dead' ? 'permanent' : failure;
      return { outcome: new ChannelError(`fcm: ${errorCodeOf(err)}`, errorClass, errorClass === 'permanent' ? undefined : wire.retryAfterMs()), dead: [] };
    }

    const result = outcome(msg, devices, batch, wire);
    const dead = result.dead;
    // FCM gives no delivery receipts: its answer is the last word we get, recorded as the carrier status.
    if (result.messageId !== undefined) return { outcome: { provider: FCM_PROVIDER, providerMessageId: result.messageId, status: { status: 'sent', errorCode: null } }, dead };

    const summary = `fcm: no device accepted (${devices.length} tried: ${[...new Set(result.codes)].join(', ')})`;
    if (result.failures.every((f) => f === 'dead')) {
      return {
        outcome: new ChannelError(`fcm: every push token of the member is dead (${devices.length} device(s), now forgotten)`, 'permanent', undefined, undefined,
          { status: 'undelivered', errorCode: [...new Set(result.codes)].join(', ').slice(0, 100) }),
        dead,
      };
    }
    if (result.failures.includes('transient')) return { outcome: new ChannelError(summary, 'transient', wire.retryAfterMs()), dead };
    if (result.failures.includes('configuration')) return { outcome: new ChannelError(summary, 'configuration', wire.retryAfterMs()), dead };
    return { outcome: new ChannelError(summary, 'permanent'), dead };
  }

  return {
    provider: FCM_PROVIDER,
    app,
    maxBatch: FCM_MAX_BATCH,
    async send(msg: OutboundMessage, signal: AbortSignal): Promise<SendResult> {
      if (closed) throw new ChannelError('fcm channel is closed', 'transient');
      const memberId = memberOf(msg);
      const devices = (await devicesOf([memberId])).get(memberId) ?? [];
      const { outcome: out, dead } = await attempt(msg, devices, signal);
      await forget([{ msg, dead }]);
      if (out instanceof ChannelError) throw out;
      return out;
    },
    async sendMany(msgs: readonly OutboundMessage[], signal: AbortSignal): Promise<readonly (SendResult | Error)[]> {
      if (closed) throw new ChannelError('fcm channel is closed', 'transient');
      const members = msgs.map((msg) => {
        try {
          return memberOf(msg);
        } catch (err) {
          return err as ChannelError;
        }
      });
      const devices = await devicesOf(members.filter((m): m is string => typeof m === 'string'));
      const attempts = await Promise.all(msgs.map((msg, i) => {
        const member = members[i]!;
        return member instanceof ChannelError ? { outcome: member, dead: [] } : attempt(msg, devices.get(member) ?? [], signal);
      }));
      await forget(attempts.map((a, i) => ({ msg: msgs[i]!, dead: a.dead })));
      return attempts.map((a) => a.outcome);
    },
    async close(): Promise<void> {
      if (closed) return;
      closed = true;
      await deleteApp(app);
      agent.destroy();
    },
  };
}

type ServiceAccountJson = { project_id?: unknown; client_email?: unknown; private_key?: unknown };

function readServiceAccount(config: FcmConfig): ServiceAccountJson | undefined {
  if (config.FIREBASE_SERVICE_ACCOUNT_JSON !== undefined) {
    try {
      return JSON.parse(config.FIREBASE_SERVICE_ACCOUNT_JSON) as ServiceAccountJson;
    } catch {
      // JSON.parse quotes the text around the error: it could be part of the private key.
      throw new ConfigError(['FIREBASE_SERVICE_ACCOUNT_JSON: is not a service-account JSON document']);
    }
  }
  if (config.FIREBASE_SERVICE_ACCOUNT_PATH === undefined) return undefined;
  let text: string;
  try {
    text = readFileSync(config.FIREBASE_SERVICE_ACCOUNT_PATH, 'utf8');
  } catch (err) {
    throw new ConfigError([`FIREBASE_SERVICE_ACCOUNT_PATH: cannot read the file (${(err as NodeJS.ErrnoException).code ?? 'error'})`]);
  }
  try {
    return JSON.parse(text) as ServiceAccountJson;
  } catch {
    throw new ConfigError(['FIREBASE_SERVICE_ACCOUNT_PATH: the file is not a service-account JSON document']);
  }
}

export type FcmConfig = Pick<Config, 'FIREBASE_SERVICE_ACCOUNT_JSON' | 'FIREBASE_SERVICE_ACCOUNT_PATH' | 'FIREBASE_PROJECT_ID'>;

/**
 * The FCM channel when a service account is configured (its JSON, or the path of its file),
 * undefined otherwise. FIREBASE_PROJECT_ID overrides the account's project_id. Throws a
 * ConfigError naming the variable (never its content) when the account is unusable.
 */
export function fcmChannelFromConfig(config: FcmConfig, pool: Queryable, log: Logger): FcmChannel | undefined {
  const account = readServiceAccount(config);
  if (account === undefined) return undefined;
  const variable = config.FIREBASE_SERVICE_ACCOUNT_JSON === undefined ? 'FIREBASE_SERVICE_ACCOUNT_PATH' : 'FIREBASE_SERVICE_ACCOUNT_JSON';
  const projectId = config.FIREBASE_PROJECT_ID ?? (typeof account.project_id === 'string' ? account.project_id : undefined);
  if (projectId === undefined || projectId === '') {
    throw new ConfigError([`FIREBASE_PROJECT_ID: is required when the service account (${variable}) has no project_id`]);
  }
  let credential: Credential;
  try {
    credential = cert({ ...account, project_id: projectId } as Parameters<typeof cert>[0]);
  } catch (err) {
    // The SDK's messages name the missing field or the key's parse error, never the key.
    throw new ConfigError([`${variable}: ${(err as Error).message}`]);
  }
  return createFcmChannel({ pool, log, projectId, credential });
}
