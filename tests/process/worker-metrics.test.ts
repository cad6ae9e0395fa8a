import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { createTestDatabase, type TestDatabase } from '../helpers/db.js';
import { TEST_REDIS_URL } from '../helpers/env.js';
import { TEST_JWT_SECRET, TEST_LINK_SECRET } from '../helpers/tokens.js';

/** A worker-only process (`npm run start:worker`) serves its own metrics when METRICS_PORT is set. */

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

describe('a worker-only process', () => {
  let db: TestDatabase;
  let dataDir: string;
  let proc: ChildProcess | undefined;
  let output = '';

  beforeAll(async () => {
    db = await createTestDatabase();
    dataDir = await mkdtemp(path.join(tmpdir(), 'pruuf-worker-metrics-'));
  });
  afterAll(async () => {
    if (proc !== undefined && proc.exitCode === null) {
      proc.kill('SIGKILL');
      await new Promise((resolve) => proc!.once('exit', resolve));
    }
    await rm(dataDir, { recursive: true, force: true });
    await db.drop();
  });

  it('serves /metrics and /healthz on METRICS_PORT, with its breaker and job metrics, and shuts down on SIGTERM', async () => {
    const port = await freePort();
    proc = spawn(process.execPath, ['--import', 'tsx', 'workers/worker.ts'], {
      cwd: process.cwd(),
      env: {
        PATH: process.env.PATH, HOME: process.env.HOME, NODE_ENV: 'test', LOG_LEVEL: 'warn', DATA_DIR: dataDir,
        DATABASE_URL: db.url, REDIS_URL: TEST_REDIS_URL, QUEUE_PREFIX: `wm${port}`, HOST: '127.0.0.1', METRICS_PORT: String(port),
        LINK_SIGNING_SECRET: TEST_LINK_SECRET, SUPABASE_JWT_SECRET: TEST_JWT_SECRET, PUBLIC_BASE_URL: 'http://pruuf.test',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    proc.stdout!.on('data', (d: Buffer) => (output += d.toString()));
    proc.stderr!.on('data', (d: Buffer) => (output += d.toString()));
    const exited = new Promise<number | null>((resolve) => proc!.once('exit', (code) => resolve(code)));

    let text = '';
    const until = Date.now() + 30_000;
    while (Date.now() < until) {
      text = await fetch(`http://127.0.0.1:${port}/metrics`).then((r) => (r.ok ? r.text() : ''), () => '');
      if (text.includes('pruuf_breaker_state')) break;
      await new Promise((r) => setTimeout(r, 200));
    }
    if (!text.includes('pruuf_breaker_state')) throw new Error(`no worker metrics within 30 s; the worker said:\n${output}`);
    expect(text).toMatch(/pruuf_breaker_state\{provider="dev-outbox"\} 0/);
    expect(text).toContain('pruuf_process_cpu_seconds_total');
    expect(await (await fetch(`http://127.0.0.1:${port}/healthz`)).json()).toEqual({ status: 'ok' });
    const other = await fetch(`http://127.0.0.1:${port}/v1/me`);
    expect(other.status).toBe(404);
    expect((await other.json()) as unknown).toMatchObject({ error: { code: 'NOT_FOUND' } });

    proc.kill('SIGTERM');
    expect(await exited).toBe(0);
  }, 60_000);

  it('refuses to start in production with no real provider for any alert channel, saying why', async () => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'workers/worker.ts'], {
      cwd: process.cwd(),
      env: {
        PATH: process.env.PATH, HOME: process.env.HOME, NODE_ENV: 'production', LOG_LEVEL: 'warn', DATA_DIR: dataDir,
        DATABASE_URL: db.url, REDIS_URL: TEST_REDIS_URL, QUEUE_PREFIX: 'wm-refuse', HOST: '127.0.0.1',
        LINK_SIGNING_SECRET: TEST_LINK_SECRET, SUPABASE_JWT_SECRET: TEST_JWT_SECRET, PUBLIC_BASE_URL: 'https://pruuf.test',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let said = '';
    child.stderr!.on('data', (d: Buffer) => (said += d.toString()));
    // A worker that starts anyway would run until killed: give it 30 s.
    const killer = setTimeout(() => child.kill('SIGKILL'), 30_000);
    const code = await new Promise<number | null>((resolve) => child.once('exit', (c) => resolve(c)));
    clearTimeout(killer);
    expect(code).toBe(1);
    expect(said).toMatch(/needs a real provider for at least one alert channel/);
  }, 60_000);
});
