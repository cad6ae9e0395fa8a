import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import type pg from 'pg';
import { systemClock } from '../../src/clock.js';
import { ChannelError, type Channel, type Channels } from '../../src/channels/types.js';
import { withTransaction } from '../../src/db/pool.js';
import { processDelivery, processDeliveryBatch } from '../../src/delivery/deliver.js';
import { Leases } from '../../src/delivery/lease.js';
import { insertDeliveries, type NewDelivery } from '../../src/delivery/outbox.js';
import { createLogger } from '../../src/observability/logger.js';
import { createTestDatabase, type TestDatabase } from '../helpers/db.js';

const log = createLogger('silent');

/** What a plan reads: index names and the tables it scans whole. */
function scans(plan: unknown, out: { indexes: string[]; seqScans: string[] } = { indexes: [], seqScans: [] }) {
  if (Array.isArray(plan)) { for (const p of plan) scans(p, out); return out; }
  if (plan === null || typeof plan !== 'object') return out;
  const node = plan as Record<string, unknown>;
  if (typeof node['Index Name'] === 'string') out.indexes.push(node['Index Name']);
  if (node['Node Type'] === 'Seq Scan' && typeof node['Relation Name'] === 'string') out.seqScans.push(node['Relation Name']);
  for (const v of Object.values(node)) scans(v, out);
  return out;
}

/**
 * Issue 19: in a burst the deliveries table goes from a few pending rows to tens of thousands in
 * seconds, long before autovacuum's analyze sees it. Every statement of the delivery path must
 * still find its rows by their key: planned with "nothing is pending", a statement that could read
 * the pending rows through their index instead took 9–20 ms each and most of a burst's database CPU.
 */
describe('the delivery path plans by key, whatever the statistics say', () => {
  let db: TestDatabase;
  const statements: { text: string; values: unknown[] }[] = [];
  let spy: pg.Pool;

  beforeAll(async () => {
    db = await createTestDatabase();
    spy = new Proxy(db.pool, {
      get: (target, prop) => (prop !== 'query' ? Reflect.get(target, prop) : (q: string | pg.QueryConfig, values?: unknown[]) => {
        const text = typeof q === 'string' ? q : q.text;
        if (/deliveries/.test(text)) statements.push({ text, values: (typeof q === 'string' ? values : q.values) ?? [] });
        return target.query(q as string, values);
      }),
    });
  });
  afterAll(async () => { await db.drop(); });

  const rows = (n: number, tag: string): NewDelivery[] => Array.from({ length: n }, (_, i) => ({
    memberId: null, contactId: null, kind: 'reminder', channel: 'email', address: `${i % 7 === 0 ? 'transient-1' : tag}-${i}@example.test`, subject: 's', body: 'b',
  }));

  it('marking sent, a failed try, a lease, a set-aside and a renewal each look rows up by key', async () => {
    // Statistics taken over the history of sent rows while nothing was pending, then a burst's worth of pending rows.
    for (let i = 0; i < 4; i++) await withTransaction(db.pool, (tx) => insertDeliveries(tx, rows(5000, `history${i}`)));
    await db.pool.query(`update deliveries set status = 'sent'`);
    await db.pool.query('vacuum analyze deliveries');
    for (let i = 0; i < 4; i++) await withTransaction(db.pool, (tx) => insertDeliveries(tx, rows(5000, `backlog${i}`)));
    const ids = await withTransaction(db.pool, (tx) => insertDeliveries(tx, rows(40, 'burst')));
    const { rows: [k] } = await db.pool.query<{ job_key: string }>('select job_key from deliveries where id = $1', [ids[0]]);

    let calls = 0;
    const flaky: Channel = { provider: 'flaky', async send(msg) {
      calls += 1;
      if (msg.to.startsWith('transient-1')) throw new ChannelError('upstream 503', 'transient');
      return { provider: 'flaky', providerMessageId: `m-${msg.deliveryId}` };
    } };
    const channels: Channels = { push: flaky, sms: flaky, email: flaky };
    const deps = { pool: spy, channels, clock: systemClock, log };
    await processDeliveryBatch(deps, k!.job_key, { attemptsMade: 0, maxAttempts: 4 });
    const single = (await db.pool.query<{ id: string }>(`select id from deliveries where address like 'transient-1-%' and status = 'pending' limit 1`)).rows[0]!.id;
    await processDelivery(deps, single, 1, 4).catch(() => undefined);
    const leases = new Leases(spy, log, 20_000, 60_000);
    leases.hold(ids, 'someone');
    await db.pool.query(`update deliveries set lease_owner = 'someone', lease_until = now() where id = any($1::uuid[])`, [ids]);
    await leases.renew();
    leases.stop();
    expect(calls).toBeGreaterThan(40);

    const kinds = new Set<string>();
    for (const s of statements) {
      if (!/^\s*(with|update|select|insert)/i.test(s.text)) continue;
      kinds.add(s.text.trim().split(/\s+/).slice(0, 3).join(' '));
      const { rows: [p] } = await db.pool.query<{ 'QUERY PLAN': unknown }>({ text: `explain (format json) ${s.text}`, values: s.values });
      const seen = scans(p!['QUERY PLAN']);
      expect({ statement: s.text.slice(0, 120), pendingIndex: seen.indexes.includes('deliveries_pending_idx'), seqScans: seen.seqScans.filter((t) => t === 'deliveries') })
        .toEqual({ statement: s.text.slice(0, 120), pendingIndex: false, seqScans: [] });
    }
    // The batch read, the sent records, the failed tries, the set-aside, the single read and the renewal were all looked at.
    expect(kinds.size).toBeGreaterThanOrEqual(5);
  });
});
