import { describe, expect, it } from '@jest/globals';
import { retryAfterMs, statusErrorMeaning } from '../../src/channels/sms-twilio/errors.js';
import { keywordOf } from '../../src/channels/sms-twilio/inbound.js';

describe("the meaning of Twilio's status callback error codes", () => {
  it.each(['30005', '30006', '30004', '21211', '21612', '21614'])('treats %s as a dead number with a reason for the member', (code) => {
    const m = statusErrorMeaning(code);
    expect(m.deadAddress).toEqual(expect.any(String));
    expect(m.optedOut).toBeUndefined();
    expect(m.reason).toContain(code);
  });

  it('treats 21610 as an opt-out, not a dead number', () => {
    const m = statusErrorMeaning('21610');
    expect(m.optedOut).toBe(true);
    expect(m.deadAddress).toBeUndefined();
  });

  it.each(['30003', '30008', '30001', null])('leaves the number alone on %p', (code) => {
    const m = statusErrorMeaning(code);
    expect(m.deadAddress).toBeUndefined();
    expect(m.optedOut).toBeUndefined();
  });

  it.each(['30002', '30007', '30034', '21408'])('flags %s as a problem on our side', (code) => {
    const m = statusErrorMeaning(code);
    expect(m.ourProblem).toBe(true);
    expect(m.deadAddress).toBeUndefined();
  });
});

describe('Retry-After', () => {
  it('reads seconds and HTTP dates, and ignores nonsense', () => {
    const now = Date.parse('2026-11-24T09:00:00Z');
    expect(retryAfterMs('7', now)).toBe(7000);
    expect(retryAfterMs('0.5', now)).toBe(500);
    expect(retryAfterMs('Tue, 24 Nov 2026 09:00:30 GMT', now)).toBe(30_000);
    expect(retryAfterMs('Tue, 24 Nov 2026 08:00:00 GMT', now)).toBe(0);
    expect(retryAfterMs('soon', now)).toBeUndefined();
    expect(retryAfterMs(undefined, now)).toBeUndefined();
  });

  it('never waits more than ten minutes on a provider that asks for longer', () => {
    expect(retryAfterMs('86400')).toBe(600_000);
  });
});

describe('reply keywords', () => {
  it.each([
    [' ok ', 'OK'], ['O K!', 'OK'], ['Stop.', 'STOP'], ['yes\n', 'YES'], ['"1"', '1'], ['ＯＫ', 'OK'], ['I am ok', 'IAMOK'],
  ])('reads %p as %p', (body, word) => {
    expect(keywordOf(body)).toBe(word);
  });
});
