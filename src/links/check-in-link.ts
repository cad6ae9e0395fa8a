/**
 * What a reminder's check-in link (/c/:token) carries besides the member: the deadline it reminds
 * of (so a second tap checks in once: src/checkins/service.ts checkInByLink) and the member's link
 * generation (how often the id had been deleted when it was signed: src/members/deleted-accounts.ts).
 * Both ride in the token's one numeric extra: deadline ms × 1000 + generation. No extra at all is a
 * link from before either existed: generation 0, no deadline.
 */
const GENERATIONS = 1000n;

/** The extra for a link answering `deadlineMs`; a generation past 999 is written as 999 (its links then stay dead: fail closed). */
export function checkInLinkExtra(deadlineMs: number, generation: number): string | undefined {
  if (!Number.isSafeInteger(deadlineMs) || deadlineMs < 0) return generation > 0 ? String(Math.min(generation, 999)) : undefined;
  return (BigInt(deadlineMs) * GENERATIONS + BigInt(Math.min(Math.max(0, generation), 999))).toString();
}

/** The extra read back; undefined for anything we did not make. */
export function readCheckInLinkExtra(extra: string | undefined): { deadlineMs: string | undefined; generation: number } | undefined {
  if (extra === undefined) return { deadlineMs: undefined, generation: 0 };
  if (!/^\d{1,19}$/.test(extra)) return undefined;
  const n = BigInt(extra);
  const deadline = n / GENERATIONS;
  return { deadlineMs: deadline === 0n ? undefined : deadline.toString(), generation: Number(n % GENERATIONS) };
}
