import { randomUUID } from 'node:crypto';
import { mkdtemp, readdir, copyFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { createDevOutboxChannel } from '../../src/channels/dev-outbox/index.js';
import { migrate, migrationsDir } from '../../src/db/migrate.js';
import { processDelivery } from '../../src/delivery/deliver.js';
import { sweepOnce } from '../../src/incidents/sweep.js';
import { CODE_TTL_MS } from '../../src/members/phone-verification.js';
import { createLogger } from '../../src/observability/logger.js';
import { runRetention } from '../../src/retention/retention.js';
import { errorOf, startTestApp, type TestApp } from '../helpers/app.js';
import { asUser, createTestDatabase } from '../helpers/db.js';
import { codeSentTo, sendVerificationSms } from '../helpers/phone.js';
import { TEST_LINK_SECRET } from '../helpers/tokens.js';
import { inboundParams, twilioSignature } from '../fakes/twilio.js';
import { memberWithContacts, sweepDeps, testClock } from '../incidents/helpers.js';

const TWILIO = { TWILIO_ACCOUNT_SID: `AC${'0'.repeat(32)}`, TWILIO_AUTH_TOKEN: 'twilio-auth-token-for-phone-tests', TWILIO_FROM_NUMBER: '+15005550006' };
const SMS_TEXT = /^Pruuf: your code is (\d{6}), it expires in 10 minutes\. If you did not ask for it, ignore this\.$/;
const log = createLogger('silent');

describe('phone verification (issue 16 #4: phone squatting)', () => {
  let t: TestApp;
  const clock = testClock('2026-12-05T08:00:00Z');
  const later = (seconds: number) => { clock.now = new Date(clock.now.getTime() + seconds * 1000); };

  beforeAll(async () => {
    t = await startTestApp({ clock: () => clock.now, env: { ...TWILIO, FREE_PLAN_CHANNELS: 'push,sms,email' } });
  });
  afterAll(() => t.close());

  let phones = 0;
  const newPhone = () => `+4477009${String(20_000 + phones++).padStart(5, '0')}`;
  const newMember = async () => {
    const sub = randomUUID();
    return { sub, headers: await t.as(sub) };
  };
  type Who = { headers: { authorization: string } };
  const me = async (m: Who) => (await t.app.inject({ method: 'GET', url: '/v1/me', headers: m.headers })).json();
  const patchPhone = (m: Who, phone: string | null) => t.app.inject({ method: 'PATCH', url: '/v1/me', headers: m.headers, payload: { phone } });
  const askCode = (m: Who, phone: string) => t.app.inject({ method: 'POST', url: '/v1/me/phone/verification', headers: m.headers, payload: { phone } });
  const confirm = (m: Who, phone: string, code: string) =>
    t.app.inject({ method: 'POST', url: '/v1/me/phone/verification/confirm', headers: m.headers, payload: { phone, code } });
  const otherThan = (code: string) => String((Number(code) + 1) % 1_000_000).padStart(6, '0');
  /** Asks for a code and confirms it, as the app does; a minute later, so no resend limit is in the way. */
  async function verify(m: Who, phone: string) {
    later(61);
    expect((await askCode(m, phone)).statusCode).toBe(202);
    const res = await confirm(m, phone, (await codeSentTo(t.db.pool, phone)).code);
    expect(res.statusCode).toBe(200);
    return res.json();
  }
  const inbound = (from: string, body: string) => {
    const params = inboundParams({ from, to: TWILIO.TWILIO_FROM_NUMBER, body, accountSid: TWILIO.TWILIO_ACCOUNT_SID });
    return t.app.inject({
      method: 'POST', url: '/webhooks/twilio/inbound', payload: new URLSearchParams(params).toString(),
      headers: { 'content-type': 'application/x-www-form-urlencoded', 'x-twilio-signature': twilioSignature(TWILIO.TWILIO_AUTH_TOKEN, 'http://pruuf.test/webhooks/twilio/inbound', params) },
    });
  };
  const smsCheckIns = async (m: Who) =>
    ((await t.app.inject({ method: 'GET', url: '/v1/check-ins', headers: m.headers })).json().data as { source: string }[]).filter((c) => c.source === 'sms').length;

  describe('squatting', () => {
    it("no longer locks the owner out: a squatter's claim is unverified, the owner sets, verifies and checks in by SMS with the number", async () => {
      const phone = newPhone();
      const squatter = await newMember();
      const squatted = await patchPhone(squatter, phone);
      expect(squatted.statusCode).toBe(200);
      expect(squatted.json()).toMatchObject({ phone, phone_verified: false });

      const owner = await newMember();
      const set = await patchPhone(owner, phone);
      expect(set.statusCode).toBe(200);
      expect(set.json()).toMatchObject({ phone, phone_verified: false });
      const verified = await verify(owner, phone);
      expect(verified).toMatchObject({ phone, phone_verified: true });

      // The squatter's claim changed nothing for anyone: a reply from the number checks the owner in.
      expect(await me(squatter)).toMatchObject({ phone, phone_verified: false });
      const reply = await inbound(phone, 'OK');
      expect(reply.body).toContain('you are checked in');
      expect(await smsCheckIns(owner)).toBe(1);
      expect(await smsCheckIns(squatter)).toBe(0);
    });

    it('checks nobody in on a reply from an unverified number, and answers it as a stranger', async () => {
      const m = await newMember();
      const phone = newPhone();
      await patchPhone(m, phone);
      const reply = await inbound(phone, 'OK');
      expect(reply.statusCode).toBe(200);
      expect(reply.body).toContain('this number cannot read replies');
      expect(await smsCheckIns(m)).toBe(0);
      // The same member once verified: the reply checks in.
      await verify(m, phone);
      expect((await inbound(phone, 'OK')).body).toContain('you are checked in');
      expect(await smsCheckIns(m)).toBe(1);
    });

    it('clears the verification when the phone changes, and SMS check-in stops with it', async () => {
      const m = await newMember();
      const phone = newPhone();
      await verify(m, phone);
      expect((await patchPhone(m, phone)).json().phone_verified).toBe(true); // the same number again: kept
      const moved = await patchPhone(m, newPhone());
      expect(moved.json().phone_verified).toBe(false);
      expect((await patchPhone(m, phone)).json()).toMatchObject({ phone, phone_verified: false });
      expect((await inbound(phone, 'OK')).body).toContain('this number cannot read replies');
      expect(await smsCheckIns(m)).toBe(0);
    });

    it('sends SMS reminders only to a verified phone', async () => {
      clock.set('2026-12-06T08:00:00Z');
      const m = await memberWithContacts(t, []);
      const phone = newPhone();
      await patchPhone(m, phone);
      const reminders = async () => (await t.db.pool.query<{ channel: string; address: string }>(
        `select channel, address from deliveries where member_id = $1 and kind = 'reminder' order by created_at, channel`, [m.sub])).rows;
      clock.set('2026-12-06T09:00:00Z');
      await sweepOnce(sweepDeps(t, clock));
      expect((await reminders()).length).toBeGreaterThan(0);
      expect((await reminders()).filter((r) => r.channel === 'sms')).toEqual([]);

      await verify(m, phone);
      clock.set('2026-12-06T09:30:00Z');
      await sweepOnce(sweepDeps(t, clock));
      expect((await reminders()).filter((r) => r.channel === 'sms')).toEqual([{ channel: 'sms', address: phone }]);
    });
  });

  describe('the code', () => {
    it('is texted through the outbox to the dev outbox, six digits, and never stored in clear', async () => {
      const m = await newMember();
      const phone = newPhone();
      const sent = await askCode(m, phone);
      expect(sent.statusCode).toBe(202);
      expect(sent.json()).toEqual({
        phone, expires_at: new Date(clock.now.getTime() + CODE_TTL_MS).toISOString(), resend_at: new Date(clock.now.getTime() + 60_000).toISOString(),
      });
      await sendVerificationSms(t.db.pool);
      const outbox = (await t.app.inject({ method: 'GET', url: '/dev/outbox', headers: { accept: 'application/json' } })).json().data as { to: string; kind: string; channel: string; body: string }[];
      const sms = outbox.filter((x) => x.to === phone);
      expect(sms).toHaveLength(1);
      expect(sms[0]).toMatchObject({ kind: 'verification', channel: 'sms' });
      const code = SMS_TEXT.exec(sms[0]!.body)?.[1];
      expect(code).toMatch(/^\d{6}$/);

      // The member reads their own deliveries under RLS: the code is not in theirs (sealed), nor anywhere but the dev outbox.
      // (Members may not read delivery bodies or render data at all since rls_hardening; the code is sealed in any case.)
      const own = await asUser(t.db.pool, m.sub, async (c) => (await c.query(`select id, status from deliveries where kind = 'verification'`)).rows);
      expect(own).toHaveLength(1);
      await expect(asUser(t.db.pool, m.sub, (c) => c.query(`select body, render from deliveries where kind = 'verification'`))).rejects.toThrow(/permission denied/);
      const { rows: [stored] } = await t.db.pool.query(`select body, render from deliveries where kind = 'verification' and member_id = $1`, [m.sub]);
      expect(stored.body).toBeNull();
      expect(Object.keys(stored.render).sort()).toEqual(['sealed', 'verification_id']);
      await expect(asUser(t.db.pool, m.sub, (c) => c.query('select * from phone_verifications'))).rejects.toThrow(/permission denied/);
      const { rows: [row] } = await t.db.pool.query(`select * from phone_verifications where member_id = $1`, [m.sub]);
      expect(row.code_hash).toHaveLength(32);
      expect(JSON.stringify(row)).not.toContain(`"${code}"`);

      const ok = await confirm(m, phone, `${code!.slice(0, 3)} ${code!.slice(3)}`);
      expect(ok.statusCode).toBe(200);
      expect(ok.json()).toMatchObject({ phone, phone_verified: true });
      // The app's double tap: the same answer, nothing changes.
      expect((await confirm(m, phone, code!)).json()).toMatchObject({ phone, phone_verified: true });
      expect((await askCode(m, phone)).statusCode).toBe(409);
    });

    it('refuses a wrong code with CODE_INVALID and counts the tries; the fifth wrong try kills the code', async () => {
      const m = await newMember();
      const phone = newPhone();
      await askCode(m, phone);
      const { code } = await codeSentTo(t.db.pool, phone);
      for (const left of [4, 3, 2, 1]) {
        const res = await confirm(m, phone, otherThan(code));
        expect(res.statusCode).toBe(400);
        expect(errorOf(res.body)).toMatchObject({ code: 'CODE_INVALID', details: { attempts_left: left } });
      }
      const fifth = await confirm(m, phone, otherThan(code));
      expect(fifth.statusCode).toBe(429);
      expect(errorOf(fifth.body).code).toBe('TOO_MANY_ATTEMPTS');
      expect(Number(fifth.headers['retry-after'])).toBeGreaterThanOrEqual(1);
      // Dead: even the right code no longer works.
      const right = await confirm(m, phone, code);
      expect(right.statusCode).toBe(429);
      expect(errorOf(right.body).code).toBe('TOO_MANY_ATTEMPTS');
      expect(await me(m)).toMatchObject({ phone: null, phone_verified: false });
      // A new code (once the resend limit allows) works.
      expect(await verify(m, phone)).toMatchObject({ phone, phone_verified: true });
    });

    it('expires after 10 minutes (CODE_EXPIRED)', async () => {
      const m = await newMember();
      const phone = newPhone();
      await askCode(m, phone);
      const { code } = await codeSentTo(t.db.pool, phone);
      later(CODE_TTL_MS / 1000);
      const res = await confirm(m, phone, code);
      expect(res.statusCode).toBe(400);
      expect(errorOf(res.body)).toMatchObject({ code: 'CODE_EXPIRED', details: { reason: 'expired' } });
      expect((await me(m)).phone_verified).toBe(false);
    });

    it("answers CODE_EXPIRED for a number's code once the member asked a code for another number", async () => {
      const m = await newMember();
      const [a, b] = [newPhone(), newPhone()];
      await askCode(m, a);
      const { code } = await codeSentTo(t.db.pool, a);
      later(61);
      await askCode(m, b);
      const res = await confirm(m, a, code);
      expect(res.statusCode).toBe(400);
      expect(errorOf(res.body)).toMatchObject({ code: 'CODE_EXPIRED', details: { reason: 'replaced' } });
    });

    it('answers CODE_EXPIRED when no code was asked for the number, and VALIDATION_ERROR for a code that is not six digits', async () => {
      const m = await newMember();
      const none = await confirm(m, newPhone(), '123456');
      expect(none.statusCode).toBe(400);
      expect(errorOf(none.body)).toMatchObject({ code: 'CODE_EXPIRED', details: { reason: 'none' } });
      for (const code of ['12345', '1234567', 'abcdef', '']) {
        const res = await confirm(m, newPhone(), code);
        expect(res.statusCode).toBe(400);
        expect(errorOf(res.body).code).toBe('VALIDATION_ERROR');
      }
      const bad = await askCode(m, '07700 900123');
      expect(bad.statusCode).toBe(400);
      expect(errorOf(bad.body).code).toBe('VALIDATION_ERROR');
    });

    it('limits resends to one a minute and five an hour per member, with 429 RATE_LIMITED and Retry-After; a newer code replaces the older', async () => {
      const m = await newMember();
      const phone = newPhone();
      expect((await askCode(m, phone)).statusCode).toBe(202);
      const first = await codeSentTo(t.db.pool, phone);
      later(30);
      const soon = await askCode(m, phone);
      expect(soon.statusCode).toBe(429);
      expect(soon.headers['retry-after']).toBe('30');
      expect(errorOf(soon.body)).toMatchObject({ code: 'RATE_LIMITED', details: { retry_after_seconds: 30 } });
      // Another number does not get around it: the limit is the member's too.
      expect((await askCode(m, newPhone())).statusCode).toBe(429);
      later(30);
      expect((await askCode(m, phone)).statusCode).toBe(202);
      // Only the newest code counts: the first is now just a wrong code.
      const second = await codeSentTo(t.db.pool, phone);
      if (first.code !== second.code) expect(errorOf((await confirm(m, phone, first.code)).body).code).toBe('CODE_INVALID');
      for (let i = 0; i < 3; i += 1) {
        later(60);
        expect((await askCode(m, phone)).statusCode).toBe(202);
      }
      later(60); // 5 minutes after the first of the five codes this hour
      const hourly = await askCode(m, phone);
      expect(hourly.statusCode).toBe(429);
      expect(hourly.headers['retry-after']).toBe(String(3600 - 300));
      later(3600 - 300);
      expect((await askCode(m, phone)).statusCode).toBe(202);
    });

    it('limits codes per number too, across members, so many accounts cannot flood one phone', async () => {
      const phone = newPhone();
      expect((await askCode(await newMember(), phone)).statusCode).toBe(202);
      const second = await askCode(await newMember(), phone);
      expect(second.statusCode).toBe(429);
      expect(errorOf(second.body).code).toBe('RATE_LIMITED');
    });
  });

  describe('another member', () => {
    it("answers the same for a number another member verified as for a number nobody uses", async () => {
      const owner = await newMember();
      const taken = newPhone();
      await verify(owner, taken);
      later(61);
      const probe = async (phone: string) => {
        const m = await newMember();
        const patch = await patchPhone(m, phone);
        const ask = await askCode(m, phone);
        const { code } = await codeSentTo(t.db.pool, phone);
        const wrong = await confirm(m, phone, otherThan(code));
        const strip = (body: string) => body.replaceAll(phone, '<phone>').replace(/"(id|created_at|updated_at|expires_at|resend_at)":"[^"]*"/g, '"$1":"…"');
        return [patch.statusCode, strip(patch.body), ask.statusCode, strip(ask.body), wrong.statusCode, strip(wrong.body)];
      };
      const free = newPhone();
      expect(await probe(taken)).toEqual(await probe(free));
      expect(await me(owner)).toMatchObject({ phone: taken, phone_verified: true });
    });

    it("moves a verified number to the member who proves it last; the other keeps it unverified, told nothing, and their trail does not name the new holder", async () => {
      const before = await newMember();
      const phone = newPhone();
      await verify(before, phone);
      const outboxBefore = (await t.db.pool.query(`select count(*)::int as n from dev_outbox where "to" = $1`, [phone])).rows[0].n;
      const now = await newMember();
      expect(await verify(now, phone)).toMatchObject({ phone, phone_verified: true });
      expect(await me(before)).toMatchObject({ phone, phone_verified: false });
      // Only the new holder's code went to the number.
      expect((await t.db.pool.query(`select count(*)::int as n from dev_outbox where "to" = $1`, [phone])).rows[0].n).toBe(outboxBefore + 1);
      const trail = (await t.app.inject({ method: 'GET', url: '/v1/audit', headers: before.headers })).json().data as { actor: { type: string; id: string | null }; changes: string[] }[];
      const lost = trail.filter((e) => e.changes.includes('phone_verified_at'));
      expect(lost.at(0)).toMatchObject({ actor: { type: 'system', id: null }, changes: ['phone_verified_at'] });
      expect(JSON.stringify(trail)).not.toContain(now.sub);
      // Replies now check in the new holder only.
      await inbound(phone, 'OK');
      expect([await smsCheckIns(before), await smsCheckIns(now)]).toEqual([0, 1]);
    });
  });

  describe('the database', () => {
    it('refuses a Supabase client that marks a phone verified or changes it, and clears the mark when any write changes the phone', async () => {
      const m = await newMember();
      const phone = newPhone();
      await verify(m, phone);
      // Column grants (migration rls_hardening) keep the phone service-owned: refused before any trigger runs.
      await expect(asUser(t.db.pool, m.sub, (c) => c.query(`update members set phone_verified_at = now() - interval '1 day' where id = $1`, [m.sub])))
        .rejects.toThrow(/permission denied/);
      await expect(asUser(t.db.pool, m.sub, (c) => c.query(`update members set phone = $2 where id = $1`, [m.sub, newPhone()])))
        .rejects.toThrow(/permission denied/);
      // A write that bypasses the API entirely (an operator's psql) still cannot keep a mark that belonged to the old number.
      const c = await t.db.pool.connect();
      try {
        await c.query('begin');
        const moved = (await c.query(`update members set phone = $2 where id = $1 returning phone_verified_at`, [m.sub, newPhone()])).rows[0];
        expect(moved).toEqual({ phone_verified_at: null });
      } finally {
        await c.query('rollback');
        c.release();
      }
      expect((await me(m)).phone_verified).toBe(true); // rolled back: untouched
    });

    it('keeps one verified member per number, while any number of members may claim it unverified', async () => {
      const phone = newPhone();
      const ids = [randomUUID(), randomUUID(), randomUUID()];
      await t.db.pool.query(`insert into members (id, phone) select unnest($1::uuid[]), $2`, [ids, phone]);
      await t.db.pool.query(`update members set phone_verified_at = now() where id = $1`, [ids[0]]);
      await expect(t.db.pool.query(`update members set phone_verified_at = now() where id = $1`, [ids[1]])).rejects.toThrow(/members_verified_phone_uidx/);
    });

    it('deletes codes after a day (retention), and with the member', async () => {
      const m = await newMember();
      await askCode(m, newPhone());
      const count = async () => (await t.db.pool.query(`select count(*)::int as n from phone_verifications where member_id = $1`, [m.sub])).rows[0].n;
      expect(await count()).toBe(1);
      const result = await runRetention({ pool: t.db.pool, clock: () => new Date(clock.now.getTime() + 86_400_000 + 1000), log, settings: { retentionDays: 90, locationRetentionHours: 24 } });
      expect(result.phone_verifications).toBeGreaterThanOrEqual(1);
      expect(await count()).toBe(0);
      later(61);
      await askCode(m, newPhone());
      expect(await count()).toBe(1);
      expect((await t.app.inject({ method: 'DELETE', url: '/v1/me', headers: m.headers })).statusCode).toBe(204);
      expect(await count()).toBe(0);
    });
  });

  describe('the worker', () => {
    it('cannot open a code without the link secret, nor one moved to another number, and fails it rather than text anything', async () => {
      const m = await newMember();
      later(61);
      const phone = newPhone();
      await askCode(m, phone);
      const { rows: [d] } = await t.db.pool.query<{ id: string }>(`select id from deliveries where kind = 'verification' and address = $1`, [phone]);
      const dev = createDevOutboxChannel(t.db.pool);
      const deps = { pool: t.db.pool, channels: { push: dev, sms: dev, email: dev }, clock: () => new Date(), log };
      await t.db.pool.query(`update deliveries set address = $2 where id = $1`, [d!.id, newPhone()]);
      expect(await processDelivery({ ...deps, linkSecret: TEST_LINK_SECRET }, d!.id, 0, 3)).toBe('failed');
      const other = newPhone();
      later(61);
      await askCode(m, other);
      const { rows: [e] } = await t.db.pool.query<{ id: string }>(`select id from deliveries where kind = 'verification' and address = $1`, [other]);
      expect(await processDelivery(deps, e!.id, 0, 3)).toBe('failed');
      const { rows } = await t.db.pool.query(`select count(*)::int as n from dev_outbox where delivery_id = any($1::uuid[])`, [[d!.id, e!.id]]);
      expect(rows[0].n).toBe(0);
    });
  });
});

describe('phones stored before the verification migration', () => {
  it('stay verified, so nobody’s SMS check-in silently stops', async () => {
    const db = await createTestDatabase({ empty: true });
    try {
      const dir = await mkdtemp(path.join(tmpdir(), 'pruuf-phone-'));
      const files = (await readdir(migrationsDir())).sort();
      const mine = files.findIndex((f) => f.includes('_phone_verification'));
      expect(mine).toBeGreaterThan(0);
      for (const f of files.slice(0, mine)) await copyFile(path.join(migrationsDir(), f), path.join(dir, f));
      await migrate(db.pool, { dir });
      const [a, b] = [randomUUID(), randomUUID()];
      await db.pool.query(`insert into members (id, phone) values ($1, '+447700900444'), ($2, null)`, [a, b]);
      for (const f of files.slice(mine)) await copyFile(path.join(migrationsDir(), f), path.join(dir, f));
      await migrate(db.pool, { dir });
      const { rows } = await db.pool.query(`select id, phone_verified_at is not null as verified from members order by phone nulls last`);
      expect(rows).toEqual([{ id: a, verified: true }, { id: b, verified: false }]);
    } finally {
      await db.drop();
    }
  });
});
