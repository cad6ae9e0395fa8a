import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { mkdirSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { createDevOutboxChannel } from '../../src/channels/dev-outbox/index.js';
import { signLink } from '../../src/links/tokens.js';
import { startTestApp, type TestApp } from '../helpers/app.js';
import { TEST_LINK_SECRET } from '../helpers/tokens.js';
import { memberWithContacts, testClock, tokenFrom } from '../incidents/helpers.js';

/**
 * The pages contacts see, in real headless Chromium (Debian's `chromium`, driven by
 * playwright-core) against the real app on a real port. Screenshots go to tests/artifacts/.
 */
const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const ARTIFACTS = path.resolve('tests/artifacts');
const PHONE = { width: 360, height: 640 };
const clock = testClock('2026-11-23T08:00:00Z');

/** What a person on a small phone needs: nothing to scroll sideways, text ≥ 16 px, tap targets ≥ 44 px. */
type Readability = { overflowX: number; small: string[]; buttons: { text: string; height: number; width: number }[] };
// Runs in the page (as text: this project's TypeScript has no DOM library).
const MEASURE = `(() => {
  const doc = document.documentElement;
  const small = [];
  for (const el of document.querySelectorAll('body *')) {
    const own = Array.from(el.childNodes).some((n) => n.nodeType === Node.TEXT_NODE && (n.textContent || '').trim() !== '');
    if (!own || el.offsetParent === null) continue;
    const size = parseFloat(getComputedStyle(el).fontSize);
    if (size < 16) small.push(el.tagName.toLowerCase() + ' ' + size + 'px "' + (el.textContent || '').trim().slice(0, 30) + '"');
  }
  const buttons = Array.from(document.querySelectorAll('button, a.button, input[type=submit]')).map((b) => {
    const r = b.getBoundingClientRect();
    return { text: (b.textContent || '').trim(), height: r.height, width: r.width };
  });
  return { overflowX: doc.scrollWidth - doc.clientWidth, small, buttons };
})()`;

async function readability(page: Page): Promise<Readability> {
  return page.evaluate<Readability>(MEASURE);
}

describe('contact pages in a real browser', () => {
  let t: TestApp;
  let base: string;
  let browser: Browser;
  const contexts: BrowserContext[] = [];
  beforeAll(async () => {
    mkdirSync(ARTIFACTS, { recursive: true });
    t = await startTestApp({ clock: () => clock.now, env: { FREE_PLAN_CHANNELS: 'push,sms,email' } });
    await t.app.listen({ host: '127.0.0.1', port: 0 });
    base = `http://127.0.0.1:${(t.app.server.address() as AddressInfo).port}`;
    // playwright gives every launch a fresh, throw-away profile directory of its own.
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
  }, 60_000);
  afterAll(async () => {
    for (const c of contexts) await c.close().catch(() => undefined);
    await browser?.close();
    await t?.close();
  });

  async function phone(opts: { javaScriptEnabled?: boolean } = {}): Promise<Page> {
    const context = await browser.newContext({ viewport: PHONE, deviceScaleFactor: 2, isMobile: true, hasTouch: true, ...opts });
    contexts.push(context);
    return context.newPage();
  }

  async function alerted() {
    clock.set('2026-11-23T08:00:00Z');
    const m = await memberWithContacts(t, [1, 1]);
    const sos = await t.app.inject({ method: 'POST', url: '/v1/sos', headers: m.headers, payload: { note: 'Fell in the garden' } });
    const incidentId = String(sos.json().id);
    const { rows } = await t.db.pool.query<{ id: string; contact_id: string; channel: 'email' | 'sms'; address: string; subject: string | null; body: string }>(
      `select id, contact_id, channel, address, subject, body from deliveries where incident_id = $1 and kind = 'alert' and channel in ('email', 'sms') order by contact_id, channel`, [incidentId]);
    return { m, incidentId, rows, token: (contactId: string) => tokenFrom(rows.find((r) => r.contact_id === contactId)!.body) };
  }

  it('acknowledges the incident when a contact taps "I\'m on it" on a 360×640 phone, and the page is readable', async () => {
    const { m, incidentId, token } = await alerted();
    const page = await phone();
    const res = await page.goto(`${base}/a/${token(m.contacts[0]!.id)}`);
    expect(res?.status()).toBe(200);
    await expect(page.getByRole('heading', { level: 1 }).textContent()).resolves.toContain('SOS');
    const r = await readability(page);
    await page.screenshot({ path: path.join(ARTIFACTS, 'ack-page-360x640.png'), fullPage: true });
    expect(r.overflowX).toBeLessThanOrEqual(0);
    expect(r.small).toEqual([]);
    expect(r.buttons.map((b) => b.text)).toEqual(["I'm on it", 'This needs more help']);
    for (const b of r.buttons) expect(b.height).toBeGreaterThanOrEqual(44);
    await page.getByRole('button', { name: "I'm on it" }).click();
    await page.waitForLoadState();
    await expect(page.getByRole('heading', { level: 1 }).textContent()).resolves.toContain('Thank you');
    await page.screenshot({ path: path.join(ARTIFACTS, 'ack-done-360x640.png'), fullPage: true });
    const { rows: [inc] } = await t.db.pool.query('select state, acknowledged_by from incidents where id = $1', [incidentId]);
    expect(inc).toEqual({ state: 'acknowledged', acknowledged_by: m.contacts[0]!.id });
  }, 30_000);

  it('works with JavaScript disabled: the form posts and the incident is acknowledged', async () => {
    const { m, incidentId, token } = await alerted();
    const page = await phone({ javaScriptEnabled: false });
    await page.goto(`${base}/a/${token(m.contacts[1]!.id)}`);
    await page.getByRole('button', { name: "I'm on it" }).click();
    await page.waitForURL(/\/ack$/);
    expect(await page.locator('h1').textContent()).toContain('Thank you, Contact 1');
    await page.screenshot({ path: path.join(ARTIFACTS, 'ack-no-javascript.png'), fullPage: true });
    const { rows: [inc] } = await t.db.pool.query('select state, acknowledged_by from incidents where id = $1', [incidentId]);
    expect(inc).toEqual({ state: 'acknowledged', acknowledged_by: m.contacts[1]!.id });
  }, 30_000);

  it('tells a contact clearly that an expired link has expired, and nothing changes', async () => {
    const { m, incidentId, token } = await alerted();
    clock.set('2026-12-01T08:00:00Z');
    const page = await phone();
    const res = await page.goto(`${base}/a/${token(m.contacts[0]!.id)}`);
    expect(res?.status()).toBe(410);
    expect(await page.locator('h1').textContent()).toBe('This link has expired');
    expect(await page.getByRole('button').count()).toBe(0);
    const r = await readability(page);
    expect(r.overflowX).toBeLessThanOrEqual(0);
    expect(r.small).toEqual([]);
    await page.screenshot({ path: path.join(ARTIFACTS, 'ack-expired.png'), fullPage: true });
    const { rows: [inc] } = await t.db.pool.query('select state from incidents where id = $1', [incidentId]);
    expect(inc.state).toBe('open');
  }, 30_000);

  it('lets an invited contact confirm on the invitation page, readable on a phone', async () => {
    clock.set('2026-11-23T08:00:00Z');
    const m = await memberWithContacts(t, [1]);
    await t.db.pool.query(`update contacts set status = 'invited' where member_id = $1`, [m.sub]);
    const { rows: [c] } = await t.db.pool.query<{ id: string; invited_at: Date }>('select id, invited_at from contacts where member_id = $1', [m.sub]);
    const link = signLink(TEST_LINK_SECRET, 'invite', c!.id, new Date(clock.now.getTime() + 86_400_000), String(c!.invited_at.getTime()));
    const page = await phone({ javaScriptEnabled: false });
    await page.goto(`${base}/i/${link}`);
    expect(await page.locator('h1').textContent()).toContain('Ann asked you to be their emergency contact');
    await page.screenshot({ path: path.join(ARTIFACTS, 'invitation-360x640.png'), fullPage: true });
    await page.getByRole('button', { name: 'Yes, I will be a contact' }).click();
    await page.waitForURL(/\/accept$/);
    expect(await page.locator('h1').textContent()).toBe('Thank you');
    const { rows: [after] } = await t.db.pool.query('select status from contacts where id = $1', [c!.id]);
    expect(after.status).toBe('active');
    const r = await readability(await phone().then(async (p) => { await p.goto(`${base}/i/${link}`); return p; }));
    expect(r.overflowX).toBeLessThanOrEqual(0);
    expect(r.small).toEqual([]);
    for (const b of r.buttons) expect(b.height).toBeGreaterThanOrEqual(44);
  }, 30_000);

  it('shows what the dev channels sent on /dev/outbox, with a working acknowledgement link', async () => {
    const { incidentId, rows } = await alerted();
    const channel = createDevOutboxChannel(t.db.pool);
    for (const r of rows) {
      await channel.send({ deliveryId: r.id, channel: r.channel, to: r.address, subject: r.subject, body: r.body, html: null, kind: 'alert', incidentId }, AbortSignal.timeout(5000));
    }
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    contexts.push(context);
    const page = await context.newPage();
    await page.goto(`${base}/dev/outbox`);
    expect(await page.locator('h1').textContent()).toBe('Dev outbox');
    expect(await page.locator('tbody tr').count()).toBeGreaterThanOrEqual(rows.length);
    expect(await page.locator('script').count()).toBe(0);
    await page.screenshot({ path: path.join(ARTIFACTS, 'dev-outbox.png'), fullPage: true });
    const href = await page.locator('a[href*="/a/"]').first().getAttribute('href');
    // Links carry PUBLIC_BASE_URL; follow the same path on this server.
    await page.goto(`${base}${new URL(href!).pathname}`);
    await expect(page.getByRole('button', { name: "I'm on it" }).count()).resolves.toBe(1);
  }, 30_000);
});
