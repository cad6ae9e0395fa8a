import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { errorOf, startTestApp, type TestApp } from '../helpers/app.js';
import { asymmetricSigner, signToken, unsignedToken, type AsymmetricSigner } from '../helpers/tokens.js';

const MEMBER = '11111111-1111-4111-8111-111111111111';

async function status(t: TestApp, authorization?: string) {
  const res = await t.app.inject({ method: 'GET', url: '/v1/me', headers: authorization === undefined ? {} : { authorization } });
  return { status: res.statusCode, body: res.body };
}

describe('HS256 tokens (the project secret)', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await startTestApp({ authKeys: { hsSecret: 'test-secret-that-is-at-least-32-characters-long', issuer: 'https://proj.supabase.co/auth/v1' } });
  });
  afterAll(() => t.close());

  const iss = 'https://proj.supabase.co/auth/v1';
  const cases: [string, () => Promise<string | undefined>][] = [
    ['no authorization header', async () => undefined],
    ['a header that is not Bearer', async () => 'Basic dXNlcjpwYXNz'],
    ['a Bearer header with garbage', async () => 'Bearer not-a-jwt'],
    ['alg none', async () => `Bearer ${unsignedToken(MEMBER)}`],
    ['the wrong audience', async () => `Bearer ${await signToken({ sub: MEMBER, iss, aud: 'anon' })}`],
    ['an expired token', async () => `Bearer ${await signToken({ sub: MEMBER, iss, expiresIn: Math.floor(Date.now() / 1000) - 60 })}`],
    ['the wrong issuer', async () => `Bearer ${await signToken({ sub: MEMBER, iss: 'https://evil.example/auth/v1' })}`],
    ['no issuer when one is configured', async () => `Bearer ${await signToken({ sub: MEMBER })}`],
    ['another secret', async () => `Bearer ${await signToken({ sub: MEMBER, iss, secret: 'another-secret-that-is-32-characters-or-more' })}`],
    ['a subject that is not a user id', async () => `Bearer ${await signToken({ sub: 'admin', iss })}`],
  ];

  it.each(cases)('rejects %s with 401 in the error envelope', async (_name, header) => {
    const res = await status(t, await header());
    expect(res.status).toBe(401);
    expect(errorOf(res.body).code).toBe('UNAUTHENTICATED');
  });

  it('accepts a valid token and answers for its subject', async () => {
    const res = await status(t, `Bearer ${await signToken({ sub: MEMBER, iss })}`);
    expect(res.status).toBe(200);
    expect(JSON.parse(res.body).id).toBe(MEMBER);
  });

  it('rejects an ES256 token when only a secret is configured', async () => {
    const signer = await asymmetricSigner('ES256');
    const res = await status(t, `Bearer ${await signer.sign({ sub: MEMBER, iss })}`);
    expect(res.status).toBe(401);
  });
});

describe('asymmetric tokens against a pinned JWKS', () => {
  let t: TestApp;
  let es: AsymmetricSigner;
  let rs: AsymmetricSigner;
  let stranger: AsymmetricSigner;
  beforeAll(async () => {
    es = await asymmetricSigner('ES256', 'es-key');
    rs = await asymmetricSigner('RS256', 'rs-key');
    stranger = await asymmetricSigner('ES256', 'es-key');
    t = await startTestApp({ authKeys: { jwks: JSON.stringify({ keys: [...es.jwks.keys, ...rs.jwks.keys] }) } });
  });
  afterAll(() => t.close());

  it('accepts ES256 and RS256 tokens signed by the project keys', async () => {
    expect((await status(t, `Bearer ${await es.sign({ sub: MEMBER })}`)).status).toBe(200);
    expect((await status(t, `Bearer ${await rs.sign({ sub: MEMBER })}`)).status).toBe(200);
  });

  it('rejects a token signed by another key with the same kid', async () => {
    expect((await status(t, `Bearer ${await stranger.sign({ sub: MEMBER })}`)).status).toBe(401);
  });

  it('rejects an HS256 token when no secret is configured', async () => {
    expect((await status(t, `Bearer ${await signToken({ sub: MEMBER })}`)).status).toBe(401);
  });
});

describe('asymmetric tokens against a JWKS URL', () => {
  let t: TestApp;
  let server: Server;
  let es: AsymmetricSigner;
  let fetches = 0;
  beforeAll(async () => {
    es = await asymmetricSigner('ES256', 'remote-key');
    server = createServer((req, res) => {
      fetches += 1;
      if (req.url !== '/auth/v1/.well-known/jwks.json') {
        res.writeHead(404).end();
        return;
      }
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(es.jwks));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const port = (server.address() as AddressInfo).port;
    t = await startTestApp({ authKeys: { jwksUrl: `http://127.0.0.1:${port}/auth/v1/.well-known/jwks.json` } });
  });
  afterAll(async () => {
    await t.close();
    await new Promise((resolve) => server.close(resolve));
  });

  it('verifies tokens with the fetched keys and caches them instead of fetching per request', async () => {
    for (let i = 0; i < 5; i += 1) {
      expect((await status(t, `Bearer ${await es.sign({ sub: MEMBER })}`)).status).toBe(200);
    }
    expect(fetches).toBe(1);
  });
});
