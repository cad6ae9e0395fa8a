import type { FastifyRequest } from 'fastify';
import twilio from 'twilio';
import { AppError } from '../../http/errors.js';

/**
 * A preValidation hook checking X-Twilio-Signature (HMAC-SHA1 of the public URL Twilio called,
 * query string included, plus the sorted form parameters) before the body is even validated, so
 * a forged request learns nothing and changes nothing: 403 in the error envelope.
 */
export function twilioSignatureCheck(authToken: string, publicBaseUrl: string): (req: FastifyRequest) => Promise<void> {
  return async (req) => {
    const signature = req.headers['x-twilio-signature'];
    if (typeof signature !== 'string' || signature === '') throw new AppError(403, 'FORBIDDEN', 'missing X-Twilio-Signature');
    const params = typeof req.body === 'object' && req.body !== null && !Buffer.isBuffer(req.body) ? req.body as Record<string, unknown> : {};
    if (!twilio.validateRequest(authToken, signature, `${publicBaseUrl}${req.url}`, params)) {
      req.log.warn({ route: req.routeOptions.url }, 'Twilio webhook with an invalid signature refused');
      throw new AppError(403, 'FORBIDDEN', 'invalid X-Twilio-Signature');
    }
  };
}
