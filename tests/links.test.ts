import { describe, expect, it } from '@jest/globals';
import { LinkError, signLink, verifyLink } from '../src/links/tokens.js';

const SECRET = 'a-link-signing-secret-of-32-chars-or-more';
const NOW = new Date('2026-11-23T10:00:00Z');
const LATER = new Date('2026-11-30T10:00:00Z');
const CONTACT = '3f2b8c1e-9a4d-4e6f-8b7a-1c2d3e4f5a6b';
const INCIDENT = 'aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee';

function reason(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    if (err instanceof LinkError) return err.reason;
    throw err;
  }
  return 'accepted';
}

describe('signed links', () => {
  it('round-trips subject, expiry and extra, and stays short enough for an SMS', () => {
    const ack = signLink(SECRET, 'ack', CONTACT, LATER, INCIDENT);
    expect(ack.length).toBeLessThanOrEqual(75);
    expect(verifyLink(SECRET, 'ack', ack, NOW)).toEqual({ p: 'ack', s: CONTACT, e: LATER.getTime() / 1000, x: INCIDENT });
    const invite = signLink(SECRET, 'invite', CONTACT, LATER, '1795426800123');
    expect(verifyLink(SECRET, 'invite', invite, NOW).x).toBe('1795426800123');
    expect(verifyLink(SECRET, 'checkin', signLink(SECRET, 'checkin', CONTACT, LATER), NOW).x).toBeUndefined();
  });

  it('rejects a link used for another purpose, signed with another key, tampered, truncated or expired', () => {
    const ack = signLink(SECRET, 'ack', CONTACT, LATER, INCIDENT);
    expect(reason(() => verifyLink(SECRET, 'invite', ack, NOW))).toBe('wrong_purpose');
    expect(reason(() => verifyLink('another-secret-of-at-least-32-characters', 'ack', ack, NOW))).toBe('bad_signature');
    const bytes = Buffer.from(ack, 'base64url');
    bytes[3] = bytes[3]! ^ 1; // move the expiry
    expect(reason(() => verifyLink(SECRET, 'ack', bytes.toString('base64url'), NOW))).toBe('bad_signature');
    expect(reason(() => verifyLink(SECRET, 'ack', ack.slice(0, -4), NOW))).toBe('malformed');
    expect(reason(() => verifyLink(SECRET, 'ack', `${ack}.`, NOW))).toBe('malformed');
    expect(reason(() => verifyLink(SECRET, 'ack', ack, LATER))).toBe('expired');
    expect(reason(() => verifyLink(SECRET, 'ack', '', NOW))).toBe('malformed');
  });
});
