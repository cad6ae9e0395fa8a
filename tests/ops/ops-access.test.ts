import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { loadConfig } from '../../src/config.js';
import { errorOf, startTestApp, type TestApp } from '../helpers/app.js';

// Ops endpoints under a hostile client: /metrics only for whoever holds its token (or not on the
// public port at all), probes rate-limited per address, and X-Forwarded-For believed only from
// the proxies named in TRUST_PROXY.

const TOKEN = 'metrics-token-of-at-least-32-characters!';

describe('/metrics with METRICS_TOKEN', () => {
  let t: TestApp;
  beforeAll(async () => { t = await startTestApp({ env: { METRICS_TOKEN: TOKEN } }); });
  afterAll(() => t.close());

  it('answers 401 in the envelope without the token or with a wrong one, and the metrics with it', async () => {
    for (const headers of [{}, { authorization: 'Bearer nope' }, { authorization: `Bearer ${TOKEN}x` }, { authorization: TOKEN }]) {
      const res = await t.app.inject({ method: 'GET', url: '/metrics', headers });
      expect(res.statusCode).toBe(401);
      expect(errorOf(res.body).code).toBe('UNAUTHENTICATED');
      expect(res.body).not.toContain('pruuf_');
    }
    const ok = await t.app.inject({ method: 'GET', url: '/metrics', headers: { authorization: `Bearer ${TOKEN}` } });
    expect(ok.statusCode).toBe(200);
    expect(ok.body).toContain('pruuf_http_request_duration_seconds');
  });
});

describe('/metrics served on METRICS_PORT', () => {
  let t: TestApp;
  beforeAll(async () => { t = await startTestApp({ env: { METRICS_PORT: '0' } }); });
  afterAll(() => t.close());

  it('/readyz and the metrics say which channels have no provider (their messages reach nobody)', async () => {
    const res = await t.app.inject({ method: 'GET', url: '/readyz' });
    expect(res.json().channels).toEqual({ push: 'dev_outbox', sms: 'dev_outbox', email: 'dev_outbox', voice: 'dev_outbox' });
  });

  it('is not on the public port at all', async () => {
    const res = await t.app.inject({ method: 'GET', url: '/metrics' });
    expect(res.statusCode).toBe(404);
    expect(errorOf(res.body).code).toBe('NOT_FOUND');
  });
});

describe('probes and proxies', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await startTestApp({ env: { PROBE_RATE_PER_MINUTE: '3', TRUST_PROXY: '10.0.0.0/8, loopback' } });
  });
  afterAll(() => t.close());

  it('rate-limits /healthz and /readyz per address with a 429 in the envelope; other routes are not counted with them', async () => {
    const from = (remoteAddress: string, url: string) => t.app.inject({ method: 'GET', url, remoteAddress });
    for (const url of ['/healthz', '/readyz']) {
      const answers = [];
      for (let i = 0; i < 4; i += 1) answers.push((await from('192.0.2.7', url)).statusCode);
      expect(answers).toEqual([200, 200, 200, 429]);
      const limited = await from('192.0.2.7', url);
      expect(errorOf(limited.body).code).toBe('RATE_LIMITED');
      expect((await from('192.0.2.8', url)).statusCode).toBe(200); // another address
    }
    expect((await from('192.0.2.7', '/openapi.json')).statusCode).toBe(200);
  });

  it('believes X-Forwarded-For only from a listed proxy', async () => {
    const via = (remoteAddress: string, client: string) =>
      t.app.inject({ method: 'GET', url: '/healthz', remoteAddress, headers: { 'x-forwarded-for': client } });
    // From an address not in TRUST_PROXY, a forged header changes nothing: one address, limited.
    const forged = [];
    for (let i = 0; i < 4; i += 1) forged.push((await via('198.51.100.9', `203.0.113.${i}`)).statusCode);
    expect(forged).toEqual([200, 200, 200, 429]);
    // Through the listed proxy, each client is its own address.
    const proxied = [];
    for (let i = 0; i < 4; i += 1) proxied.push((await via('10.1.2.3', `203.0.113.${100 + i}`)).statusCode);
    expect(proxied).toEqual([200, 200, 200, 200]);
  });
});

describe('TRUST_PROXY is a list of proxies, never "everyone"', () => {
  const base = { NODE_ENV: 'test', DATABASE_URL: 'postgres://x@127.0.0.1/x' };
  it.each(['true', 'TRUE', '1', 'yes'])('refuses %s with a message naming the variable', (v) => {
    expect(() => loadConfig({ ...base, TRUST_PROXY: v })).toThrow(/TRUST_PROXY.*list your proxies/s);
  });
  it.each(['10.0.0.0/33', 'example.com', '10.0.0.0/8/1', '::1/129'])('refuses the entry %s', (v) => {
    expect(() => loadConfig({ ...base, TRUST_PROXY: v })).toThrow(/TRUST_PROXY/);
  });
  it('takes addresses, CIDRs and proxy-addr names; false or empty is none', () => {
    expect(loadConfig({ ...base, TRUST_PROXY: '10.0.0.0/8, 192.168.1.1 ,fd00::/8,loopback' }).TRUST_PROXY).toEqual(['10.0.0.0/8', '192.168.1.1', 'fd00::/8', 'loopback']);
    expect(loadConfig({ ...base, TRUST_PROXY: 'false' }).TRUST_PROXY).toEqual([]);
    expect(loadConfig(base).TRUST_PROXY).toEqual([]);
  });
  it('refuses a short METRICS_TOKEN', () => {
    expect(() => loadConfig({ ...base, METRICS_TOKEN: 'short' })).toThrow(/METRICS_TOKEN/);
  });
});
