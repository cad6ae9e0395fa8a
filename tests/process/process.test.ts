import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chmod, mkdtemp } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from '@jest/globals';
import { createTestDatabase, type TestDatabase } from '../helpers/db.js';
import { TEST_REDIS_URL } from '../helpers/env.js';

/** The real entry points as separate processes, the way `npm start` and `npm run token` run them. */
const TSX = path.resolve('node_modules/.bin/tsx');

async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}

function baseEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { PATH: process.env.PATH, HOME: process.env.HOME, LOG_LEVEL: 'warn', ...extra };
  return env;
}

type Running = { child: ChildProcess; url: string; output: () => string; exited: Promise<number | null> };

function start(entry: string, env: NodeJS.ProcessEnv, port: number): Running {
  const child = spawn(TSX, [entry], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return { child, url: `http://127.0.0.1:${port}`, output: () => out, exited };
}

async function waitReady(r: Running, timeoutMs: number): Promise<number> {
  const started = Date.now();
  while (Date.now() - started < timeoutMs) {
    if (r.child.exitCode !== null) throw new Error(`process exited early (${r.child.exitCode}):\n${r.output()}`);
    try {
      const res = await fetch(`${r.url}/readyz`);
      if (res.status === 200) return Date.now() - started;
    } catch {
      // not listening yet
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`not ready within ${timeoutMs} ms:\n${r.output()}`);
}

function token(env: NodeJS.ProcessEnv, sub?: string): string {
  const res = spawnSync(TSX, ['src/cli/token.ts', ...(sub === undefined ? [] : [sub])], { env, encoding: 'utf8' });
  if (res.status !== 0) throw new Error(`npm run token failed: ${res.stderr}`);
  return res.stdout.trim();
}

async function stop(r: Running): Promise<number | null> {
  r.child.kill('SIGTERM');
  return r.exited;
}

describe('npm start', () => {
  let db: TestDatabase | undefined;
  afterAll(async () => {
    await db?.drop();
  });

  it('refuses a bad configuration with a message naming the variable and exit code 1', () => {
    const res = spawnSync(TSX, ['src/main.ts'], { env: baseEnv({ PORT: 'eighty' }), encoding: 'utf8' });
    expect(res.status).toBe(1);
    expect(res.stderr).toContain('PORT:');
    expect(res.stderr).toContain('.env.example');
  });

  it('serves a member with a token from npm run token, on external PostgreSQL and Redis, and stops cleanly on SIGTERM', async () => {
    db = await createTestDatabase({ empty: true });
    const port = await freePort();
    const dataDir = await mkdtemp(path.join(tmpdir(), 'pruuf-data-'));
    const env = baseEnv({ PORT: String(port), DATABASE_URL: db.url, REDIS_URL: TEST_REDIS_URL, DATA_DIR: dataDir, QUEUE_PREFIX: `p${port}` });
    const r = start('src/main.ts', env, port);
    try {
      await waitReady(r, 60_000);
      const res = await fetch(`${r.url}/v1/me`, { headers: { authorization: `Bearer ${token(env)}` } });
      expect(res.status).toBe(200);
      expect(((await res.json()) as { id: string }).id).toBe('00000000-0000-4000-8000-000000000001');
    } finally {
      expect(await stop(r)).toBe(0);
    }
  }, 90_000);

  it('runs with no configuration on embedded PostgreSQL, keeping its data across restarts', async () => {
    const port = await freePort();
    const pgPort = await freePort();
    const dataDir = await mkdtemp(path.join(tmpdir(), 'pruuf-embedded-'));
    await chmod(dataDir, 0o755); // PostgreSQL runs as the `postgres` user when we are root
    const env = baseEnv({ PORT: String(port), DATA_DIR: dataDir, EMBEDDED_PG_PORT: String(pgPort) });

    const first = start('src/main.ts', env, port);
    let createdAt: string;
    try {
      const coldMs = await waitReady(first, 120_000);
      process.stdout.write(`cold start (first run, initdb): ${coldMs} ms\n`);
      const auth = { authorization: `Bearer ${token(env)}`, 'content-type': 'application/json' };
      const res = await fetch(`${first.url}/v1/me`, { headers: auth });
      expect(res.status).toBe(200);
      createdAt = ((await res.json()) as { created_at: string }).created_at;

      // A newcomer's first alert: a name, a contact, a deadline 5 s away with no grace, and the dev outbox.
      expect((await fetch(`${first.url}/v1/me`, { method: 'PATCH', headers: auth, body: JSON.stringify({ display_name: 'Newcomer' }) })).status).toBe(200);
      await fetch(`${first.url}/v1/contacts`, { method: 'POST', headers: auth, body: JSON.stringify({ name: 'Sam', email: 'sam@example.test' }) });
      const dueAt = new Date(Date.now() + 5000);
      const created = await fetch(`${first.url}/v1/schedules`, { method: 'POST', headers: auth, body: JSON.stringify({ kind: 'once', due_at: dueAt.toISOString(), grace_minutes: 0 }) });
      expect(created.status).toBe(201);
      let alertAt: number | undefined;
      while (alertAt === undefined && Date.now() < dueAt.getTime() + 10_000) {
        const outbox = (await (await fetch(`${first.url}/dev/outbox`, { headers: { accept: 'application/json' } })).json()) as { data: { kind: string; body: string }[] };
        if (outbox.data.some((m) => m.kind === 'alert' && m.body.includes('/a/'))) alertAt = Date.now();
        else await new Promise((r) => setTimeout(r, 100));
      }
      expect(alertAt).toBeDefined();
      process.stdout.write(`deadline to dev outbox (npm start, embedded): ${alertAt! - dueAt.getTime()} ms\n`);
      expect(alertAt! - dueAt.getTime()).toBeLessThan(10_000);
    } finally {
      expect(await stop(first)).toBe(0);
    }

    const second = start('src/main.ts', env, port);
    try {
      const warmMs = await waitReady(second, 60_000);
      process.stdout.write(`cold start (second run): ${warmMs} ms\n`);
      const res = await fetch(`${second.url}/v1/me`, { headers: { authorization: `Bearer ${token(env)}` } });
      expect(((await res.json()) as { created_at: string }).created_at).toBe(createdAt);
    } finally {
      expect(await stop(second)).toBe(0);
    }
  }, 240_000);
});
