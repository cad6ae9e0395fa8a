import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { withTransaction } from '../../src/db/pool.js';
import { Leases } from '../../src/delivery/lease.js';
import { insertDeliveries } from '../../src/delivery/outbox.js';
import { createLogger } from '../../src/observability/logger.js';
import { createTestDatabase, type TestDatabase } from '../helpers/db.js';

const log = createLogger('silent');

/** lease.ts: a live worker keeps its rows; a dead or hung one lets them go within the lease. */
describe('delivery leases', () => {
  let db: TestDatabase;
  beforeAll(async () => { db = await createTestDatabase(); });
  afterAll(async () => { await db.drop(); });

  const insert = (n: number) => withTransaction(db.pool, (tx) => insertDeliveries(tx, Array.from({ length: n }, (_, i) => ({
    memberId: null, contactId: null, kind: 'reminder' as const, channel: 'email' as const, address: `lease${i}@example.test`, subject: 's', body: 'b',
  }))));
  const take = (ids: string[], owner: string, secs: number) =>
    db.pool.query(`update deliveries set lease_owner = $2, lease_until = now() + make_interval(secs => $3) where id = any($1::uuid[])`, [ids, owner, secs]);
  const leftMs = async (id: string) => (await db.pool.query<{ ms: number }>(
    `select (extract(epoch from lease_until - now()) * 1000)::float8 as ms from deliveries where id = $1`, [id])).rows[0]!.ms;

  it('renews the rows it holds, and only while they are pending and still its own', async () => {
    const leases = new Leases(db.pool, log, 20_000, 60_000);
    try {
      const [mine, sent, takenOver, fresh] = await insert(4);
      const owner = leases.owner('deliveries-k');
      expect(owner).toMatch(new RegExp(`^deliveries-k@${leases.instance}\\.[0-9a-z]+$`));
      // Each run its own: a job handed out twice never shares its lease with itself.
      expect(leases.owner('deliveries-k')).not.toBe(owner);
      await take([mine!, sent!, takenOver!], owner, 1);
      // Just taken: far from its end, not rewritten yet (each renewal is a new row version).
      await take([fresh!], owner, 19);
      leases.hold([mine!, sent!, takenOver!, fresh!], owner);
      await db.pool.query(`update deliveries set status = 'sent' where id = $1`, [sent]);
      await take([takenOver!], 'deliveries-k@other', 1);
      expect(await leases.renew()).toBe(1);
      expect(await leftMs(mine!)).toBeGreaterThan(19_000);
      expect(await leftMs(sent!)).toBeLessThan(1_500);
      expect(await leftMs(takenOver!)).toBeLessThan(1_500);

      // Let go: no longer renewed, so a dead run's rows come free when the lease ends.
      leases.forget([mine!, sent!, takenOver!, fresh!]);
      expect(leases.size).toBe(0);
      await take([mine!], owner, 1);
      expect(await leases.renew()).toBe(0);
      expect(await leftMs(mine!)).toBeLessThan(1_500);
    } finally {
      leases.stop();
    }
  });

  it('stops renewing what a run has held longer than a hung job may (its rows come free)', async () => {
    const leases = new Leases(db.pool, log, 20_000, 60_000, 50);
    try {
      const [id] = await insert(1);
      const owner = leases.owner('delivery-x');
      await take([id!], owner, 1);
      leases.hold([id!], owner);
      await new Promise((r) => setTimeout(r, 80));
      expect(await leases.renew()).toBe(0);
      expect(leases.size).toBe(0);
      expect(await leftMs(id!)).toBeLessThan(1_500);
    } finally {
      leases.stop();
    }
  });

  it('renews on its own timer while rows are held', async () => {
    const leases = new Leases(db.pool, log, 20_000, 50);
    try {
      const [id] = await insert(1);
      const owner = leases.owner('delivery-y');
      await take([id!], owner, 1);
      leases.hold([id!], owner);
      const until = Date.now() + 5000;
      while ((await leftMs(id!)) < 19_000 && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
      expect(await leftMs(id!)).toBeGreaterThan(19_000);
    } finally {
      leases.stop();
    }
  });
});
