import pg from 'pg';
import { readFileSync } from 'node:fs';
const c = new pg.Client({ connectionString: 'postgres://postgres@127.0.0.1:5432/idxcheck' });
await c.connect();
const pid = (await c.query('select pg_backend_pid() as p')).rows[0].p;
const cpu = () => { const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' '); return (Number(f[11]) + Number(f[12])) * 10; };
const text = `with input as (select * from json_to_recordset($1::json) as r(id uuid, provider text, provider_message_id text, sent_at timestamptz, attempted_at timestamptz, duration_ms int, receipt_check_at timestamptz)), marked as (update deliveries d set status = 'sent', provider = i.provider, provider_message_id = i.provider_message_id, sent_at = i.sent_at, updated_at = i.sent_at, attempts = d.attempts + 1, last_error = null, error_class = null, receipt_check_at = i.receipt_check_at from input i where d.id = i.id and d.status = 'pending' returning d.id) select id from marked`;
const recs = JSON.stringify(Array.from({ length: 10 }, (_, i) => ({ id: `00000000-0000-0000-0000-00000000000${i}`, provider: 'x', provider_message_id: 'm', sent_at: new Date(), attempted_at: new Date(), duration_ms: 3, receipt_check_at: null })));
const N = 3000;
for (const mode of ['unnamed', 'named', 'unnamed', 'named']) {
  const c0 = cpu(); const t0 = performance.now();
  for (let i = 0; i < N; i++) await c.query(mode === 'named' ? { name: 'ms', text, values: [recs] } : { text, values: [recs] });
  console.log(mode, 'backend cpu µs/stmt', ((cpu() - c0) * 1000 / N).toFixed(0), 'wall µs/stmt', ((performance.now() - t0) * 1000 / N).toFixed(0));
}
await c.end();
