import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { member } from '../auth/plugin.js';
import { Phone } from '../contacts/schemas.js';
import { authErrors, ErrorEnvelopeSchema, iso, Timestamp } from '../http/schemas.js';
import { confirmPhoneCode, sendPhoneCode, type PhoneVerificationDeps } from './phone-verification.js';
import { Member, memberOut } from './routes.js';

/**
 * POST /v1/me/phone/verification: text a code to a number; POST …/confirm: prove it. The app's
 * flow: the member types their number, the app asks for a code, the member types the code from
 * the SMS, the app confirms; the profile then shows the phone with phone_verified true.
 */

const SendBody = z.strictObject({ phone: Phone.describe('E.164 (spaces, dots, dashes and brackets are removed)') });

const ConfirmBody = z.strictObject({
  phone: Phone.describe('the number the code was sent to'),
  code: z.string().max(32).transform((v) => v.replace(/[\s-]/g, '')).pipe(z.string().regex(/^\d{6}$/, 'must be the six digits from the SMS'))
    .describe('the six digits from the SMS (spaces and dashes are ignored)'),
});

const CodeSent = z
  .object({
    phone: z.string().describe('where the code was sent'),
    expires_at: Timestamp.describe('the code works until then (10 minutes)'),
    resend_at: Timestamp.describe('the earliest a new code may be asked for'),
  })
  .meta({ id: 'PhoneCodeSent' });

export function phoneRoutes(app: FastifyInstance, deps: PhoneVerificationDeps): void {
  const r = app.withTypeProvider<ZodTypeProvider>();
  const secured = { preHandler: app.requireMember };
  const security = [{ bearerAuth: [] }];

  r.post('/v1/me/phone/verification', {
    ...secured,
    schema: {
      tags: ['members'],
      summary: 'Text a six-digit code to a phone number, to verify it (one a minute, five an hour, per member and per number)',
      description: 'The answer is the same whether or not another member uses the number. 409 PHONE_ALREADY_VERIFIED: the number is already verified on your account. 429 RATE_LIMITED with Retry-After: too many codes asked for.',
      security,
      body: SendBody,
      response: { 202: CodeSent, ...authErrors, 409: ErrorEnvelopeSchema },
    },
  }, async (req, reply) => {
    const sent = await sendPhoneCode(deps, member(req), req.body.phone, app.clock());
    return reply.code(202).send({ phone: sent.phone, expires_at: iso(sent.expires_at), resend_at: iso(sent.resend_at) });
  });

  r.post('/v1/me/phone/verification/confirm', {
    ...secured,
    schema: {
      tags: ['members'],
      summary: 'Confirm a phone number with the code texted to it: it becomes your phone, verified',
      description: 'Errors: 400 CODE_INVALID (wrong code; details.attempts_left), 400 CODE_EXPIRED (expired, replaced by a newer code, or none asked for: ask for a new one), 429 TOO_MANY_ATTEMPTS (the fifth wrong try killed the code; Retry-After says when a new one may be asked for). A number another member had verified is now yours; theirs becomes unverified.',
      security,
      body: ConfirmBody,
      response: { 200: Member, ...authErrors },
    },
  }, async (req) => memberOut(await confirmPhoneCode(deps, member(req), req.body.phone, req.body.code, app.clock())));
}
