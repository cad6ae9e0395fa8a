// Servers under test run as their own processes (TypeScript through tsx's loader, as
// `npm run start:api` does), each on a free port; stdout goes to a file so a failed start can
// show why without the parent paying for the log traffic.
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, openSync, readFileSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

export type Server = { name: string; url: string; child: ChildProcess; stop: () => Promise<void> };

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function waitReady(url: string, child: ChildProcess, timeoutMs: number): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (Date.now() < until) {
    if (child.exitCode !== null) throw new Error(`exited with code ${child.exitCode}`);
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(1000) });
      if (res.ok) return;
    } catch {
      // not listening yet
    }
    await sleep(100);
  }
  throw new Error(`not ready after ${timeoutMs} ms`);
}

/**
 * Starts `node [nodeArgs] --import tsx <script>` with exactly `env` (plus PATH/HOME), waits
 * until `readyPath` answers 2xx, and returns a stop() that sends SIGTERM and waits for exit
 * (a --cpu-prof profile is written at that exit).
 */
export async function startServer(opts: {
  name: string; script: string; env: Record<string, string>; port: number; readyPath: string; nodeArgs?: string[];
  /** Keep the output here (appended, never removed); default: a temporary file removed at stop. */
  logFile?: string;
}): Promise<Server> {
  const logFile = opts.logFile ?? path.join(os.tmpdir(), `pruuf-bench-${opts.name}-${process.pid}.log`);
  const out = openSync(logFile, opts.logFile === undefined ? 'w' : 'a');
  const child = spawn(process.execPath, [...(opts.nodeArgs ?? []), '--import', 'tsx', opts.script], {
    cwd: ROOT,
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? os.tmpdir(), ...opts.env },
    stdio: ['ignore', out, out],
  });
  closeSync(out);
  const url = `http://127.0.0.1:${opts.port}`;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      const killer = setTimeout(() => child.kill('SIGKILL'), 30_000);
      await exited;
      clearTimeout(killer);
    }
    if (opts.logFile === undefined) rmSync(logFile, { force: true });
  };
  try {
    await waitReady(`${url}${opts.readyPath}`, child, 60_000);
  } catch (err) {
    const tail = readFileSync(logFile, 'utf8').split('\n').slice(-30).join('\n');
    await stop();
    throw new Error(`${opts.name} did not start (${(err as Error).message}):\n${tail}`);
  }
  return { name: opts.name, url, child, stop };
}
