import { randomUUID } from 'node:crypto';
import { SignJWT, exportJWK, generateKeyPair, type JWK } from 'jose';

export const TEST_JWT_SECRET = 'test-secret-that-is-at-least-32-characters-long';
export const TEST_LINK_SECRET = 'test-link-secret-that-is-at-least-32-characters';

export type TokenOptions = {
  sub?: string;
  aud?: string;
  iss?: string;
  email?: string;
  expiresIn?: string | number;
  secret?: string;
};

/** An HS256 Supabase-style access token. */
export async function signToken(opts: TokenOptions = {}): Promise<string> {
  const jwt = new SignJWT({ email: opts.email ?? 'member@example.test', role: 'authenticated' })
    .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
    .setSubject(opts.sub ?? randomUUID())
    .setAudience(opts.aud ?? 'authenticated')
    .setIssuedAt()
    .setExpirationTime(opts.expiresIn ?? '1h');
  if (opts.iss !== undefined) jwt.setIssuer(opts.iss);
  return jwt.sign(new TextEncoder().encode(opts.secret ?? TEST_JWT_SECRET));
}

export type AsymmetricSigner = { jwks: { keys: JWK[] }; sign: (opts?: TokenOptions) => Promise<string> };

/** A key pair as a Supabase project with asymmetric JWT signing keys has (ES256 or RS256). */
export async function asymmetricSigner(alg: 'ES256' | 'RS256', kid = `k-${alg}`): Promise<AsymmetricSigner> {
  const { publicKey, privateKey } = await generateKeyPair(alg, { extractable: true });
  const jwk = { ...(await exportJWK(publicKey)), kid, alg, use: 'sig' };
  return {
    jwks: { keys: [jwk] },
    sign: (opts = {}) => {
      const jwt = new SignJWT({ email: opts.email ?? 'member@example.test', role: 'authenticated' })
        .setProtectedHeader({ alg, kid, typ: 'JWT' })
        .setSubject(opts.sub ?? randomUUID())
        .setAudience(opts.aud ?? 'authenticated')
        .setIssuedAt()
        .setExpirationTime(opts.expiresIn ?? '1h');
      if (opts.iss !== undefined) jwt.setIssuer(opts.iss);
      return jwt.sign(privateKey);
    },
  };
}

/** A token with `alg: none`: must never be accepted. */
export function unsignedToken(sub = randomUUID()): string {
  const enc = (o: object) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const now = Math.floor(Date.now() / 1000);
  return `${enc({ alg: 'none', typ: 'JWT' })}.${enc({ sub, aud: 'authenticated', exp: now + 3600, iat: now })}.`;
}
