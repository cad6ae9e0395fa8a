import { describe, expect, it } from '@jest/globals';
import { ConfigError, loadConfig } from '../src/config.js';

function problems(env: Record<string, string>): string[] {
  try {
    loadConfig(env);
  } catch (err) {
    if (err instanceof ConfigError) return err.problems;
    throw err;
  }
  return [];
}

describe('configuration', () => {
  it('runs with no configuration at all on the embedded defaults', () => {
    const c = loadConfig({});
    expect(c).toMatchObject({ PORT: 3000, NODE_ENV: 'development', DATA_DIR: '.pruuf', queueBackend: 'postgres', publicBaseUrl: 'http://localhost:3000', corsOrigins: false });
    expect(c.DATABASE_URL).toBeUndefined();
    expect(Object.isFrozen(c)).toBe(true);
  });

  it('uses Redis for the queue when REDIS_URL is set', () => {
    expect(loadConfig({ REDIS_URL: 'redis://127.0.0.1:6379' }).queueBackend).toBe('redis');
  });

  it.each([
    [{ PORT: 'abc' }, /^PORT: .*\(got "abc"\)/],
    [{ PORT: '70000' }, /^PORT: /],
    [{ LOG_LEVEL: 'loud' }, /^LOG_LEVEL: /],
    [{ DATABASE_URL: 'not a url' }, /^DATABASE_URL: .*\(value hidden\)/],
    [{ SUPABASE_JWKS: '{"nokeys": true}' }, /^SUPABASE_JWKS: must be a JWKS JSON document/],
    [{ SUPABASE_JWT_SECRET: 'short' }, /^SUPABASE_JWT_SECRET: must be at least 32 characters/],
    [{ SUPABASE_SERVICE_ROLE_KEY: 'k' }, /^SUPABASE_URL: is required when SUPABASE_SERVICE_ROLE_KEY is set/],
  ])('names the variable that is wrong: %o', (env, message) => {
    const found = problems(env as Record<string, string>);
    expect(found.some((p) => message.test(p))).toBe(true);
  });

  it('never prints a secret value in its message', () => {
    const found = problems({ SUPABASE_JWT_SECRET: 'tooshort-secret', DATABASE_URL: 'postgres//user:pw@host' });
    expect(found.join('\n')).not.toContain('tooshort-secret');
    expect(found.join('\n')).not.toContain('pw@host');
  });

  it('refuses production without a JWT key, a database or a public URL', () => {
    const found = problems({ NODE_ENV: 'production' });
    expect(found.map((p) => p.split(':')[0]).sort()).toEqual(['DATABASE_URL', 'LINK_SIGNING_SECRET', 'PUBLIC_BASE_URL', 'SUPABASE_JWT_SECRET']);
  });

  it('accepts production with its required settings', () => {
    const c = loadConfig({
      NODE_ENV: 'production',
      DATABASE_URL: 'postgres://u@db/pruuf',
      PUBLIC_BASE_URL: 'https://pruuf.example/',
      SUPABASE_JWKS_URL: 'https://proj.supabase.co/auth/v1/.well-known/jwks.json',
      CORS_ORIGINS: 'https://a.example, https://b.example',
      LINK_SIGNING_SECRET: 'a-link-signing-secret-of-32-chars-or-more',
    });
    expect(c.publicBaseUrl).toBe('https://pruuf.example');
    expect(c.corsOrigins).toEqual(['https://a.example', 'https://b.example']);
  });

  it('treats empty values as unset', () => {
    expect(loadConfig({ REDIS_URL: '', DATABASE_URL: '  ' }).queueBackend).toBe('postgres');
  });
});
