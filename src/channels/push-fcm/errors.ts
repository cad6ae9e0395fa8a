import type { ErrorClass } from '../types.js';
import type { CallWire } from './wire.js';

/**
 * What one device's failure means. 'dead': the token will never work again (delete the device);
 * 'bug': FCM refused the message we built (permanent, and someone must look at the code).
 */
export type DeviceFailure = 'dead' | 'bug' | Exclude<ErrorClass, 'permanent'>;

/**
 * firebase-admin 13 error codes (FirebaseMessagingError / FirebaseAppError `code`).
 * The FCM v1 API's QUOTA_EXCEEDED and RESOURCE_EXHAUSTED both arrive as message-rate-exceeded
 * (the SDK has no 'messaging/quota-exceeded'); UNAUTHENTICATED arrives as third-party-auth-error.
 */
const DEAD_TOKEN = new Set(['messaging/registration-token-not-registered', 'messaging/invalid-registration-token']);
const TRANSIENT = new Set([
  'messaging/server-unavailable',
  'messaging/internal-error',
  'messaging/message-rate-exceeded',
  'messaging/device-message-rate-exceeded',
  'messaging/unknown-error',
  'app/network-error',
  'app/network-timeout',
  // The channel was closed (shutdown) while a send was under way: another worker retries it.
  'app/app-deleted',
]);
const CONFIGURATION = new Set(['messaging/third-party-auth-error', 'messaging/authentication-error', 'app/invalid-credential']);
const BUG = new Set([
  'messaging/invalid-argument',
  'messaging/invalid-payload',
  'messaging/invalid-data-payload-key',
  'messaging/payload-size-limit-exceeded',
  'messaging/invalid-options',
  'messaging/invalid-recipient',
  'messaging/invalid-package-name',
]);

export function errorCodeOf(err: unknown): string {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : 'unknown';
}

/**
 * The SDK maps both SENDER_ID_MISMATCH (the token belongs to another Firebase project: dead for
 * us) and a bare PERMISSION_DENIED (our service account may not send: our configuration) to
 * messaging/mismatched-credential. Deleting every device of every member because of an IAM
 * mistake would be far worse than keeping one stale token, so only a mismatch that FCM itself
 * named on the wire counts as dead.
 */
function mismatch(wire: CallWire): DeviceFailure {
  return wire.saw('SENDER_ID_MISMATCH') && !wire.saw('PERMISSION_DENIED') ? 'dead' : 'configuration';
}

export function classifyDeviceError(err: unknown, wire: CallWire): DeviceFailure {
  const code = errorCodeOf(err);
  if (DEAD_TOKEN.has(code)) return 'dead';
  if (code === 'messaging/mismatched-credential') return mismatch(wire);
  if (CONFIGURATION.has(code)) return 'configuration';
  if (BUG.has(code)) return 'bug';
  if (TRANSIENT.has(code)) return 'transient';
  // Unknown: an SDK or protocol change. Retrying is the side to err on for an alert.
  return 'transient';
}

/** Provider messages sometimes quote what they refused; a token must never reach a log or a row. */
export function withoutToken(message: string, token: string): string {
  return token === '' ? message : message.split(token).join('[token]');
}
