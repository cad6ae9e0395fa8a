import { createHash, randomBytes } from 'node:crypto';
import type { Principal } from '../auth/jwt.js';
import type { Queryable } from '../db/pool.js';
import { ensureMember } from '../members/repo.js';

/**
 * Push devices: one row per (member, push token). A token is the address of one app install; two
 * members may hold the same one (a shared tablet, or someone who learnt another's token), each with
 * a row of their own, and no member's registration touches another's row without proof that it
 * comes from the same install: the device secret that install was given when it registered.
 */
export type DeviceRow = { id: string; member_id: string; token: string; platform: string; created_at: Date; last_seen_at: Date };

export type Registration = {
  device: DeviceRow;
  /** A row new for this member (201), or one it already held (200). */
  created: boolean;
  /** The device secret, when this registration issued one: shown once, only its hash is kept. */
  secret: string | undefined;
};

const COLUMNS = 'id, member_id, token, platform, created_at, last_seen_at';

/** The stored form of a device secret. The secret is 32 random bytes, so a plain hash suffices. */
export const secretHash = (secret: string): Buffer => createHash('sha256').update(secret, 'utf8').digest();

/**
 * Registers `token` for the caller. With `proof` equal to the secret of another member's row for
 * this token, that row is deleted first: the install changed accounts, and the old account's pushes
 * must not reach the person now using it. A wrong or missing proof changes nothing of anyone else,
 * and the caller's answer is the same as for a token nobody holds.
 */
export async function registerDevice(db: Queryable, who: Principal, token: string, platform: string, proof: string | undefined): Promise<Registration> {
  await ensureMember(db, who);
  if (proof !== undefined) {
    await db.query('delete from devices where token = $1 and member_id <> $2 and secret_hash = $3', [token, who.id, secretHash(proof)]);
  }
  const secret = randomBytes(32).toString('base64url');
  const hash = secretHash(secret);
  // A row the member already holds keeps its secret (the install has it); one registered before
  // secrets existed gets this one, so its owner can prove it later.
  const { rows } = await db.query<DeviceRow & { created: boolean; issued: boolean }>(
    `insert into devices (member_id, token, platform, secret_hash) values ($1, $2, $3, $4)
     on conflict (member_id, token) do update
       set platform = excluded.platform, last_seen_at = now(), secret_hash = coalesce(devices.secret_hash, excluded.secret_hash)
     returning ${COLUMNS}, (xmax = 0) as created, secret_hash = $4 as issued`,
    [who.id, token, platform, hash],
  );
  const { created, issued, ...device } = rows[0]!;
  return { device, created, secret: issued ? secret : undefined };
}

export async function listDevices(db: Queryable, memberId: string): Promise<DeviceRow[]> {
  const { rows } = await db.query<DeviceRow>(`select ${COLUMNS} from devices where member_id = $1 order by created_at desc, id`, [memberId]);
  return rows;
}

export async function deleteDevice(db: Queryable, memberId: string, deviceId: string): Promise<boolean> {
  const { rowCount } = await db.query('delete from devices where id = $1 and member_id = $2', [deviceId, memberId]);
  return (rowCount ?? 0) > 0;
}
