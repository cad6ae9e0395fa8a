import { ChannelError, type ErrorClass } from '../types.js';
import { retryAfterMs } from '../sms-twilio/errors.js';

/**
 * What Vonage's answers mean for a delivery. Two tables: the per-message `status` of the send
 * (the SMS API answers HTTP 200 even when it refuses a message) and the `err-code` of delivery
 * receipts (Vonage accepted it, then the carrier did not deliver it). Codes as Vonage documents
 * them (developer.vonage.com/en/api-errors/sms, the SDK's SMSStatus enum; the DLR error codes
 * in Vonage's support article "SMS Delivery Error Codes").
 *
 * Send (POST /sms/json, messages[].status):
 * | status        | meaning                                              | class         | effect                               |
 * |---------------|------------------------------------------------------|---------------|--------------------------------------|
 * | 0             | accepted                                             | -             | sent                                 |
 * | 1             | throttled: faster than the account's limit           | transient     | waits 1 s without spending an attempt|
 * | 5, 10, 13     | internal error, too many binds, communication failed | transient     | retried                              |
 * | 6             | invalid message: unrecognised number prefix          | permanent     | SMS disabled for the contact (dead)  |
 * | 7             | number barred (on Vonage's block list)               | permanent     | SMS disabled for the contact (dead)  |
 * | 33            | number de-activated                                  | permanent     | SMS disabled for the contact (dead)  |
 * | 2, 3, 12, 22  | missing or invalid parameter, message too long,      | permanent     | logged: a bug on our side; the       |
 * |               |   invalid network code                               |               |   contact keeps SMS                  |
 * | 4, 8, 9, 11,  | bad credentials, account suspended, out of credit,   | configuration | retried; the operator must act       |
 * | 14, 15, 23,   |   not enabled for HTTP, signature problems, sender   |               |   (15: the sender id or number is    |
 * | 29, 32        |   not allowed, bad callback URL, demo account        |               |   not allowed for this destination)  |
 * | anything else | undocumented                                         | transient     | retried                              |
 * HTTP 401/403/404 → configuration; 429 → transient with Retry-After (default 1 s); 5xx → transient;
 * no answer (timeout, reset, refused, abort) → transient.
 *
 * Only codes Vonage documents as the recipient's number being wrong turn the contact's SMS off:
 * 2 and 3 name no parameter (it could be our sender or any field) and 15 is our sender id, so
 * blaming the contact for them would switch SMS off for every contact at once.
 *
 * Delivery receipt (status failed, rejected or expired, with err-code):
 * | err-code        | meaning                                      | effect                                     |
 * |-----------------|----------------------------------------------|--------------------------------------------|
 * | 3               | absent subscriber, permanent (no longer in   | SMS disabled for the contact               |
 * |                 |   service)                                   |                                            |
 * | 4               | call barred by the user                      | SMS disabled for the contact               |
 * | 12              | destination unreachable (no route to number) | SMS disabled for the contact               |
 * | 14              | number blocked by the carrier                | SMS disabled for the contact               |
 * | 9               | illegal number: the user asked not to receive| every contact with the number gets         |
 * |                 |   messages from this service (opt-out)       |   sms_opted_out                            |
 * | 6, 10, 11, 16,  | anti-spam, illegal message, unroutable,      | logged as an error: ours to fix            |
 * |   50-54         |   gateway quota, entity/header/content/      |                                            |
 * |                 |   consent filters, regulation                |                                            |
 * | 1, 2, 5, 7, 8,  | unknown, absent (temporary), portability,    | none beyond the delivery row's status: a   |
 * |   13, 15, 99, … |   busy, network, age, prepaid funds, general |   phone that was off must not lose SMS     |
 * A contact is only turned off while the failed number is still theirs. Any failed alert also
 * records a failover on the incident timeline (the contact's other channels carry it).
 */

type SendMeaning = { errorClass: ErrorClass; label: string; deadAddress?: string; retryAfterMs?: number };

export const THROTTLED_RETRY_MS = 1000;

const SEND_STATUS: Record<string, SendMeaning> = {
  1: { errorClass: 'transient', label: 'throttled', retryAfterMs: THROTTLED_RETRY_MS },
  2: { errorClass: 'permanent', label: 'missing parameter' },
  3: { errorClass: 'permanent', label: 'invalid parameter' },
  4: { errorClass: 'configuration', label: 'invalid credentials' },
  5: { errorClass: 'transient', label: 'internal error' },
  6: { errorClass: 'permanent', label: 'invalid message', deadAddress: 'not a valid phone number (Vonage does not recognise its prefix)' },
  7: { errorClass: 'permanent', label: 'number barred', deadAddress: 'this number is barred from receiving SMS' },
  8: { errorClass: 'configuration', label: 'account barred' },
  9: { errorClass: 'configuration', label: 'out of credit (partner quota violation)' },
  10: { errorClass: 'transient', label: 'too many existing binds', retryAfterMs: THROTTLED_RETRY_MS },
  11: { errorClass: 'configuration', label: 'account not enabled for the SMS API' },
  12: { errorClass: 'permanent', label: 'message too long' },
  13: { errorClass: 'transient', label: 'communication failed' },
  14: { errorClass: 'configuration', label: 'invalid signature' },
  15: { errorClass: 'configuration', label: 'sender id or number not allowed for this destination' },
  22: { errorClass: 'permanent', label: 'invalid network code' },
  23: { errorClass: 'configuration', label: 'invalid callback URL' },
  29: { errorClass: 'configuration', label: 'destination not on the demo account\'s allow list' },
  32: { errorClass: 'configuration', label: 'signature and API secret disallowed' },
  33: { errorClass: 'permanent', label: 'number de-activated', deadAddress: 'this number is de-activated and cannot receive SMS' },
};

/** Vonage's answer names no number of ours in the message kept on the delivery or logged. */
function masked(text: string, to: string | undefined): string {
  if (to === undefined || to === '') return text;
  const digits = to.replace(/^\+/, '');
  return text.split(to).join('[number]').split(digits).join('[number]');
}

/** A refused message's `status` (and `error-text`) as a ChannelError of the send table. */
export function classifySendStatus(status: string, errorText: string | undefined, to?: string): ChannelError {
  const m = SEND_STATUS[status];
  const text = masked(`Vonage status ${status} (${m?.label ?? 'undocumented'})${errorText === undefined || errorText === '' ? '' : `: ${errorText}`}`, to);
  if (m === undefined) return new ChannelError(text, 'transient');
  return new ChannelError(text, m.errorClass, m.retryAfterMs, m.deadAddress);
}

type SdkError = {
  name?: unknown; message?: unknown; code?: unknown; type?: unknown;
  response?: { status?: unknown; headers?: { get?: unknown }; messages?: unknown };
};
type SdkMessage = { status?: unknown; errorText?: unknown };

/** Turns whatever the SDK call threw into a ChannelError of the send table above. */
export function classifySendError(err: unknown, to?: string): ChannelError {
  if (err instanceof ChannelError) return err;
  const e = (err ?? {}) as SdkError;
  const message = typeof e.message === 'string' ? e.message : String(err);

  // SMSFailure (MessageSendAllFailure, MessageSendPartialFailure): HTTP 200, some message refused.
  const messages = e.response?.messages;
  if (Array.isArray(messages)) {
    const failed = (messages as SdkMessage[]).find((x) => typeof x.status === 'string' && x.status !== '0');
    if (failed !== undefined) {
      return classifySendStatus(failed.status as string, typeof failed.errorText === 'string' ? failed.errorText : undefined, to);
    }
    return new ChannelError(masked(`Vonage refused the message: ${message}`, to), 'transient');
  }

  // VetchError: a non-2xx HTTP answer.
  const httpStatus = typeof e.response?.status === 'number' ? e.response.status : undefined;
  if (httpStatus !== undefined) {
    const get = e.response?.headers?.get;
    const header = typeof get === 'function' ? (get as (n: string) => string | null).call(e.response!.headers, 'retry-after') ?? undefined : undefined;
    const text = `Vonage HTTP ${httpStatus}`;
    if (httpStatus === 429) return new ChannelError(text, 'transient', retryAfterMs(header) ?? THROTTLED_RETRY_MS);
    if (httpStatus >= 500) return new ChannelError(text, 'transient', retryAfterMs(header));
    if (httpStatus === 401 || httpStatus === 403 || httpStatus === 404) return new ChannelError(text, 'configuration');
    return new ChannelError(text, 'permanent');
  }

  // No HTTP answer: an abort (ours or the SDK's timeout), a reset or a refused connection.
  const name = typeof e.name === 'string' ? e.name : '';
  const code = typeof e.code === 'string' ? e.code : '';
  const why = name === 'AbortError' || name === 'TimeoutError' ? 'no answer in time' : code === '' ? 'network error' : code;
  return new ChannelError(masked(`Vonage ${why}: ${message}`, to), 'transient');
}

/** What a delivery receipt's err-code means for the contact. */
export type ReceiptErrorMeaning = {
  /** Turn SMS off for the contact with this reason. */
  deadAddress?: string;
  /** Every contact (and member) with the number has opted out. */
  optedOut?: true;
  /** Logged at error level: content, sender registration or account on our side. */
  ourProblem?: true;
  reason: string;
};

const DEAD_ON_RECEIPT: Record<string, string> = {
  3: 'number no longer in service: the carrier says it is permanently absent',
  4: 'the number bars incoming messages (call barred by the user)',
  12: 'destination unreachable: no route to this number',
  14: 'the carrier blocks SMS to this number',
};

const RECEIPT_REASONS: Record<string, string> = {
  1: 'unknown', 2: 'handset switched off or out of coverage', 5: 'number portability error', 6: 'carrier anti-spam filter',
  7: 'handset busy', 8: 'network error', 9: 'recipient asked not to receive messages from this service',
  10: 'illegal message (encoding or parameters)', 11: 'Vonage has no route for this message', 13: 'subscriber age restriction',
  15: 'recipient prepaid balance too low', 16: 'gateway quota exceeded', 50: 'entity filter', 51: 'header (sender) filter',
  52: 'content filter', 53: 'consent filter', 54: 'regulation error', 99: 'general error',
};

const OUR_PROBLEM_ON_RECEIPT = new Set(['6', '10', '11', '16', '50', '51', '52', '53', '54']);
export const OPTED_OUT_RECEIPT_CODE = '9';

export function receiptErrorMeaning(code: string | null): ReceiptErrorMeaning {
  const c = code ?? '';
  const label = c === '' ? 'no error code' : `Vonage err-code ${c}`;
  const dead = DEAD_ON_RECEIPT[c];
  if (dead !== undefined) return { deadAddress: dead, reason: `${dead} (${label})` };
  const reason = RECEIPT_REASONS[c] === undefined ? label : `${RECEIPT_REASONS[c]} (${label})`;
  if (c === OPTED_OUT_RECEIPT_CODE) return { optedOut: true, reason };
  return OUR_PROBLEM_ON_RECEIPT.has(c) ? { ourProblem: true, reason } : { reason };
}
