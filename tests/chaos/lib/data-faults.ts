// The chaos run's data-fault phase: hostile rows instead of hostile infrastructure.
//
// Two bursts of the same size, one after the other, with the same processes: a clean one (the
// run's normal figure for deadline → provider), then one where, beside the unaffected members,
// a few members carry a poison each: rows written straight into the tables as `postgres`
// (bypassing the API and, with session_replication_role = replica, the database's own rules),
// contacts and a member deleted while their incident is open, and a delivery whose render throws.
// Every unaffected member's alert must arrive: none lost, none duplicated, none later than the
// clean burst's slowest plus two sweeps. Where the data still allows it, the poisoned members'
// remaining contacts are alerted too, and the isolation says what it set aside.
import type pg from 'pg';
import { summarize } from '../../../bench/lib/stats.js';
import { acceptances, seed, type Fakes, type Missing, type Seeded } from './seed.js';

export type Check = { name: string; ok: boolean; detail: string };

type Poison = {
  name: string;
  /** Written before the deadline: the sweep meets it when it claims the schedule. */
  before?: (pool: pg.Pool, m: Missing) => Promise<void>;
  /** Written once the member's incident is open (mid-incident). */
  during?: (ctx: DuringCtx, m: Missing, incidentId: string) => Promise<void>;
  /** Which of the member's alerts must still arrive; undefined: none are owed (reported only). */
  owed?: (m: Missing) => string[];
  /** What the database says the isolation did about it (shown in the table; '' if nothing). */
  evidence: (pool: pg.Pool, m: Missing) => Promise<string>;
  /** Evidence that must be there for the poison to count as handled, when there is one to expect. */
  expect?: RegExp;
};

type DuringCtx = { pool: pg.Pool; api: (method: string, path: string, memberId: string) => Promise<number> };

/** As an older version (or a hand in psql) would write: none of today's triggers run. */
async function bypassingRules(pool: pg.Pool, statements: [string, unknown[]][]): Promise<void> {
  const c = await pool.connect();
  try {
    await c.query('begin');
    await c.query('set local session_replication_role = replica');
    for (const [sql, params] of statements) await c.query(sql, params);
    await c.query('commit');
  } catch (err) {
    await c.query('rollback').catch(() => undefined);
    throw err;
  } finally {
    c.release();
  }
}

const contactId = async (pool: pg.Pool, memberId: string, name: string) =>
  (await pool.query<{ id: string }>('select id from contacts where member_id = $1 and name = $2', [memberId, name])).rows[0]!.id;

const failuresOf = async (pool: pg.Pool, m: Missing) => {
  const { rows } = await pool.query<{ lane: string; failures: number; last_error: string }>(
    `select lane, failures, last_error from sweep_failures where member_id = $1 or item_id in (select id from schedules where member_id = $1)
       or item_id in (select id from incidents where member_id = $1) order by lane`, [m.id]);
  return rows.map((r) => `set aside in ${r.lane} (${r.failures}×: ${r.last_error.slice(0, 60)})`).join('; ');
};

const zone = (z: string): Poison => ({
  name: `schedule and member in zone ${z} (written as postgres)`,
  before: (pool, m) => bypassingRules(pool, [
    ['update schedules set time_zone = $2 where member_id = $1', [m.id, z]],
    ['update members set time_zone = $2 where id = $1', [m.id, z]],
  ]),
  owed: (m) => [...m.keys.ann, ...m.keys.bob],
  evidence: async (pool, m) => {
    const { rows: [s] } = await pool.query<{ zone_fallback_at: Date | null; next_deadline_at: Date }>(
      'select zone_fallback_at, next_deadline_at from schedules where member_id = $1', [m.id]);
    return [s?.zone_fallback_at ? 'flagged zone_fallback_at, deadlines in UTC' : `next deadline ${s?.next_deadline_at.toISOString()}`, await failuresOf(pool, m)].filter(Boolean).join('; ');
  },
});

export const POISONS: Poison[] = [
  {
    name: 'contacts deleted mid-incident (tier-1 Bob and tier-2 Cy, through the API), next step due',
    before: async (pool, m) => {
      await pool.query(`insert into contacts (member_id, name, email, tier, status, responded_at) values ($1, 'Cy', $2, 2, 'active', now())`, [m.id, `cy-${m.n}@chaos.test`]);
    },
    during: async ({ pool, api }, m, incidentId) => {
      const bob = await contactId(pool, m.id, 'Bob');
      const cy = await contactId(pool, m.id, 'Cy');
      const answers = [await api('DELETE', `/v1/contacts/${bob}`, m.id), await api('DELETE', `/v1/contacts/${cy}`, m.id)];
      if (answers.some((s) => s !== 204)) throw new Error(`DELETE /v1/contacts answered ${answers.join(', ')}`);
      await pool.query('update incidents set next_step_at = now() where id = $1', [incidentId]); // tier 2 (Cy) is due
    },
    owed: (m) => m.keys.ann,
    evidence: async (pool, m) => {
      const { rows } = await pool.query<{ detail: { name: string } }>(
        `select detail from incident_events e join incidents i on i.id = e.incident_id where i.member_id = $1 and e.type = 'contact_skipped'`, [m.id]);
      return [rows.map((r) => `step skipped removed contact ${r.detail.name}`).join('; '), await failuresOf(pool, m)].filter(Boolean).join('; ');
    },
    expect: /skipped removed contact Cy/,
  },
  {
    name: 'member deleted mid-incident (as postgres)',
    during: async ({ pool }, m) => { await pool.query('delete from members where id = $1', [m.id]); },
    evidence: (pool, m) => failuresOf(pool, m),
  },
  zone('Mars/Olympus'),
  zone('US/Pacific-New'),
  {
    name: "following deadline 'infinity' (written as postgres)",
    before: (pool, m) => bypassingRules(pool, [[`update schedules set following_deadline_at = 'infinity' where member_id = $1`, [m.id]]]),
    owed: (m) => [...m.keys.ann, ...m.keys.bob],
    evidence: (pool, m) => failuresOf(pool, m),
  },
  {
    name: 'next deadline 9999-12-31 with its alert due (written as postgres)',
    before: (pool, m) => bypassingRules(pool, [[`update schedules set next_deadline_at = '9999-12-31T23:59:00Z' where member_id = $1`, [m.id]]]),
    owed: (m) => [...m.keys.ann, ...m.keys.bob],
    evidence: (pool, m) => failuresOf(pool, m),
  },
  {
    name: 'SMS alerts whose render throws (round -1, set by a trigger as written)',
    before: async (pool, m) => {
      const fn = `chaos_bad_render_${m.id.replace(/-/g, '')}`;
      await pool.query(`create function ${fn}() returns trigger language plpgsql as $$
        begin new.render := jsonb_set(new.render, '{round}', '-1'); return new; end $$`);
      await pool.query(`create trigger ${fn} before insert on deliveries for each row
        when (new.member_id = '${m.id}' and new.channel = 'sms' and new.render is not null) execute function ${fn}()`);
    },
    owed: (m) => [m.keys.ann[0]!, m.keys.ann[1]!, m.keys.bob[0]!],
    evidence: async (pool, m) => {
      const { rows } = await pool.query<{ n: number; error_class: string }>(
        `select count(*)::int as n, error_class from deliveries where member_id = $1 and status = 'failed' group by error_class`, [m.id]);
      return rows.map((r) => `${r.n} failed at once (${r.error_class})`).join('; ');
    },
    expect: /2 failed at once \(permanent\)/,
  },
  {
    name: 'incident plan unreadable, next step due (written as postgres)',
    during: async ({ pool }, _m, incidentId) => {
      await pool.query(`update incidents set plan = jsonb_set(plan, '{tiers}', '"not a list"'), next_step_at = now() where id = $1`, [incidentId]);
    },
    owed: (m) => [...m.keys.ann, ...m.keys.bob], // the first step's alerts, already written
    evidence: (pool, m) => failuresOf(pool, m),
    expect: /set aside in steps/,
  },
];

type Burst = { seeded: Seeded; alertAt: Date };

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function burst(pool: pg.Pool, from: number, members: number, leadMs: number): Promise<Burst> {
  const alertAt = new Date(Date.now() + leadMs);
  return { alertAt, seeded: await seed(pool, alertAt, { from, members, early: 0 }) };
}

/** Waits until every key in `keys` was accepted by a provider (or `withinMs` passed). */
async function arrived(fakes: Fakes, keys: Set<string>, withinMs: number): Promise<void> {
  const until = Date.now() + withinMs;
  for (;;) {
    const acc = acceptances(fakes);
    if ([...keys].every((k) => acc.has(k)) || Date.now() > until) return;
    await sleep(100);
  }
}

/** First acceptance − alert_at per key; lost and duplicated. */
function tally(fakes: Fakes, keys: Set<string>, alertAt: Date) {
  const acc = acceptances(fakes);
  const firsts = new Map<string, number>();
  let lost = 0;
  let duplicated = 0;
  for (const k of keys) {
    const times = acc.get(k);
    if (times === undefined) { lost += 1; continue; }
    duplicated += times.length - 1;
    firsts.set(k, Math.min(...times) - alertAt.getTime());
  }
  return { firsts, lost, duplicated, lat: summarize([...firsts.values()]) };
}

export type DataFaultResult = { rows: [string, string][]; checks: Check[]; table: string[] };

export async function dataFaultPhase(o: {
  pool: pg.Pool; fakes: Fakes; members: number; sweepMs: number;
  api: DuringCtx['api']; ready: () => Promise<number>; say: (msg: string) => void;
}): Promise<DataFaultResult> {
  const { pool, fakes, say } = o;
  const checks: Check[] = [];
  const check = (name: string, ok: boolean, detail: string) => {
    checks.push({ name: `data faults: ${name}`, ok, detail });
    say(`${ok ? 'ok  ' : 'FAIL'} data faults: ${name}: ${detail}`);
  };
  fakes.sendgrid.setFaults({});

  // The clean burst: what "on time" means on this machine, in this run, with these processes.
  const clean = await burst(pool, 1_000_000, o.members, 3000);
  say(`data faults: clean burst of ${o.members} members at ${clean.alertAt.toISOString()}`);
  await arrived(fakes, clean.seeded.expected, 120_000);
  const base = tally(fakes, clean.seeded.expected, clean.alertAt);
  const lateAfter = base.lat.max + 2 * o.sweepMs;

  // The poisoned burst: the same number of unaffected members, and one member per poison.
  const poisoned = await burst(pool, 2_000_000, o.members, 5000);
  const victims = (await seed(pool, poisoned.alertAt, { from: 3_000_000, members: POISONS.length, early: 0 })).missing;
  const before = new Map<string, string>(); // poison → when it was written, or why not
  const injected = new Map<string, string>(); // the same, mid-incident
  for (const [i, p] of POISONS.entries()) {
    if (p.before === undefined) continue;
    await p.before(pool, victims[i]!).then(() => before.set(p.name, 'before the deadline'), (err: Error) => before.set(p.name, `NOT injected: ${err.message}`));
  }
  say(`data faults: poisoned burst of ${o.members} + ${POISONS.length} members at ${poisoned.alertAt.toISOString()}`);
  await sleep(Math.max(0, poisoned.alertAt.getTime() - Date.now()));
  const during = POISONS.map((p, i) => [p, victims[i]!] as const).filter(([p]) => p.during !== undefined);
  const until = Date.now() + 20_000;
  while (during.some(([p]) => !injected.has(p.name)) && Date.now() < until) {
    for (const [p, m] of during) {
      if (injected.has(p.name)) continue;
      const { rows: [inc] } = await pool.query<{ id: string }>(`select id from incidents where member_id = $1 and state = 'open'`, [m.id]);
      if (inc === undefined) continue;
      await p.during!({ pool, api: o.api }, m, inc.id).then(
        () => injected.set(p.name, `mid-incident, +${((Date.now() - poisoned.alertAt.getTime()) / 1000).toFixed(2)} s`),
        (err: Error) => injected.set(p.name, `NOT injected: ${err.message}`));
    }
    await sleep(20);
  }
  await arrived(fakes, poisoned.seeded.expected, 120_000);
  await sleep(3 * o.sweepMs); // the poisons' next steps and retries have been swept by now
  const hit = tally(fakes, poisoned.seeded.expected, poisoned.alertAt);
  const late = [...hit.firsts.values()].filter((ms) => ms > lateAfter).length;
  const acc = acceptances(fakes);

  const whenInjected = (p: Poison) => [
    p.before === undefined ? undefined : before.get(p.name) ?? 'NOT injected',
    p.during === undefined ? undefined : injected.get(p.name) ?? 'NOT injected: no incident opened',
  ].filter((x) => x !== undefined).join(', then ');
  const table = ['| poison | injected | its contacts were alerted | what the isolation did |', '|---|---|---|---|'];
  const owedMissing: string[] = [];
  const unhandled: string[] = [];
  for (const [i, p] of POISONS.entries()) {
    const m = victims[i]!;
    const all = [...m.keys.ann, ...m.keys.bob];
    const got = all.filter((k) => acc.has(k)).length;
    const owed = p.owed?.(m) ?? [];
    const missingOwed = owed.filter((k) => !acc.has(k));
    if (missingOwed.length > 0) owedMissing.push(`${p.name}: ${missingOwed.join(', ')}`);
    const evidence = await p.evidence(pool, m).catch((err: Error) => `could not read: ${err.message}`);
    if (p.expect !== undefined && !p.expect.test(evidence)) unhandled.push(`${p.name}: ${evidence || 'nothing recorded'}`);
    table.push(`| ${p.name} | ${whenInjected(p)} | ${got}/${all.length}${owed.length > 0 ? ` (owed ${owed.length - missingOwed.length}/${owed.length})` : ''} | ${evidence || '—'} |`);
  }
  const ms = (v: number) => `${(v / 1000).toFixed(2)} s`;
  table.push('', '| unaffected members | alerts sent | late | lost | duplicated | deadline+grace → provider p50 / p99 / worst |', '|---|---|---|---|---|---|');
  table.push(`| clean burst: ${o.members} | ${base.firsts.size}/${clean.seeded.expected.size} | — | ${base.lost} | ${base.duplicated} | ${ms(base.lat.p50)} / ${ms(base.lat.p99)} / ${ms(base.lat.max)} |`);
  table.push(`| poisoned burst: ${o.members} | ${hit.firsts.size}/${poisoned.seeded.expected.size} | ${late} (after ${ms(lateAfter)}) | ${hit.lost} | ${hit.duplicated} | ${ms(hit.lat.p50)} / ${ms(hit.lat.p99)} / ${ms(hit.lat.max)} |`);
  for (const line of table) say(line);

  const notInjected = POISONS.filter((p) => /NOT/.test(whenInjected(p)));
  check('every poison injected', notInjected.length === 0, notInjected.length === 0 ? `${POISONS.length}/${POISONS.length}` : notInjected.map((p) => `${p.name}: ${whenInjected(p)}`).join(' | '));
  check('clean burst: every alert arrived once', base.lost === 0 && base.duplicated === 0, `${base.lost} lost, ${base.duplicated} duplicated`);
  check('unaffected members: no alert lost', hit.lost === 0, `${hit.lost} of ${poisoned.seeded.expected.size}`);
  check('unaffected members: no alert duplicated', hit.duplicated === 0, String(hit.duplicated));
  check('unaffected members: on time (within two sweeps of the clean burst\'s slowest)', late === 0,
    `${late} later than ${ms(lateAfter)}; p99 ${ms(hit.lat.p99)} vs ${ms(base.lat.p99)} clean`);
  check('poisoned members: the contacts their data still allows were alerted', owedMissing.length === 0, owedMissing.length === 0 ? 'all owed alerts sent' : owedMissing.join(' | '));
  check('the isolation recorded what it set aside', unhandled.length === 0, unhandled.length === 0 ? 'skipped contact, failed render, set-aside step all recorded' : unhandled.join(' | '));
  const ready = await o.ready();
  check('/readyz still 200 with items set aside', ready === 200, String(ready));

  return {
    rows: [
      ['data faults: poisons', `${POISONS.length - notInjected.length}/${POISONS.length} injected`],
      ['data faults: unaffected alerts sent / late / lost', `${hit.firsts.size}/${poisoned.seeded.expected.size} / ${late} / ${hit.lost}`],
      ['data faults: unaffected p50 / p99 (clean burst)', `${ms(hit.lat.p50)} / ${ms(hit.lat.p99)} (${ms(base.lat.p50)} / ${ms(base.lat.p99)})`],
    ],
    checks,
    table,
  };
}
