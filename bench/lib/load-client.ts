// The bench:api load generator, run as its own process (forked by bench/api.ts) so the client's
// CPU is not the server's. Keep-alive HTTP/1.1 on raw sockets (http1.ts); two modes:
//  - closed loop: N connections, each sends its next request when the previous answer arrives
//    (the maximum rate the server sustains);
//  - open loop: requests are due at fixed instants (rate/s) whatever the server does, and each
//    latency is measured from the instant it was due, so a stalled server is charged for the
//    requests that queued behind the stall (no coordinated omission).
import { readFileSync } from 'node:fs';
import { Http1Pool } from './http1.js';
import { checkInRequest, CHECK_IN_PATH } from './scenarios.js';
import { Samples, summarize, type LatencySummary } from './stats.js';

export type RunCommand = {
  type: 'run';
  id: number;
  baseUrl: string;
  mode: 'closed' | 'open';
  /** closed: concurrent connections; open: the most sockets it may open. */
  connections: number;
  /** open loop: requests per second. */
  rate?: number;
  durationMs: number;
  /** Tags idempotency keys so two phases never share one. */
  phase: string;
};

export type RunResult = {
  type: 'result';
  id: number;
  mode: 'closed' | 'open';
  requests: number;
  ok: number;
  errors: number;
  errorKinds: Record<string, number>;
  seconds: number;
  rps: number;
  offeredRate: number | null;
  latency: LatencySummary;
  /** Open loop: how late the client itself sent a request (its own event loop lag). */
  clientLagMaxMs: number;
  /** CPU the client process used for this run. */
  clientCpuMs: number;
};

type Member = { id: string; token: string };

const TIMEOUT_MS = 10_000;

function loadMembers(file: string): Member[] {
  return readFileSync(file, 'utf8').split('\n').filter(Boolean).map((line) => {
    const [id, token] = line.split(' ');
    return { id: id!, token: token! };
  });
}

/** The i-th request as the text it goes out as. */
function requester(members: Member[], baseUrl: string, phase: string, pool: Http1Pool) {
  const host = new URL(baseUrl).host;
  return (i: number): Promise<string> => {
    const member = members[i % members.length]!;
    const scenario = checkInRequest(i);
    const body = JSON.stringify(scenario.body);
    const key = scenario.idempotent ? `idempotency-key: ${phase}-${i}\r\n` : '';
    // x-member-id is read by the baseline only: it does no auth, so it is told the member outright.
    return pool.send(
      `POST ${CHECK_IN_PATH} HTTP/1.1\r\nhost: ${host}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\n`
      + `authorization: Bearer ${member.token}\r\nx-member-id: ${member.id}\r\n${key}\r\n${body}`,
    );
  };
}

async function run(cmd: RunCommand, members: Member[]): Promise<RunResult> {
  const pool = new Http1Pool(cmd.baseUrl, cmd.connections, TIMEOUT_MS);
  const send = requester(members, cmd.baseUrl, cmd.phase, pool);
  const samples = new Samples();
  const errorKinds: Record<string, number> = {};
  let ok = 0;
  let next = 0;
  let clientLagMaxMs = 0;
  const record = (outcome: string, ms: number) => {
    samples.push(ms);
    if (outcome === 'ok') ok++;
    else errorKinds[outcome] = (errorKinds[outcome] ?? 0) + 1;
  };
  const cpu = process.cpuUsage();
  const start = performance.now();
  const end = start + cmd.durationMs;

  if (cmd.mode === 'closed') {
    const loop = async () => {
      while (performance.now() < end) {
        const i = next++;
        const t0 = performance.now();
        record(await send(i), performance.now() - t0);
      }
    };
    await Promise.all(Array.from({ length: cmd.connections }, loop));
  } else {
    const rate = cmd.rate ?? 1000;
    const interval = 1000 / rate;
    const inFlight = new Set<Promise<void>>();
    await new Promise<void>((done) => {
      const tick = () => {
        const now = performance.now();
        for (;;) {
          const due = start + next * interval;
          if (due >= end) return done();
          if (due > now) break;
          clientLagMaxMs = Math.max(clientLagMaxMs, now - due);
          const p = send(next++).then((outcome) => {
            record(outcome, performance.now() - due);
            inFlight.delete(p);
          });
          inFlight.add(p);
        }
        setTimeout(tick, Math.max(0, start + next * interval - performance.now() - 0.5));
      };
      tick();
    });
    await Promise.all(inFlight);
  }
  const seconds = (performance.now() - start) / 1000;
  const used = process.cpuUsage(cpu);
  pool.close();
  const requests = samples.length;
  return {
    type: 'result', id: cmd.id, mode: cmd.mode, requests, ok, errors: requests - ok, errorKinds, seconds,
    rps: requests / seconds, offeredRate: cmd.mode === 'open' ? (cmd.rate ?? 1000) : null,
    latency: summarize(samples.values()), clientLagMaxMs, clientCpuMs: (used.user + used.system) / 1000,
  };
}

const membersFile = process.argv[2];
if (membersFile === undefined || process.send === undefined) {
  process.stderr.write('load-client is forked by bench/api.ts with the members file as its argument\n');
  process.exit(2);
}
const members = loadMembers(membersFile);
process.on('message', (msg: RunCommand) => {
  if (msg.type !== 'run') return;
  void run(msg, members).then((result) => process.send!(result));
});
process.on('disconnect', () => process.exit(0));
process.send({ type: 'ready' });
