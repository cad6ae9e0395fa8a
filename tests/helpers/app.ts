import { randomBytes, randomUUID } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import { buildApp, type AppDeps } from '../../src/app.js';
import { createTokenVerifier, type AuthKeys } from '../../src/auth/jwt.js';
import type { Clock } from '../../src/clock.js';
import { loadConfig, type Config } from '../../src/config.js';
import { loadMigrations } from '../../src/db/migrate.js';
import { createLogger } from '../../src/observability/logger.js';
import { QueueSystem } from '../../src/queue/index.js';
import { createTestDatabase, type TestDatabase } from './db.js';
import { TEST_REDIS_URL } from './env.js';
import { signToken, TEST_JWT_SECRET, TEST_LINK_SECRET, type TokenOptions } from './tokens.js';

export type QueueBackend = 'redis' | 'postgres';

export type TestAppOptions = {
  backend?: QueueBackend;
  env?: Record<string, string>;
  authKeys?: AuthKeys;
  clock?: Clock;
  deleteAuthUser?: AppDeps['deleteAuthUser'];
  /** Called before app.ready(), e.g. to add a route that throws. */
  extend?: (app: FastifyInstance) => void;
};

export type TestApp = {
  app: FastifyInstance;
  db: TestDatabase;
  queues: QueueSystem;
  config: Config;
  /** A token for a new (or the given) member. */
  token: (opts?: TokenOptions) => Promise<string>;
  /** Headers for a member: `{ authorization: 'Bearer …' }`. */
  as: (sub: string) => Promise<{ authorization: string }>;
  /**
   * Headers for a member who has a display name (set through PATCH /v1/me), as arming a schedule
   * requires: what a test that creates an active schedule starts from.
   */
  asNamed: (sub: string, name?: string) => Promise<{ authorization: string }>;
  close: () => Promise<void>;
};

export function testConfig(backend: QueueBackend, databaseUrl: string, env: Record<string, string> = {}): Config {
  return loadConfig({
    NODE_ENV: 'test',
    LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? 'silent',
    DATABASE_URL: databaseUrl,
    ...(backend === 'redis' ? { REDIS_URL: TEST_REDIS_URL } : {}),
    QUEUE_PREFIX: `t${randomBytes(5).toString('hex')}`,
    SUPABASE_JWT_SECRET: TEST_JWT_SECRET,
    PUBLIC_BASE_URL: 'http://pruuf.test',
    ...env,
  });
}

/** The real app on a fresh database and a fresh queue namespace. */
export async function startTestApp(opts: TestAppOptions = {}): Promise<TestApp> {
  const backend = opts.backend ?? 'redis';
  const db = await createTestDatabase();
  const config = testConfig(backend, db.url, opts.env);
  const log = createLogger(config.LOG_LEVEL);
  const queues = new QueueSystem({ backend, redisUrl: config.REDIS_URL, databaseUrl: db.url, prefix: config.QUEUE_PREFIX }, log);
  const app = await buildApp({
    config,
    pool: db.pool,
    queues,
    migrations: await loadMigrations(),
    verifyToken: createTokenVerifier(opts.authKeys ?? { hsSecret: TEST_JWT_SECRET }),
    linkSecret: TEST_LINK_SECRET,
    ...(opts.clock === undefined ? {} : { clock: opts.clock }),
    ...(opts.deleteAuthUser === undefined ? {} : { deleteAuthUser: opts.deleteAuthUser }),
  });
  opts.extend?.(app);
  await app.ready();
  return {
    app,
    db,
    queues,
    config,
    token: (t = {}) => signToken({ sub: randomUUID(), ...t }),
    as: async (sub) => ({ authorization: `Bearer ${await signToken({ sub })}` }),
    asNamed: async (sub, name = 'Ann') => {
      const headers = { authorization: `Bearer ${await signToken({ sub })}` };
      await nameMember(app, headers, name);
      return headers;
    },
    close: async () => {
      await app.close();
      await queues.close();
      await db.drop();
    },
  };
}

/** Gives the member a display name through the API (a schedule cannot be armed without one). */
export async function nameMember(app: FastifyInstance, headers: { authorization: string }, name = 'Ann'): Promise<void> {
  const res = await app.inject({ method: 'PATCH', url: '/v1/me', headers, payload: { display_name: name } });
  if (res.statusCode !== 200) throw new Error(`naming the member: ${res.statusCode} ${res.body}`);
}

/** Asserts the API.md error envelope and returns its error part. */
export function errorOf(body: string): { code: string; message: string; details?: Record<string, unknown> } {
  const parsed = JSON.parse(body) as { error?: { code?: unknown; message?: unknown } };
  if (parsed.error === undefined || typeof parsed.error.code !== 'string' || typeof parsed.error.message !== 'string') {
    throw new Error(`not an error envelope: ${body.slice(0, 300)}`);
  }
  return parsed.error as { code: string; message: string };
}
