// Bearer tokens for k6 runs: either tokens you were issued (TOKENS_FILE, one per line), or
// HS256 tokens signed here with the deployment's SUPABASE_JWT_SECRET (JWT_SECRET) for
// synthetic members. Synthetic members carry an @load.test email (a reserved domain no real
// user has), which is how to find and delete them afterwards.
import { hmac } from 'k6/crypto';
import { SharedArray } from 'k6/data';
import { b64encode } from 'k6/encoding';
import { benchMemberId } from '../../bench/lib/scenarios.ts';

const HEADER = b64encode(JSON.stringify({ alg: 'HS256', typ: 'JWT' }), 'rawurl');

/** An access token shaped as Supabase Auth issues them, for synthetic member i. */
export function syntheticToken(secret: string, i: number, ttlSeconds = 3600): string {
  const now = Math.floor(Date.now() / 1000);
  const claims = { sub: benchMemberId(i), aud: 'authenticated', role: 'authenticated', email: `k6-${i}@load.test`, iat: now, exp: now + ttlSeconds };
  const unsigned = `${HEADER}.${b64encode(JSON.stringify(claims), 'rawurl')}`;
  return `${unsigned}.${hmac('sha256', secret, unsigned, 'base64rawurl')}`;
}

export type TokenSource = (i: number) => string;

/**
 * Init context only (it may read a file). TOKENS_FILE wins over JWT_SECRET; with neither,
 * the script stops with what to set.
 */
export function tokenSource(members: number): TokenSource {
  const file = __ENV.TOKENS_FILE;
  if (file !== undefined && file !== '') {
    const tokens = new SharedArray('tokens', () => open(file).split('\n').map((l) => l.trim()).filter((l) => l !== ''));
    if (tokens.length === 0) throw new Error(`TOKENS_FILE ${file} holds no tokens`);
    return (i) => tokens[i % tokens.length]!;
  }
  const secret = __ENV.JWT_SECRET;
  if (secret === undefined || secret === '') {
    throw new Error('set TOKENS_FILE (bearer tokens, one per line) or JWT_SECRET (the deployment\'s SUPABASE_JWT_SECRET, for synthetic members)');
  }
  return (i) => syntheticToken(secret, i % members);
}
