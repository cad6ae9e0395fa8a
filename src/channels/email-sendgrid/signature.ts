import { createPublicKey, verify, type KeyObject } from 'node:crypto';

/**
 * SendGrid's signed event webhook: ECDSA P-256 over SHA-256 of (timestamp header + raw body),
 * DER-encoded and base64 in X-Twilio-Email-Event-Webhook-Signature. The verification key is the
 * one SendGrid shows in its settings (base64 of the DER SubjectPublicKeyInfo), or the same as PEM.
 */

export const SIGNATURE_HEADER = 'x-twilio-email-event-webhook-signature';
export const TIMESTAMP_HEADER = 'x-twilio-email-event-webhook-timestamp';

/** Throws with a message naming the variable when the key is not a P-256 public key. */
export function loadSendGridPublicKey(value: string): KeyObject {
  let key: KeyObject;
  try {
    // Environment files often carry a PEM with literal "\n".
    const text = value.trim().replace(/\\n/g, '\n');
    key = text.includes('-----BEGIN')
      ? createPublicKey(text)
      : createPublicKey({ key: Buffer.from(text.replace(/\s+/g, ''), 'base64'), format: 'der', type: 'spki' });
  } catch {
    throw new Error('SENDGRID_WEBHOOK_PUBLIC_KEY is not a public key: paste the verification key SendGrid shows (base64) or its PEM');
  }
  if (key.asymmetricKeyType !== 'ec' || key.asymmetricKeyDetails?.namedCurve !== 'prime256v1') {
    throw new Error('SENDGRID_WEBHOOK_PUBLIC_KEY must be an ECDSA P-256 key, as SendGrid\'s signed event webhook uses');
  }
  return key;
}

const BASE64 = /^[A-Za-z0-9+/]+={0,2}$/;

/** True only for a valid signature over exactly these bytes; never throws on junk input. */
export function verifySendGridSignature(key: KeyObject, timestamp: string, body: Buffer, signature: string): boolean {
  const sig = signature.trim();
  if (sig === '' || sig.length > 200 || !BASE64.test(sig)) return false;
  try {
    return verify('sha256', Buffer.concat([Buffer.from(timestamp, 'utf8'), body]), { key, dsaEncoding: 'der' }, Buffer.from(sig, 'base64'));
  } catch {
    return false;
  }
}
