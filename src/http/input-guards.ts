import type { FastifyInstance } from 'fastify';
import { validation } from './errors.js';

/**
 * PostgreSQL text cannot hold U+0000: a NUL anywhere in a note or a name would fail the
 * statement as a 500 (and, where writes are batched, fail other people's rows with it).
 * JSON and forms can carry one, so every string that arrives is checked before validation.
 */
function findNul(value: unknown, path: string, depth: number): string | undefined {
  if (typeof value === 'string') return value.includes('\u0000') ? path : undefined;
  if (depth > 64 || typeof value !== 'object' || value === null || Buffer.isBuffer(value)) return undefined;
  for (const [k, v] of Object.entries(value)) {
    if (k.includes('\u0000')) return `${path}.${k.split('\u0000').join('\\0')}`;
    const found = findNul(v, `${path}.${k}`, depth + 1);
    if (found !== undefined) return found;
  }
  return undefined;
}

export function rejectNulCharacters(app: FastifyInstance): void {
  app.addHook('preValidation', async (req) => {
    const where = findNul(req.params, 'params', 0) ?? findNul(req.query, 'querystring', 0) ?? findNul(req.body, 'body', 0);
    if (where !== undefined) {
      throw validation(`${where}: must not contain the NUL character`, { issues: [{ path: where, message: 'must not contain the NUL character' }] });
    }
  });
}
