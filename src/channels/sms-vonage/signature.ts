import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import type { VonageSignatureMethod } from '../../config.js';

/**
 * Vonage's signed webhooks (SMS API: delivery receipts and inbound SMS). Vonage adds `timestamp`
 * (Unix seconds), `nonce` and `sig` to the parameters it sends; `sig` is, in hex:
 *  - md5hash:   MD5 of the signed string followed by the signature secret;
 *  - *hmac:     HMAC (MD5, SHA-1, SHA-256 or SHA-512) of the signed string keyed by the secret;
 * where the signed string is every parameter but `sig`, sorted by name, as `&name=value` with
 * `&` and `=` inside values replaced by `_`. This is the SDK's own `SMS.verifySignature`, which
 * compares with `===`: ours compares in constant time and takes no case from the sender.
 */

const HMAC: Record<Exclude<VonageSignatureMethod, 'md5hash'>, string> = {
  md5hmac: 'md5', sha1hmac: 'sha1', sha256hmac: 'sha256', sha512hmac: 'sha512',
};

export function signedString(params: Record<string, string>): string {
  return Object.keys(params).filter((k) => k !== 'sig').sort()
    .map((k) => `&${k}=${params[k]!.replace(/[&=]/g, '_')}`).join('');
}

/** The lower-case hex signature Vonage would send with these parameters. */
export function vonageSignature(params: Record<string, string>, secret: string, method: VonageSignatureMethod): string {
  const s = signedString(params);
  if (method === 'md5hash') return createHash('md5').update(s + secret).digest('hex');
  return createHmac(HMAC[method], secret).update(s).digest('hex');
}

/** Whether `params.sig` is Vonage's signature of the other parameters. */
export function verifyVonageSignature(params: Record<string, string>, secret: string, method: VonageSignatureMethod): boolean {
  const given = params.sig;
  if (given === undefined || !/^[0-9a-f]+$/i.test(given)) return false;
  const expected = Buffer.from(vonageSignature(params, secret, method), 'utf8');
  const actual = Buffer.from(given.toLowerCase(), 'utf8');
  return actual.length === expected.length && timingSafeEqual(actual, expected);
}
