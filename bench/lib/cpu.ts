// CPU accounting for a phase (Linux /proc; elsewhere every figure is NaN): how much CPU the
// server, its PostgreSQL backends and the whole machine used, so a missed target can say what
// bounded it (the server's core, the database, or other work on the machine).
import { readFileSync } from 'node:fs';

const TICK_MS = 10; // USER_HZ is 100 on every Linux Node supports

function readOr<T>(fn: () => T, fallback: T): T {
  try {
    return fn();
  } catch {
    return fallback;
  }
}

/** User + system CPU milliseconds a process (all its threads) has used so far. */
export function processCpuMs(pid: number): number {
  return readOr(() => {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) * TICK_MS;
  }, Number.NaN);
}

/** Busy and total CPU milliseconds of the whole machine so far (all cores). */
export function machineCpuMs(): { busy: number; total: number } {
  return readOr(() => {
    const cpu = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
    const total = cpu.slice(0, 8).reduce((a, b) => a + b, 0);
    const idle = cpu[3]! + cpu[4]!; // idle + iowait
    return { busy: (total - idle) * TICK_MS, total: total * TICK_MS };
  }, { busy: Number.NaN, total: Number.NaN });
}

export type CpuSnapshot = { server: number; db: Map<number, number>; machine: { busy: number; total: number } };

export function snapshot(serverPid: number, dbPids: number[]): CpuSnapshot {
  // A backend that has exited since is left out (its CPU after the first snapshot is lost).
  return { server: processCpuMs(serverPid), db: new Map(dbPids.map((p) => [p, processCpuMs(p)] as const).filter(([, ms]) => Number.isFinite(ms))), machine: machineCpuMs() };
}

export type CpuUse = {
  /** CPU ms per request in the server process. */
  serverMsPerReq: number;
  /** CPU ms per request in the PostgreSQL backends serving the bench database. */
  dbMsPerReq: number;
  /** Share of the whole machine (all cores) that was busy, and how much of it was neither server, database nor client. */
  machineBusyPct: number;
  otherPct: number;
};

export function cpuUse(before: CpuSnapshot, after: CpuSnapshot, requests: number, clientMs: number): CpuUse {
  const server = after.server - before.server;
  let db = 0;
  // A backend first seen at the end was started during the phase: all its CPU is the phase's.
  for (const [pid, ms] of after.db) if (Number.isFinite(ms)) db += ms - (before.db.get(pid) ?? 0);
  const total = after.machine.total - before.machine.total;
  const busy = after.machine.busy - before.machine.busy;
  return {
    serverMsPerReq: server / requests,
    dbMsPerReq: db / requests,
    machineBusyPct: (100 * busy) / total,
    otherPct: (100 * (busy - server - db - clientMs)) / total,
  };
}
