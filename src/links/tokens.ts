import { createHmac, timingSafeEqual } from 'node:crypto';

/**
 * Signed, expiring, single-purpose tokens for links in messages (/i invitation, /a acknowledgement,
 * /c check-in) and for the URLs Twilio fetches during a phone call (`call`: names the delivery).
 * Contacts have no account: the link is their credential, so it names one purpose and one
 * subject, expires, and is verified with a constant-time HMAC comparison.
 *
 * Binary and short, because the link must fit in an SMS alert beside the member's name:
 * version (1) | purpose (1) | subject uuid (16) | expiry, unix seconds (4) | extra (0, 16 or 8 bytes)
 * followed by HMAC-SHA256 truncated to 16 bytes, all base64url: about 75 characters for an
 * acknowledgement link.
 */
export type LinkPurpose = 'invite' | 'ack' | 'checkin' | 'call';
/** s: subject (a uuid); e: expiry in unix seconds; x: extra (a uuid, or a decimal number such as a ms timestamp). */
export type LinkPayload = { p: LinkPurpose; s: string; e: number; x?: string };

export class LinkError extends Error {
  constructor(readonly reason: 'malformed' | 'bad_signature' | 'expired' | 'wrong_purpose') {
    super(`link ${reason.replace('_', ' ')}`);
    this.name = 'LinkError';
  }
}

const VERSION = 1;
// Appended only: a purpose is its index in the token.
const PURPOSES: LinkPurpose[] = ['invite', 'ack', 'checkin', 'call'];
const MAC_BYTES = 16;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

const uuidBytes = (u: string) => Buffer.from(u.replace(/-/g, ''), 'hex');
const uuidText = (b: Buffer) => {
  const h = b.toString('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
};
const mac = (secret: string, body: Buffer) => createHmac('sha256', secret).update(body).digest().subarray(0, MAC_BYTES);

export function signLink(secret: string, purpose: LinkPurpose, subject: string, expiresAt: Date, extra?: string): string {
  if (!UUID.test(subject)) throw new Error('link subject must be a uuid');
  const head = Buffer.alloc(6);
  head.writeUInt8(VERSION, 0);
  head.writeUInt8(PURPOSES.indexOf(purpose), 1);
  head.writeUInt32BE(Math.floor(expiresAt.getTime() / 1000), 2);
  let tail = Buffer.alloc(0);
  if (extra !== undefined) {
    if (UUID.test(extra)) tail = uuidBytes(extra);
    else if (/^\d{1,19}$/.test(extra)) { // below 10^19 < 2^64
      tail = Buffer.alloc(8);
      tail.writeBigUInt64BE(BigInt(extra));
    } else throw new Error('link extra must be a uuid or a number');
  }
  const body = Buffer.concat([head, uuidBytes(subject), tail]);
  return Buffer.concat([body, mac(secret, body)]).toString('base64url');
}

export function verifyLink(secret: string, purpose: LinkPurpose, token: string, now: Date): LinkPayload {
  if (token.length > 200 || !/^[A-Za-z0-9_-]+$/.test(token)) throw new LinkError('malformed');
  const raw = Buffer.from(token, 'base64url');
  // Node's decoder ignores a dangling character and unused low bits: a link we made has exactly
  // one spelling, so any other spelling of the same bytes is refused as not ours.
  if (raw.toString('base64url') !== token) throw new LinkError('malformed');
  const bodyLength = raw.length - MAC_BYTES;
  if (![22, 30, 38].includes(bodyLength)) throw new LinkError('malformed');
  const body = raw.subarray(0, bodyLength);
  if (!timingSafeEqual(raw.subarray(bodyLength), mac(secret, body))) throw new LinkError('bad_signature');
  if (body.readUInt8(0) !== VERSION) throw new LinkError('malformed');
  if (PURPOSES[body.readUInt8(1)] !== purpose) throw new LinkError('wrong_purpose');
  const payload: LinkPayload = { p: purpose, s: uuidText(body.subarray(6, 22)), e: body.readUInt32BE(2) };
  if (bodyLength === 38) payload.x = uuidText(body.subarray(22, 38));
  if (bodyLength === 30) payload.x = body.readBigUInt64BE(22).toString();
  if (payload.e * 1000 <= now.getTime()) throw new LinkError('expired');
  return payload;
}
