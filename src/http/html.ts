import type { FastifyReply } from 'fastify';

/** Small, script-free HTML pages for people without an account (contacts): readable on a phone. */
export function escapeHtml(value: string): string {
  return value.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);
}

const STYLE = `
  *{box-sizing:border-box}
  body{margin:0;font:18px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1b1b1f;background:#f6f6f8}
  main{max-width:34rem;margin:0 auto;padding:1.25rem}
  h1{font-size:1.5rem;line-height:1.25;margin:.5rem 0 1rem}
  p{margin:.75rem 0}
  .card{background:#fff;border-radius:12px;padding:1.25rem;box-shadow:0 1px 3px rgba(0,0,0,.08)}
  form{margin:1rem 0}
  button{display:block;width:100%;min-height:48px;font-size:1.125rem;font-weight:600;border:0;border-radius:10px;padding:.75rem 1rem;cursor:pointer}
  .primary{background:#0a7d3b;color:#fff}
  .secondary{background:#e8e8ee;color:#1b1b1f}
  .danger{background:#b3261e;color:#fff}
  .muted{color:#5b5b66;font-size:1rem}
  table{border-collapse:collapse;width:100%;font-size:1rem}
  td,th{border-bottom:1px solid #ddd;padding:.5rem;text-align:left;vertical-align:top;word-break:break-word}
`;

export function page(title: string, body: string): string {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex">
<title>${escapeHtml(title)}</title>
<style>${STYLE}</style>
</head>
<body><main>${body}</main></body>
</html>`;
}

/** Pages go to clients that ask for HTML (browsers do); everyone else gets JSON and the error envelope. */
export function wantsHtml(accept: string | undefined): boolean {
  return accept !== undefined && /text\/html/i.test(accept);
}

export function sendHtml(reply: FastifyReply, status: number, html: string): FastifyReply {
  return reply.code(status).type('text/html; charset=utf-8').send(html);
}

/** For routes whose default is a page (/dev/outbox): JSON only when asked for and HTML is not. */
export function wantsJson(accept: string | undefined): boolean {
  return accept !== undefined && /application\/json/i.test(accept) && !wantsHtml(accept);
}
