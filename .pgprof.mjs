import pg from 'pg';
import { readFileSync } from 'node:fs';
const stats = new Map();
const ns = (pid) => { try { return Number(readFileSync(`/proc/${pid}/schedstat`, 'utf8').split(' ')[0]); } catch { return NaN; } };
const orig = pg.Client.prototype.query;
let on = false;
globalThis.__pgprof = (v) => { on = v; if (v) stats.clear(); };
pg.Client.prototype.query = function (config, values, cb) {
  if (!on || !this.processID) return orig.call(this, config, values, cb);
  const text = typeof config === 'string' ? config : config?.text ?? '';
  const key = text.replace(/\s+/g, ' ').trim().slice(0, 70);
  const pid = this.processID; const t0 = ns(pid);
  const done = () => { const d = ns(pid) - t0; const s = stats.get(key) ?? { n: 0, ns: 0 }; s.n += 1; if (Number.isFinite(d)) s.ns += d; stats.set(key, s); };
  if (typeof values === 'function') { const c = values; return orig.call(this, config, (e, r) => { done(); c(e, r); }); }
  if (typeof cb === 'function') { const c = cb; return orig.call(this, config, values, (e, r) => { done(); c(e, r); }); }
  const r = orig.call(this, config, values);
  if (r && typeof r.then === 'function') r.then(done, done);
  return r;
};
process.on('exit', () => {
  const total = [...stats.values()].reduce((a, s) => a + s.ns, 0);
  process.stderr.write(`PGPROF total backend CPU in statements: ${(total / 1e6).toFixed(0)} ms\n`);
  for (const [k, s] of [...stats].sort((a, b) => b[1].ns - a[1].ns).slice(0, 25)) process.stderr.write(`PGPROF ${(s.ns / 1e6).toFixed(0).padStart(7)} ms ${String(s.n).padStart(6)}x ${(s.ns / 1e3 / s.n).toFixed(0).padStart(6)} µs  ${k}\n`);
});
