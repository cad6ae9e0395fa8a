import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { randomUUID } from 'node:crypto';
import { connect, type AddressInfo } from 'node:net';
import { errorOf } from '../helpers/app.js';
import { changedTables, snapshot, snapshotQuery } from '../helpers/db-snapshot.js';
import { signToken } from '../helpers/tokens.js';
import { startSecurityApp, type SecurityApp } from './world.js';

/** Rate limits with Retry-After, body limits per route, server timeouts against slow clients. */

describe('per-IP and per-member rate limits', () => {
  let t: SecurityApp;
  beforeAll(async () => {
    t = await startSecurityApp({ env: { RATE_LIMIT_IP_PER_MINUTE: '8', RATE_LIMIT_MEMBER_PER_MINUTE: '3' } });
  });
  afterAll(() => t.shutdown());

  it('refuses an address past its limit with 429, RATE_LIMITED and Retry-After, and leaves other addresses alone', async () => {
    const from = (ip: string) => t.call('/billing/return', { method: 'GET', url: '/billing/return', remoteAddress: ip });
    const answers = [];
    for (let i = 0; i < 9; i += 1) answers.push(await from('203.0.113.7'));
    expect(answers.slice(0, 8).map((r) => r.statusCode)).toEqual(Array(8).fill(200));
    const refused = answers[8]!;
    expect(refused.statusCode).toBe(429);
    expect(errorOf(refused.body).code).toBe('RATE_LIMITED');
    expect(Number(refused.headers['retry-after'])).toBeGreaterThan(0);
    expect(Number(refused.headers['retry-after'])).toBeLessThanOrEqual(60);
    expect((await from('203.0.113.8')).statusCode).toBe(200);
    // Probing for routes counts too: unknown paths are limited like any other request.
    const probe = await t.call('/nope', { method: 'GET', url: `/nope-${randomUUID()}`, remoteAddress: '203.0.113.7' });
    expect(probe.statusCode).toBe(429);
  });

  it('refuses a member past its limit with Retry-After, whichever address it comes from, and not other members', async () => {
    const a = { authorization: `Bearer ${await signToken({ sub: randomUUID() })}` };
    const b = { authorization: `Bearer ${await signToken({ sub: randomUUID() })}` };
    const statuses = [];
    for (let i = 0; i < 4; i += 1) statuses.push(await t.call('/v1/me', { method: 'GET', url: '/v1/me', headers: a, remoteAddress: `198.51.100.${i + 1}` }));
    expect(statuses.map((r) => r.statusCode)).toEqual([200, 200, 200, 429]);
    expect(errorOf(statuses[3]!.body).code).toBe('RATE_LIMITED');
    expect(Number(statuses[3]!.headers['retry-after'])).toBeGreaterThan(0);
    expect((await t.call('/v1/me', { method: 'GET', url: '/v1/me', headers: b, remoteAddress: '198.51.100.50' })).statusCode).toBe(200);
    expect(t.conformance).toEqual([]);
  });
});

describe('body size limits', () => {
  let t: SecurityApp;
  beforeAll(async () => {
    t = await startSecurityApp({ env: { RATE_LIMIT_IP_PER_MINUTE: '100000', WEBHOOK_BODY_LIMIT_BYTES: '4096', BODY_LIMIT_BYTES: '8192' } });
  });
  afterAll(() => t.shutdown());

  it('refuses a JSON body over BODY_LIMIT_BYTES with 413 in the envelope, changing nothing', async () => {
    const sql = await snapshotQuery(t.db.pool);
    const before = await snapshot(t.db.pool, sql);
    const headers = { authorization: `Bearer ${await signToken({ sub: randomUUID() })}`, 'content-type': 'application/json' };
    const res = await t.call('/v1/contacts', { method: 'POST', url: '/v1/contacts', headers, payload: JSON.stringify({ name: 'A', email: 'a@example.test', pad: 'x'.repeat(9000) }) });
    expect(res.statusCode).toBe(413);
    expect(errorOf(res.body).code).toBe('PAYLOAD_TOO_LARGE');
    // A lying Content-Length is refused as well, before the body is read.
    const lying = await t.app.inject({ method: 'POST', url: '/v1/check-ins', headers: { ...headers, 'content-length': '100000000' }, payload: '{}' });
    expect(lying.statusCode).toBeGreaterThanOrEqual(400);
    expect(lying.statusCode).toBeLessThan(500);
    expect(changedTables(before, await snapshot(t.db.pool, sql))).toEqual([]);
  });

  it('refuses a form post over 16 KiB on the contact pages', async () => {
    const res = await t.call('/a/:token/ack', {
      method: 'POST', url: '/a/AQEAAAAAAAAAAAAAAAAAAAAAAA/ack', headers: { 'content-type': 'application/x-www-form-urlencoded' }, payload: `x=${'y'.repeat(17 * 1024)}`,
    });
    expect(res.statusCode).toBe(413);
    expect(errorOf(res.body).code).toBe('PAYLOAD_TOO_LARGE');
  });

  it.each([
    ['/webhooks/stripe', 'application/json', { 'stripe-signature': 't=1,v1=00' }],
    ['/webhooks/sendgrid/events', 'application/json', { 'x-twilio-email-event-webhook-signature': 'MEUCIQ==', 'x-twilio-email-event-webhook-timestamp': '1' }],
  ])('refuses an oversized body at %s with 413 before any signature check', async (url, type, sig) => {
    const big = JSON.stringify([{ pad: 'x'.repeat(5000) }]);
    const unsigned = await t.call(url, { method: 'POST', url, headers: { 'content-type': type }, payload: big });
    const signed = await t.call(url, { method: 'POST', url, headers: { 'content-type': type, ...sig }, payload: big });
    for (const res of [unsigned, signed]) {
      expect(res.statusCode).toBe(413);
      expect(errorOf(res.body).code).toBe('PAYLOAD_TOO_LARGE');
    }
    // Just under the limit, the same unsigned body reaches the signature check and is refused there.
    const small = await t.call(url, { method: 'POST', url, headers: { 'content-type': type }, payload: JSON.stringify([{ pad: 'x'.repeat(100) }]) });
    expect([400, 401]).toContain(small.statusCode);
  });

  it("refuses an oversized Twilio form post with 413 before checking X-Twilio-Signature", async () => {
    const res = await t.call('/webhooks/twilio/inbound', {
      method: 'POST', url: '/webhooks/twilio/inbound', headers: { 'content-type': 'application/x-www-form-urlencoded', 'x-twilio-signature': 'bogus' },
      payload: `Body=${'y'.repeat(17 * 1024)}&From=%2B447700900123&MessageSid=SM${'0'.repeat(32)}`,
    });
    expect(res.statusCode).toBe(413);
    expect(t.conformance).toEqual([]);
  });
});

describe('server timeouts against slow clients', () => {
  let t: SecurityApp;
  let port: number;
  beforeAll(async () => {
    t = await startSecurityApp({ env: { REQUEST_TIMEOUT_MS: '1000' } });
    await t.app.listen({ host: '127.0.0.1', port: 0 });
    port = (t.app.server.address() as AddressInfo).port;
  });
  afterAll(() => t.shutdown());

  /** Opens a connection, sends `head`, then one more byte every `everyMs`; resolves when the server hangs up. */
  function dribble(head: string, drip: string, everyMs: number, giveUpMs: number): Promise<{ closedAfterMs: number; answer: string }> {
    return new Promise((resolve, reject) => {
      const started = Date.now();
      const socket = connect(port, '127.0.0.1');
      let answer = '';
      let i = 0;
      const timer = setInterval(() => {
        if (!socket.writable) return;
        socket.write(drip[i % drip.length]!);
        i += 1;
      }, everyMs);
      const giveUp = setTimeout(() => {
        clearInterval(timer);
        socket.destroy();
        reject(new Error(`the server still held the connection after ${giveUpMs} ms`));
      }, giveUpMs);
      socket.on('data', (d) => { answer += d.toString(); });
      socket.on('error', () => undefined);
      socket.on('close', () => {
        clearInterval(timer);
        clearTimeout(giveUp);
        resolve({ closedAfterMs: Date.now() - started, answer });
      });
      socket.write(head);
    });
  }

  it('drops a client that dribbles its headers byte by byte', async () => {
    const { closedAfterMs } = await dribble('GET /healthz HTTP/1.1\r\nHost: x\r\n', 'X-Slow: aaaaaaaaaaaaaaaaaaaa\r\n', 100, 8000);
    expect(closedAfterMs).toBeLessThan(5000);
  }, 15_000);

  it('drops a client that dribbles its body byte by byte, with 408 when it can still answer', async () => {
    const { closedAfterMs, answer } = await dribble(
      'POST /v1/check-ins HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n', ' ', 100, 8000,
    );
    expect(closedAfterMs).toBeLessThan(5000);
    if (answer !== '') expect(answer).toMatch(/^HTTP\/1\.1 408/);
  }, 15_000);

  it('closes an idle connection that never sends a request', async () => {
    const { closedAfterMs } = await dribble('', '', 60_000, 8000);
    expect(closedAfterMs).toBeLessThan(5000);
  }, 15_000);
});
