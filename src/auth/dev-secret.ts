import { randomBytes } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { Config } from '../config.js';
import type { AuthKeys } from './jwt.js';

/**
 * Outside production, with no key configured, the service makes an HS256 secret in its data folder
 * so a newcomer can call the API at once (`npm run token`). Production refuses to start instead
 * (config.ts).
 */
export const DEV_ISSUER = 'pruuf-dev';
export const DEMO_MEMBER_ID = '00000000-0000-4000-8000-000000000001';

export function devSecretPath(dataDir: string, name = 'dev-jwt-secret'): string {
  return path.resolve(dataDir, name);
}

export async function loadOrCreateDevSecret(dataDir: string, name = 'dev-jwt-secret'): Promise<string> {
  const file = devSecretPath(dataDir, name);
  try {
    const existing = (await readFile(file, 'utf8')).trim();
    if (existing.length >= 32) return existing;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  await mkdir(path.dirname(file), { recursive: true });
  const secret = randomBytes(32).toString('base64url');
  // 'wx' so two processes starting together keep the first one's secret.
  try {
    await writeFile(file, `${secret}\n`, { mode: 0o600, flag: 'wx' });
    return secret;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return (await readFile(file, 'utf8')).trim();
    throw err;
  }
}

export function hasConfiguredAuthKey(config: Config): boolean {
  return config.SUPABASE_JWT_SECRET !== undefined || config.SUPABASE_JWKS_URL !== undefined || config.SUPABASE_JWKS !== undefined;
}

export async function resolveAuthKeys(config: Config): Promise<AuthKeys> {
  if (hasConfiguredAuthKey(config)) {
    return {
      hsSecret: config.SUPABASE_JWT_SECRET,
      jwksUrl: config.SUPABASE_JWKS_URL,
      jwks: config.SUPABASE_JWKS,
      issuer: config.SUPABASE_JWT_ISSUER,
    };
  }
  if (config.NODE_ENV === 'production') throw new Error('production needs a JWT verification key');
  return { hsSecret: await loadOrCreateDevSecret(config.DATA_DIR), issuer: config.SUPABASE_JWT_ISSUER };
}

/** The key that signs contact links (/a, /c, /i). Production must configure it (config.ts). */
export async function resolveLinkSecret(config: Config): Promise<string> {
  if (config.LINK_SIGNING_SECRET !== undefined) return config.LINK_SIGNING_SECRET;
  if (config.NODE_ENV === 'production') throw new Error('production needs LINK_SIGNING_SECRET');
  return loadOrCreateDevSecret(config.DATA_DIR, 'dev-link-secret');
}
