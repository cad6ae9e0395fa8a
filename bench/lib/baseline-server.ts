// The bench:api baseline: a bare Fastify route that makes the durable writes of a check-in
// (member row, check-in row with its answer, the member's schedules advanced) in ONE SQL
// statement, with no auth, no validation, no rate limit, no logging. What the service adds on
// top of this is what the ratio service/baseline measures.
//   PORT=… DATABASE_URL=… DATABASE_POOL_MAX=10 node --import tsx bench/lib/baseline-server.ts
import Fastify from 'fastify';
import pg from 'pg';

const port = Number(process.env.PORT ?? 0);
const pool = new pg.Pool({ connectionString: process.env.DATABASE_URL, max: Number(process.env.DATABASE_POOL_MAX ?? 10), application_name: 'pruuf-baseline' });

const CHECK_IN = `with m as (
    insert into members (id) values ($1) on conflict (id) do nothing
  ),
  adv as (
    update schedules s set
      window_start_at = s.next_deadline_at,
      next_deadline_at = s.following_deadline_at,
      alert_at = s.following_deadline_at + make_interval(mins => s.grace_minutes),
      following_deadline_at = null,
      updated_at = $2
    where s.member_id = $1 and s.active and s.window_start_at < $2 and s.following_deadline_at is not null
    returning s.next_deadline_at
  ),
  ins as (
    insert into check_ins (member_id, checked_in_at, source, note, latitude, longitude, accuracy_m, idempotency_key, next_deadline_at)
    values ($1, $2, 'app', $3, $4, $5, $6, $7, coalesce((select min(next_deadline_at) from adv),
      (select min(next_deadline_at) from schedules where member_id = $1 and active and next_deadline_at > $2)))
    on conflict (member_id, idempotency_key) where idempotency_key is not null do nothing
    returning id, checked_in_at, next_deadline_at
  )
  select id, checked_in_at, next_deadline_at from ins`;

type Body = { note?: string; location?: { lat: number; lng: number; accuracy_m?: number } } | null;

const app = Fastify({ logger: false });
app.post('/v1/check-ins', async (req, reply) => {
  const body = (req.body ?? {}) as NonNullable<Body>;
  const key = req.headers['idempotency-key'];
  const { rows } = await pool.query<{ id: string; checked_in_at: Date; next_deadline_at: Date | null }>(CHECK_IN, [
    req.headers['x-member-id'], new Date(), body.note ?? null, body.location?.lat ?? null, body.location?.lng ?? null,
    body.location?.accuracy_m ?? null, typeof key === 'string' ? key : null,
  ]);
  const r = rows[0];
  return reply.code(201).send({
    id: r?.id, checked_in_at: r?.checked_in_at.toISOString(), next_deadline_at: r?.next_deadline_at?.toISOString() ?? null, resolved_incident_ids: [],
  });
});
app.get('/healthz', async () => ({ status: 'ok' }));

const shutdown = async () => {
  await app.close();
  await pool.end();
  process.exit(0);
};
process.on('SIGTERM', () => void shutdown());
process.on('SIGINT', () => void shutdown());

await app.listen({ host: '127.0.0.1', port });
