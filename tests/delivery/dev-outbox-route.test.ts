import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { buildApp } from '../../src/app.js';
import { createTokenVerifier } from '../../src/auth/jwt.js';
import { createDevOutboxChannel } from '../../src/channels/dev-outbox/index.js';
import { loadMigrations } from '../../src/db/migrate.js';
import { insertDeliveries, type NewDelivery } from '../../src/delivery/outbox.js';
import { errorOf, startTestApp, type TestApp } from '../helpers/app.js';
import { TEST_JWT_SECRET, TEST_LINK_SECRET } from '../helpers/tokens.js';

const INCIDENT = '11111111-1111-4111-8111-111111111111';

describe('GET /dev/outbox', () => {
  let t: TestApp;
  let older: string;
  let newer: string;

  beforeAll(async () => {
    t = await startTestApp();
    const rows: NewDelivery[] = [
      { memberId: null, contactId: null, kind: 'invitation', channel: 'sms', address: '+15551230000', body: 'Confirm: http://pruuf.test/i/abc' },
      {
        memberId: null, contactId: null, kind: 'alert', channel: 'email', address: 'bob@example.test', incidentId: INCIDENT,
        subject: 'Ann <needs> you', body: 'Hello <script>alert("x")</script> & goodbye. Ack: http://pruuf.test/a/tok"onclick="x',
      },
    ];
    const [smsId, emailId] = await insertDeliveries(t.db.pool, rows);
    const channel = createDevOutboxChannel(t.db.pool);
    const send = (id: string, r: NewDelivery) => channel.send({
      deliveryId: id, channel: r.channel, to: r.address, subject: r.subject ?? null, body: r.body ?? '', html: null, kind: r.kind, incidentId: r.incidentId ?? null,
    }, AbortSignal.timeout(5000));
    const first = await send(smsId!, rows[0]!);
    const second = await send(emailId!, rows[1]!);
    // A retried send of the same delivery returns the same row and adds nothing.
    expect(await send(emailId!, rows[1]!)).toEqual(second);
    expect(first.provider).toBe('dev-outbox');
    older = first.providerMessageId;
    newer = second.providerMessageId;
    await t.db.pool.query(`update dev_outbox set created_at = '2026-11-23T10:00:00Z' where id = $1`, [older]);
    await t.db.pool.query(`update dev_outbox set created_at = '2026-11-23T10:05:00Z' where id = $1`, [newer]);
  });
  afterAll(() => t.close());

  it('answers JSON newest first with exactly the documented fields', async () => {
    const res = await t.app.inject({ method: 'GET', url: '/dev/outbox', headers: { accept: 'application/json' } });
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toMatch(/^application\/json/);
    expect(res.json()).toEqual({
      data: [
        {
          id: newer, channel: 'email', to: 'bob@example.test', subject: 'Ann <needs> you',
          body: 'Hello <script>alert("x")</script> & goodbye. Ack: http://pruuf.test/a/tok"onclick="x',
          kind: 'alert', incident_id: INCIDENT, created_at: '2026-11-23T10:05:00.000Z',
        },
        {
          id: older, channel: 'sms', to: '+15551230000', subject: null, body: 'Confirm: http://pruuf.test/i/abc',
          kind: 'invitation', incident_id: null, created_at: '2026-11-23T10:00:00.000Z',
        },
      ],
    });
  });

  it('honours ?limit=', async () => {
    const res = await t.app.inject({ method: 'GET', url: '/dev/outbox?limit=1', headers: { accept: 'application/json' } });
    expect(res.json().data.map((m: { id: string }) => m.id)).toEqual([newer]);
  });

  it.each(['0', '501', 'ten', '1.5'])('rejects limit=%s with the error envelope', async (limit) => {
    const res = await t.app.inject({ method: 'GET', url: `/dev/outbox?limit=${limit}`, headers: { accept: 'application/json' } });
    expect(res.statusCode).toBe(400);
    expect(errorOf(res.body).code).toBe('VALIDATION_ERROR');
  });

  it('serves a script-free HTML page by default, with every message escaped and its links clickable', async () => {
    const res = await t.app.inject({ method: 'GET', url: '/dev/outbox' });
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toBe('text/html; charset=utf-8');
    const html = res.body;
    expect(html).not.toMatch(/<script/i);
    expect(html).not.toContain('onclick="x');
    expect(html).toContain('Hello &lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; goodbye.');
    expect(html).toContain('Ann &lt;needs&gt; you');
    expect(html).toContain('<a href="http://pruuf.test/i/abc" rel="noreferrer">http://pruuf.test/i/abc</a>');
    // A quote ends the link: nothing in a body can break out of the attribute.
    expect(html).toContain('<a href="http://pruuf.test/a/tok" rel="noreferrer">http://pruuf.test/a/tok</a>&quot;onclick=&quot;x');
    expect(html.indexOf('bob@example.test')).toBeLessThan(html.indexOf('+15551230000'));
  });

  it('is tagged as a dev tool in the OpenAPI document', async () => {
    const res = await t.app.inject({ method: 'GET', url: '/openapi.json' });
    expect(res.json().paths['/dev/outbox'].get.tags).toEqual(['dev']);
  });

  it('is not served when every channel has a real provider', async () => {
    const app = await buildApp({
      config: t.config, pool: t.db.pool, queues: t.queues, migrations: await loadMigrations(),
      verifyToken: createTokenVerifier({ hsSecret: TEST_JWT_SECRET }), linkSecret: TEST_LINK_SECRET, devOutbox: false,
    });
    try {
      const res = await app.inject({ method: 'GET', url: '/dev/outbox', headers: { accept: 'application/json' } });
      expect(res.statusCode).toBe(404);
    } finally {
      await app.close();
    }
  });
});
