import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from '@jest/globals';
import pg from 'pg';
import { fcmChannelFromConfig, type FcmChannel } from '../../src/channels/push-fcm/index.js';
import { ConfigError } from '../../src/config.js';
import { createLogger } from '../../src/observability/logger.js';
import { TEST_PG_ADMIN_URL } from '../helpers/env.js';

// Building a channel touches neither the database nor the network: this pool never connects.
const pool = new pg.Pool({ connectionString: TEST_PG_ADMIN_URL });
afterAll(() => pool.end());

describe('the FCM channel from configuration', () => {
  const quiet = createLogger('silent');
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const account = {
    type: 'service_account', project_id: 'from-account', client_email: 'pruuf@from-account.iam.gserviceaccount.com',
    private_key: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
  };
  const none = { FIREBASE_SERVICE_ACCOUNT_JSON: undefined, FIREBASE_SERVICE_ACCOUNT_PATH: undefined, FIREBASE_PROJECT_ID: undefined };
  const opened: FcmChannel[] = [];
  afterAll(async () => {
    for (const c of opened) await c.close();
  });
  const open = (config: Parameters<typeof fcmChannelFromConfig>[0]) => {
    const c = fcmChannelFromConfig(config, pool, quiet);
    if (c !== undefined) opened.push(c);
    return c;
  };

  it('is not configured without a service account', () => {
    expect(open(none)).toBeUndefined();
    expect(open({ ...none, FIREBASE_PROJECT_ID: 'p' })).toBeUndefined();
  });

  it('uses the service account JSON and its project, or FIREBASE_PROJECT_ID when set', () => {
    expect(open({ ...none, FIREBASE_SERVICE_ACCOUNT_JSON: JSON.stringify(account) })!.app.options.projectId).toBe('from-account');
    expect(open({ ...none, FIREBASE_SERVICE_ACCOUNT_JSON: JSON.stringify(account), FIREBASE_PROJECT_ID: 'override' })!.app.options.projectId).toBe('override');
  });

  it('reads the service account from a file', () => {
    const file = path.join(mkdtempSync(path.join(tmpdir(), 'pruuf-fcm-')), 'account.json');
    writeFileSync(file, JSON.stringify(account));
    const c = open({ ...none, FIREBASE_SERVICE_ACCOUNT_PATH: file });
    expect(c?.provider).toBe('fcm');
    expect(c!.app.options.projectId).toBe('from-account');
  });

  it('names the variable, never the key, when the account cannot be used', () => {
    const missing = () => open({ ...none, FIREBASE_SERVICE_ACCOUNT_PATH: '/nonexistent/account.json' });
    expect(missing).toThrow(ConfigError);
    expect(missing).toThrow(/FIREBASE_SERVICE_ACCOUNT_PATH/);
    const { project_id: _dropped, ...noProject } = account;
    expect(() => open({ ...none, FIREBASE_SERVICE_ACCOUNT_JSON: JSON.stringify(noProject) })).toThrow(/FIREBASE_PROJECT_ID/);
    const badKey = () => open({ ...none, FIREBASE_SERVICE_ACCOUNT_JSON: JSON.stringify({ ...account, private_key: 'not a key' }) });
    expect(badKey).toThrow(/FIREBASE_SERVICE_ACCOUNT_JSON/);
    expect(badKey).not.toThrow(/not a key/);
    const truncated = () => open({ ...none, FIREBASE_SERVICE_ACCOUNT_JSON: '{"private_key": "MIIEv-secret-part' });
    expect(truncated).toThrow(/FIREBASE_SERVICE_ACCOUNT_JSON/);
    expect(truncated).not.toThrow(/secret-part/);
  });
});
