import { createHmac, createSecretKey, timingSafeEqual, type KeyObject } from 'node:crypto';
import { createLocalJWKSet, createRemoteJWKSet, decodeProtectedHeader, errors as joseErrors, jwtVerify, UnsecuredJWT, type JWTClaimVerificationOptions, type JWTPayload } from 'jose';

/**
 * Verifies Supabase access tokens locally (no network call per request):
 * HS256 with the project secret, and/or ES256/RS256 against a JWKS (remote URL, fetched and
 * cached by jose, or pinned in config). The token's own header only selects among the keys we
 * configured; `alg: none` and any algorithm we have no key for are rejected.
 */

export type AuthKeys = {
  hsSecret?: string | undefined;
  jwksUrl?: string | undefined;
  jwks?: string | undefined;
  issuer?: string | undefined;
};

export type Principal = { id: string; email: string | undefined; claims: JWTPayload };

export class AuthError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'AuthError';
  }
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const ASYMMETRIC = ['ES256', 'RS256'];

export type TokenVerifier = (token: string) => Promise<Principal>;

const HS256_SIGNATURE = /^[A-Za-z0-9_-]{43}$/;
const NONE_HEADER = Buffer.from(JSON.stringify({ alg: 'none' })).toString('base64url');

/**
 * HS256 on every request: the MAC is checked with node:crypto (WebCrypto's verify, which jose
 * uses, costs several times the CPU per call), then jose checks the claims of the verified
 * payload exactly as jwtVerify would (UnsecuredJWT.decode runs the same claim validation).
 */
function verifyHs256(token: string, key: KeyObject, options: JWTClaimVerificationOptions): JWTPayload {
  const [header, payload, signature, extra] = token.split('.');
  if (header === undefined || payload === undefined || signature === undefined || extra !== undefined || !HS256_SIGNATURE.test(signature)) {
    throw new AuthError('token signature or format invalid');
  }
  // Compared as text, so only the canonical encoding of the MAC is accepted.
  const expected = createHmac('sha256', key).update(`${header}.${payload}`).digest('base64url');
  if (!timingSafeEqual(Buffer.from(signature), Buffer.from(expected))) throw new AuthError('token signature or format invalid');
  return UnsecuredJWT.decode(`${NONE_HEADER}.${payload}.`, options).payload;
}

export function createTokenVerifier(keys: AuthKeys): TokenVerifier {
  // Made once: handed raw bytes, jose would import the HMAC key again on every request.
  const secret = keys.hsSecret === undefined ? undefined : createSecretKey(Buffer.from(keys.hsSecret, 'utf8'));
  const jwks =
    keys.jwks !== undefined
      ? createLocalJWKSet(JSON.parse(keys.jwks) as Parameters<typeof createLocalJWKSet>[0])
      : keys.jwksUrl !== undefined
        ? createRemoteJWKSet(new URL(keys.jwksUrl), { cooldownDuration: 30_000, cacheMaxAge: 10 * 60_000 })
        : undefined;
  if (secret === undefined && jwks === undefined) throw new Error('no JWT verification key configured');
  const common = { audience: 'authenticated', ...(keys.issuer === undefined ? {} : { issuer: keys.issuer }), requiredClaims: ['sub', 'exp'] };

  return async (token: string) => {
    let header: ReturnType<typeof decodeProtectedHeader>;
    try {
      header = decodeProtectedHeader(token);
    } catch {
      throw new AuthError('malformed token');
    }
    const alg = header.alg;
    try {
      let payload: JWTPayload;
      if (alg === 'HS256' && secret !== undefined) {
        // Critical extensions or an unencoded payload change what is signed: jose handles (and refuses) those.
        payload = header.crit === undefined && header.b64 === undefined
          ? verifyHs256(token, secret, common)
          : (await jwtVerify(token, secret, { ...common, algorithms: ['HS256'] })).payload;
      } else if (alg !== undefined && ASYMMETRIC.includes(alg) && jwks !== undefined) {
        ({ payload } = await jwtVerify(token, jwks, { ...common, algorithms: ASYMMETRIC }));
      } else {
        throw new AuthError(`token algorithm not accepted: ${String(alg)}`);
      }
      if (typeof payload.sub !== 'string' || !UUID.test(payload.sub)) throw new AuthError('token subject is not a user id');
      const email = typeof payload['email'] === 'string' ? payload['email'] : undefined;
      return { id: payload.sub.toLowerCase(), email, claims: payload };
    } catch (err) {
      if (err instanceof AuthError) throw err;
      if (err instanceof joseErrors.JWTExpired) throw new AuthError('token expired');
      if (err instanceof joseErrors.JWTClaimValidationFailed) throw new AuthError(`token claim rejected: ${err.claim}`);
      if (err instanceof joseErrors.JOSEError) throw new AuthError('token signature or format invalid');
      throw err;
    }
  };
}
