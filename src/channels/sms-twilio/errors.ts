import { ChannelError } from '../types.js';
import { TwilioCallError } from './client.js';

/**
 * What Twilio's answers mean for a delivery. Two tables: errors of the send call itself (the
 * REST API refused the message) and error codes of status callbacks (Twilio accepted it, then
 * the carrier did not deliver it).
 *
 * Send call (POST /2010-04-01/Accounts/{sid}/Messages.json):
 * | HTTP / code                         | meaning                                  | class         | effect                                  |
 * |-------------------------------------|------------------------------------------|---------------|-----------------------------------------|
 * | 400 21211                           | 'To' is not a valid phone number         | permanent     | SMS disabled for the contact (dead)     |
 * | 400 21614                           | 'To' is not a mobile number              | permanent     | SMS disabled for the contact (dead)     |
 * | 400 21612                           | 'To' cannot be reached by SMS from us    | permanent     | SMS disabled for the contact (dead)     |
 * | 400 21610                           | the number replied STOP                  | permanent     | every contact with it gets sms_opted_out|
 * | 400 21408, 21606, 21617, 21602,     | region not enabled, bad From, body too   | permanent     | logged: a bug or our configuration      |
 * |   21608, 21659, 21660 and other 4xx |   long, empty, trial account, …          |               |                                         |
 * | 401 / 403 (20003, 20005, …)         | credentials wrong or account suspended   | configuration | retried; the operator must act          |
 * | 404 (20404)                         | the account in the URL does not exist    | configuration | retried; the operator must act          |
 * | 429 / 20429                         | too many requests                        | transient     | waits for Retry-After (default 1 s)     |
 * | 5xx                                 | Twilio trouble                           | transient     | retried (Retry-After honoured if sent)  |
 * | timeout, reset, refused, abort      | no answer                                | transient     | retried                                 |
 *
 * Status callback (MessageStatus undelivered/failed with ErrorCode):
 * | code                        | meaning                                         | effect                                   |
 * |-----------------------------|-------------------------------------------------|------------------------------------------|
 * | 30005                       | unknown destination handset (no such number)    | SMS disabled for the contact             |
 * | 30006                       | landline or unreachable carrier                 | SMS disabled for the contact             |
 * | 30004                       | blocked by the recipient or the carrier         | SMS disabled for the contact             |
 * | 21211, 21612, 21614         | as in the send table, reported late             | SMS disabled for the contact             |
 * | 21610                       | recipient opted out (STOP)                      | every contact with it gets sms_opted_out |
 * | 30003                       | handset switched off or out of coverage         | none: temporary, and a phone that was    |
 * |                             |                                                 |   off must not lose SMS for good         |
 * | 30002, 30007, 30032, 30034, | account suspended, carrier filtering, sender    | logged as an error: ours to fix          |
 * |   21408, 21606, 21617       |   not registered, region, bad From, body length |                                          |
 * | anything else (30001, 30008)| queue overflow, unknown                         | none beyond the delivery row's status    |
 * A contact is only turned off while the failed number is still theirs (a callback can come after
 * the member corrected it).
 * Any undelivered/failed alert also records a failover on the incident timeline (the contact's
 * other channels carry it).
 */

/** Sync codes whose address can never receive SMS; the reason is what the member sees on the contact. */
const DEAD_ON_SEND: Record<number, string> = {
  21211: 'not a valid phone number',
  21614: 'not a mobile number (landline or VoIP), cannot receive SMS',
  21612: 'this number cannot receive SMS from Pruuf (carrier does not route it)',
};

/** Status callback codes that mean the address is dead. */
const DEAD_ON_STATUS: Record<string, string> = {
  '30005': 'unknown number: the carrier says it does not exist',
  '30006': 'landline or unreachable carrier, cannot receive SMS',
  '30004': 'the number blocks messages from Pruuf',
  '21211': DEAD_ON_SEND[21211]!,
  '21614': DEAD_ON_SEND[21614]!,
  '21612': DEAD_ON_SEND[21612]!,
};

/** Failed for a reason on our side: someone should look. */
const OUR_PROBLEM_ON_STATUS = new Set(['30002', '30007', '30032', '30034', '21408', '21606', '21617']);

export const OPTED_OUT_CODE = 21610;

/** Short, human reasons for the failover timeline and logs, never quoting the address. */
const STATUS_REASONS: Record<string, string> = {
  '30003': 'handset switched off or out of coverage',
  '30008': 'unknown carrier error',
  '30001': 'Twilio queue overflow',
  '30007': 'carrier filtered the message',
  '30002': 'Twilio account suspended',
  '21610': 'recipient opted out (STOP)',
};

export type StatusErrorMeaning = {
  /** Turn SMS off for the contact with this reason. */
  deadAddress?: string;
  /** Every contact (and member) with the number has opted out. */
  optedOut?: true;
  /** Logged at error level: configuration or content on our side. */
  ourProblem?: true;
  reason: string;
};

export function statusErrorMeaning(code: string | null): StatusErrorMeaning {
  const c = code ?? '';
  const dead = DEAD_ON_STATUS[c];
  const label = c === '' ? 'no error code' : `Twilio error ${c}`;
  if (dead !== undefined) return { deadAddress: dead, reason: `${dead} (${label})` };
  if (c === String(OPTED_OUT_CODE)) return { optedOut: true, reason: `${STATUS_REASONS[c]} (${label})` };
  const reason = STATUS_REASONS[c] === undefined ? label : `${STATUS_REASONS[c]} (${label})`;
  return OUR_PROBLEM_ON_STATUS.has(c) ? { ourProblem: true, reason } : { reason };
}

const DEFAULT_RETRY_AFTER_MS = 1000;
const MAX_RETRY_AFTER_MS = 10 * 60_000;

/** Retry-After in seconds or as an HTTP date. */
export function retryAfterMs(value: string | undefined, now = Date.now()): number | undefined {
  if (value === undefined || value.trim() === '') return undefined;
  const seconds = Number(value);
  const ms = Number.isFinite(seconds) ? seconds * 1000 : Date.parse(value) - now;
  if (!Number.isFinite(ms)) return undefined;
  return Math.min(MAX_RETRY_AFTER_MS, Math.max(0, Math.round(ms)));
}

/** A send that Twilio refused with a code meaning "this recipient texted STOP". */
export class TwilioOptedOutError extends ChannelError {
  constructor(message: string) {
    super(message, 'permanent');
    this.name = 'TwilioOptedOutError';
  }
}

type SdkError = { status?: unknown; code?: unknown; message?: unknown; name?: unknown };

/** Turns whatever the SDK call threw into a ChannelError of the send table above. */
export function classifySendError(err: unknown): ChannelError {
  const call = err instanceof TwilioCallError ? err : undefined;
  const original = (call?.original ?? err) as SdkError | null;
  const sdkStatus = typeof original?.status === 'number' ? original.status : undefined;
  const status = sdkStatus ?? call?.httpStatus;
  const code = typeof original?.code === 'number' ? original.code : undefined;
  const what = `Twilio ${status === undefined ? '' : `HTTP ${status} `}${code === undefined ? '' : `error ${code}`}`.trim();
  const text = typeof original?.message === 'string' && original.message !== '' ? `${what}: ${original.message}` : what;

  if (status === undefined) {
    // No HTTP answer: an abort, a timeout, a reset or a refused connection.
    const name = typeof original?.name === 'string' ? original.name : '';
    const netCode = typeof original?.code === 'string' ? original.code : '';
    const why = name === 'TimeoutError' || name === 'AbortError' || name === 'CanceledError' || netCode === 'ERR_CANCELED'
      ? 'no answer in time' : netCode === '' ? 'network error' : netCode;
    return new ChannelError(`Twilio ${why}: ${typeof original?.message === 'string' ? original.message : String(err)}`, 'transient');
  }
  if (status === 429 || code === 20429) {
    return new ChannelError(text, 'transient', retryAfterMs(call?.header('retry-after')) ?? DEFAULT_RETRY_AFTER_MS);
  }
  if (status >= 500) return new ChannelError(text, 'transient', retryAfterMs(call?.header('retry-after')));
  if (status === 401 || status === 403 || status === 404) return new ChannelError(text, 'configuration');
  if (code === OPTED_OUT_CODE) return new TwilioOptedOutError(text);
  const dead = code === undefined ? undefined : DEAD_ON_SEND[code];
  if (dead !== undefined) return new ChannelError(text, 'permanent', undefined, dead);
  if (status >= 400) return new ChannelError(text, 'permanent');
  return new ChannelError(text, 'transient');
}
