// `npm run token [member-uuid] [email]`: a bearer token for the development secret, so a newcomer can call the API.
import { SignJWT } from 'jose';
import { DEMO_MEMBER_ID, hasConfiguredAuthKey, loadOrCreateDevSecret } from '../auth/dev-secret.js';
import { loadConfig } from '../config.js';

const config = loadConfig();
if (config.NODE_ENV === 'production' || (hasConfiguredAuthKey(config) && config.SUPABASE_JWT_SECRET === undefined)) {
  process.stderr.write('npm run token signs with the development or HS256 secret only; use Supabase Auth to sign in.\n');
  process.exit(1);
}
const secret = config.SUPABASE_JWT_SECRET ?? (await loadOrCreateDevSecret(config.DATA_DIR));
const sub = process.argv[2] ?? DEMO_MEMBER_ID;
const email = process.argv[3] ?? 'demo@pruuf.local';
const builder = new SignJWT({ email, role: 'authenticated' })
  .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
  .setSubject(sub)
  .setAudience('authenticated')
  .setIssuedAt()
  .setExpirationTime('12h');
if (config.SUPABASE_JWT_ISSUER !== undefined) builder.setIssuer(config.SUPABASE_JWT_ISSUER);
process.stdout.write(`${await builder.sign(new TextEncoder().encode(secret))}\n`);
