// Jest global setup: check PostgreSQL and Redis, build the migrated template database once.
import { execFileSync } from 'node:child_process';
import path from 'node:path';

export default function globalSetup() {
  if (process.env.PRUUF_TEST_NO_DB === '1') return;
  const tsx = path.resolve('node_modules/.bin/tsx');
  const out = execFileSync(tsx, ['tests/helpers/build-template.ts'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
  const line = out.trim().split('\n').pop() ?? '';
  const [name, value] = line.split('=');
  if (name !== 'PRUUF_TEST_TEMPLATE_DB' || !value) throw new Error(`template build printed: ${out}`);
  process.env[name] = value;
}
