import { randomBytes, randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { createDevOutboxChannel } from '../../src/channels/dev-outbox/index.js';
import { createFcmChannel, type FcmChannel } from '../../src/channels/push-fcm/index.js';
import { processDelivery, type DeliveryDeps } from '../../src/delivery/deliver.js';
import { sweepOnce } from '../../src/incidents/sweep.js';
import { createLogger } from '../../src/observability/logger.js';
import { errorOf, startTestApp, type TestApp } from '../helpers/app.js';
import { startFakeFcm, type FakeFcm } from '../fakes/fcm.js';
import { memberWithContacts, sweepDeps, testClock } from '../incidents/helpers.js';

const clock = testClock('2026-11-23T08:00:00Z');
type Headers = { authorization: string };

describe('push devices', () => {
  let t: TestApp;
  let fake: FakeFcm;
  let fcm: FcmChannel;
  let deliver: DeliveryDeps;
  beforeAll(async () => {
    t = await startTestApp({ clock: () => clock.now });
    fake = await startFakeFcm();
    const log = createLogger('silent');
    fcm = createFcmChannel({ pool: t.db.pool, log, projectId: fake.projectId, credential: fake.credential(), connect: fake.connect });
    const outbox = createDevOutboxChannel(t.db.pool);
    deliver = { pool: t.db.pool, channels: { push: fcm, sms: outbox, email: outbox }, clock: () => clock.now, log };
  });
  afterAll(async () => {
    await fcm.close();
    await fake.close();
    await t.close();
  });

  const register = (headers: Headers, token: string, extra: Record<string, unknown> = {}) =>
    t.app.inject({ method: 'POST', url: '/v1/devices', headers, payload: { token, platform: 'ios', ...extra } });
  const devices = async (headers: Headers) => (await t.app.inject({ method: 'GET', url: '/v1/devices', headers })).json().data as { id: string }[];
  const holders = async (token: string) =>
    (await t.db.pool.query<{ member_id: string }>('select member_id from devices where token = $1 order by member_id', [token])).rows.map((r) => r.member_id);
  /** What an answer tells the caller, without the values that differ on every call. */
  const shape = (res: { statusCode: number; json: () => Record<string, unknown> }) => {
    const body = res.json();
    return { status: res.statusCode, keys: Object.keys(body).sort(), secret: typeof body.device_secret === 'string' && /^[A-Za-z0-9_-]{43}$/.test(body.device_secret) };
  };

  it('registers a token once per member: 201 with a device secret shown once, then 200 without it, never echoing the token', async () => {
    const headers = await t.as(randomUUID());
    const token = `fcm-${randomUUID()}`;
    const first = await register(headers, token);
    expect(shape(first)).toEqual({ status: 201, keys: ['created_at', 'device_secret', 'id', 'last_seen_at', 'platform'], secret: true });
    expect(first.body).not.toContain(token);
    const { rows: [stored] } = await t.db.pool.query<{ secret_hash: Buffer }>('select secret_hash from devices where id = $1', [first.json().id]);
    expect(stored!.secret_hash).toHaveLength(32);
    expect(stored!.secret_hash.toString('base64url')).not.toBe(first.json().device_secret);
    const second = await register(headers, token, { platform: 'android' });
    expect(shape(second)).toEqual({ status: 200, keys: ['created_at', 'id', 'last_seen_at', 'platform'], secret: false });
    expect(second.json()).toMatchObject({ id: first.json().id, platform: 'android' });
    expect(await devices(headers)).toHaveLength(1);
  });

  it("does not let another member take a device by its token: B gets a row of its own, A's devices and reminders stay as they were", async () => {
    clock.set('2026-11-23T08:00:00Z');
    const a = await memberWithContacts(t, []);
    const b = await t.as(randomUUID());
    const token = `fcm-${randomUUID()}`;
    const mine = await register(a.headers, token);
    expect(mine.statusCode).toBe(201);
    const before = await devices(a.headers);

    const taken = await register(b, token);
    expect(taken.statusCode).toBe(201);
    expect(taken.json().id).not.toBe(mine.json().id);
    expect(await devices(a.headers)).toEqual(before);
    expect(await devices(b)).toEqual([expect.objectContaining({ id: taken.json().id })]);
    expect(await register(b, token)).toMatchObject({ statusCode: 200 });

    // A's reminder still reaches A's phone, once: B holding the same token adds no second push.
    clock.set('2026-11-23T09:00:00Z');
    await sweepOnce(sweepDeps(t, clock));
    const { rows: [reminder] } = await t.db.pool.query<{ id: string }>(`select id from deliveries where member_id = $1 and kind = 'reminder' and channel = 'push'`, [a.sub]);
    expect(await processDelivery(deliver, reminder!.id, 0, 3)).toBe('sent');
    expect(fake.acceptedFor(token).map((m) => m.message.data?.delivery_id)).toEqual([reminder!.id]);
  });

  it("keeps alerting a linked watcher on their own token when someone else registered it too, once per alert", async () => {
    const m = await memberWithContacts(t, [1]);
    const watcher = randomUUID();
    const w = await t.as(watcher);
    const token = `fcm-${randomUUID()}`;
    await register(w, token);
    await t.db.pool.query('update contacts set linked_user_id = $2 where id = $1', [m.contacts[0]!.id, watcher]);
    await register(await t.as(randomUUID()), token);
    const sos = await t.app.inject({ method: 'POST', url: '/v1/sos', headers: m.headers, payload: {} });
    expect(sos.statusCode).toBe(201);
    const { rows: [push] } = await t.db.pool.query<{ id: string; address: string }>(
      `select id, address from deliveries where incident_id = $1 and kind = 'alert' and channel = 'push'`, [sos.json().id]);
    expect(push!.address).toBe(`user:${watcher}`);
    expect(await processDelivery(deliver, push!.id, 0, 3)).toBe('sent');
    expect(fake.acceptedFor(token).map((x) => x.message.data?.delivery_id)).toEqual([push!.id]);
  });

  it('answers a token another member holds exactly as a token nobody holds, with or without a wrong secret', async () => {
    const a = await t.as(randomUUID());
    const b = await t.as(randomUUID());
    const c = await t.as(randomUUID());
    const held = `fcm-${randomUUID()}`;
    const secretA = (await register(a, held)).json().device_secret as string;
    const otherSecret = (await register(c, `fcm-${randomUUID()}`)).json().device_secret as string;
    const fresh = shape(await register(b, `fcm-${randomUUID()}`));
    expect(fresh).toEqual({ status: 201, keys: ['created_at', 'device_secret', 'id', 'last_seen_at', 'platform'], secret: true });

    const wrongs = [undefined, null, otherSecret, randomBytes(32).toString('base64url'), `${secretA}x`, secretA.slice(0, -1), 'not base64 at all!'];
    for (const [i, wrong] of wrongs.entries()) {
      const caller = await t.as(randomUUID());
      const res = await register(caller, held, wrong === undefined ? {} : { previous_device_secret: wrong });
      expect({ i, ...shape(res) }).toEqual({ i, ...fresh });
    }
    // A's device is untouched by all of them; each caller got a row of its own.
    expect(await devices(a)).toHaveLength(1);
    expect(await holders(held)).toHaveLength(1 + wrongs.length);
  });

  it("moves the token with the install's secret: the old account's row goes, so its pushes stop reaching that phone", async () => {
    const aSub = randomUUID();
    const a = await t.as(aSub);
    const b = await t.as(randomUUID());
    const token = `fcm-${randomUUID()}`;
    const secretA = (await register(a, token)).json().device_secret as string;
    const moved = await register(b, token, { previous_device_secret: secretA });
    expect(shape(moved)).toEqual({ status: 201, keys: ['created_at', 'device_secret', 'id', 'last_seen_at', 'platform'], secret: true });
    expect(moved.json().device_secret).not.toBe(secretA);
    expect(await devices(a)).toEqual([]);
    expect(await devices(b)).toEqual([expect.objectContaining({ id: moved.json().id })]);
    // The old secret proved one thing once: A registering again gets a row of its own, not B's.
    const back = await register(a, token, { previous_device_secret: secretA });
    expect(back.statusCode).toBe(201);
    expect(await devices(b)).toHaveLength(1);
    // B signs in again on that install: its proof (the secret it was given) is its own row, 200.
    expect((await register(b, token, { previous_device_secret: moved.json().device_secret })).statusCode).toBe(200);
    expect(await devices(a)).toHaveLength(1);

    // A member who registered the token earlier without proof keeps that row when the proof comes.
    const token2 = `fcm-${randomUUID()}`;
    const secret2 = (await register(a, token2)).json().device_secret as string;
    const own = (await register(b, token2)).json().id as string;
    const proved = await register(b, token2, { previous_device_secret: secret2 });
    expect(proved.statusCode).toBe(200);
    expect(proved.json().id).toBe(own);
    expect(await holders(token2)).toHaveLength(1);
    expect((await holders(token2))[0]).not.toBe(aSub);
  });

  it('gives a device registered before secrets existed a secret on its owner\'s next registration, once', async () => {
    const sub = randomUUID();
    const headers = await t.as(sub);
    await t.app.inject({ method: 'GET', url: '/v1/me', headers });
    const token = `fcm-${randomUUID()}`;
    await t.db.pool.query(`insert into devices (member_id, token, platform) values ($1, $2, 'android')`, [sub, token]);
    const first = await register(headers, token);
    expect(shape(first)).toEqual({ status: 200, keys: ['created_at', 'device_secret', 'id', 'last_seen_at', 'platform'], secret: true });
    expect(shape(await register(headers, token))).toMatchObject({ status: 200, secret: false });
    // And it works as proof.
    const other = await t.as(randomUUID());
    await register(other, token, { previous_device_secret: first.json().device_secret });
    expect(await devices(headers)).toEqual([]);
  });

  it('deletes a dead token from every member who holds it', async () => {
    clock.set('2026-11-23T08:00:00Z');
    const a = await memberWithContacts(t, []);
    const b = await t.as(randomUUID());
    const token = `dead-${randomUUID()}`;
    await register(a.headers, token);
    await register(b, token);
    expect(await holders(token)).toHaveLength(2);
    fake.setToken(token, 'unregistered');
    clock.set('2026-11-23T09:00:00Z');
    await sweepOnce(sweepDeps(t, clock));
    const { rows: [reminder] } = await t.db.pool.query<{ id: string }>(`select id from deliveries where member_id = $1 and kind = 'reminder' and channel = 'push'`, [a.sub]);
    expect(await processDelivery(deliver, reminder!.id, 0, 3)).toBe('failed');
    expect(await holders(token)).toEqual([]);
    expect(await devices(b)).toEqual([]);
  });

  it("answers 404 for another member's device and keeps it", async () => {
    const owner = await t.as(randomUUID());
    const other = await t.as(randomUUID());
    const created = await t.app.inject({ method: 'POST', url: '/v1/devices', headers: owner, payload: { token: `t-${randomUUID()}`, platform: 'web' } });
    const id = created.json().id as string;
    const res = await t.app.inject({ method: 'DELETE', url: `/v1/devices/${id}`, headers: other });
    expect(res.statusCode).toBe(404);
    expect(errorOf(res.body).code).toBe('NOT_FOUND');
    expect((await t.app.inject({ method: 'DELETE', url: `/v1/devices/${id}`, headers: owner })).statusCode).toBe(204);
    expect((await t.app.inject({ method: 'DELETE', url: `/v1/devices/${id}`, headers: owner })).statusCode).toBe(404);
  });

  it.each([
    ['an unknown platform', { token: 'x', platform: 'symbian' }],
    ['a missing token', { platform: 'ios' }],
    ['an empty token', { token: '  ', platform: 'ios' }],
    ['a secret that is not a string', { token: 'x', platform: 'ios', previous_device_secret: 42 }],
    ['an unknown field', { token: 'x', platform: 'ios', owner: 'me' }],
  ])('rejects %s with 400', async (_name, payload) => {
    const res = await t.app.inject({ method: 'POST', url: '/v1/devices', headers: await t.as(randomUUID()), payload });
    expect(res.statusCode).toBe(400);
    expect(errorOf(res.body).code).toBe('VALIDATION_ERROR');
  });

  it('rejects a device id that is not a uuid with 400', async () => {
    const res = await t.app.inject({ method: 'DELETE', url: '/v1/devices/123', headers: await t.as(randomUUID()) });
    expect(res.statusCode).toBe(400);
  });
});
