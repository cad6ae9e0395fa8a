import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import type pg from 'pg';
import { z } from 'zod';
import { listDevOutbox, type DevOutboxRow } from '../channels/dev-outbox/index.js';
import { escapeHtml, page, sendHtml, wantsJson } from '../http/html.js';
import { ErrorEnvelopeSchema, iso, Timestamp } from '../http/schemas.js';

/** GET /dev/outbox: what the dev channels "sent", for a person in a browser (or a script). */
export type DevOutboxDeps = { pool: pg.Pool };

const Query = z.object({ limit: z.coerce.number().int().min(1).max(500).default(100) });

const DevOutboxMessage = z
  .object({
    id: z.uuid(),
    channel: z.enum(['push', 'sms', 'email', 'voice']).describe('voice: a phone call, its body what the call says'),
    to: z.string(),
    subject: z.string().nullable(),
    body: z.string(),
    kind: z.string(),
    incident_id: z.uuid().nullable(),
    created_at: Timestamp,
  })
  .meta({ id: 'DevOutboxMessage' });
const DevOutboxList = z.object({ data: z.array(DevOutboxMessage) }).meta({ id: 'DevOutboxList' });

const URL_IN_TEXT = /(https?:\/\/[^\s<>"']+)/g;

/** Escaped text with its http(s) links clickable: acknowledgement and invitation links are the point. */
function linkify(text: string): string {
  return text
    .split(URL_IN_TEXT)
    .map((part, i) => (i % 2 === 1 ? `<a href="${escapeHtml(part)}" rel="noreferrer">${escapeHtml(part)}</a>` : escapeHtml(part)))
    .join('');
}

function renderPage(rows: DevOutboxRow[]): string {
  const table = rows.length === 0
    ? '<p class="muted">Nothing sent yet.</p>'
    : `<table>
<thead><tr><th>When (UTC)</th><th>Channel</th><th>Kind</th><th>To</th><th>Message</th></tr></thead>
<tbody>
${rows.map((r) => `<tr>
<td>${escapeHtml(iso(r.created_at).replace('T', ' ').slice(0, 19))}</td>
<td>${escapeHtml(r.channel)}</td>
<td>${escapeHtml(r.kind)}${r.incident_id === null ? '' : `<br><span class="muted">incident ${escapeHtml(r.incident_id)}</span>`}</td>
<td>${escapeHtml(r.to)}</td>
<td>${r.subject === null ? '' : `<strong>${escapeHtml(r.subject)}</strong><br>`}<div style="white-space:pre-wrap">${linkify(r.body)}</div></td>
</tr>`).join('\n')}
</tbody>
</table>`;
  return page('Dev outbox', `<h1>Dev outbox</h1>
<p class="muted">Messages for channels with no real provider configured, newest first. Nothing here left this machine.</p>
${table}`).replace('<main>', '<main style="max-width:72rem">');
}

export function devOutboxRoutes(app: FastifyInstance, deps: DevOutboxDeps): void {
  const r = app.withTypeProvider<ZodTypeProvider>();
  r.get('/dev/outbox', {
    schema: {
      tags: ['dev'],
      summary: 'Development only: messages the dev channels "sent" (HTML; JSON with Accept: application/json)',
      querystring: Query,
      produces: ['text/html', 'application/json'],
      response: { 200: DevOutboxList, 400: ErrorEnvelopeSchema, 429: ErrorEnvelopeSchema },
    },
  }, async (req, reply) => {
    const rows = await listDevOutbox(deps.pool, req.query.limit);
    if (!wantsJson(req.headers.accept)) return sendHtml(reply, 200, renderPage(rows));
    return {
      data: rows.map((m) => ({
        id: m.id, channel: m.channel, to: m.to, subject: m.subject, body: m.body, kind: m.kind,
        incident_id: m.incident_id, created_at: iso(m.created_at),
      })),
    };
  });
}
