import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import type pg from 'pg';
import { entitlementsFor, entitlementsForMany, mayAddContact, mayUseChannel, planSettings } from '../../src/billing/entitlements.js';
import { errorOf } from '../helpers/app.js';
import { billingOf, DAY, nowSeconds, payerWithCustomer, PRICES, startBillingApp, subscribe, watchedMember, type BillingTest } from './helpers.js';

describe('entitlements', () => {
  let t: BillingTest;
  beforeAll(async () => {
    t = await startBillingApp();
  });
  afterAll(() => t.shutdown());

  const ent = (memberId: string, now?: Date) => entitlementsFor(t.db.pool, memberId, planSettings(t.config), now);
  const contactChannels = async (headers: { authorization: string }) =>
    (await t.app.inject({ method: 'GET', url: '/v1/contacts', headers })).json().data.map((c: { channels: string[] }) => c.channels);

  it('gives a member SMS through a family plan paid by their contact, and ending the relationship ends it', async () => {
    const watcher = await payerWithCustomer(t, 'family');
    await subscribe(t, watcher, { price: PRICES.family });
    const m = await watchedMember(t, watcher.sub, { phone: '+447700900111', contactName: 'Daughter' });
    expect(await ent(m.sub)).toMatchObject({ plan: 'family', source: 'watcher', payerId: watcher.sub, channels: ['push', 'sms', 'email'], maxContacts: 10 });
    expect(await contactChannels(m.headers)).toEqual([['sms', 'email']]);
    expect((await billingOf(t, m.sub)).entitlements).toMatchObject({ plan: 'family', source: 'watcher', payer: { id: watcher.sub, name: 'Daughter' } });
    expect((await billingOf(t, watcher.sub)).covers).toEqual([{ member_id: m.sub, name: expect.stringMatching(/^Member /) }]);

    const removed = await t.app.inject({ method: 'DELETE', url: `/v1/contacts/${m.contactId}`, headers: m.headers });
    expect(removed.statusCode).toBe(204);
    expect(await ent(m.sub)).toMatchObject({ plan: 'free', source: 'default', channels: ['push', 'email'] });
    expect((await billingOf(t, watcher.sub)).covers).toEqual([]);
  });

  it('ends coverage when the watcher is no longer an active contact (a new address needs new consent)', async () => {
    const watcher = await payerWithCustomer(t, 'family');
    await subscribe(t, watcher, { price: PRICES.family });
    const m = await watchedMember(t, watcher.sub);
    expect((await ent(m.sub)).plan).toBe('family');
    const res = await t.app.inject({ method: 'PATCH', url: `/v1/contacts/${m.contactId}`, headers: m.headers, payload: { email: 'new-address@example.test' } });
    expect(res.json().status).toBe('invited');
    expect((await ent(m.sub)).plan).toBe('free');
  });

  it('covers up to five watched members on family, earliest link first, and the next one when a link ends', async () => {
    const watcher = await payerWithCustomer(t, 'family');
    await subscribe(t, watcher, { price: PRICES.family });
    const members = [];
    for (let i = 0; i < 6; i += 1) members.push(await watchedMember(t, watcher.sub));
    const all = await entitlementsForMany(t.db.pool, members.map((m) => m.sub), planSettings(t.config));
    expect(members.map((m) => all.get(m.sub)!.plan)).toEqual(['family', 'family', 'family', 'family', 'family', 'free']);
    await t.app.inject({ method: 'DELETE', url: `/v1/contacts/${members[0]!.contactId}`, headers: members[0]!.headers });
    expect((await ent(members[5]!.sub)).plan).toBe('family');
    expect((await ent(watcher.sub))).toMatchObject({ plan: 'family', source: 'own' });
  });

  it('covers the payer and one watched member on plus', async () => {
    const watcher = await payerWithCustomer(t, 'plus');
    await subscribe(t, watcher, { price: PRICES.plus });
    const a = await watchedMember(t, watcher.sub);
    const b = await watchedMember(t, watcher.sub);
    expect([(await ent(watcher.sub)).plan, (await ent(a.sub)).plan, (await ent(b.sub)).plan]).toEqual(['plus', 'plus', 'free']);
  });

  it('gives a member covered by several payers the best plan among them', async () => {
    const plusPayer = await payerWithCustomer(t, 'plus');
    const familyPayer = await payerWithCustomer(t, 'family');
    await subscribe(t, plusPayer, { price: PRICES.plus });
    await subscribe(t, familyPayer, { price: PRICES.family });
    const m = await watchedMember(t, plusPayer.sub);
    expect((await ent(m.sub)).plan).toBe('plus');
    const headers = await t.as(familyPayer.sub);
    const c = await t.app.inject({ method: 'POST', url: '/v1/contacts', headers: m.headers, payload: { name: 'Son', email: `${randomUUID().slice(0, 8)}@example.test` } });
    const { rows } = await t.db.pool.query(`select body from deliveries where contact_id = $1 and kind = 'invitation'`, [c.json().id]);
    await t.app.inject({ method: 'POST', url: `/i/${/\/i\/([\w-]+)/.exec(rows[0].body)![1]}/accept`, headers });
    expect(await ent(m.sub)).toMatchObject({ plan: 'family', source: 'watcher', payerId: familyPayer.sub });
  });

  it('keeps a paid plan through a failed payment or a cancellation until the period ends, and never for an unpaid start', async () => {
    const cases: [string, string][] = [['past_due', 'plus'], ['unpaid', 'plus'], ['canceled', 'plus'], ['incomplete', 'free'], ['incomplete_expired', 'free'], ['paused', 'free']];
    const end = nowSeconds() + 2 * DAY;
    for (const [status, expected] of cases) {
      const payer = await payerWithCustomer(t);
      await subscribe(t, payer, { price: PRICES.plus, status, periodEnd: end });
      expect([status, (await ent(payer.sub)).plan]).toEqual([status, expected]);
      expect([status, (await ent(payer.sub, new Date((end + 1) * 1000))).plan]).toEqual([status, 'free']);
    }
  });

  it('answers many members in one query, the same as one at a time', async () => {
    const watcher = await payerWithCustomer(t, 'family');
    await subscribe(t, watcher, { price: PRICES.family });
    const covered = await watchedMember(t, watcher.sub);
    const stranger = randomUUID();
    const ids = [watcher.sub, covered.sub, stranger, covered.sub];
    let queries = 0;
    const counting = { query: (...args: unknown[]) => { queries += 1; return (t.db.pool.query as (...a: unknown[]) => Promise<pg.QueryResult>)(...args); } } as unknown as pg.Pool;
    const many = await entitlementsForMany(counting, ids, planSettings(t.config));
    expect(queries).toBe(1);
    expect(many.size).toBe(3);
    for (const id of ids) expect(many.get(id)).toEqual(await ent(id));
    expect([...many.values()].map((e) => `${e.plan}/${e.source}`)).toEqual(['family/own', 'family/watcher', 'free/default']);
    expect((await entitlementsForMany(counting, [], planSettings(t.config))).size).toBe(0);
    expect(queries).toBe(1);
  });

  it('explains its decisions', async () => {
    const free = await ent(randomUUID());
    expect(mayUseChannel(free, 'sms')).toEqual({ allowed: false, reason: 'the free plan does not include sms; plus and family do' });
    expect(mayUseChannel(free, 'email').allowed).toBe(true);
    expect(mayAddContact(free, 1)).toEqual({ allowed: true, reason: 'the free plan allows 2 contacts' });
    expect(mayAddContact(free, 2).allowed).toBe(false);
  });

  it('lets a plus member add five contacts and answers the sixth with 402 PLAN_LIMIT', async () => {
    const payer = await payerWithCustomer(t);
    await subscribe(t, payer, { price: PRICES.plus });
    const headers = await t.as(payer.sub);
    const codes = [];
    for (let i = 0; i < 6; i += 1) {
      codes.push((await t.app.inject({ method: 'POST', url: '/v1/contacts', headers, payload: { name: `C${i}`, email: `${randomUUID().slice(0, 8)}@example.test` } })).statusCode);
    }
    expect(codes).toEqual([201, 201, 201, 201, 201, 402]);
    const last = await t.app.inject({ method: 'POST', url: '/v1/contacts', headers, payload: { name: 'C7', email: 'c7@example.test' } });
    expect(errorOf(last.body)).toMatchObject({ code: 'PLAN_LIMIT', details: { plan: 'plus', max_contacts: 5 } });
  });
});
