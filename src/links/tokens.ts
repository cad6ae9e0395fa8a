import { createHmac, timingSafeEqual } from 'node:crypto';

/**
 * Signed, expiring, single-purpose tokens for links in messages (/i invitation, /a acknowledgement,
 * /c check-in). Contacts have no account: the link is their credential, so it names one purpose
 * and one subject, expires, and is verified with a constant-time HMAC comparison.
 * Format: base64url(JSON payload) "." base64url(HMAC-SHA256(secret, purpose "." payload)).
 */
export type LinkPurpose = 'invite' | 'ack' | 'checkin';
export type LinkPayload = { p: LinkPurpose; s: string; e: number; x?: string };

export class LinkError extends Error {
  constructor(readonly reason: 'malformed' | 'bad_signature' | 'expired' | 'wrong_purpose') {
    super(`link ${reason.replace('_', ' ')}`);
    this.name = 'LinkError';
  }
}

function mac(secret: string, purpose: string, body: string): Buffer {
  return createHmac('sha256', secret).update(`${purpose}.${body}`).digest();
}

export function signLink(secret: string, purpose: LinkPurpose, subject: string, expiresAt: Date, extra?: string): string {
  const payload: LinkPayload = { p: purpose, s: subject, e: Math.floor(expiresAt.getTime() / 1000), ...(extra === undefined ? {} : { x: extra }) };
  const body = Buffer.from(JSON.stringify(payload)).toString('base64url');
  return `${body}.${mac(secret, purpose, body).toString('base64url')}`;
}

export function verifyLink(secret: string, purpose: LinkPurpose, token: string, now: Date): LinkPayload {
  const parts = token.split('.');
  if (parts.length !== 2 || parts[0] === '' || parts[1] === '' || token.length > 1000) throw new LinkError('malformed');
  const [body, sig] = parts as [string, string];
  const given = Buffer.from(sig, 'base64url');
  const expected = mac(secret, purpose, body);
  if (given.length !== expected.length || !timingSafeEqual(given, expected)) throw new LinkError('bad_signature');
  let payload: LinkPayload;
  try {
    payload = JSON.parse(Buffer.from(body, 'base64url').toString('utf8')) as LinkPayload;
  } catch {
    throw new LinkError('malformed');
  }
  if (payload.p !== purpose || typeof payload.s !== 'string' || typeof payload.e !== 'number') throw new LinkError('wrong_purpose');
  if (payload.e * 1000 <= now.getTime()) throw new LinkError('expired');
  return payload;
}
