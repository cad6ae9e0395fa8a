import { createHash, createSecretKey, timingSafeEqual } from 'node:crypto';
import type { FastifyRequest } from 'fastify';
import { errors as joseErrors, jwtVerify } from 'jose';
import { AppError } from '../../http/errors.js';

/**
 * Vonage's signed webhooks (Voice API with signed callbacks on the application): each request
 * carries `Authorization: Bearer <JWT>`, HS256 with the account's signature secret (the one the
 * SMS receipts use, VONAGE_SIGNATURE_SECRET), whose claims include `iat`, `jti`, `api_key`,
 * `application_id` and, for a request with a body, `payload_hash`: the SHA-256 (hex) of the JSON
 * body as Vonage sent it. Checked against the bytes received, or the body as compact JSON (keys in
 * their order, which JSON.parse keeps): Vonage's own recipe, which survives a proxy re-spacing it.
 *
 * Checked here, before the body is validated: the algorithm is HS256 only (the SDK's own
 * verifySignature also takes RS256 with the same key string), the token is at most 5 minutes old
 * (a replay) and not ahead of our clock by more than a minute, names our application when we know
 * it, and a POST body hashes to its payload_hash when the claim is there. Anything else is 401 in
 * the error envelope: a forged request learns nothing and changes nothing.
 */
export const MAX_TOKEN_AGE_SECONDS = 5 * 60;
export const CLOCK_TOLERANCE_SECONDS = 60;

const refused = (message: string) => new AppError(401, 'UNAUTHENTICATED', message);

/** SHA-256 hex of the body as Vonage serialises it: compact JSON. */
const sha256 = (text: string): string => createHash('sha256').update(text).digest('hex');
export const payloadHash = (body: unknown): string => sha256(JSON.stringify(body));

export type VonageJwtCheck = {
  /** VONAGE_SIGNATURE_SECRET; without it every request is refused. */
  secret: string | undefined;
  /** VONAGE_APPLICATION_ID: a token naming another application is refused. */
  applicationId?: string | undefined;
  clock: () => Date;
  /** The body's bytes as received, when the route kept them. */
  rawBody?: (req: FastifyRequest) => string | undefined;
};

export function vonageJwtCheck(opts: VonageJwtCheck): (req: FastifyRequest) => Promise<void> {
  const key = opts.secret === undefined ? undefined : createSecretKey(Buffer.from(opts.secret, 'utf8'));
  return async (req) => {
    if (key === undefined) {
      throw refused('Vonage call webhooks are not configured: set VONAGE_SIGNATURE_SECRET to the signature secret the Vonage dashboard shows');
    }
    const auth = req.headers.authorization;
    const token = typeof auth === 'string' && /^Bearer [\w-]+\.[\w-]+\.[\w-]+$/.test(auth) ? auth.slice('Bearer '.length) : undefined;
    if (token === undefined) throw refused('missing Vonage signature: a bearer JWT (enable signed callbacks on the Vonage application)');
    let claims: Record<string, unknown>;
    try {
      ({ payload: claims } = await jwtVerify(token, key, {
        algorithms: ['HS256'], currentDate: opts.clock(), maxTokenAge: MAX_TOKEN_AGE_SECONDS, clockTolerance: CLOCK_TOLERANCE_SECONDS,
      }));
    } catch (err) {
      if (!(err instanceof joseErrors.JOSEError)) throw err;
      req.log.warn({ route: req.routeOptions.url, reason: err.code }, 'Vonage webhook with an invalid signature refused');
      throw refused(err instanceof joseErrors.JWTClaimValidationFailed || err instanceof joseErrors.JWTExpired
        ? `the Vonage signature is outside the accepted 5-minute window or malformed (${err.claim})`
        : 'the Vonage signature does not match (VONAGE_SIGNATURE_SECRET)');
    }
    const app = claims['application_id'];
    if (opts.applicationId !== undefined && app !== undefined && app !== opts.applicationId) {
      throw refused('the Vonage signature is for another application');
    }
    const hash = claims['payload_hash'];
    if (req.method !== 'GET' && hash !== undefined && req.body !== undefined) {
      // The bytes Vonage sent, or (Vonage's own recipe) the body as compact JSON: the same content either way.
      const given = Buffer.from(typeof hash === 'string' ? hash.toLowerCase() : '', 'utf8');
      const raw = opts.rawBody?.(req);
      const candidates = [payloadHash(req.body), ...(raw === undefined ? [] : [sha256(raw)])].map((h) => Buffer.from(h, 'utf8'));
      if (!candidates.some((expected) => given.length === expected.length && timingSafeEqual(given, expected))) {
        req.log.warn({ route: req.routeOptions.url }, 'Vonage webhook whose body does not match its payload_hash refused');
        throw refused('the body does not match the payload_hash of the Vonage signature');
      }
    }
  };
}
