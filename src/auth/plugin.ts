import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { unauthenticated, AppError } from '../http/errors.js';
import { AuthError, type Principal, type TokenVerifier } from './jwt.js';

declare module 'fastify' {
  interface FastifyRequest {
    principal: Principal | null;
  }
  interface FastifyInstance {
    /** preHandler for member routes: a verified Supabase token, then the per-member rate limit. */
    requireMember: (req: FastifyRequest, reply: FastifyReply) => Promise<void>;
    /** preHandler for routes where a token is optional (contact pages): verified if present. */
    optionalMember: (req: FastifyRequest, reply: FastifyReply) => Promise<void>;
  }
}

export function bearerToken(req: FastifyRequest): string | undefined {
  const header = req.headers.authorization;
  if (header === undefined) return undefined;
  const match = /^Bearer\s+([A-Za-z0-9._~+/=-]+)\s*$/i.exec(header);
  if (match === null) throw unauthenticated('authorization header must be "Bearer <token>"');
  return match[1];
}

export function installAuth(app: FastifyInstance, verify: TokenVerifier, memberPerMinute: number): void {
  app.decorateRequest('principal', null);
  const memberLimit = app.createRateLimit({
    max: memberPerMinute,
    timeWindow: 60_000,
    keyGenerator: (req) => `member:${req.principal?.id ?? req.ip}`,
  });

  async function authenticate(req: FastifyRequest, token: string): Promise<void> {
    try {
      req.principal = await verify(token);
    } catch (err) {
      if (err instanceof AuthError) throw unauthenticated(err.message);
      throw err;
    }
  }

  app.decorate('requireMember', async (req: FastifyRequest) => {
    const token = bearerToken(req);
    if (token === undefined) throw unauthenticated();
    await authenticate(req, token);
    const limit = await memberLimit(req);
    if (!limit.isAllowed && limit.isExceeded) {
      throw new AppError(429, 'RATE_LIMITED', 'too many requests for this member; slow down', undefined, {
        'retry-after': String(limit.ttlInSeconds),
      });
    }
  });

  app.decorate('optionalMember', async (req: FastifyRequest) => {
    const token = bearerToken(req);
    if (token !== undefined) await authenticate(req, token);
  });
}

/** The verified caller of a route guarded by requireMember. */
export function member(req: FastifyRequest): Principal {
  if (req.principal === null) throw unauthenticated();
  return req.principal;
}
