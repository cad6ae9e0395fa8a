import { createCipheriv, createDecipheriv, createHmac, randomBytes, randomInt, randomUUID, timingSafeEqual } from 'node:crypto';
import type pg from 'pg';
import type { Principal } from '../auth/jwt.js';
import { setAuditActor } from '../audit/actor.js';
import { withTransaction, type Queryable } from '../db/pool.js';
import { enqueueDeliveries, insertDeliveries } from '../delivery/outbox.js';
import { AppError } from '../http/errors.js';
import { maskAddress, type Logger } from '../observability/logger.js';
import type { QueueSystem } from '../queue/index.js';
import { ensureMember, MEMBER_COLUMNS, type MemberRow } from './repo.js';

/**
 * Phone verification (issue 16 #4, "phone squatting"). A member's phone counts — SMS reminders,
 * check-in by SMS reply, uniqueness across members — only once its holder typed the six-digit code
 * we texted to it. Until then it is a claim that blocks nobody.
 *
 * The code is never stored or logged in clear: the row keeps an HMAC of it, keyed by a secret the
 * database does not hold (a copy of the table cannot be brute-forced over a million codes), and the
 * SMS's outbox row carries it sealed (AES-256-GCM), opened by the worker as it sends. Members read
 * their own deliveries under RLS, and must not read a code sent to a number they do not hold.
 *
 * When the number is already verified by another member, the newer proof wins: holding the SIM
 * is the proof, and numbers change hands (carriers recycle them). The other member's phone stays on
 * their profile, unverified (no SMS tells them anything; their app shows phone_verified false and
 * the audit trail a system change). Refusing instead would lock the new holder out for good and
 * tell them the number is registered, which is the very leak this fixes.
 */

export const CODE_TTL_MS = 10 * 60_000;
export const MAX_ATTEMPTS = 5;
/** One code per minute and five per hour, per member and per number. */
export const RESEND_GAP_MS = 60_000;
export const MAX_CODES_PER_HOUR = 5;
const HOUR_MS = 3_600_000;

export const verificationSms = (code: string): string =>
  `Pruuf: your code is ${code}, it expires in 10 minutes. If you did not ask for it, ignore this.`;

const key = (secret: string, purpose: string): Buffer => createHmac('sha256', secret).update(`pruuf:phone-code:${purpose}:v1`).digest();

function codeHash(secret: string, id: string, phone: string, code: string): Buffer {
  return createHmac('sha256', key(secret, 'hash')).update(`${id}\n${phone}\n${code}`).digest();
}

/** The code sealed for the outbox row; the verification id and the number are its associated data. */
export function sealCode(secret: string, id: string, phone: string, code: string): string {
  const iv = randomBytes(12);
  const cipher = createCipheriv('aes-256-gcm', key(secret, 'seal'), iv);
  cipher.setAAD(Buffer.from(`${id}\n${phone}`));
  const sealed = Buffer.concat([cipher.update(code, 'utf8'), cipher.final()]);
  return Buffer.concat([iv, sealed, cipher.getAuthTag()]).toString('base64url');
}

/** The SMS text of a verification delivery (the worker, at send time). Throws when it cannot be opened. */
export function verificationText(secret: string | undefined, row: { address: string; render: unknown }): string {
  if (secret === undefined) throw new Error('this worker has no LINK_SIGNING_SECRET to open verification codes with');
  const r = row.render as { verification_id?: unknown; sealed?: unknown } | null;
  if (typeof r?.verification_id !== 'string' || typeof r.sealed !== 'string') throw new Error('its render data is not a sealed code');
  const raw = Buffer.from(r.sealed, 'base64url');
  if (raw.length < 12 + 16 + 1) throw new Error('its sealed code is too short');
  const decipher = createDecipheriv('aes-256-gcm', key(secret, 'seal'), raw.subarray(0, 12));
  decipher.setAAD(Buffer.from(`${r.verification_id}\n${row.address}`));
  decipher.setAuthTag(raw.subarray(raw.length - 16));
  const code = Buffer.concat([decipher.update(raw.subarray(12, raw.length - 16)), decipher.final()]).toString('utf8');
  if (!/^\d{6}$/.test(code)) throw new Error('its sealed code is not a code');
  return verificationSms(code);
}

export type PhoneVerificationDeps = { pool: pg.Pool; queues: QueueSystem; log: Logger; linkSecret: string };

const seconds = (ms: number) => Math.max(1, Math.ceil(ms / 1000));

function tooMany(message: string, code: string, retryAfterMs: number): AppError {
  const s = seconds(retryAfterMs);
  return new AppError(429, code, message, { retry_after_seconds: s }, { 'retry-after': String(s) });
}

/** Serialises what concerns one member, or one number, across API replicas (transaction-scoped). */
async function lock(tx: Queryable, what: string): Promise<void> {
  await tx.query('select pg_advisory_xact_lock(hashtextextended($1, 7301117100))', [`phone-verification:${what}`]);
}

/** When the next code may be sent for this scope (member or number), or null if now. */
async function nextCodeAt(tx: Queryable, column: 'member_id' | 'phone', value: string, now: Date): Promise<number | null> {
  const { rows } = await tx.query<{ created_at: Date }>(
    `select created_at from phone_verifications where ${column} = $1 and created_at > $2
      order by created_at desc limit ${MAX_CODES_PER_HOUR}`,
    [value, new Date(now.getTime() - HOUR_MS)],
  );
  const gates: number[] = [];
  if (rows[0] !== undefined) gates.push(rows[0].created_at.getTime() + RESEND_GAP_MS);
  if (rows.length >= MAX_CODES_PER_HOUR) gates.push(rows[MAX_CODES_PER_HOUR - 1]!.created_at.getTime() + HOUR_MS);
  const at = Math.max(0, ...gates);
  return at > now.getTime() ? at : null;
}

/** Both limits: the member's and the number's (so many accounts cannot flood one phone). */
async function resendAt(tx: Queryable, memberId: string, phone: string, now: Date): Promise<number | null> {
  const gates = [await nextCodeAt(tx, 'member_id', memberId, now), await nextCodeAt(tx, 'phone', phone, now)].filter((g): g is number => g !== null);
  return gates.length === 0 ? null : Math.max(...gates);
}

export type CodeSent = { phone: string; expires_at: Date; resend_at: Date };

/**
 * Texts a new code to `phone` for the caller. The same answer whoever else uses the number: it
 * reveals nothing about other members. A newer code replaces the member's older ones.
 */
export async function sendPhoneCode(deps: PhoneVerificationDeps, who: Principal, phone: string, now: Date): Promise<CodeSent> {
  const id = randomUUID();
  const code = String(randomInt(0, 1_000_000)).padStart(6, '0');
  let deliveryIds: string[] = [];
  const sent = await withTransaction(deps.pool, async (tx) => {
    const member = await ensureMember(tx, who);
    if (member.phone === phone && member.phone_verified_at !== null) {
      throw new AppError(409, 'PHONE_ALREADY_VERIFIED', 'this number is already verified on your account');
    }
    await lock(tx, `member:${who.id}`);
    await lock(tx, `phone:${phone}`);
    const gate = await resendAt(tx, who.id, phone, now);
    if (gate !== null) {
      throw tooMany(`too many codes asked for; ask again in ${seconds(gate - now.getTime())} s`, 'RATE_LIMITED', gate - now.getTime());
    }
    await tx.query(
      `update phone_verifications set state = 'superseded', finished_at = $2 where member_id = $1 and state = 'pending'`,
      [who.id, now],
    );
    const expiresAt = new Date(now.getTime() + CODE_TTL_MS);
    await tx.query(
      `insert into phone_verifications (id, member_id, phone, code_hash, created_at, expires_at) values ($1, $2, $3, $4, $5, $6)`,
      [id, who.id, phone, codeHash(deps.linkSecret, id, phone, code), now, expiresAt],
    );
    deliveryIds = await insertDeliveries(tx, [{
      memberId: who.id, contactId: null, kind: 'verification', channel: 'sms', address: phone, subject: null, body: null,
      render: { verification_id: id, sealed: sealCode(deps.linkSecret, id, phone, code) },
    }]);
    return { phone, expires_at: expiresAt, resend_at: new Date(now.getTime() + RESEND_GAP_MS) };
  });
  await enqueueDeliveries(deps.pool, deps.queues, deliveryIds, deps.log);
  deps.log.info({ member_id: who.id, to: maskAddress(phone), verification_id: id }, 'phone verification code sent');
  return sent;
}

type CodeRow = { id: string; code_hash: Buffer; expires_at: Date; attempts: number; state: 'pending' | 'confirmed' | 'dead' | 'superseded' };

const expired = (reason: string) =>
  new AppError(400, 'CODE_EXPIRED', 'no valid code for this number: it expired, was replaced by a newer one, or none was asked for; ask for a new code', { reason });

/** An outcome decided inside the transaction but answered after its commit (a wrong try must count). */
type Verdict = { ok: true; member: MemberRow } | { ok: false; error: AppError };

/**
 * Checks the code of the caller's latest code for `phone`. Right: the phone becomes the member's,
 * verified; another member who had verified it keeps it unverified (the newer proof wins). Wrong:
 * the try is counted, and the fifth wrong try kills the code.
 */
export async function confirmPhoneCode(deps: PhoneVerificationDeps, who: Principal, phone: string, code: string, now: Date): Promise<MemberRow> {
  const verdict = await withTransaction<Verdict>(deps.pool, async (tx) => {
    const member = await ensureMember(tx, who);
    await lock(tx, `phone:${phone}`);
    const { rows } = await tx.query<CodeRow>(
      `select id, code_hash, expires_at, attempts, state from phone_verifications
        where member_id = $1 and phone = $2 order by created_at desc limit 1 for update`,
      [who.id, phone],
    );
    const row = rows[0];
    if (row === undefined) throw expired('none');
    const right = timingSafeEqual(codeHash(deps.linkSecret, row.id, phone, code), row.code_hash);
    // A double tap: the code that verified this number already. Same answer, nothing changes.
    if (row.state === 'confirmed' && right && member.phone === phone && member.phone_verified_at !== null) return { ok: true, member };
    if (row.state === 'dead') {
      const gate = (await resendAt(tx, who.id, phone, now)) ?? now.getTime();
      throw tooMany('too many wrong codes: this code no longer works; ask for a new one', 'TOO_MANY_ATTEMPTS', gate - now.getTime());
    }
    if (row.state !== 'pending') throw expired(row.state === 'superseded' ? 'replaced' : 'used');
    if (row.expires_at.getTime() <= now.getTime()) throw expired('expired');
    if (!right) {
      const attempts = row.attempts + 1;
      const dead = attempts >= MAX_ATTEMPTS;
      await tx.query(
        `update phone_verifications set attempts = $2, state = case when $3 then 'dead' else state end, finished_at = case when $3 then $4 else finished_at end where id = $1`,
        [row.id, attempts, dead, now],
      );
      if (dead) {
        const gate = (await resendAt(tx, who.id, phone, now)) ?? now.getTime();
        return { ok: false, error: tooMany('too many wrong codes: this code no longer works; ask for a new one', 'TOO_MANY_ATTEMPTS', gate - now.getTime()) };
      }
      return { ok: false, error: new AppError(400, 'CODE_INVALID', 'that is not the code we sent', { attempts_left: MAX_ATTEMPTS - attempts }) };
    }
    await tx.query(`update phone_verifications set state = 'confirmed', finished_at = $2 where id = $1`, [row.id, now]);
    // Whoever verified the number before loses the verification, silently; the audit trail names
    // the system, not the new holder (their id is none of the old member's business).
    await setAuditActor(tx, { type: 'system' });
    await tx.query(
      `update members set phone_verified_at = null, updated_at = $3 where phone = $1 and phone_verified_at is not null and id <> $2`,
      [phone, who.id, now],
    );
    await setAuditActor(tx, { type: 'member', id: who.id });
    // A new number has not said STOP: its opt-out belonged to the old one (as in PATCH /v1/me).
    const { rows: updated } = await tx.query<MemberRow>(
      `update members set
         sms_opted_out = case when phone is distinct from $2 then false else sms_opted_out end,
         phone = $2, phone_verified_at = $3, updated_at = $3
       where id = $1
       returning ${MEMBER_COLUMNS}`,
      [who.id, phone, now],
    );
    return { ok: true, member: updated[0]! };
  });
  if (!verdict.ok) {
    deps.log.info({ member_id: who.id, to: maskAddress(phone), error: verdict.error.code }, 'phone verification code refused');
    throw verdict.error;
  }
  deps.log.info({ member_id: who.id, to: maskAddress(phone) }, 'phone verified');
  return verdict.member;
}
