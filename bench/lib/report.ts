// What every bench ends with: one summary line per figure on stdout, and the same figures
// with the machine and options in bench/results/<name>.json.
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const RESULTS_DIR = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'results');

export type Figure = {
  /** Stable key, e.g. "service.max.rps". */
  name: string;
  value: number;
  unit: string;
  /** e.g. ">= 0.8" or "< 50"; omitted for figures without a target. */
  target?: string;
  met?: boolean;
  /** Decimals shown; by default 0 for counts and req/s, 2 for ratios, 1 otherwise. */
  digits?: number;
};

export type Machine = { cpus: string; cores: number; memoryGb: number; os: string; node: string; postgres?: string; redis?: string; loadAverage: number[] };

export function machine(extra: { postgres?: string; redis?: string } = {}): Machine {
  const cpus = os.cpus();
  return {
    cpus: cpus[0]?.model ?? 'unknown',
    cores: cpus.length,
    memoryGb: Math.round(os.totalmem() / 2 ** 30),
    os: `${os.type()} ${os.release()}`,
    node: process.version,
    ...extra,
    loadAverage: os.loadavg().map((l) => Number(l.toFixed(2))),
  };
}

/** The working tree's commit, so a result can be traced to the code it measured. */
export function gitCommit(): string | undefined {
  try {
    return execFileSync('git', ['rev-parse', '--short', 'HEAD'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    return undefined;
  }
}

export const fmt = (v: number, digits = 1): string =>
  Number.isFinite(v) ? v.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits }) : 'n/a';

export function summaryLine(f: Figure): string {
  const value = `${fmt(f.value, f.digits ?? (f.unit === 'req/s' || f.unit === 'count' ? 0 : f.unit === 'ratio' ? 2 : 1))}${f.unit === 'ratio' || f.unit === 'count' ? '' : ` ${f.unit}`}`;
  const target = f.target === undefined ? '' : `  (target ${f.target}: ${f.met === true ? 'MET' : 'MISSED'})`;
  return `SUMMARY ${f.name} = ${value}${target}`;
}

export function printSummary(figures: Figure[]): void {
  for (const f of figures) process.stdout.write(`${summaryLine(f)}\n`);
}

export function writeResults(name: string, data: Record<string, unknown>): string {
  mkdirSync(RESULTS_DIR, { recursive: true });
  const file = path.join(RESULTS_DIR, `${name}.json`);
  writeFileSync(file, `${JSON.stringify({ bench: name, at: new Date().toISOString(), commit: gitCommit(), ...data }, null, 2)}\n`);
  return file;
}
