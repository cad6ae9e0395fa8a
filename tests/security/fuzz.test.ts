import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { randomUUID } from 'node:crypto';
import fc from 'fast-check';
import type { InjectOptions } from 'fastify';
import { signLink } from '../../src/links/tokens.js';
import { changedTables, snapshot, snapshotQuery, type DbSnapshot } from '../helpers/db-snapshot.js';
import { openApiPath } from '../helpers/openapi-check.js';
import { routeTable, type RouteEntry } from '../helpers/route-table.js';
import { signToken, TEST_LINK_SECRET } from '../helpers/tokens.js';
import { encodeSegment, hostileBody, hostileParam, hostileString, type JsonSchema } from './arbitraries.js';
import { makeWorld, startSecurityApp, type SecurityApp, type World } from './world.js';

/**
 * Property-based fuzzing of every route the app serves, generated from the served OpenAPI
 * document (params, query, headers, body). Whatever arrives: a 2xx, or a 4xx in the error
 * envelope (an HTML page when the client asked for HTML); never a 5xx, never a hang; a rejected
 * request leaves every table as it was; nothing pollutes Object.prototype.
 */

const RUNS = Number(process.env.FUZZ_RUNS ?? 25);
const HANG_MS = 5_000;

type Op = { parameters?: { in: string; name: string; schema?: JsonSchema }[]; requestBody?: { content?: Record<string, { schema?: JsonSchema }> } };

const CONTENT_TYPES = [
  'application/json', 'application/json', 'application/json', 'application/json; charset=utf-8', 'text/plain',
  'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x', 'application/json; charset=utf-16', 'application/xml', '',
];
const ACCEPTS = ['application/json', '*/*', 'text/html,application/xhtml+xml', ''];
/** Node refuses to send control characters and code points above 0xff in a header. */
const headerSafe = (s: string) => s.replace(/[^\x20-\x7e]/g, '?').slice(0, 8_000);

describe('fuzzing every route with hostile input', () => {
  let t: SecurityApp;
  let w: World;
  let snapshotSql: string;
  const realParams: Record<string, string> = {};
  const counts: Record<string, number> = {};
  beforeAll(async () => {
    t = await startSecurityApp({ env: { RATE_LIMIT_IP_PER_MINUTE: '1000000', RATE_LIMIT_MEMBER_PER_MINUTE: '1000000' } });
    w = await makeWorld(t, 'fuzz');
    snapshotSql = await snapshotQuery(t.db.pool);
    const { rows: [contact] } = await t.db.pool.query<{ invited_at: Date }>('select invited_at from contacts where id = $1', [w.ids.contact]);
    const later = new Date(Date.now() + 86_400_000);
    Object.assign(realParams, {
      '/v1/contacts/:id': w.ids.contact, '/v1/schedules/:id': w.ids.schedule, '/v1/pauses/:id': w.ids.pause,
      '/v1/devices/:id': w.ids.device, '/v1/incidents/:id': w.ids.incident, '/v1/incidents/:id/resolve': w.ids.incident,
      '/c/:token': signLink(TEST_LINK_SECRET, 'checkin', w.sub, later),
      '/a/:token': signLink(TEST_LINK_SECRET, 'ack', w.ids.contact, later, w.ids.incident),
      '/i/:token': signLink(TEST_LINK_SECRET, 'invite', w.ids.contact, later, String(contact!.invited_at.getTime())),
    });
  });
  afterAll(async () => {
    const total = Object.values(counts).reduce((a, b) => a + b, 0);
    process.stdout.write(`fuzz: ${total} cases over ${Object.keys(counts).length} routes (${RUNS} per route):\n${Object.entries(counts).map(([k, n]) => `  ${k}: ${n}`).join('\n')}\n`);
    await t.shutdown();
  });

  const routes = (): RouteEntry[] => routeTable(t.app).filter((r) => r.method !== 'HEAD' && !r.url.startsWith('/docs/static'));

  /** The database once nothing has changed in it for two looks in a row (at most ~1.5 s). */
  async function settle(): Promise<DbSnapshot> {
    let last = await snapshot(t.db.pool, snapshotSql);
    let quiet = 0;
    for (let i = 0; i < 60 && quiet < 2; i += 1) {
      await new Promise((r) => setTimeout(r, 20));
      const now = await snapshot(t.db.pool, snapshotSql);
      quiet = changedTables(last, now).length === 0 ? quiet + 1 : 0;
      last = now;
    }
    return last;
  }

  function realFor(url: string): string | undefined {
    return Object.entries(realParams).find(([k]) => url === k || url.startsWith(`${k}/`))?.[1];
  }

  let last: DbSnapshot | undefined;
  it('never answers a 5xx, never hangs, changes nothing when it refuses, and pollutes no prototype', async () => {
    const failures: string[] = [];
    for (const route of routes()) {
      const key = `${route.method} ${route.url}`;
      const op = (t.checker.doc.paths[openApiPath(route.url)]?.[route.method.toLowerCase()] ?? {}) as Op;
      const query = (op.parameters ?? []).filter((p) => p.in === 'query').map((p) => p.name);
      const bodySchema = op.requestBody?.content?.['application/json']?.schema;
      const hasParam = route.url.includes(':') || route.url.includes('*');
      const arb = fc.record({
        param: hostileParam(realFor(route.url)),
        rawParam: fc.boolean(),
        query: fc.dictionary(fc.oneof(fc.constantFrom(...query, '__proto__', 'constructor[prototype][x]', 'limit[]'), fc.string({ maxLength: 8 })), hostileParam(undefined), { maxKeys: 3 }),
        auth: fc.constantFrom('owner', 'owner', 'owner', 'none', 'garbage', 'throwaway'),
        garbage: hostileString,
        contentType: fc.constantFrom(...CONTENT_TYPES),
        accept: fc.constantFrom(...ACCEPTS),
        idempotencyKey: fc.option(hostileString, { nil: undefined }),
        body: hostileBody(bodySchema),
      });
      await fc.assert(fc.asyncProperty(arb, async (c) => {
        counts[key] = (counts[key] ?? 0) + 1;
        const segment = encodeSegment(c.param, c.rawParam);
        let url = hasParam ? route.url.replace(/:[a-z]+|\*/, segment) : route.url;
        if (url === '*') url = `/v1/${segment}`;
        const qs = Object.entries(c.query).map(([k, v]) => `${encodeSegment(k, false)}=${encodeSegment(v, c.rawParam)}`).join('&');
        if (qs !== '') url += `?${qs}`;
        // Deleting one's account is fuzzed by throwaway members, so the world survives the run.
        const sub = c.auth === 'throwaway' || key === 'DELETE /v1/me' ? randomUUID() : w.sub;
        const headers: Record<string, string> = {};
        if (c.auth === 'garbage') headers.authorization = headerSafe(`Bearer ${c.garbage}`);
        else if (c.auth !== 'none') headers.authorization = `Bearer ${await signToken({ sub })}`;
        if (c.contentType !== '') headers['content-type'] = c.contentType;
        if (c.accept !== '') headers.accept = c.accept;
        if (c.idempotencyKey !== undefined) headers['idempotency-key'] = headerSafe(c.idempotencyKey) || 'k';
        const opts: InjectOptions = { method: route.method as InjectOptions['method'], url, headers };
        if (route.method !== 'GET' && route.method !== 'OPTIONS') opts.payload = c.body.text;
        const before = last ?? await snapshot(t.db.pool, snapshotSql);
        last = undefined;
        const res = await Promise.race([
          t.call(route.url, opts),
          new Promise<'hang'>((resolve) => setTimeout(() => resolve('hang'), HANG_MS).unref()),
        ]);
        const what = `${key} ${url.slice(0, 120)} [${c.auth}, ${c.contentType || 'no type'}, ${c.body.note.slice(0, 60)}]`;
        if (res === 'hang') {
          failures.push(`${what}: no answer in ${HANG_MS} ms`);
          return;
        }
        if (res.statusCode >= 500) failures.push(`${what}: ${res.statusCode} ${res.body.slice(0, 200)}`);
        if (res.statusCode >= 400) {
          const type = String(res.headers['content-type'] ?? '');
          if (type.includes('json')) {
            const parsed = JSON.parse(res.body) as { error?: { code?: unknown; message?: unknown } };
            if (typeof parsed.error?.code !== 'string' || typeof parsed.error.message !== 'string') failures.push(`${what}: not an error envelope: ${res.body.slice(0, 200)}`);
          } else if (!(type.includes('text/html') && c.accept.includes('text/html'))) {
            failures.push(`${what}: ${res.statusCode} as ${type || 'no content-type'}`);
          }
          last = await snapshot(t.db.pool, snapshotSql);
          const changed = changedTables(before, last);
          if (changed.length > 0) failures.push(`${what}: refused with ${res.statusCode} but changed ${changed.join(', ')}`);
        }
        // A check-in's bookkeeping lands just after its answer: let it finish before the next case's snapshot.
        if (res.statusCode < 400) last = await settle();
        if (({} as Record<string, unknown>).polluted !== undefined) failures.push(`${what}: Object.prototype was polluted`);
      }), { numRuns: RUNS, seed: Number(process.env.FUZZ_SEED ?? 20261123), endOnFailure: true });
    }
    expect([...new Set(failures)].slice(0, 40)).toEqual([]);
    expect(t.conformance.slice(0, 20)).toEqual([]);
  }, 120_000);
});
