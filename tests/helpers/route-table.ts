import type { FastifyInstance } from 'fastify';

/** Every route the app serves, read from Fastify's own router (hidden routes included). */
export type RouteEntry = { method: string; url: string };

export function routeTable(app: FastifyInstance): RouteEntry[] {
  const out: RouteEntry[] = [];
  const stack: string[] = [];
  for (const line of app.printRoutes({ commonPrefix: false }).split('\n')) {
    const m = /^((?:│ {3}| {4})*)(?:├── |└── )(\S+)(?: \(([^)]*)\))?/u.exec(line);
    if (m === null) continue;
    const depth = m[1]!.length / 4;
    const segment = m[2]!;
    stack.length = depth;
    const parent = stack[depth - 1] ?? '';
    const url = segment === '*' ? `${parent}/*`.replace(/^\/\*$/, '*') : `${parent}${segment}`;
    stack[depth] = url;
    for (const method of (m[3] ?? '').split(',').map((s) => s.trim()).filter(Boolean)) out.push({ method, url });
  }
  return out;
}
