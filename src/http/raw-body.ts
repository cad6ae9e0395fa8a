import type { FastifyInstance } from 'fastify';

/**
 * Routes that verify a signature over the exact bytes they received (Stripe, SendGrid) get the
 * body as a Buffer; everywhere else keeps normal JSON parsing. The routes live in their own
 * encapsulated scope, so the parser swap never leaks, and `bodyLimit` refuses an oversized body
 * (413 in the envelope) before any signature work is done.
 */
export async function rawBodyRoutes(
  app: FastifyInstance,
  opts: { bodyLimit: number; contentTypes?: string[] },
  routes: (scope: FastifyInstance) => void,
): Promise<void> {
  await app.register(async (scope) => {
    for (const type of opts.contentTypes ?? ['application/json']) {
      if (scope.hasContentTypeParser(type)) scope.removeContentTypeParser(type);
      scope.addContentTypeParser(type, { parseAs: 'buffer', bodyLimit: opts.bodyLimit }, (_req, body, done) => done(null, body));
    }
    routes(scope);
  });
}
