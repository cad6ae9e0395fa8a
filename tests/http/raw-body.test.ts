import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import Fastify, { type FastifyInstance } from 'fastify';
import { installErrorHandlers } from '../../src/http/errors-install.js';
import { rawBodyRoutes } from '../../src/http/raw-body.js';

describe('raw-body routes', () => {
  let app: FastifyInstance;
  beforeAll(async () => {
    app = Fastify();
    await app.register((await import('@fastify/rate-limit')).default, { global: false });
    installErrorHandlers(app);
    await rawBodyRoutes(app, { bodyLimit: 100 }, (scope) => {
      scope.post('/raw', async (req) => ({ isBuffer: Buffer.isBuffer(req.body), text: (req.body as Buffer).toString('utf8') }));
    });
    app.post('/parsed', async (req) => ({ body: req.body }));
    await app.ready();
  });
  afterAll(() => app.close());

  it('hands the route the exact bytes it received, whitespace and key order included', async () => {
    const payload = '{ "b":1,  "a" : [2] }';
    const res = await app.inject({ method: 'POST', url: '/raw', headers: { 'content-type': 'application/json; charset=utf-8' }, payload });
    expect(res.statusCode).toBe(200);
    expect(res.json()).toEqual({ isBuffer: true, text: payload });
  });

  it('refuses a body over its own limit with a 413 envelope', async () => {
    const res = await app.inject({ method: 'POST', url: '/raw', headers: { 'content-type': 'application/json' }, payload: `"${'x'.repeat(200)}"` });
    expect(res.statusCode).toBe(413);
    expect(res.json()).toMatchObject({ error: { code: 'PAYLOAD_TOO_LARGE' } });
  });

  it('leaves JSON parsing as it was for every other route', async () => {
    const res = await app.inject({ method: 'POST', url: '/parsed', payload: { a: 1 } });
    expect(res.json()).toEqual({ body: { a: 1 } });
  });
});
