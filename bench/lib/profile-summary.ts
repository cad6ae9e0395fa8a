// Where the time goes in a V8 CPU profile (`node --cpu-prof`, as `bench:api -- --cpu-prof`
// writes to bench/results/profiles): self time by function and by package, heaviest first.
//   npm run bench:profile -- bench/results/profiles/service-….cpuprofile [--top=30]
import { readFileSync } from 'node:fs';
import { arg } from './env.js';

type Node = { id: number; callFrame: { functionName: string; url: string; lineNumber: number }; hitCount?: number; children?: number[] };
type Profile = { nodes: Node[]; startTime: number; endTime: number; samples?: number[]; timeDeltas?: number[] };

/** The package or area a script belongs to: "fastify", "pg", "src/checkins", "(node)"… */
function area(url: string): string {
  if (url === '') return '(native)';
  const nm = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (nm !== null) return nm[1]!;
  if (url.startsWith('node:')) return '(node)';
  const src = /\/(src|bench|workers)\/([^/]+)/.exec(url);
  if (src !== null) return `${src[1]}/${src[2]!.replace(/\.ts$/, '')}`;
  return url.split('/').slice(-2).join('/');
}

export function summarizeProfile(p: Profile, top: number): string {
  const selfUs = new Map<number, number>();
  const samples = p.samples ?? [];
  const deltas = p.timeDeltas ?? [];
  for (let i = 0; i < samples.length; i++) selfUs.set(samples[i]!, (selfUs.get(samples[i]!) ?? 0) + (deltas[i] ?? 0));
  const total = p.endTime - p.startTime;
  const byFn = new Map<string, number>();
  const byArea = new Map<string, number>();
  for (const n of p.nodes) {
    const us = selfUs.get(n.id) ?? 0;
    if (us === 0) continue;
    const f = n.callFrame;
    const key = `${f.functionName || '(anonymous)'}  ${f.url.replace(/^.*\/(node_modules|src|bench)\//, '$1/')}:${f.lineNumber + 1}`;
    byFn.set(key, (byFn.get(key) ?? 0) + us);
    if (f.functionName === '(idle)') continue;
    byArea.set(area(f.url), (byArea.get(area(f.url)) ?? 0) + us);
  }
  const idle = byFn.get([...byFn.keys()].find((k) => k.startsWith('(idle)')) ?? '') ?? 0;
  const busy = total - idle;
  const pct = (us: number) => `${((100 * us) / busy).toFixed(1).padStart(5)}%`;
  const rows = (m: Map<string, number>) => [...m].sort((a, b) => b[1] - a[1]).slice(0, top).map(([k, us]) => `${pct(us)}  ${(us / 1000).toFixed(0).padStart(7)} ms  ${k}`);
  return [`profile: ${(total / 1e6).toFixed(1)} s, busy ${(busy / 1e6).toFixed(1)} s (percentages are of busy time)`, '', 'self time by area:', ...rows(byArea), '', 'self time by function:', ...rows(byFn)].join('\n');
}

const file = process.argv.slice(2).find((a) => !a.startsWith('--'));
if (file === undefined) {
  process.stderr.write('usage: npm run bench:profile -- <file.cpuprofile> [--top=30]\n');
  process.exit(2);
}
process.stdout.write(`${summarizeProfile(JSON.parse(readFileSync(file, 'utf8')) as Profile, Number(arg('top', '30')))}\n`);
