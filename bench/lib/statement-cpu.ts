// Database CPU per statement, measured from this process (bench:alerts --statement-cpu): every
// query a pg Client runs is timed on its PostgreSQL backend (/proc/<pid>/schedstat, time on CPU in
// ns, read before the query is sent and when its answer arrives; a pool client runs one query at
// a time, so the difference is that query's). Linux only, PostgreSQL on this machine.
import { readFileSync } from 'node:fs';
import pg from 'pg';

export type StatementCpu = { statement: string; calls: number; cpuMs: number; usPerCall: number };

const onCpuNs = (pid: number): number => {
  try {
    return Number(readFileSync(`/proc/${pid}/schedstat`, 'utf8').split(' ')[0]);
  } catch {
    return Number.NaN;
  }
};

/** Patches pg.Client#query once; start() clears and begins counting, stop() ends and returns the statements by CPU. */
export function statementCpu(): { start: () => void; stop: () => StatementCpu[] } {
  const stats = new Map<string, { calls: number; ns: number }>();
  let on = false;
  const proto = pg.Client.prototype as unknown as { query: (...args: unknown[]) => unknown; processID?: number };
  const original = proto.query;
  proto.query = function patched(this: { processID?: number }, config: unknown, values?: unknown, cb?: unknown) {
    const pid = this.processID;
    if (!on || pid === undefined) return original.call(this, config, values, cb);
    const text = typeof config === 'string' ? config : (config as { text?: string } | null)?.text ?? '';
    const key = text.replace(/\s+/g, ' ').trim().slice(0, 90);
    const t0 = onCpuNs(pid);
    const done = () => {
      const s = stats.get(key) ?? { calls: 0, ns: 0 };
      s.calls += 1;
      const d = onCpuNs(pid) - t0;
      if (Number.isFinite(d)) s.ns += d;
      stats.set(key, s);
    };
    // pg.Pool#query passes a callback; direct client queries return a promise.
    if (typeof values === 'function') return original.call(this, config, (e: unknown, r: unknown) => { done(); (values as (e: unknown, r: unknown) => void)(e, r); });
    if (typeof cb === 'function') return original.call(this, config, values, (e: unknown, r: unknown) => { done(); (cb as (e: unknown, r: unknown) => void)(e, r); });
    const r = original.call(this, config, values) as Promise<unknown> | undefined;
    r?.then(done, done);
    return r;
  };
  return {
    start: () => { stats.clear(); on = true; },
    stop: () => {
      on = false;
      return [...stats].map(([statement, s]) => ({ statement, calls: s.calls, cpuMs: s.ns / 1e6, usPerCall: s.ns / 1e3 / s.calls }))
        .sort((a, b) => b.cpuMs - a.cpuMs);
    },
  };
}
