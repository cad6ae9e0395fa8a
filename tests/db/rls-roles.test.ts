import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import type pg from 'pg';
import { asRole, createTestDatabase, type TestDatabase } from '../helpers/db.js';

/*
 * What Supabase's client roles may do, decided for every table and function, and checked against
 * the catalog and by trying it as `anon` and as `authenticated` (member A, beside member B's rows).
 * A table, function or schema that is not in these lists fails the suite: add a line saying what
 * members may do with it (docs/runbooks.md, "Adding a table or function"). The migration that
 * enforces the same decisions is supabase/migrations/20261205090000_rls_hardening.sql.
 */

const A = 'aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa';
const B = 'bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb';
const ROLES = ['anon', 'authenticated'] as const;
type Role = (typeof ROLES)[number];

/** What the member (role authenticated, own rows only) may do to one relation of schema public. */
type Decision = {
  why: string;
  /** Columns the member reads ('all': every column). */
  select?: 'all' | string[];
  update?: string[];
  insert?: string[];
  delete?: true;
  /** Reference data: every row, every column, readable by anon and authenticated alike. */
  everyone?: true;
  /** The member's rows, as the owner would select them ($1: the member id). Default `member_id = $1`. */
  mine?: string;
  /** A column that names a row. Default `id`. */
  key?: string;
};
// `insert` is in the type so that the catalog check covers it; no table offers a direct insert.
// A decision that does must add a test that a row in another member's name is refused.
const closed = (why: string): Decision => ({ why });

const TABLES: Record<string, Decision> = {
  members: { select: 'all', update: ['display_name'], mine: 'id = $1', why: 'zone and phone move deadlines / need the API; delete needs the API (R4)' },
  devices: { select: ['id', 'member_id', 'platform', 'created_at', 'last_seen_at'], delete: true, why: 'token is a credential; register through the API' },
  contacts: { select: 'all', update: ['name', 'tier', 'notify_on_check_in'], delete: true, why: 'status, links, answers, flags, addresses: service (R1)' },
  schedules: { select: 'all', delete: true, why: 'every edit recomputes timers in the API (R2)' },
  pauses: { select: 'all', why: 'a pause recomputes deadlines in the API' },
  check_ins: { select: 'all', why: "the server's clock; advances deadlines, resolves incidents" },
  deliveries: {
    select: ['id', 'member_id', 'contact_id', 'incident_id', 'step_no', 'kind', 'channel', 'status', 'attempts', 'error_class',
      'provider_status', 'provider_status_at', 'carrier_status', 'carrier_status_at', 'provider_error_code', 'repeat_of', 'copy_no', 'created_at', 'sent_at', 'updated_at'],
    why: "status only: bodies and payloads carry contacts' /a/ links (R4)",
  },
  incidents: { select: 'all', why: 'read; SOS and resolve through the API' },
  incident_events: { select: 'all', mine: 'incident_id in (select id from incidents where member_id = $1)', why: 'read the timeline' },
  billing_customers: { select: 'all', key: 'member_id', why: "read; Stripe's word only" },
  subscriptions: { select: 'all', why: "read; Stripe's word only" },
  billing_audit: { select: 'all', why: 'read' },
  audit_log: { select: 'all', why: 'read; written by triggers only' },
  time_zone_names: { select: 'all', everyone: true, mine: 'true', key: 'name', why: 'reference data' },
  delivery_attempts: closed('provider errors name addresses'),
  dev_outbox: closed('message bodies'),
  provider_events: closed('service bookkeeping'),
  sms_sender_rate: closed('service bookkeeping'),
  sweep_failures: closed('service bookkeeping'),
  phone_verifications: closed('code hashes: the API verifies phones'),
  check_in_note_days: closed('service bookkeeping: which day had its checked-in note'),
  delivery_statuses: closed('provider events: carrier words, error codes'),
  held_delivery_statuses: closed('provider events waiting for their delivery row'),
  deleted_accounts: closed('tombstones: which links of a deleted account answer 410'),
  auditor_state: closed('operator data'),
  worker_heartbeats: closed('operator data'),
  pruuf_migrations: closed('migration ledger'),
};

/** Schemas other than PostgreSQL's own: open ones are reachable (their functions are listed below), closed ones are not. */
const SCHEMAS: Record<string, 'open' | 'closed'> = {
  public: 'open',
  auth: 'open', // Supabase's auth.uid()/role()/jwt(), used by the policies
  bullmq: 'closed', // BullMQ's PostgreSQL queue backend: the service's alone
};

/** Who may execute each function of the open schemas (by schema.name; overloads share the decision). */
const INTERNAL: readonly Role[] = [];
const CLIENTS: readonly Role[] = ['anon', 'authenticated'];
const FUNCTIONS: Record<string, readonly Role[]> = {
  'auth.uid': CLIENTS,
  'auth.role': CLIENTS,
  'auth.jwt': CLIENTS,
  'public.audit_write': INTERNAL, // SECURITY DEFINER: callable, it forged audit rows (R3)
  'public.audit_changed': INTERNAL,
  'public.audit_member_gone': INTERNAL,
  'public.audit_members': INTERNAL,
  'public.audit_contacts': INTERNAL,
  'public.audit_schedules': INTERNAL,
  'public.audit_pauses': INTERNAL,
  'public.audit_subscriptions': INTERNAL,
  'public.audit_incidents': INTERNAL,
  'public.audit_incidents_opened': INTERNAL,
  'public.audit_incident_events': INTERNAL,
  'public.audit_log_append_only': INTERNAL,
  'public.audit_log_no_truncate': INTERNAL,
  'public.schedules_arm_reminder': INTERNAL,
  'public.refresh_time_zone_names': INTERNAL,
  'public.refuse_data_rule_violation': INTERNAL,
  'public.members_phone_verification_rule': INTERNAL,
  'public.members_record_deletion': INTERNAL, // SECURITY DEFINER trigger: unlinks watchers, writes the tombstone
  // Used in trigger WHEN clauses, which run as the writer: members write no column they guard.
  'public.is_time_zone_name': INTERNAL,
  'public.is_instant_in_range': INTERNAL,
};

const TABLE_PRIVS = ['SELECT', 'INSERT', 'UPDATE', 'DELETE', 'TRUNCATE', 'REFERENCES', 'TRIGGER'] as const;
const COLUMN_PRIVS = new Set(['SELECT', 'INSERT', 'UPDATE', 'REFERENCES']);

/** The privileges a decision gives a role, as facts like "authenticated UPDATE contacts.name". */
function decidedFacts(table: string, d: Decision, role: Role, columns: string[]): string[] {
  const mayRead = role === 'authenticated' || d.everyone === true;
  if (!mayRead) return [];
  const cols = (list: 'all' | string[] | undefined) => (list === 'all' ? columns : list ?? []);
  const facts = cols(d.select).map((c) => `${role} SELECT ${table}.${c}`);
  if (d.select === 'all') facts.push(`${role} SELECT ${table}`);
  if (role === 'authenticated') {
    facts.push(...(d.update ?? []).map((c) => `${role} UPDATE ${table}.${c}`), ...(d.insert ?? []).map((c) => `${role} INSERT ${table}.${c}`));
    if (d.delete === true) facts.push(`${role} DELETE ${table}`);
  }
  return facts;
}

type Relation = { name: string; kind: string; rls: boolean; columns: string[] };

async function relations(db: pg.ClientBase | pg.Pool): Promise<Relation[]> {
  const { rows } = await db.query<Relation>(
    `select c.relname as name, c.relkind as kind, c.relrowsecurity as rls,
            array(select a.attname::text from pg_attribute a where a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped order by a.attnum) as columns
       from pg_class c join pg_namespace n on n.oid = c.relnamespace
      where n.nspname = 'public' and c.relkind in ('r', 'p', 'v', 'm', 'f') order by 1`,
  );
  return rows;
}

/** Relations of schema public with no decision, and decisions for relations that do not exist. */
async function undecided(db: pg.ClientBase | pg.Pool): Promise<string[]> {
  const names = (await relations(db)).map((r) => r.name);
  return [
    ...names.filter((n) => TABLES[n] === undefined).map((n) => `public.${n} has no decision in TABLES (tests/db/rls-roles.test.ts): say what members may do with it`),
    ...Object.keys(TABLES).filter((n) => !names.includes(n)).map((n) => `TABLES decides for public.${n}, which does not exist`),
  ];
}

/** Every privilege anon and authenticated hold on relations of schema public, as facts. */
async function grantedFacts(db: pg.Pool): Promise<string[]> {
  const { rows } = await db.query<{ fact: string }>(
    `select r.role || ' ' || p.priv || ' ' || c.relname as fact
       from pg_class c join pg_namespace n on n.oid = c.relnamespace
       cross join unnest($1::text[]) r(role) cross join unnest($2::text[]) p(priv)
      where n.nspname = 'public' and c.relkind in ('r', 'p', 'v', 'm', 'f') and has_table_privilege(r.role, c.oid, p.priv)
     union all
     select r.role || ' ' || p.priv || ' ' || c.relname || '.' || a.attname
       from pg_class c join pg_namespace n on n.oid = c.relnamespace
       join pg_attribute a on a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped
       cross join unnest($1::text[]) r(role) cross join unnest($3::text[]) p(priv)
      where n.nspname = 'public' and c.relkind in ('r', 'p', 'v', 'm', 'f') and has_column_privilege(r.role, c.oid, a.attnum, p.priv)
     union all
     select r.role || ' ' || p.priv || ' sequence ' || c.relname
       from pg_class c join pg_namespace n on n.oid = c.relnamespace
       cross join unnest($1::text[]) r(role) cross join unnest(array['USAGE', 'SELECT', 'UPDATE']) p(priv)
      where n.nspname = 'public' and c.relkind = 'S' and has_sequence_privilege(r.role, c.oid, p.priv)`,
    [ROLES, TABLE_PRIVS, [...COLUMN_PRIVS]],
  );
  return rows.map((r) => r.fact);
}

type Fn = { key: string; call: string | null; executors: Role[] };

/**
 * Functions of the open schemas (not an extension's), who may execute them, and a call that
 * passes nulls (null for aggregates and window functions).
 */
async function functions(db: pg.ClientBase | pg.Pool): Promise<Fn[]> {
  const { rows } = await db.query<Fn>(
    `select n.nspname || '.' || p.proname as key,
            case p.prokind when 'f' then 'select ' when 'p' then 'call ' end
              || quote_ident(n.nspname) || '.' || quote_ident(p.proname)
              || '(' || coalesce((select string_agg('null::' || format_type(t, null), ', ' order by i) from unnest(p.proargtypes) with ordinality a(t, i)), '') || ')' as call,
            array(select r from unnest($2::text[]) r where has_function_privilege(r, p.oid, 'EXECUTE')) as executors
       from pg_proc p join pg_namespace n on n.oid = p.pronamespace
      where n.nspname = any($1::text[])
        and not exists (select 1 from pg_depend d where d.classid = 'pg_proc'::regclass and d.objid = p.oid and d.deptype = 'e')
      order by 1`,
    [Object.keys(SCHEMAS).filter((s) => SCHEMAS[s] === 'open'), ROLES],
  );
  return rows;
}

/** Runs one statement under a savepoint and rolls it back: its row count, or "<sqlstate>: <message>". */
async function attempt(c: pg.ClientBase, sql: string, params: unknown[] = []): Promise<string | number> {
  await c.query('savepoint probe');
  try {
    return (await c.query(sql, params)).rowCount ?? 0;
  } catch (err) {
    const e = err as { code?: string; message: string };
    return `${e.code}: ${e.message}`;
  } finally {
    await c.query('rollback to savepoint probe');
  }
}
const denied = (g: string | number) => typeof g === 'string' && /^42501: permission denied for (table|view|relation|sequence)/.test(g);

const q = (name: string) => `"${name.replace(/"/g, '""')}"`;

describe('what anon and authenticated may do, for every table and function', () => {
  let db: TestDatabase;
  let rels: Relation[];
  const keys = new Map<string, { a: string[]; b: string[] }>();

  beforeAll(async () => {
    db = await createTestDatabase();
    const p = db.pool;
    await p.query(`insert into members (id, display_name) values ($1, 'A'), ($2, 'B')`, [A, B]);
    for (const m of [A, B]) {
      const tag = m.slice(0, 1);
      await p.query(`insert into devices (member_id, token, platform) values ($1, $2, 'ios')`, [m, `token-${tag}`]);
      const contact = (await p.query(`insert into contacts (member_id, name, email) values ($1, 'c', $2) returning id`, [m, `${tag}@example.test`])).rows[0].id;
      await p.query(`insert into schedules (member_id, kind, local_time, window_start_at) values ($1, 'daily', '09:00', now())`, [m]);
      await p.query(`insert into pauses (member_id, starts_at, ends_at) values ($1, now(), now() + interval '1 day')`, [m]);
      await p.query(`insert into check_ins (member_id, checked_in_at) values ($1, now())`, [m]);
      const incident = (await p.query(
        `insert into incidents (member_id, kind, opened_at, plan, escalation_minutes, max_rounds, ack_timeout_minutes)
         values ($1, 'sos', now(), '{"tiers": []}', 10, 3, 30) returning id`, [m],
      )).rows[0].id;
      await p.query(`insert into incident_events (incident_id, at, type) values ($1, now(), 'opened')`, [incident]);
      await p.query(
        `insert into deliveries (member_id, contact_id, incident_id, kind, channel, address, body, render)
         values ($1, $2, $3, 'alert', 'email', $4, 'open https://pruuf.test/a/secret', '{"ack_url": "https://pruuf.test/a/secret"}')`,
        [m, contact, incident, `${tag}@example.test`],
      );
      await p.query(`insert into billing_customers (member_id, stripe_customer_id) values ($1, $2)`, [m, `cus_${tag}`]);
      await p.query(`insert into subscriptions (id, member_id, stripe_customer_id, plan, status, state_at) values ($1, $2, $3, 'plus', 'active', now())`, [`sub_${tag}`, m, `cus_${tag}`]);
      await p.query(`insert into billing_audit (at, member_id, actor, action) values (now(), $1, 'stripe', 'x')`, [m]);
    }
    rels = await relations(p);
    for (const [table, d] of Object.entries(TABLES)) {
      if (d.select === undefined || !rels.some((r) => r.name === table)) continue;
      const rowsOf = async (m: string) => (await p.query(`select ${q(d.key ?? 'id')}::text as k from ${q(table)} where ${d.mine ?? 'member_id = $1'}`.replace('$1', `'${m}'`))).rows.map((r) => r.k as string).sort();
      keys.set(table, { a: await rowsOf(A), b: await rowsOf(B) });
    }
  });
  afterAll(() => db.drop());

  it('has a decision for every relation of schema public, and none for a relation that is gone', async () => {
    expect(await undecided(db.pool)).toEqual([]);
  });

  it('names a new table or function that has no decision', async () => {
    const c = await db.pool.connect();
    try {
      await c.query('begin');
      await c.query('create table public.zz_new_feature (id int primary key)');
      await c.query(`create function public.zz_new_feature_fn() returns int language sql as 'select 1'`);
      expect(await undecided(c)).toEqual([expect.stringContaining('public.zz_new_feature has no decision')]);
      expect((await functions(c)).map((f) => f.key).filter((k) => FUNCTIONS[k] === undefined)).toEqual(['public.zz_new_feature_fn']);
    } finally {
      await c.query('rollback');
      c.release();
    }
  });

  it('has row level security on every table of schema public', () => {
    expect(rels.filter((r) => ['r', 'p'].includes(r.kind) && !r.rls).map((r) => r.name)).toEqual([]);
  });

  it('grants anon and authenticated exactly what the decisions say, column by column, and no sequence', async () => {
    const granted = new Set(await grantedFacts(db.pool));
    const decided = new Set(rels.flatMap((r) => (TABLES[r.name] === undefined ? [] : ROLES.flatMap((role) => decidedFacts(r.name, TABLES[r.name]!, role, r.columns)))));
    expect({
      grantedButNotDecided: [...granted].filter((f) => !decided.has(f)).sort(),
      decidedButNotGranted: [...decided].filter((f) => !granted.has(f)).sort(),
    }).toEqual({ grantedButNotDecided: [], decidedButNotGranted: [] });
  });

  it('has policies only for what the decisions allow', async () => {
    const { rows } = await db.pool.query<{ table: string; policy: string; cmd: string; roles: string[] }>(
      `select tablename as table, policyname as policy, cmd, roles::text[] as roles from pg_policies where schemaname = 'public'`,
    );
    const allowed = (d: Decision | undefined, cmd: string, anon: boolean): boolean => {
      if (d === undefined) return false;
      if (anon && cmd !== 'SELECT') return false;
      if (anon) return d.everyone === true;
      return { SELECT: d.select !== undefined, UPDATE: (d.update ?? []).length > 0, INSERT: (d.insert ?? []).length > 0, DELETE: d.delete === true }[cmd] ?? false;
    };
    const stray = rows
      .filter((p) => p.roles.some((r) => ['anon', 'authenticated', 'public'].includes(r)))
      .filter((p) => !allowed(TABLES[p.table], p.cmd, p.roles.includes('anon') || p.roles.includes('public')))
      .map((p) => `${p.policy} on ${p.table} (${p.cmd} to ${p.roles.join(', ')})`);
    expect(stray).toEqual([]);
  });

  it('has a decision for every schema; anon and authenticated reach only the open ones and create nowhere', async () => {
    const { rows } = await db.pool.query<{ name: string; role: Role; usage: boolean; create: boolean }>(
      `select n.nspname as name, r.role, has_schema_privilege(r.role, n.oid, 'USAGE') as usage, has_schema_privilege(r.role, n.oid, 'CREATE') as create
         from pg_namespace n cross join unnest($1::text[]) r(role)
        where n.nspname not like 'pg\\_%' and n.nspname <> 'information_schema' order by 1, 2`,
      [ROLES],
    );
    const wrong = rows
      .filter((s) => SCHEMAS[s.name] === undefined || s.usage !== (SCHEMAS[s.name] === 'open') || s.create)
      .map((s) => (SCHEMAS[s.name] === undefined ? `schema ${s.name} has no decision in SCHEMAS` : `${s.role} on schema ${s.name}: usage ${s.usage}, create ${s.create}`));
    expect([...new Set(wrong)]).toEqual([]);
  });

  it('has a decision for every function of the open schemas, and the catalog agrees with it', async () => {
    const fns = await functions(db.pool);
    const names = new Set(fns.map((f) => f.key));
    expect({
      undecided: [...names].filter((n) => FUNCTIONS[n] === undefined).map((n) => `${n} has no decision in FUNCTIONS (tests/db/rls-roles.test.ts)`),
      gone: Object.keys(FUNCTIONS).filter((n) => !names.has(n)),
      executableButNotDecided: fns.flatMap((f) => f.executors.filter((r) => !(FUNCTIONS[f.key] ?? []).includes(r)).map((r) => `${r} executes ${f.key}`)),
      decidedButNotExecutable: fns.flatMap((f) => (FUNCTIONS[f.key] ?? []).filter((r) => !f.executors.includes(r)).map((r) => `${r} cannot execute ${f.key}`)),
    }).toEqual({ undecided: [], gone: [], executableButNotDecided: [], decidedButNotExecutable: [] });
  });

  it('starts a new function and table closed to everyone but the owner', async () => {
    const c = await db.pool.connect();
    try {
      await c.query('begin');
      await c.query(`create function public.zz_new_fn() returns int language sql as 'select 1'`);
      await c.query('create table public.zz_new_table (id int)');
      const { rows } = await c.query(
        `select r.role, has_function_privilege(r.role, 'public.zz_new_fn()', 'EXECUTE') as fn,
                has_table_privilege(r.role, 'public.zz_new_table', 'SELECT, INSERT, UPDATE, DELETE, TRUNCATE') as tbl
           from unnest(array['public', 'anon', 'authenticated']) r(role) where r.role <> 'public'
         union all select 'PUBLIC', exists (select 1 from pg_proc p, aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) x
                                            where p.oid = 'public.zz_new_fn()'::regprocedure and x.grantee = 0), false`,
      );
      expect(rows).toEqual([
        { role: 'anon', fn: false, tbl: false },
        { role: 'authenticated', fn: false, tbl: false },
        { role: 'PUBLIC', fn: false, tbl: false },
      ]);
    } finally {
      await c.query('rollback');
      c.release();
    }
  });

  describe.each(ROLES)('as %s (member A, beside member B)', (role) => {
    const sub = role === 'authenticated' ? A : null;

    it('reads, updates, inserts and deletes exactly what the decisions say, and truncates nothing', async () => {
      const wrong = await asRole(db.pool, role, sub, async (c) => {
        const out: string[] = [];
        const expectThat = (what: string, got: string | number, ok: (g: string | number) => boolean, want: string) => {
          if (!ok(got)) out.push(`${what}: want ${want}, got ${got}`);
        };
        for (const rel of rels) {
          const d = TABLES[rel.name];
          if (d === undefined) continue; // reported by the decision test
          const t = q(rel.name);
          const member = role === 'authenticated';
          const readable = member || d.everyone === true ? (d.select === 'all' ? rel.columns : d.select ?? []) : [];
          const updatable = member ? d.update ?? [] : [];
          const insertable = member ? d.insert ?? [] : [];
          const mine = keys.get(rel.name);
          for (const col of rel.columns) {
            const may = readable.includes(col);
            expectThat(`SELECT ${rel.name}.${col}`, await attempt(c, `select ${q(col)} from ${t} limit 1`), (g) => (may ? typeof g === 'number' : denied(g)), may ? 'allowed' : 'denied');
            if (updatable.includes(col)) {
              expectThat(`UPDATE ${rel.name}.${col} of A's row`, await attempt(c, `update ${t} set ${q(col)} = ${q(col)} where ${q(d.key ?? 'id')}::text = $1`, [mine!.a[0]]), (g) => g === 1, '1 row');
              expectThat(`UPDATE ${rel.name}.${col} of B's row`, await attempt(c, `update ${t} set ${q(col)} = ${q(col)} where ${q(d.key ?? 'id')}::text = $1`, [mine!.b[0]]), (g) => g === 0, '0 rows');
            } else {
              expectThat(`UPDATE ${rel.name}.${col}`, await attempt(c, `update ${t} set ${q(col)} = default where false`), denied, 'denied');
            }
            if (!insertable.includes(col)) {
              expectThat(`INSERT ${rel.name}.${col}`, await attempt(c, `insert into ${t} (${q(col)}) values (default)`), denied, 'denied');
            }
          }
          if (readable.length > 0 && mine !== undefined) {
            // A's rows only (every row for reference data); B's must exist, or this proves nothing.
            if (mine.a.length === 0 || mine.b.length === 0) out.push(`${rel.name}: seed rows of both A and B in beforeAll`);
            const seen = (await c.query(`select ${q(d.key ?? 'id')}::text as k from ${t}`)).rows.map((r) => r.k as string).sort();
            if (JSON.stringify(seen) !== JSON.stringify(mine.a)) out.push(`rows of ${rel.name}: want A's ${mine.a.length}, got ${seen.length}`);
          }
          if (member && d.delete === true) {
            expectThat(`DELETE ${rel.name} B's row`, await attempt(c, `delete from ${t} where ${q(d.key ?? 'id')}::text = $1`, [mine!.b[0]]), (g) => g === 0, '0 rows');
            expectThat(`DELETE ${rel.name} A's row`, await attempt(c, `delete from ${t} where ${q(d.key ?? 'id')}::text = $1`, [mine!.a[0]]), (g) => g === 1, '1 row');
          } else {
            expectThat(`DELETE ${rel.name}`, await attempt(c, `delete from ${t} where false`), denied, 'denied');
          }
          expectThat(`TRUNCATE ${rel.name}`, await attempt(c, `truncate ${t} cascade`), denied, 'denied');
        }
        return out;
      });
      expect(wrong).toEqual([]);
    });

    it('executes no function it was not given', async () => {
      const fns = await functions(db.pool);
      const wrong = await asRole(db.pool, role, sub, async (c) => {
        const out: string[] = [];
        for (const f of fns) {
          if (f.call === null) continue;
          const got = await attempt(c, f.call);
          const refused = typeof got === 'string' && got.startsWith('42501: permission denied for function');
          if ((FUNCTIONS[f.key] ?? []).includes(role) ? refused : !refused) out.push(`${f.key}: ${refused ? 'refused, but decided executable' : `ran (${got}), but decided internal`}`);
        }
        return out;
      });
      expect(wrong).toEqual([]);
    });
  });

  it('keeps BullMQ’s queue tables out of reach of both roles', async () => {
    for (const role of ROLES) {
      await asRole(db.pool, role, role === 'authenticated' ? A : null, async (c) => {
        await expect(c.query('select count(*) from bullmq.job')).rejects.toThrow(/permission denied for schema bullmq/);
      });
    }
  });
});
