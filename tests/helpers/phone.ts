import type pg from 'pg';
import { createDevOutboxChannel } from '../../src/channels/dev-outbox/index.js';
import { processDelivery } from '../../src/delivery/deliver.js';
import { createLogger } from '../../src/observability/logger.js';
import { TEST_LINK_SECRET } from './tokens.js';

/**
 * Gives a member a verified phone directly in the database, for tests that are not about
 * verification (SMS reminders and check-in by SMS reply need a verified phone). Naming
 * phone_verified_at in the same statement keeps the database from clearing it (the phone changes).
 */
export async function setVerifiedPhone(pool: pg.Pool, memberId: string, phone: string): Promise<void> {
  const { rowCount } = await pool.query('update members set phone = $2, phone_verified_at = now() where id = $1', [memberId, phone]);
  if (rowCount !== 1) throw new Error(`no member ${memberId} to give a phone`);
}

/** Sends every pending verification SMS the way the worker does, into the dev outbox. Returns each outcome. */
export async function sendVerificationSms(pool: pg.Pool, linkSecret: string | undefined = TEST_LINK_SECRET): Promise<string[]> {
  const dev = createDevOutboxChannel(pool);
  const { rows } = await pool.query<{ id: string }>(`select id from deliveries where kind = 'verification' and status = 'pending' order by created_at`);
  const outcomes: string[] = [];
  for (const { id } of rows) {
    outcomes.push(await processDelivery({ pool, channels: { push: dev, sms: dev, email: dev }, clock: () => new Date(), log: createLogger('silent'), linkSecret }, id, 0, 1));
  }
  return outcomes;
}

/** The newest code texted to `phone`, read from the dev outbox (after sendVerificationSms). */
export async function codeSentTo(pool: pg.Pool, phone: string): Promise<{ code: string; body: string }> {
  await sendVerificationSms(pool);
  const { rows } = await pool.query<{ body: string }>(
    `select body from dev_outbox where kind = 'verification' and "to" = $1 order by created_at desc, id desc limit 1`, [phone]);
  const body = rows[0]?.body;
  const code = body === undefined ? undefined : /your code is (\d{6})/.exec(body)?.[1];
  if (body === undefined || code === undefined) throw new Error(`no verification code was texted to ${phone}`);
  return { code, body };
}
