import { describe, expect, it } from '@jest/globals';
import { DELIVERY_ATTEMPTS, DELIVERY_BACKOFF_CAP_MS, deliveryBackoffMs, deliveryJobOptions } from '../../src/delivery/outbox.js';

describe('the delivery retry plan', () => {
  it('doubles from the base, never waits more than the cap, and jitters down by at most half', () => {
    const top = () => 0; // no jitter
    expect([1, 2, 3, 4, 5, 6, 7, 11].map((n) => deliveryBackoffMs(n, 1000, top))).toEqual([1000, 2000, 4000, 8000, 16_000, 30_000, 30_000, 30_000]);
    expect(deliveryBackoffMs(3, 1000, () => 0.999_999)).toBe(2000);
    for (let n = 1; n <= DELIVERY_ATTEMPTS; n++) {
      const d = deliveryBackoffMs(n, 1000);
      expect(d).toBeGreaterThanOrEqual(Math.min(DELIVERY_BACKOFF_CAP_MS, 1000 * 2 ** (n - 1)) / 2);
      expect(d).toBeLessThanOrEqual(DELIVERY_BACKOFF_CAP_MS);
    }
  });

  it('fits every try of a job in minutes, not hours', () => {
    let total = 0;
    for (let n = 1; n < DELIVERY_ATTEMPTS; n++) total += deliveryBackoffMs(n, 1000, () => 0);
    expect(total).toBeLessThanOrEqual(4 * 60_000);
    expect(deliveryJobOptions('00000000-0000-0000-0000-000000000001', 3)).toMatchObject({ attempts: DELIVERY_ATTEMPTS, backoff: { type: 'delivery', delay: 1000 } });
  });
});
