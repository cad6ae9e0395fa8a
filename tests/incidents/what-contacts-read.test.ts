import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { checkInsSettled } from '../../src/checkins/service.js';
import { messageText, type StoredMessage } from '../../src/incidents/render-at-send.js';
import { sweepOnce } from '../../src/incidents/sweep.js';
import { startTestApp, type TestApp } from '../helpers/app.js';
import { signToken } from '../helpers/tokens.js';
import { memberWithContacts, sweepDeps, testClock, tokenFrom } from './helpers.js';

// Issue 17: what a contact reads names who, what, when and how to reach them, in their language.
const clock = testClock('2026-11-23T08:00:00Z');
const PHONE = '+15551234567';

type Sent = { contact_id: string; channel: string; kind: string; subject: string | null; body: string; html: string | null; data: Record<string, string> | null; step_no: number };

async function sent(t: TestApp, incidentId: string, kind?: string): Promise<Sent[]> {
  const { rows } = await t.db.pool.query<StoredMessage & { step_no: number }>(
    `select id, kind, channel, incident_id, contact_id, subject, body, html, data, render, step_no from deliveries
      where incident_id = $1 and ($2::text is null or kind = $2) order by step_no, contact_id, channel`,
    [incidentId, kind ?? null],
  );
  return Promise.all(rows.map(async (r) => ({ ...(await messageText(t.db.pool, r)), contact_id: r.contact_id!, channel: r.channel, kind: r.kind, step_no: r.step_no })));
}

async function missed(t: TestApp, tiers: number[], setup?: (m: Awaited<ReturnType<typeof memberWithContacts>>) => Promise<void>) {
  clock.set('2026-11-23T08:00:00Z');
  const m = await memberWithContacts(t, tiers);
  if (setup) await setup(m);
  clock.set('2026-11-23T10:00:00Z');
  await sweepOnce(sweepDeps(t, clock));
  const { rows: [inc] } = await t.db.pool.query<{ id: string }>('select id from incidents where member_id = $1', [m.sub]);
  return { m, incidentId: inc!.id };
}

describe('what contacts read', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await startTestApp({ clock: () => clock.now, env: { FREE_PLAN_CHANNELS: 'push,sms,email', FREE_PLAN_CONTACTS: '10' } });
  });
  afterAll(() => t.close());

  it("gives the member's phone in every alert: in the SMS, as a tel: link in the email, and on the alert page", async () => {
    const { incidentId } = await missed(t, [1], async (m) => {
      await t.db.pool.query('update members set phone = $2, phone_verified_at = now() where id = $1', [m.sub, PHONE]);
    });
    const [email, sms] = await sent(t, incidentId, 'alert');
    expect(sms!.body).toContain(`Their phone: ${PHONE}`);
    expect(email!.body).toContain(`Call Ann: ${PHONE}`);
    expect(email!.html).toContain(`href="tel:${PHONE}"`);
    const page = await t.app.inject({ method: 'GET', url: `/a/${tokenFrom(sms!.body)}`, headers: { accept: 'text/html' } });
    expect(page.body).toContain(`href="tel:${PHONE}"`);
    expect(page.body).toContain('Pruuf alerted contacts at Mon 23 Nov, 10:00 UTC');
  });

  it('says nothing about a phone the member has not given, nor one they have not verified (it may be anybody\'s)', async () => {
    const { incidentId } = await missed(t, [1], async (m) => {
      await t.db.pool.query('update members set phone = $2, phone_verified_at = null where id = $1', [m.sub, PHONE]);
    });
    for (const d of await sent(t, incidentId, 'alert')) {
      expect(d.body).not.toMatch(/phone|tel:/i);
      expect(d.html ?? '').not.toContain('tel:');
    }
  });

  it('names a member who never set a display name by the email address they signed up with, never "A Pruuf member"', async () => {
    const sub = randomUUID();
    const headers = { authorization: `Bearer ${await signToken({ sub, email: 'nameless@example.test' })}` };
    await t.app.inject({ method: 'GET', url: '/v1/me', headers });
    const c = await t.app.inject({ method: 'POST', url: '/v1/contacts', headers, payload: { name: 'Bob', email: `bob-${sub.slice(0, 6)}@example.test` } });
    expect(c.statusCode).toBe(201);
    const { rows: [inv] } = await t.db.pool.query<{ subject: string }>(`select subject from deliveries where contact_id = $1 and kind = 'invitation'`, [c.json().id]);
    expect(inv!.subject).toBe('nameless@example.test asked you to be their emergency contact');
    const sos = await t.app.inject({ method: 'POST', url: '/v1/sos', headers, payload: {} });
    expect(sos.statusCode).toBe(201);
    const [alert] = await sent(t, sos.json().incident_id ?? sos.json().id, 'alert');
    expect(alert!.subject).toBe('SOS: nameless@example.test needs help');
    expect(alert!.body).not.toContain('A Pruuf member');
  });

  it('shows on an SOS page when the button was pressed, in the time zone of a contact who uses the app', async () => {
    clock.set('2026-11-23T10:00:00Z');
    const sub = randomUUID();
    const headers = await t.as(sub);
    await t.app.inject({ method: 'PATCH', url: '/v1/me', headers, payload: { display_name: 'Ann', time_zone: 'America/New_York' } });
    const c = await t.app.inject({ method: 'POST', url: '/v1/contacts', headers, payload: { name: 'Bob', email: `bob-${sub.slice(0, 6)}@example.test` } });
    const watcher = randomUUID();
    await t.app.inject({ method: 'PATCH', url: '/v1/me', headers: await t.as(watcher), payload: { time_zone: 'Europe/Berlin' } });
    await t.db.pool.query(`update contacts set status = 'active', linked_user_id = $2 where id = $1`, [c.json().id, watcher]);
    const sos = await t.app.inject({ method: 'POST', url: '/v1/sos', headers, payload: {} });
    const [alert] = await sent(t, sos.json().incident_id ?? sos.json().id, 'alert');
    const page = await t.app.inject({ method: 'GET', url: `/a/${tokenFrom(alert!.body)}`, headers: { accept: 'text/html' } });
    // 10:00 UTC is 11:00 in Berlin (CET) and 05:00 in New York: the page speaks the reader's clock.
    expect(page.body).toContain('Ann pressed the SOS button at Mon 23 Nov, 11:00 GMT+1 and needs help');
    // The SOS message itself keeps the member's clock, the one their promise was made on.
    expect(alert!.body).toContain('05:00 EST');
  });

  it('tells those who heard "someone is on it" that it lapsed, asks the one who said it, and never says nobody has', async () => {
    const { m, incidentId } = await missed(t, [1, 1, 2]);
    const [bob, carol, dan] = m.contacts;
    const first = (await sent(t, incidentId, 'alert')).find((d) => d.contact_id === bob!.id && d.channel === 'email')!;
    clock.add(5);
    expect((await t.app.inject({ method: 'POST', url: `/a/${tokenFrom(first.body)}/ack` })).statusCode).toBe(200);
    await t.db.pool.query(`update deliveries set status = 'sent' where incident_id = $1`, [incidentId]);
    clock.add(61); // past the 60-minute acknowledgement timeout
    await sweepOnce(sweepDeps(t, clock));

    const lapsed = await sent(t, incidentId, 'ack_lapsed');
    expect(lapsed.map((d) => `${d.contact_id}:${d.channel}`).sort()).toEqual([`${bob!.id}:email`, `${bob!.id}:sms`, `${carol!.id}:email`, `${carol!.id}:sms`].sort());
    const toCarol = lapsed.find((d) => d.contact_id === carol!.id && d.channel === 'sms')!;
    expect(toCarol.body).toMatch(/^Pruuf: Contact 0 said at 10:05 UTC they were on it, but Ann has not checked in since\. We are alerting contacts again/);
    expect(toCarol.body).toMatch(/\/a\/[\w-]+$/);
    const toBob = lapsed.find((d) => d.contact_id === bob!.id && d.channel === 'email')!;
    expect(toBob.subject).toBe('Did you reach Ann?');
    expect(toBob.body).toContain('At 10:05 UTC on Monday 23 November 2026 you said you were taking care of Ann');

    // Tier 2 is alerted now; its alert says who was on it. Nothing says "nobody".
    const step2 = (await sent(t, incidentId, 'alert')).filter((d) => d.step_no === 2);
    expect(step2.filter((d) => d.channel !== 'voice').map((d) => d.contact_id)).toEqual([dan!.id, dan!.id]);
    // Step 2 calls tier 1 but Bob, whose "I'm on it" lapsed: he is asked by message.
    expect(step2.filter((d) => d.channel === 'voice').map((d) => d.contact_id)).toEqual([carol!.id]);
    clock.add(15);
    await sweepOnce(sweepDeps(t, clock)); // round 2: every tier
    const later = (await sent(t, incidentId, 'alert')).filter((d) => d.step_no >= 2);
    expect(later.length).toBeGreaterThan(2);
    for (const d of later) {
      expect(d.body).not.toMatch(/nobody has said/i);
      if (d.channel === 'email') expect(d.body).toContain('Contact 0 said at 10:05 UTC on Monday 23 November 2026 that they were on it');
    }
  });

  it('an alert sent while someone is on it (queued before they said so) says who is, not that nobody has', async () => {
    const { m, incidentId } = await missed(t, [1, 1]);
    const [bob] = m.contacts;
    const first = (await sent(t, incidentId, 'alert')).find((d) => d.contact_id === bob!.id && d.channel === 'email')!;
    clock.add(1);
    expect((await t.app.inject({ method: 'POST', url: `/a/${tokenFrom(first.body)}/ack` })).statusCode).toBe(200);
    // Carol's alerts were still waiting in the queue: rendered now, they say Bob is on it.
    for (const d of (await sent(t, incidentId, 'alert')).filter((x) => x.contact_id !== bob!.id)) {
      expect(d.body).not.toMatch(/nobody has said|was on it, but/i);
      if (d.channel === 'sms') expect(d.body).toMatch(/^Pruuf: Update: Contact 0 is on it\. Ann missed a check-in/);
      if (d.channel === 'email') expect(d.body).toContain('Update: Contact 0 said at 10:01 UTC on Monday 23 November 2026 that they are taking care of Ann.');
    }
  });

  it('after the last round, a lapsed "I\'m on it" does not claim we alert anyone again, and a second lapse is told too', async () => {
    const { m, incidentId } = await missed(t, [1, 1]);
    const [bob, carol] = m.contacts;
    await t.db.pool.query(`update deliveries set status = 'sent', attempts = 1 where incident_id = $1`, [incidentId]);
    // Every round is spent.
    await t.db.pool.query(`update incidents set round = max_rounds + 1, next_step_at = null where id = $1`, [incidentId]);
    const ackLink = (await sent(t, incidentId, 'alert')).find((d) => d.contact_id === bob!.id && d.channel === 'email')!;
    for (const lapse of [1, 2]) {
      clock.add(1);
      expect((await t.app.inject({ method: 'POST', url: `/a/${tokenFrom(ackLink.body)}/ack` })).json()).toMatchObject({ state: 'acknowledged' });
      clock.add(61);
      await sweepOnce(sweepDeps(t, clock));
      const toCarol = (await sent(t, incidentId, 'ack_lapsed')).filter((d) => d.contact_id === carol!.id && d.channel === 'sms');
      expect(toCarol).toHaveLength(lapse);
      expect(toCarol[lapse - 1]!.body).toContain('Every contact has been alerted; please check on Ann too.');
      expect(toCarol[lapse - 1]!.body).not.toContain('alerting contacts again');
    }
  });

  it('writes to each contact in their language: invitation, alert and all clear (es, de), and refuses a language it does not have', async () => {
    clock.set('2026-11-23T08:00:00Z');
    const m = await memberWithContacts(t, []);
    const add = (payload: object) => t.app.inject({ method: 'POST', url: '/v1/contacts', headers: m.headers, payload });
    const bad = await add({ name: 'Xi', email: 'xi@example.test', locale: 'xx' });
    expect(bad.statusCode).toBe(400);
    expect(bad.json().error.code).toBe('VALIDATION_ERROR');
    const es = await add({ name: 'Lucía', email: `lucia-${m.sub.slice(0, 6)}@example.test`, locale: 'es' });
    expect(es.statusCode).toBe(201);
    expect(es.json().locale).toBe('es');
    const de = await add({ name: 'Jürgen', phone: '+4915112345678' });
    expect(de.json().locale).toBe('en');
    const patched = await t.app.inject({ method: 'PATCH', url: `/v1/contacts/${de.json().id}`, headers: m.headers, payload: { locale: 'de' } });
    expect(patched.json().locale).toBe('de');
    const { rows: [inv] } = await t.db.pool.query<{ subject: string; body: string }>(`select subject, body from deliveries where contact_id = $1 and kind = 'invitation'`, [es.json().id]);
    expect(inv!.subject).toBe('Ann te pide que seas su contacto de emergencia');
    expect(inv!.body).toMatch(/^Hola, Lucía:/);

    await t.db.pool.query(`update contacts set status = 'active' where member_id = $1`, [m.sub]);
    clock.set('2026-11-23T10:00:00Z');
    await sweepOnce(sweepDeps(t, clock));
    const { rows: [inc] } = await t.db.pool.query<{ id: string }>('select id from incidents where member_id = $1', [m.sub]);
    const alerts = await sent(t, inc!.id, 'alert');
    const esMail = alerts.find((d) => d.contact_id === es.json().id)!;
    expect(esMail.subject).toBe('Ann no hizo su check-in');
    expect(esMail.body).toContain('Estaba previsto a las 09:30 UTC, lunes 23 de noviembre de 2026.');
    expect(esMail.html).toContain('<html lang="es">');
    const deSms = alerts.find((d) => d.contact_id === de.json().id)!;
    expect(deSms.body).toMatch(/^Pruuf: Ann hat einen Check-in verpasst, fällig 09:30 UTC, Mo, 23\. Nov\. Rufen Sie an/);
    await t.db.pool.query(`update deliveries set status = 'sent' where incident_id = $1`, [inc!.id]);
    expect((await t.app.inject({ method: 'POST', url: '/v1/check-ins', headers: m.headers, payload: {} })).statusCode).toBe(201);
    const clear = await sent(t, inc!.id, 'all_clear');
    expect(clear.find((d) => d.contact_id === es.json().id)!.subject).toBe('Todo en orden: Ann está bien');
    expect(clear.find((d) => d.contact_id === de.json().id)!.body).toMatch(/^Pruuf: Entwarnung\. Ann hat sich um 10:00 UTC, Mo, 23\. Nov gemeldet\./);
  });

  it('sends a "checked in" note in the language of the contact who asked for it', async () => {
    clock.set('2026-11-23T08:00:00Z');
    const m = await memberWithContacts(t, [1]);
    const res = await t.app.inject({ method: 'PATCH', url: `/v1/contacts/${m.contacts[0]!.id}`, headers: m.headers, payload: { notify_on_check_in: true, locale: 'fr' } });
    expect(res.json()).toMatchObject({ notify_on_check_in: true, locale: 'fr' });
    clock.set('2026-11-23T09:00:00Z');
    expect((await t.app.inject({ method: 'POST', url: '/v1/check-ins', headers: m.headers, payload: {} })).statusCode).toBe(201);
    await checkInsSettled(t.db.pool);
    const { rows } = await t.db.pool.query<{ channel: string; subject: string | null; body: string }>(
      `select channel, subject, body from deliveries where member_id = $1 and kind = 'check_in_note' order by channel`, [m.sub]);
    expect(rows.find((r) => r.channel === 'email')!.subject).toBe('Ann a fait son check-in à 09:00 UTC');
    expect(rows.find((r) => r.channel === 'email')!.body).toMatch(/^Bonjour Contact 0,\n\nAnn a fait son check-in à 09:00 UTC le lundi 23 novembre 2026\. Tout va bien\./);
  });

  it('lets the database refuse a language the messages do not have, for writes that bypass the API', async () => {
    const m = await memberWithContacts(t, [1]);
    await expect(t.db.pool.query(`update contacts set locale = 'xx' where id = $1`, [m.contacts[0]!.id])).rejects.toMatchObject({ code: '23514' });
  });
});
