// bench:api — POST /v1/check-ins throughput and latency, beside a baseline measured in the same run.
//
// The real API process (src/server.ts, production settings, Redis queue backend) and the
// baseline (bench/lib/baseline-server.ts: the same durable writes in one SQL statement, no
// auth, no validation) run on a fresh PostgreSQL database seeded with members who each have a
// daily deadline a few hours away and two contacts. A separate client process drives each with
// the same requests (distinct members, valid JWTs, the app's mix of bodies):
//   1. maximum rate: closed loop over --connections keep-alive connections;
//   2. fixed rate: open loop at --rate req/s, latency measured from when each request was due.
// Schedules are reset, vacuumed and checkpointed before every phase; phases alternate between
// service and baseline so drift on a shared machine hits both.
//
// Figures are medians over --rounds (the order of service and baseline alternates each round).
//   npm run bench:api -- [--duration=8] [--warmup=6] [--rounds=2] [--connections=32] [--rate=1000]
//                        [--members=20000] [--pool=10] [--log-level=info] [--kinds=max,fixed]
//                        [--cpu-prof]   (profiles of both servers in bench/results/profiles; read with npm run bench:profile)
import { fork } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Redis } from 'ioredis';
import { cpuUse, snapshot, type CpuUse } from './lib/cpu.js';
import type { RunCommand, RunResult } from './lib/load-client.js';
import { arg, createBenchDatabase, dropRedisPrefix, flag, numberArg, REDIS_URL, serviceVersions } from './lib/env.js';
import { effects, resetMembers, seedMembers, writeTokens } from './lib/members.js';
import { freePort, ROOT, startServer, type Server } from './lib/processes.js';
import { fmt, machine, printSummary, RESULTS_DIR, writeResults, type Figure } from './lib/report.js';
import { CHECK_IN_TARGETS } from './lib/scenarios.js';
import { median } from './lib/stats.js';

const opts = {
  durationS: numberArg('duration', 8),
  warmupS: numberArg('warmup', 6),
  connections: numberArg('connections', 32),
  rate: numberArg('rate', CHECK_IN_TARGETS.fixedRate),
  members: numberArg('members', 20_000),
  pool: numberArg('pool', 10),
  rounds: numberArg('rounds', 2),
  logLevel: arg('log-level', 'info'),
  cpuProf: flag('cpu-prof'),
  kinds: arg('kinds', 'max,fixed').split(',').filter((k): k is 'max' | 'fixed' => k === 'max' || k === 'fixed'),
};
const JWT_SECRET = randomBytes(32).toString('base64url');
const PREFIX = `bench${randomBytes(3).toString('hex')}`;

type Target = 'service' | 'baseline';
/** What a phase durably did, against what its answers promised. */
type Check = { written: number; expectedAdvanced: number; advancedOnce: number; advancedMore: number; mismatches: number };
type Phase = { target: Target; kind: 'max' | 'fixed'; round: number; result: RunResult; cpu: CpuUse; commitsPerReq: number; check: Check };

const log = (line: string) => process.stdout.write(`${line}\n`);

function describe(p: Phase): string {
  const r = p.result;
  const what = p.kind === 'max' ? `max rate (${opts.connections} conns)` : `fixed ${fmt(opts.rate, 0)} req/s`;
  const errs = r.errors === 0 ? '0 errors' : `${r.errors} errors ${JSON.stringify(r.errorKinds)}`;
  const lag = p.kind === 'fixed' && r.clientLagMaxMs > 5 ? `, client lag max ${fmt(r.clientLagMaxMs)} ms` : '';
  const c = p.cpu;
  const cpu = `cpu/req: server ${fmt(c.serverMsPerReq, 2)} ms, db ${fmt(c.dbMsPerReq, 2)} ms, client ${fmt(r.clientCpuMs / r.requests, 2)} ms; db commits/req ${fmt(p.commitsPerReq, 2)}; machine ${fmt(c.machineBusyPct, 0)}% busy (${fmt(Math.max(0, c.otherPct), 0)}% other work)`;
  const k = p.check;
  const check = k.mismatches === 0 ? 'effects ok' : `EFFECTS WRONG: ${k.written} rows for ${r.ok} answers, ${k.advancedOnce}/${k.expectedAdvanced} advanced once, ${k.advancedMore} more than once`;
  return `round ${p.round} ${p.target.padEnd(8)} ${what.padEnd(22)} ${fmt(r.rps, 0).padStart(6)} req/s  p50 ${fmt(r.latency.p50, 2)} ms  p99 ${fmt(r.latency.p99, 2)} ms  max ${fmt(r.latency.max, 1)} ms  ${errs}${lag}\n        ${cpu}; ${check}`;
}

async function main(): Promise<void> {
  const started = Date.now();
  const db = await createBenchDatabase('redis');
  const redis = new Redis(REDIS_URL, { maxRetriesPerRequest: 1 });
  const tokensFile = path.join(os.tmpdir(), `pruuf-bench-members-${process.pid}.txt`);
  const servers: Server[] = [];
  let client: ReturnType<typeof fork> | undefined;
  try {
    log(`bench:api — ${opts.members} members, ${opts.durationS} s per phase, ${opts.rounds} round(s), pool ${opts.pool}, LOG_LEVEL=${opts.logLevel}`);
    const ids = await seedMembers(db.pool, opts.members);
    writeTokens(tokensFile, ids, JWT_SECRET);
    log(`seeded ${ids.length} members with schedules, contacts and tokens in ${((Date.now() - started) / 1000).toFixed(1)} s`);

    // One directory per server and run: every thread (tsx's loader has its own) writes a profile; the main thread's is the big one.
    const profileArgs = (name: string) => (opts.cpuProf ? ['--cpu-prof', `--cpu-prof-dir=${path.join(RESULTS_DIR, 'profiles', `${name}-${PREFIX}`)}`] : []);
    const servicePort = await freePort();
    servers.push(await startServer({
      name: 'service', script: 'src/server.ts', port: servicePort, readyPath: '/readyz', nodeArgs: profileArgs('service'),
      env: {
        NODE_ENV: 'production', HOST: '127.0.0.1', PORT: String(servicePort), LOG_LEVEL: opts.logLevel,
        DATABASE_URL: db.url, DATABASE_POOL_MAX: String(opts.pool), REDIS_URL, QUEUE_PREFIX: PREFIX,
        SUPABASE_JWT_SECRET: JWT_SECRET, LINK_SIGNING_SECRET: randomBytes(32).toString('base64url'), PUBLIC_BASE_URL: 'https://pruuf.bench',
        // Every bench request comes from one address; the per-IP limit would turn most into 429s.
        RATE_LIMIT_IP_PER_MINUTE: '1000000000',
      },
    }));
    const baselinePort = await freePort();
    servers.push(await startServer({
      name: 'baseline', script: 'bench/lib/baseline-server.ts', port: baselinePort, readyPath: '/healthz', nodeArgs: profileArgs('baseline'),
      env: { PORT: String(baselinePort), DATABASE_URL: db.url, DATABASE_POOL_MAX: String(opts.pool) },
    }));
    const url: Record<Target, string> = { service: servers[0]!.url, baseline: servers[1]!.url };

    client = fork(path.join(ROOT, 'bench/lib/load-client.ts'), [tokensFile], { execArgv: ['--import', 'tsx'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    const c = client;
    await new Promise<void>((resolve, reject) => {
      c.once('message', () => resolve());
      c.once('exit', (code) => reject(new Error(`load client exited with ${code}`)));
    });
    let nextId = 0;
    const drive = (target: Target, mode: 'closed' | 'open', seconds: number, phase: string) =>
      new Promise<RunResult>((resolve) => {
        const cmd: RunCommand = { type: 'run', id: nextId++, baseUrl: url[target], mode, connections: mode === 'closed' ? opts.connections : 512, rate: opts.rate, durationMs: seconds * 1000, phase };
        const onMessage = (m: RunResult) => {
          if (m.type !== 'result' || m.id !== cmd.id) return;
          c.off('message', onMessage);
          resolve(m);
        };
        c.on('message', onMessage);
        c.send(cmd);
      });

    const dbPids = async (target: Target) =>
      (await db.pool.query<{ pid: number }>('select pid from pg_stat_activity where datname = current_database() and application_name = $1', [target === 'service' ? 'pruuf' : 'pruuf-baseline'])).rows.map((r) => r.pid);
    const serverPid = (target: Target) => servers[target === 'service' ? 0 : 1]!.child.pid!;
    // Until the target's database connections have been idle for a moment: what a server does
    // after answering (bookkeeping, requests the client gave up on) belongs to its phase.
    const settle = async (target: Target) => {
      const until = Date.now() + 30_000;
      for (let quiet = 0; quiet < 3 && Date.now() < until;) {
        await new Promise((r) => setTimeout(r, 100));
        const { rows } = await db.pool.query<{ n: number }>(
          `select count(*)::int as n from pg_stat_activity where datname = current_database() and application_name = $1 and state <> 'idle'`,
          [target === 'service' ? 'pruuf' : 'pruuf-baseline'],
        );
        quiet = rows[0]!.n === 0 ? quiet + 1 : 0;
      }
    };

    const runPhase = async (target: Target, kind: 'max' | 'fixed', round: number): Promise<Phase> => {
      await resetMembers(db.pool);
      const commits = async () => (await db.pool.query<{ n: number }>('select xact_commit::int as n from pg_stat_database where datname = current_database()')).rows[0]!.n;
      const commits0 = await commits();
      const before = await effects(db.pool);
      const cpu0 = snapshot(serverPid(target), await dbPids(target));
      const result = await drive(target, kind === 'max' ? 'closed' : 'open', opts.durationS, `${target}-${kind}-${round}-${PREFIX}`);
      await settle(target);
      const pids = await dbPids(target);
      const cpu1 = snapshot(serverPid(target), [...new Set([...cpu0.db.keys(), ...pids])]);
      const after = await effects(db.pool);
      // Transactions the server committed per request (the bench's own few queries included).
      const commitsPerReq = (await commits() - commits0) / result.requests;
      const written = after.checkIns - before.checkIns;
      const expectedAdvanced = Math.min(result.requests, opts.members);
      // Every 201 has its row and nothing more; with no errors every member asked advanced exactly once.
      const mismatches = Math.max(0, result.ok - written) + Math.max(0, written - result.requests) + after.advancedMore
        + (result.errors === 0 ? Math.abs(expectedAdvanced - after.advancedOnce) : 0);
      return {
        target, kind, round, result, cpu: cpuUse(cpu0, cpu1, result.requests, result.clientCpuMs), commitsPerReq,
        check: { written, expectedAdvanced, advancedOnce: after.advancedOnce, advancedMore: after.advancedMore, mismatches },
      };
    };

    for (const target of ['service', 'baseline'] as const) {
      await resetMembers(db.pool);
      await drive(target, 'closed', opts.warmupS, `warm-${target}-${PREFIX}`);
      await settle(target);
    }
    const phases: Phase[] = [];
    for (let round = 1; round <= opts.rounds; round++) {
      const order: Target[] = round % 2 === 1 ? ['service', 'baseline'] : ['baseline', 'service'];
      for (const kind of opts.kinds) {
        for (const target of order) {
          const p = await runPhase(target, kind, round);
          phases.push(p);
          log(describe(p));
        }
      }
    }

    const pick = (target: Target, kind: 'max' | 'fixed') => phases.filter((p) => p.target === target && p.kind === kind).map((p) => p.result);
    const med = (rs: RunResult[], f: (r: RunResult) => number) => median(rs.map(f));
    const sMax = pick('service', 'max');
    const bMax = pick('baseline', 'max');
    const sFixed = pick('service', 'fixed');
    const bFixed = pick('baseline', 'fixed');
    const ratios = sMax.map((r, i) => r.rps / bMax[i]!.rps);
    const serviceErrors = [...sMax, ...sFixed].reduce((n, r) => n + r.errors, 0);
    const wrongEffects = phases.filter((p) => p.target === 'service').reduce((n, p) => n + p.check.mismatches, 0);
    const baselineErrors = [...bMax, ...bFixed].reduce((n, r) => n + r.errors, 0);
    const ratio = median(ratios);
    const maxOf = (t: Target) => phases.filter((p) => p.target === t && p.kind === 'max');
    const maxPairs = maxOf('service').map((sv, i) => [sv, maxOf('baseline')[i]!] as const);
    const cost = (p: Phase) => p.cpu.serverMsPerReq + p.cpu.dbMsPerReq + p.result.clientCpuMs / p.result.requests;
    const p99Fixed = med(sFixed, (r) => r.latency.p99);
    const figures: Figure[] = [
      { name: 'service.max.rps', value: med(sMax, (r) => r.rps), unit: 'req/s' },
      { name: 'baseline.max.rps', value: med(bMax, (r) => r.rps), unit: 'req/s' },
      { name: 'ratio.service_over_baseline', value: ratio, unit: 'ratio', target: `>= ${CHECK_IN_TARGETS.minRatio}`, met: ratio >= CHECK_IN_TARGETS.minRatio },
      { name: 'service.max.p50', value: med(sMax, (r) => r.latency.p50), unit: 'ms' },
      { name: 'service.max.p99', value: med(sMax, (r) => r.latency.p99), unit: 'ms' },
      { name: 'service.max.max', value: med(sMax, (r) => r.latency.max), unit: 'ms' },
      { name: 'baseline.max.p50', value: med(bMax, (r) => r.latency.p50), unit: 'ms' },
      { name: 'baseline.max.p99', value: med(bMax, (r) => r.latency.p99), unit: 'ms' },
      { name: 'baseline.max.max', value: med(bMax, (r) => r.latency.max), unit: 'ms' },
      { name: 'service.fixed.rps', value: med(sFixed, (r) => r.rps), unit: 'req/s' },
      { name: 'service.fixed.p50', value: med(sFixed, (r) => r.latency.p50), unit: 'ms' },
      { name: 'service.fixed.p99', value: p99Fixed, unit: 'ms', target: `< ${CHECK_IN_TARGETS.p99Ms}`, met: p99Fixed < CHECK_IN_TARGETS.p99Ms },
      { name: 'service.fixed.max', value: med(sFixed, (r) => r.latency.max), unit: 'ms' },
      { name: 'baseline.fixed.p50', value: med(bFixed, (r) => r.latency.p50), unit: 'ms' },
      { name: 'baseline.fixed.p99', value: med(bFixed, (r) => r.latency.p99), unit: 'ms' },
      { name: 'baseline.fixed.max', value: med(bFixed, (r) => r.latency.max), unit: 'ms' },
      { name: 'service.errors', value: serviceErrors, unit: 'count', target: '= 0', met: serviceErrors === 0 },
      { name: 'baseline.errors', value: baselineErrors, unit: 'count' },
      { name: 'service.wrong_effects', value: wrongEffects, unit: 'count', target: '= 0', met: wrongEffects === 0 },
      // What the ratio would be on a machine doing nothing else: both are CPU-bound on two cores,
      // so throughput goes as 1 / (CPU per request of server + database + client).
      { name: 'estimate.cpu_bound_ratio', value: median(maxPairs.map(([sv, bl]) => cost(bl) / cost(sv))), unit: 'ratio' },
      { name: 'service.max.server_cpu_ms_per_req', value: median(phases.filter((p) => p.target === 'service' && p.kind === 'max').map((p) => p.cpu.serverMsPerReq)), unit: 'ms', digits: 2 },
      { name: 'service.max.db_cpu_ms_per_req', value: median(phases.filter((p) => p.target === 'service' && p.kind === 'max').map((p) => p.cpu.dbMsPerReq)), unit: 'ms', digits: 2 },
      { name: 'baseline.max.server_cpu_ms_per_req', value: median(phases.filter((p) => p.target === 'baseline' && p.kind === 'max').map((p) => p.cpu.serverMsPerReq)), unit: 'ms', digits: 2 },
      { name: 'baseline.max.db_cpu_ms_per_req', value: median(phases.filter((p) => p.target === 'baseline' && p.kind === 'max').map((p) => p.cpu.dbMsPerReq)), unit: 'ms', digits: 2 },
    ];
    if (opts.rounds > 1) {
      const spread = (what: string, xs: number[], unit: string, d = 0) => (xs.length === 0 ? [] : [`${what} ${fmt(Math.min(...xs), d)}–${fmt(Math.max(...xs), d)}${unit}`]);
      const parts = [
        ...spread('service', sMax.map((r) => r.rps), ' req/s'), ...spread('baseline', bMax.map((r) => r.rps), ' req/s'), ...spread('ratio', ratios, '', 2),
        ...spread(`service p99 at ${opts.rate}/s`, sFixed.map((r) => r.latency.p99), ' ms', 1), ...spread(`baseline p99 at ${opts.rate}/s`, bFixed.map((r) => r.latency.p99), ' ms', 1),
      ];
      log(`spread over ${opts.rounds} rounds: ${parts.join(', ')}`);
    }
    const versions = await serviceVersions(db.pool, redis);
    const file = writeResults('api', {
      machine: machine(versions), options: opts, targets: CHECK_IN_TARGETS, figures,
      phases: phases.map((p) => ({ target: p.target, kind: p.kind, round: p.round, ...p.result, type: undefined, id: undefined, cpu: p.cpu, commitsPerReq: p.commitsPerReq, check: p.check })),
      seconds: Math.round((Date.now() - started) / 1000),
    });
    printSummary(figures);
    log(`results: ${path.relative(ROOT, file)} (${Math.round((Date.now() - started) / 1000)} s)`);
  } finally {
    client?.disconnect();
    for (const s of servers) await s.stop();
    rmSync(tokensFile, { force: true });
    await dropRedisPrefix(redis, PREFIX).catch(() => undefined);
    redis.disconnect();
    await db.drop();
  }
}

await main();
