import { randomUUID } from 'node:crypto';
import net, { type AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { errorOf, startTestApp, type TestApp } from '../helpers/app.js';

describe('the error envelope', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await startTestApp({
      env: { BODY_LIMIT_BYTES: '2048' },
      extend: (app) => {
        app.get('/test/boom', async () => {
          throw new Error('secret internal detail: password=hunter2');
        });
      },
    });
  });
  afterAll(() => t.close());

  it('answers an unknown route with 404 NOT_FOUND', async () => {
    const res = await t.app.inject({ method: 'GET', url: '/v1/nothing-here' });
    expect(res.statusCode).toBe(404);
    expect(errorOf(res.body).code).toBe('NOT_FOUND');
  });

  it('answers malformed JSON with 400 VALIDATION_ERROR', async () => {
    const res = await t.app.inject({
      method: 'PATCH', url: '/v1/me',
      headers: { ...(await t.as(randomUUID())), 'content-type': 'application/json' },
      payload: '{"display_name": "Ann"',
    });
    expect(res.statusCode).toBe(400);
    expect(errorOf(res.body)).toMatchObject({ code: 'VALIDATION_ERROR', message: 'request body is not valid JSON' });
  });

  it('answers a body over the limit with 413 PAYLOAD_TOO_LARGE', async () => {
    const res = await t.app.inject({
      method: 'PATCH', url: '/v1/me', headers: await t.as(randomUUID()),
      payload: { display_name: 'x'.repeat(5000) },
    });
    expect(res.statusCode).toBe(413);
    expect(errorOf(res.body).code).toBe('PAYLOAD_TOO_LARGE');
  });

  it('answers an unsupported content type with 415', async () => {
    const res = await t.app.inject({
      method: 'POST', url: '/v1/devices',
      headers: { ...(await t.as(randomUUID())), 'content-type': 'application/xml' },
      payload: '<device/>',
    });
    expect(res.statusCode).toBe(415);
    expect(errorOf(res.body).code).toBe('UNSUPPORTED_MEDIA_TYPE');
  });

  it('hides the details of a 500', async () => {
    const res = await t.app.inject({ method: 'GET', url: '/test/boom' });
    expect(res.statusCode).toBe(500);
    expect(JSON.parse(res.body)).toEqual({ error: { code: 'INTERNAL', message: 'internal error' } });
  });

  it('gives every route an envelope for a request without a token or with a bad body', async () => {
    const spec = (await t.app.inject({ method: 'GET', url: '/openapi.json' })).json() as { paths: Record<string, Record<string, unknown>> };
    for (const [path, methods] of Object.entries(spec.paths).filter(([p]) => !p.startsWith('/test/'))) {
      for (const method of Object.keys(methods)) {
        const url = path.replace(/\{[^}]+\}/g, 'not-a-uuid');
        const res = await t.app.inject({ method: method.toUpperCase() as 'GET', url, payload: method === 'get' || method === 'delete' ? undefined : { unexpected: [1, { deep: null }] } });
        const where = `${method.toUpperCase()} ${path}`;
        expect({ where, status: res.statusCode < 500 ? 'not 5xx' : res.body }).toEqual({ where, status: 'not 5xx' });
        if (res.statusCode >= 400) expect({ where, code: errorOf(res.body).code }).toEqual({ where, code: expect.any(String) });
      }
    }
  });
});

describe('request ids and headers', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await startTestApp({ env: { CORS_ORIGINS: 'https://app.pruuf.example' } });
  });
  afterAll(() => t.close());

  it('echoes a sane incoming x-request-id and makes one otherwise', async () => {
    const echoed = await t.app.inject({ method: 'GET', url: '/healthz', headers: { 'x-request-id': 'abc-123' } });
    expect(echoed.headers['x-request-id']).toBe('abc-123');
    const made = await t.app.inject({ method: 'GET', url: '/healthz', headers: { 'x-request-id': 'bad id with spaces' } });
    expect(made.headers['x-request-id']).toMatch(/^[0-9a-f-]{36}$/);
  });

  it('sends security headers', async () => {
    const res = await t.app.inject({ method: 'GET', url: '/healthz' });
    expect(res.headers['x-content-type-options']).toBe('nosniff');
    expect(res.headers['strict-transport-security']).toBeDefined();
    expect(res.headers['content-security-policy']).toContain("default-src 'self'");
    expect(res.headers['x-frame-options']).toBe('SAMEORIGIN');
  });

  it('allows the configured CORS origin only', async () => {
    const ok = await t.app.inject({ method: 'OPTIONS', url: '/v1/me', headers: { origin: 'https://app.pruuf.example', 'access-control-request-method': 'GET' } });
    expect(ok.headers['access-control-allow-origin']).toBe('https://app.pruuf.example');
    const other = await t.app.inject({ method: 'OPTIONS', url: '/v1/me', headers: { origin: 'https://evil.example', 'access-control-request-method': 'GET' } });
    expect(other.headers['access-control-allow-origin']).toBeUndefined();
  });
});

describe('rate limits', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await startTestApp({ env: { RATE_LIMIT_IP_PER_MINUTE: '8', RATE_LIMIT_MEMBER_PER_MINUTE: '3' } });
  });
  afterAll(() => t.close());

  it('limits each member, with Retry-After, without touching other members', async () => {
    const a = await t.as(randomUUID());
    const statuses: number[] = [];
    for (let i = 0; i < 4; i += 1) {
      statuses.push((await t.app.inject({ method: 'GET', url: '/v1/me', headers: a, remoteAddress: `10.0.0.${i + 1}` })).statusCode);
    }
    expect(statuses).toEqual([200, 200, 200, 429]);
    const limited = await t.app.inject({ method: 'GET', url: '/v1/me', headers: a, remoteAddress: '10.0.0.9' });
    expect(errorOf(limited.body).code).toBe('RATE_LIMITED');
    expect(Number(limited.headers['retry-after'])).toBeGreaterThan(0);
    const b = await t.app.inject({ method: 'GET', url: '/v1/me', headers: await t.as(randomUUID()), remoteAddress: '10.0.0.10' });
    expect(b.statusCode).toBe(200);
  });

  it('limits each IP address, with Retry-After', async () => {
    const statuses: number[] = [];
    for (let i = 0; i < 9; i += 1) {
      const url = i % 2 === 0 ? '/v1/me' : '/v1/nothing';
      statuses.push((await t.app.inject({ method: 'GET', url, remoteAddress: '192.0.2.7' })).statusCode);
    }
    expect(statuses).toEqual([401, 404, 401, 404, 401, 404, 401, 404, 429]);
    const res = await t.app.inject({ method: 'GET', url: '/v1/nothing', remoteAddress: '192.0.2.7' });
    expect(errorOf(res.body).code).toBe('RATE_LIMITED');
    expect(res.headers['retry-after']).toBeDefined();
    expect((await t.app.inject({ method: 'GET', url: '/healthz', remoteAddress: '192.0.2.7' })).statusCode).toBe(200);
  });

  describe('answers the HTTP parser refuses, before any route (on a real socket)', () => {
    let port: number;
    beforeAll(async () => {
      await t.app.listen({ port: 0, host: '127.0.0.1' });
      port = (t.app.server.address() as AddressInfo).port;
    });
    const raw = (request: string) => new Promise<string>((resolve, reject) => {
      const socket = net.connect(port, '127.0.0.1');
      let got = '';
      socket.on('data', (d) => { got += d.toString(); });
      socket.on('close', () => resolve(got));
      socket.on('error', (err) => (got === '' ? reject(err) : resolve(got)));
      socket.write(request);
    });
    const bodyOf = (response: string) => response.slice(response.indexOf('\r\n\r\n') + 4);

    it('headers over the limit: 431 in the envelope', async () => {
      const res = await raw(`GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`);
      expect(res.startsWith('HTTP/1.1 431 ')).toBe(true);
      expect(res).toMatch(/content-type: application\/json/i);
      expect(errorOf(bodyOf(res)).code).toBe('HEADERS_TOO_LARGE');
    });

    it('bytes that are not HTTP: 400 in the envelope', async () => {
      const res = await raw('HELLO THERE\r\n\r\n');
      expect(res.startsWith('HTTP/1.1 400 ')).toBe(true);
      expect(errorOf(bodyOf(res)).code).toBe('VALIDATION_ERROR');
    });
  });

  it('no answer may be cached: Cache-Control no-store, and Referrer-Policy no-referrer, on contact pages, API answers and errors alike', async () => {
    const sub = randomUUID();
    for (const [url, headers] of [['/a/not-a-token', { accept: 'text/html' }], ['/i/not-a-token', {}], ['/c/not-a-token', { accept: 'text/html' }], ['/v1/me', await t.as(sub)], ['/healthz', {}]] as const) {
      const res = await t.app.inject({ method: 'GET', url, headers });
      expect({ url, cache: res.headers['cache-control'], referrer: res.headers['referrer-policy'] }).toEqual({ url, cache: 'no-store', referrer: 'no-referrer' });
    }
  });
});
