// The chaos run's own PostgreSQL and Redis: real servers from the machine's packages, on free
// ports, in a scratch folder, so the run can stop, kill and restart them without touching the
// machine's shared services (which other test runs may be using at the same time).
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chownSync, existsSync, mkdirSync, readdirSync } from 'node:fs';
import path from 'node:path';
import pg from 'pg';
import { freePort } from '../../../bench/lib/processes.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function postgresBin(): string {
  const root = '/usr/lib/postgresql';
  const versions = existsSync(root) ? readdirSync(root).filter((v) => existsSync(path.join(root, v, 'bin', 'pg_ctl'))) : [];
  if (versions.length === 0) throw new Error('no PostgreSQL server binaries under /usr/lib/postgresql (Debian package postgresql)');
  return path.join(root, versions.sort((a, b) => Number(b) - Number(a))[0]!, 'bin');
}

/** PostgreSQL refuses to run as root: as root, its commands run as the `postgres` system user. */
function asPostgres(cmd: string, args: string[]): string[] {
  return process.getuid?.() === 0 ? ['runuser', '-u', 'postgres', '--', cmd, ...args] : [cmd, ...args];
}

function run(argv: string[]): void {
  const r = spawnSync(argv[0]!, argv.slice(1), { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${argv.join(' ')} failed (${r.status}): ${r.stderr || r.stdout}`);
}

export type PgServer = {
  url: string;
  /** Starts the server (again) and waits until it accepts connections. */
  start(): Promise<void>;
  /** fast: rolls back and disconnects every session (a deploy's restart); immediate: a crash. */
  stop(mode?: 'fast' | 'immediate'): Promise<void>;
  destroy(): Promise<void>;
};

export async function startPostgres(dir: string): Promise<PgServer> {
  const bin = postgresBin();
  const data = path.join(dir, 'pg');
  mkdirSync(data, { recursive: true });
  if (process.getuid?.() === 0) {
    const { uid, gid } = userIds('postgres');
    chownSync(dir, uid, gid);
    chownSync(data, uid, gid);
  }
  const port = await freePort();
  run(asPostgres(path.join(bin, 'initdb'), ['-D', data, '-U', 'postgres', '--auth=trust', '-E', 'UTF8', '--no-sync']));
  // Durability settings off: this server is thrown away; a restart still ends every session.
  const opts = `-p ${port} -c listen_addresses=127.0.0.1 -c unix_socket_directories=${dir} -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300`;
  const pgCtl = (args: string[]) => run(asPostgres(path.join(bin, 'pg_ctl'), ['-D', data, ...args]));
  const base = `postgres://postgres@127.0.0.1:${port}`;
  const start = async () => {
    pgCtl(['-l', path.join(dir, 'postgres.log'), '-o', opts, '-w', '-t', '60', 'start']);
    for (let i = 0; i < 100; i++) {
      const c = new pg.Client({ connectionString: `${base}/postgres` });
      try {
        await c.connect();
        await c.end();
        return;
      } catch {
        await c.end().catch(() => undefined);
        await sleep(100);
      }
    }
    throw new Error('PostgreSQL did not accept connections after start');
  };
  await start();
  const admin = new pg.Client({ connectionString: `${base}/postgres` });
  await admin.connect();
  await admin.query('create database pruuf');
  await admin.end();
  let running = true;
  return {
    url: `${base}/pruuf`,
    start: async () => {
      await start();
      running = true;
    },
    stop: async (mode = 'fast') => {
      pgCtl(['-m', mode, '-w', '-t', '60', 'stop']);
      running = false;
    },
    destroy: async () => {
      if (running) pgCtl(['-m', 'immediate', '-w', 'stop']);
      running = false;
    },
  };
}

function userIds(name: string): { uid: number; gid: number } {
  const uid = Number(spawnSync('id', ['-u', name], { encoding: 'utf8' }).stdout.trim());
  const gid = Number(spawnSync('id', ['-g', name], { encoding: 'utf8' }).stdout.trim());
  if (!Number.isInteger(uid) || !Number.isInteger(gid)) throw new Error(`no system user ${name}`);
  return { uid, gid };
}

export type RedisServer = {
  url: string;
  start(): Promise<void>;
  /** SIGKILL: without persistence everything in it is gone, as after a crash. */
  kill(): Promise<void>;
  destroy(): Promise<void>;
};

export async function startRedis(dir: string): Promise<RedisServer> {
  const port = await freePort();
  let child: ChildProcess | undefined;
  const start = async () => {
    const c = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir, '--maxmemory-policy', 'noeviction', '--logfile', path.join(dir, 'redis.log')], { stdio: 'ignore' });
    child = c;
    const failed = new Promise<never>((_, reject) => c.once('error', (err) => reject(new Error(`redis-server did not start: ${err.message} (Debian package redis-server)`))));
    failed.catch(() => undefined);
    for (let i = 0; i < 100; i++) {
      const r = spawnSync('redis-cli', ['-p', String(port), 'ping'], { encoding: 'utf8' });
      if (r.stdout.trim() === 'PONG') return;
      await Promise.race([sleep(100), failed]);
    }
    throw new Error('redis-server did not answer after start');
  };
  const kill = async () => {
    const c = child;
    if (c === undefined || c.exitCode !== null || c.signalCode !== null) return;
    const exited = new Promise((r) => c.once('exit', r));
    c.kill('SIGKILL');
    await exited;
  };
  await start();
  return { url: `redis://127.0.0.1:${port}`, start, kill, destroy: kill };
}
