import { describe, expect, it, jest } from '@jest/globals';
import { DateTime, IANAZone } from 'luxon';
import {
  alertAt,
  DEADLINE_HORIZON,
  isValidLocalTime,
  isValidTimeZone,
  mergeIntervals,
  nextDeadline,
  previousDeadline,
  type DailyRule,
  type Interval,
  type OnceRule,
  type ScheduleRule,
} from '../../src/schedules/deadline.js';

// Every expected instant below was derived by hand from the zone's offset on that date.
// 2026-01-05 is a Monday. US DST 2026: Mar 8 / Nov 1. EU DST 2026: Mar 29 / Oct 25.
// NZ DST 2026: ends Apr 5, starts Sep 27. 2028-02-29 is a Tuesday.

const ALL = [1, 2, 3, 4, 5, 6, 7];
const daily = (localTime: string, timeZone: string, days: number[] = ALL): DailyRule => ({ kind: 'daily', localTime, days, timeZone });
const once = (iso: string): OnceRule => ({ kind: 'once', dueAt: new Date(iso) });
const pauses = (...p: [string, string][]): Interval[] => p.map(([from, until]) => ({ from: new Date(from), until: new Date(until) }));
const next = (rule: ScheduleRule, after: string, p?: Interval[]): string | null => nextDeadline(rule, new Date(after), p)?.toISOString() ?? null;
const prev = (rule: ScheduleRule, at: string): string | null => previousDeadline(rule, new Date(at))?.toISOString() ?? null;
/** Follows nextDeadline `n` times from `after`. */
function walk(rule: ScheduleRule, after: string, n: number, p?: Interval[]): string[] {
  const out: string[] = [];
  let cursor = new Date(after);
  for (let i = 0; i < n; i++) {
    const d = nextDeadline(rule, cursor, p);
    if (d === null) break;
    out.push(d.toISOString());
    cursor = d;
  }
  return out;
}

describe('isValidTimeZone', () => {
  it.each(['UTC', 'Etc/UTC', 'Europe/London', 'Europe/Berlin', 'Asia/Kolkata', 'Asia/Kathmandu', 'America/New_York', 'Pacific/Auckland'])(
    'accepts the IANA zone %j',
    (zone) => expect(isValidTimeZone(zone)).toBe(true),
  );

  it.each(['', 'UTC+2', 'UTC-05:00', 'GMT+2', '+02:00', '-0500', 'Foo/Bar', 'Europe/Londn', 'local', ' Europe/London', 'Europe/London '])(
    'rejects %j, which is not an IANA zone name',
    (zone) => expect(isValidTimeZone(zone)).toBe(false),
  );
});

describe('isValidLocalTime', () => {
  it.each(['00:00', '00:01', '09:05', '12:00', '19:30', '23:59'])('accepts %j', (s) => expect(isValidLocalTime(s)).toBe(true));

  it.each(['', '24:00', '23:60', '9:00', '09:5', '0900', '09:00:00', ' 09:00', '09:00 ', '09:00\n', '-1:00', 'ab:cd', '09.00', '99:99'])(
    'rejects %j',
    (s) => expect(isValidLocalTime(s)).toBe(false),
  );
});

describe('mergeIntervals', () => {
  const iso = (list: Interval[]) => list.map((i) => [i.from.toISOString(), i.until.toISOString()]);

  it('returns nothing for nothing', () => {
    expect(mergeIntervals([])).toEqual([]);
  });

  it.each<[string, [string, string][], [string, string][]]>([
    ['keeps a single interval', [['2026-01-05T00:00:00.000Z', '2026-01-06T00:00:00.000Z']], [['2026-01-05T00:00:00.000Z', '2026-01-06T00:00:00.000Z']]],
    [
      'sorts disjoint intervals by start',
      [['2026-01-10T00:00:00.000Z', '2026-01-11T00:00:00.000Z'], ['2026-01-05T00:00:00.000Z', '2026-01-06T00:00:00.000Z']],
      [['2026-01-05T00:00:00.000Z', '2026-01-06T00:00:00.000Z'], ['2026-01-10T00:00:00.000Z', '2026-01-11T00:00:00.000Z']],
    ],
    [
      'merges overlapping intervals',
      [['2026-01-05T00:00:00.000Z', '2026-01-07T00:00:00.000Z'], ['2026-01-06T00:00:00.000Z', '2026-01-09T00:00:00.000Z']],
      [['2026-01-05T00:00:00.000Z', '2026-01-09T00:00:00.000Z']],
    ],
    [
      'merges touching intervals',
      [['2026-01-06T00:00:00.000Z', '2026-01-07T00:00:00.000Z'], ['2026-01-05T00:00:00.000Z', '2026-01-06T00:00:00.000Z']],
      [['2026-01-05T00:00:00.000Z', '2026-01-07T00:00:00.000Z']],
    ],
    [
      'keeps intervals one millisecond apart separate',
      [['2026-01-05T00:00:00.000Z', '2026-01-06T00:00:00.000Z'], ['2026-01-06T00:00:00.001Z', '2026-01-07T00:00:00.000Z']],
      [['2026-01-05T00:00:00.000Z', '2026-01-06T00:00:00.000Z'], ['2026-01-06T00:00:00.001Z', '2026-01-07T00:00:00.000Z']],
    ],
    [
      'swallows an interval contained in another',
      [['2026-01-05T00:00:00.000Z', '2026-01-10T00:00:00.000Z'], ['2026-01-06T00:00:00.000Z', '2026-01-07T00:00:00.000Z']],
      [['2026-01-05T00:00:00.000Z', '2026-01-10T00:00:00.000Z']],
    ],
    [
      'chains several overlaps into one',
      [
        ['2026-01-08T00:00:00.000Z', '2026-01-12T00:00:00.000Z'],
        ['2026-01-05T00:00:00.000Z', '2026-01-07T00:00:00.000Z'],
        ['2026-01-06T12:00:00.000Z', '2026-01-08T00:00:00.000Z'],
        ['2026-01-20T00:00:00.000Z', '2026-01-21T00:00:00.000Z'],
      ],
      [['2026-01-05T00:00:00.000Z', '2026-01-12T00:00:00.000Z'], ['2026-01-20T00:00:00.000Z', '2026-01-21T00:00:00.000Z']],
    ],
    ['drops an empty interval', [['2026-01-05T00:00:00.000Z', '2026-01-05T00:00:00.000Z']], []],
    ['drops an inverted interval', [['2026-01-06T00:00:00.000Z', '2026-01-05T00:00:00.000Z']], []],
    [
      'drops an empty interval that would otherwise bridge two others',
      [['2026-01-05T00:00:00.000Z', '2026-01-06T00:00:00.000Z'], ['2026-01-07T00:00:00.000Z', '2026-01-07T00:00:00.000Z'], ['2026-01-07T00:00:00.000Z', '2026-01-08T00:00:00.000Z']],
      [['2026-01-05T00:00:00.000Z', '2026-01-06T00:00:00.000Z'], ['2026-01-07T00:00:00.000Z', '2026-01-08T00:00:00.000Z']],
    ],
  ])('%s', (_name, input, expected) => {
    expect(iso(mergeIntervals(pauses(...input)))).toEqual(expected);
  });

  it('drops intervals holding an invalid Date', () => {
    expect(mergeIntervals([{ from: new Date('nope'), until: new Date('2026-01-05T00:00:00Z') }])).toEqual([]);
  });

  it('does not mutate its input', () => {
    const input = pauses(['2026-01-06T00:00:00Z', '2026-01-09T00:00:00Z'], ['2026-01-05T00:00:00Z', '2026-01-07T00:00:00Z']);
    mergeIntervals(input);
    expect(iso(input)).toEqual([
      ['2026-01-06T00:00:00.000Z', '2026-01-09T00:00:00.000Z'],
      ['2026-01-05T00:00:00.000Z', '2026-01-07T00:00:00.000Z'],
    ]);
  });
});

describe('nextDeadline for a daily rule', () => {
  describe('is strictly after the given instant', () => {
    const rule = daily('09:00', 'UTC');
    it.each([
      ['2026-01-05T08:00:00.000Z', '2026-01-05T09:00:00.000Z'],
      ['2026-01-05T08:59:59.999Z', '2026-01-05T09:00:00.000Z'],
      ['2026-01-05T09:00:00.000Z', '2026-01-06T09:00:00.000Z'],
      ['2026-01-05T09:00:00.001Z', '2026-01-06T09:00:00.000Z'],
      ['2026-01-05T23:59:59.999Z', '2026-01-06T09:00:00.000Z'],
      ['2025-12-31T12:00:00.000Z', '2026-01-01T09:00:00.000Z'],
    ])('after %s it is %s', (after, expected) => expect(next(rule, after)).toBe(expected));
  });

  describe('honours a single-day weekday mask in UTC', () => {
    // After Monday 2026-01-05's 09:00 has passed.
    it.each([
      [1, '2026-01-12T09:00:00.000Z'],
      [2, '2026-01-06T09:00:00.000Z'],
      [3, '2026-01-07T09:00:00.000Z'],
      [4, '2026-01-08T09:00:00.000Z'],
      [5, '2026-01-09T09:00:00.000Z'],
      [6, '2026-01-10T09:00:00.000Z'],
      [7, '2026-01-11T09:00:00.000Z'],
    ])('with only ISO weekday %i the next deadline is %s', (day, expected) => {
      expect(next(daily('09:00', 'UTC', [day]), '2026-01-05T10:00:00Z')).toBe(expected);
    });
  });

  describe('uses the weekday of the LOCAL date east of UTC (Pacific/Auckland, +13 in January)', () => {
    // After Monday 2026-01-05 23:00 NZDT; every deadline lands on the previous UTC day.
    it.each([
      [1, '2026-01-11T18:00:00.000Z'],
      [2, '2026-01-05T18:00:00.000Z'],
      [3, '2026-01-06T18:00:00.000Z'],
      [4, '2026-01-07T18:00:00.000Z'],
      [5, '2026-01-08T18:00:00.000Z'],
      [6, '2026-01-09T18:00:00.000Z'],
      [7, '2026-01-10T18:00:00.000Z'],
    ])('a 07:00 deadline on ISO weekday %i falls at %s', (day, expected) => {
      expect(next(daily('07:00', 'Pacific/Auckland', [day]), '2026-01-05T10:00:00Z')).toBe(expected);
    });
  });

  describe('uses the weekday of the LOCAL date west of UTC (America/Los_Angeles, -8 in January)', () => {
    // After Monday 2026-01-05 02:00 PST; every 20:00 deadline lands on the next UTC day.
    it.each([
      [1, '2026-01-06T04:00:00.000Z'],
      [2, '2026-01-07T04:00:00.000Z'],
      [3, '2026-01-08T04:00:00.000Z'],
      [4, '2026-01-09T04:00:00.000Z'],
      [5, '2026-01-10T04:00:00.000Z'],
      [6, '2026-01-11T04:00:00.000Z'],
      [7, '2026-01-12T04:00:00.000Z'],
    ])('a 20:00 deadline on ISO weekday %i falls at %s', (day, expected) => {
      expect(next(daily('20:00', 'America/Los_Angeles', [day]), '2026-01-05T10:00:00Z')).toBe(expected);
    });
  });

  it('with a weekdays-only mask skips the weekend', () => {
    expect(walk(daily('09:00', 'UTC', [1, 2, 3, 4, 5]), '2026-01-09T10:00:00Z', 6)).toEqual([
      '2026-01-12T09:00:00.000Z',
      '2026-01-13T09:00:00.000Z',
      '2026-01-14T09:00:00.000Z',
      '2026-01-15T09:00:00.000Z',
      '2026-01-16T09:00:00.000Z',
      '2026-01-19T09:00:00.000Z',
    ]);
  });

  it('with a weekdays-only mask goes from Saturday to Monday', () => {
    expect(next(daily('09:00', 'UTC', [1, 2, 3, 4, 5]), '2026-01-10T08:00:00Z')).toBe('2026-01-12T09:00:00.000Z');
  });

  it('with a weekends-only mask fires on Saturday and Sunday only', () => {
    expect(walk(daily('09:00', 'UTC', [6, 7]), '2026-01-05T10:00:00Z', 4)).toEqual([
      '2026-01-10T09:00:00.000Z',
      '2026-01-11T09:00:00.000Z',
      '2026-01-17T09:00:00.000Z',
      '2026-01-18T09:00:00.000Z',
    ]);
  });

  it('with every day in the mask fires every day', () => {
    expect(walk(daily('09:00', 'UTC'), '2026-01-05T10:00:00Z', 7)).toEqual([
      '2026-01-06T09:00:00.000Z',
      '2026-01-07T09:00:00.000Z',
      '2026-01-08T09:00:00.000Z',
      '2026-01-09T09:00:00.000Z',
      '2026-01-10T09:00:00.000Z',
      '2026-01-11T09:00:00.000Z',
      '2026-01-12T09:00:00.000Z',
    ]);
  });

  it('tolerates duplicate and unsorted days in the mask', () => {
    expect(walk(daily('09:00', 'UTC', [5, 1, 1]), '2026-01-05T10:00:00Z', 2)).toEqual(['2026-01-09T09:00:00.000Z', '2026-01-12T09:00:00.000Z']);
  });

  describe('converts local wall-clock time to UTC in zones around the world', () => {
    it.each([
      ['UTC', '2026-01-15T00:00:00Z', '2026-01-15T08:00:00.000Z'],
      ['Europe/London (GMT, winter)', '2026-01-15T00:00:00Z', '2026-01-15T08:00:00.000Z'],
      ['Europe/London (BST, summer)', '2026-07-15T00:00:00Z', '2026-07-15T07:00:00.000Z'],
      ['Europe/Berlin (CET, winter)', '2026-01-15T00:00:00Z', '2026-01-15T07:00:00.000Z'],
      ['Europe/Berlin (CEST, summer)', '2026-07-15T00:00:00Z', '2026-07-15T06:00:00.000Z'],
      ['America/New_York (EST, winter)', '2026-01-15T00:00:00Z', '2026-01-15T13:00:00.000Z'],
      ['America/New_York (EDT, summer)', '2026-07-15T00:00:00Z', '2026-07-15T12:00:00.000Z'],
      ['America/Los_Angeles (PST, winter)', '2026-01-15T00:00:00Z', '2026-01-15T16:00:00.000Z'],
      ['America/Los_Angeles (PDT, summer)', '2026-07-15T00:00:00Z', '2026-07-15T15:00:00.000Z'],
      ['Asia/Tokyo (+09, winter)', '2026-01-15T00:00:00Z', '2026-01-15T23:00:00.000Z'],
      ['Asia/Tokyo (+09, summer)', '2026-07-15T00:00:00Z', '2026-07-15T23:00:00.000Z'],
      ['Pacific/Auckland (NZDT +13, January)', '2026-01-15T00:00:00Z', '2026-01-15T19:00:00.000Z'],
      ['Pacific/Auckland (NZST +12, July)', '2026-07-15T00:00:00Z', '2026-07-15T20:00:00.000Z'],
      ['Asia/Kolkata (+05:30)', '2026-01-15T00:00:00Z', '2026-01-15T02:30:00.000Z'],
      ['Asia/Kathmandu (+05:45)', '2026-01-15T00:00:00Z', '2026-01-15T02:15:00.000Z'],
      ['Australia/Adelaide (ACDT +10:30, January)', '2026-01-15T00:00:00Z', '2026-01-15T21:30:00.000Z'],
      ['Australia/Adelaide (ACST +09:30, July)', '2026-07-15T00:00:00Z', '2026-07-15T22:30:00.000Z'],
      ['America/St_Johns (NST -03:30, winter)', '2026-01-15T00:00:00Z', '2026-01-15T11:30:00.000Z'],
      ['America/St_Johns (NDT -02:30, summer)', '2026-07-15T00:00:00Z', '2026-07-15T10:30:00.000Z'],
      ['Pacific/Chatham (+13:45, January)', '2026-01-15T00:00:00Z', '2026-01-15T18:15:00.000Z'],
      ['Pacific/Chatham (+12:45, July)', '2026-07-15T00:00:00Z', '2026-07-15T19:15:00.000Z'],
      ['Pacific/Kiritimati (+14)', '2026-01-15T00:00:00Z', '2026-01-15T18:00:00.000Z'],
      ['Pacific/Pago_Pago (-11)', '2026-01-15T00:00:00Z', '2026-01-15T19:00:00.000Z'],
    ])('08:00 in %s after %s is %s', (label, after, expected) => {
      const zone = label.split(' ')[0]!;
      expect(next(daily('08:00', zone), after)).toBe(expected);
    });
  });

  describe('handles deadlines whose UTC date differs from the local date', () => {
    it.each<[string, string, number[], string, string, string]>([
      ['00:10 in Asia/Kathmandu is 18:25Z the day before', '00:10', ALL, 'Asia/Kathmandu', '2026-01-15T00:00:00Z', '2026-01-15T18:25:00.000Z'],
      ['23:59 on Thursdays in Asia/Kolkata is 18:29Z that Thursday', '23:59', [4], 'Asia/Kolkata', '2026-01-12T00:00:00Z', '2026-01-15T18:29:00.000Z'],
      ['21:00 on Thursdays in America/New_York is 02:00Z on Friday', '21:00', [4], 'America/New_York', '2026-01-12T00:00:00Z', '2026-01-16T02:00:00.000Z'],
      ['00:00 on Mondays in Asia/Tokyo is 15:00Z on Sunday', '00:00', [1], 'Asia/Tokyo', '2026-01-05T00:00:00Z', '2026-01-11T15:00:00.000Z'],
      ['23:30 on Sundays in Pacific/Auckland is 10:30Z that Sunday', '23:30', [7], 'Pacific/Auckland', '2026-01-12T00:00:00Z', '2026-01-18T10:30:00.000Z'],
    ])('%s', (_name, time, days, zone, after, expected) => {
      expect(next(daily(time, zone, days), after)).toBe(expected);
    });

    it('a Thursday-only 21:00 New York deadline is still found just before it, on Friday UTC', () => {
      expect(next(daily('21:00', 'America/New_York', [4]), '2026-01-16T01:59:59.999Z')).toBe('2026-01-16T02:00:00.000Z');
    });
  });

  describe('in a DST gap (spring forward)', () => {
    const ny = daily('02:30', 'America/New_York');

    it.each([
      ['2026-03-08T05:00:00.000Z', '2026-03-08T07:00:00.000Z'], // 00:00 EST
      ['2026-03-08T06:59:59.999Z', '2026-03-08T07:00:00.000Z'], // 01:59:59.999 EST, the last instant before the gap
      ['2026-03-08T07:00:00.000Z', '2026-03-09T06:30:00.000Z'], // 03:00 EDT: the day's deadline is this very instant
      ['2026-03-08T07:29:00.000Z', '2026-03-09T06:30:00.000Z'], // 03:29 EDT, before luxon's naive 03:30
      ['2026-03-08T07:30:00.000Z', '2026-03-09T06:30:00.000Z'], // luxon's naive 03:30 EDT must not be a second deadline
      ['2026-03-07T08:00:00.000Z', '2026-03-08T07:00:00.000Z'], // 03:00 EST the day before
    ])('a 02:30 New York deadline after %s is %s', (after, expected) => {
      expect(next(ny, after)).toBe(expected);
    });

    it('fires a 02:30 New York deadline exactly once on 2026-03-08, at 03:00 EDT', () => {
      expect(walk(ny, '2026-03-07T00:00:00Z', 3)).toEqual([
        '2026-03-07T07:30:00.000Z', // 02:30 EST
        '2026-03-08T07:00:00.000Z', // gap end, 03:00 EDT
        '2026-03-09T06:30:00.000Z', // 02:30 EDT
      ]);
    });

    it.each([
      ['America/New_York', '01:59', '2026-03-08T05:00:00Z', '2026-03-08T06:59:00.000Z'],
      ['America/New_York', '02:00', '2026-03-08T05:00:00Z', '2026-03-08T07:00:00.000Z'],
      ['America/New_York', '02:59', '2026-03-08T05:00:00Z', '2026-03-08T07:00:00.000Z'],
      ['America/New_York', '03:00', '2026-03-08T05:00:00Z', '2026-03-08T07:00:00.000Z'],
      ['America/New_York', '03:01', '2026-03-08T05:00:00Z', '2026-03-08T07:01:00.000Z'],
      ['America/Los_Angeles', '02:15', '2026-03-08T08:00:00Z', '2026-03-08T10:00:00.000Z'],
      ['Europe/London', '00:59', '2026-03-29T00:00:00Z', '2026-03-29T00:59:00.000Z'],
      ['Europe/London', '01:00', '2026-03-29T00:00:00Z', '2026-03-29T01:00:00.000Z'],
      ['Europe/London', '01:30', '2026-03-29T00:00:00Z', '2026-03-29T01:00:00.000Z'],
      ['Europe/London', '02:00', '2026-03-29T00:00:00Z', '2026-03-29T01:00:00.000Z'],
      ['Europe/London', '02:30', '2026-03-29T00:00:00Z', '2026-03-29T01:30:00.000Z'],
      ['Europe/Berlin', '01:59', '2026-03-28T23:00:00Z', '2026-03-29T00:59:00.000Z'],
      ['Europe/Berlin', '02:00', '2026-03-28T23:00:00Z', '2026-03-29T01:00:00.000Z'],
      ['Europe/Berlin', '02:30', '2026-03-28T23:00:00Z', '2026-03-29T01:00:00.000Z'],
      ['Europe/Berlin', '03:00', '2026-03-28T23:00:00Z', '2026-03-29T01:00:00.000Z'],
      ['Pacific/Auckland', '02:30', '2026-09-26T12:00:00Z', '2026-09-26T14:00:00.000Z'],
    ])('in %s, %s on the spring-forward day after %s is %s', (zone, time, after, expected) => {
      expect(next(daily(time, zone), after)).toBe(expected);
    });

    it('fires a 01:30 London deadline once on 2026-03-29, and 01:30 BST the next day', () => {
      expect(walk(daily('01:30', 'Europe/London'), '2026-03-28T00:00:00Z', 3)).toEqual([
        '2026-03-28T01:30:00.000Z',
        '2026-03-29T01:00:00.000Z',
        '2026-03-30T00:30:00.000Z',
      ]);
    });

    it('fires a 02:30 Berlin deadline once on 2026-03-29', () => {
      expect(walk(daily('02:30', 'Europe/Berlin'), '2026-03-28T00:00:00Z', 3)).toEqual([
        '2026-03-28T01:30:00.000Z',
        '2026-03-29T01:00:00.000Z',
        '2026-03-30T00:30:00.000Z',
      ]);
    });
  });

  describe('in a DST overlap (fall back)', () => {
    const ny = daily('01:30', 'America/New_York');

    it.each([
      ['2026-11-01T04:00:00.000Z', '2026-11-01T05:30:00.000Z'], // 00:00 EDT
      ['2026-11-01T05:29:59.999Z', '2026-11-01T05:30:00.000Z'],
      ['2026-11-01T05:30:00.000Z', '2026-11-02T06:30:00.000Z'], // the first 01:30 itself: next day, not 06:30Z
      ['2026-11-01T06:00:00.000Z', '2026-11-02T06:30:00.000Z'], // 01:00 EST, second pass
      ['2026-11-01T06:29:59.999Z', '2026-11-02T06:30:00.000Z'], // just before the second 01:30
      ['2026-11-01T06:30:00.000Z', '2026-11-02T06:30:00.000Z'],
    ])('a 01:30 New York deadline after %s is %s', (after, expected) => {
      expect(next(ny, after)).toBe(expected);
    });

    it('fires a 01:30 New York deadline exactly once on 2026-11-01, at the first (EDT) occurrence', () => {
      expect(walk(ny, '2026-10-31T00:00:00Z', 3)).toEqual([
        '2026-10-31T05:30:00.000Z', // 01:30 EDT
        '2026-11-01T05:30:00.000Z', // first 01:30, EDT
        '2026-11-02T06:30:00.000Z', // 01:30 EST
      ]);
    });

    it.each([
      ['America/New_York', '00:59', '2026-11-01T04:00:00Z', '2026-11-01T04:59:00.000Z'],
      ['America/New_York', '01:00', '2026-11-01T04:00:00Z', '2026-11-01T05:00:00.000Z'],
      ['America/New_York', '01:59', '2026-11-01T04:00:00Z', '2026-11-01T05:59:00.000Z'],
      ['America/New_York', '02:00', '2026-11-01T04:00:00Z', '2026-11-01T07:00:00.000Z'],
      ['Europe/London', '00:59', '2026-10-24T23:00:00Z', '2026-10-24T23:59:00.000Z'],
      ['Europe/London', '01:00', '2026-10-24T23:00:00Z', '2026-10-25T00:00:00.000Z'],
      ['Europe/London', '01:30', '2026-10-24T23:00:00Z', '2026-10-25T00:30:00.000Z'],
      ['Europe/London', '02:00', '2026-10-24T23:00:00Z', '2026-10-25T02:00:00.000Z'],
      ['Europe/Berlin', '02:30', '2026-10-24T22:00:00Z', '2026-10-25T00:30:00.000Z'],
      ['Pacific/Auckland', '02:30', '2026-04-04T12:00:00Z', '2026-04-04T13:30:00.000Z'],
    ])('in %s, %s on the fall-back day after %s is %s', (zone, time, after, expected) => {
      expect(next(daily(time, zone), after)).toBe(expected);
    });

    it('fires a 01:30 London deadline once on 2026-10-25 and never at the second 01:30 (01:30Z)', () => {
      const london = daily('01:30', 'Europe/London');
      expect(walk(london, '2026-10-24T00:00:00Z', 3)).toEqual([
        '2026-10-24T00:30:00.000Z',
        '2026-10-25T00:30:00.000Z',
        '2026-10-26T01:30:00.000Z',
      ]);
      expect(next(london, '2026-10-25T00:30:00Z')).toBe('2026-10-26T01:30:00.000Z');
      expect(next(london, '2026-10-25T01:15:00Z')).toBe('2026-10-26T01:30:00.000Z');
    });
  });

  describe('fires exactly once per local day across a whole year', () => {
    it.each<[string, string, number]>([
      ['America/New_York', '02:30', 1],
      ['America/New_York', '01:30', 0],
      ['Europe/London', '01:30', 1],
      ['Europe/Berlin', '02:30', 1],
      ['Pacific/Auckland', '02:30', 1],
      ['Australia/Adelaide', '02:30', 1],
      ['Asia/Kolkata', '00:00', 0],
      ['Asia/Kathmandu', '23:59', 0],
    ])('in %s at %s (%i gap day in 2026)', (zone, time, gapDays) => {
      const rule = daily(time, zone);
      const start = DateTime.fromObject({ year: 2026, month: 1, day: 1 }, { zone }).toMillis() - 1;
      // Strings, not DateTimes: a failing diff of 365 luxon objects takes minutes to print.
      const local = walk(rule, new Date(start).toISOString(), 400)
        .map((iso) => DateTime.fromISO(iso, { zone }))
        .filter((d) => d.year === 2026)
        .map((d) => d.toFormat('yyyy-MM-dd HH:mm'));
      const days = Array.from({ length: 365 }, (_, i) => DateTime.utc(2026, 1, 1).plus({ days: i }).toFormat('yyyy-MM-dd'));
      expect(local.map((s) => s.slice(0, 10))).toEqual(days);
      expect(local.filter((s) => s.slice(11) !== time).length).toBe(gapDays);
    });
  });

  describe('across leap days', () => {
    it('walks 2028-02-28 → 2028-02-29 → 2028-03-01 in London', () => {
      expect(walk(daily('09:00', 'Europe/London'), '2028-02-28T00:00:00Z', 3)).toEqual([
        '2028-02-28T09:00:00.000Z',
        '2028-02-29T09:00:00.000Z',
        '2028-03-01T09:00:00.000Z',
      ]);
    });

    it('walks across the leap day in Tokyo, where the local leap day starts on 28 February UTC', () => {
      expect(walk(daily('08:00', 'Asia/Tokyo'), '2028-02-27T00:00:00Z', 3)).toEqual([
        '2028-02-27T23:00:00.000Z',
        '2028-02-28T23:00:00.000Z',
        '2028-02-29T23:00:00.000Z',
      ]);
    });

    it('gives the leap day its weekday (Tuesday) in the mask', () => {
      expect(next(daily('09:00', 'Europe/London', [2]), '2028-02-27T00:00:00Z')).toBe('2028-02-29T09:00:00.000Z');
      expect(next(daily('09:00', 'Europe/London', [3]), '2028-02-27T00:00:00Z')).toBe('2028-03-01T09:00:00.000Z');
    });

    it('goes from 28 February to 1 March in a non-leap year (2026, and the century year 2100)', () => {
      expect(next(daily('09:00', 'UTC'), '2026-02-28T10:00:00Z')).toBe('2026-03-01T09:00:00.000Z');
      expect(next(daily('09:00', 'UTC'), '2100-02-28T10:00:00Z')).toBe('2100-03-01T09:00:00.000Z');
    });

    it('includes 29 February in the year 2000', () => {
      expect(next(daily('09:00', 'UTC'), '2000-02-28T10:00:00Z')).toBe('2000-02-29T09:00:00.000Z');
    });
  });

  describe('when the member changes time zone', () => {
    // Same 08:00 rule, re-evaluated at 2026-06-10T08:00Z in the new zone.
    it.each([
      ['Europe/London', '2026-06-11T07:00:00.000Z'], // today's 07:00Z has passed
      ['America/New_York', '2026-06-10T12:00:00.000Z'],
      ['America/Los_Angeles', '2026-06-10T15:00:00.000Z'],
      ['Asia/Tokyo', '2026-06-10T23:00:00.000Z'], // today's 2026-06-09T23:00Z has passed
      ['Asia/Kolkata', '2026-06-11T02:30:00.000Z'],
    ])('in %s the next 08:00 is %s', (zone, expected) => {
      expect(next(daily('08:00', zone), '2026-06-10T08:00:00Z')).toBe(expected);
    });

    it('moving from London to New York gives the New York instant, not the London one', () => {
      const london = next(daily('08:00', 'Europe/London'), '2026-06-10T06:00:00Z');
      const newYork = next(daily('08:00', 'America/New_York'), '2026-06-10T06:00:00Z');
      expect(london).toBe('2026-06-10T07:00:00.000Z');
      expect(newYork).toBe('2026-06-10T12:00:00.000Z');
    });
  });

  describe('after a schedule is edited once its deadline has passed', () => {
    it('never returns the deadline that equals `now`', () => {
      expect(next(daily('09:00', 'UTC'), '2026-01-05T09:00:00.000Z')).toBe('2026-01-06T09:00:00.000Z');
      expect(next(daily('08:00', 'America/New_York'), '2026-01-15T13:00:00.000Z')).toBe('2026-01-16T13:00:00.000Z');
    });

    it('moves an edit to an earlier time of day to tomorrow', () => {
      expect(next(daily('08:00', 'UTC'), '2026-01-05T08:30:00Z')).toBe('2026-01-06T08:00:00.000Z');
    });

    it('keeps an edit to a later time of day for today', () => {
      expect(next(daily('10:00', 'UTC'), '2026-01-05T08:30:00Z')).toBe('2026-01-05T10:00:00.000Z');
    });

    it.each([
      ['America/New_York', '2026-03-07T12:00:00Z'],
      ['America/New_York', '2026-10-31T12:00:00Z'],
      ['Europe/London', '2026-03-28T12:00:00Z'],
      ['Europe/London', '2026-10-24T12:00:00Z'],
    ])('in %s from %s, every 20 minutes for 2 days: previous <= now < next, with nothing between', (zone, from) => {
      const broken: string[] = [];
      for (const time of ['00:59', '01:30', '02:00', '02:30', '23:59']) {
        const rule = daily(time, zone);
        const start = Date.parse(from);
        for (let t = start; t < start + 2 * 86_400_000; t += 20 * 60_000) {
          const n = nextDeadline(rule, new Date(t))!.getTime();
          const p = previousDeadline(rule, new Date(t))!.getTime();
          if (!(p <= t && t < n && nextDeadline(rule, new Date(p))!.getTime() === n)) {
            broken.push(`${time} at ${new Date(t).toISOString()}: prev ${new Date(p).toISOString()} next ${new Date(n).toISOString()}`);
          }
        }
      }
      expect(broken).toEqual([]);
    });
  });

  describe('with pauses', () => {
    const rule = daily('09:00', 'UTC');
    const after = '2026-01-04T12:00:00Z';

    it.each<[string, [string, string][], string]>([
      ['skips deadlines inside a pause', [['2026-01-05T00:00:00Z', '2026-01-08T00:00:00Z']], '2026-01-08T09:00:00.000Z'],
      ['does not pause a deadline exactly at `until`', [['2026-01-05T00:00:00Z', '2026-01-06T09:00:00Z']], '2026-01-06T09:00:00.000Z'],
      ['pauses a deadline exactly at `from`', [['2026-01-05T09:00:00Z', '2026-01-05T09:00:00.001Z']], '2026-01-06T09:00:00.000Z'],
      ['pauses a deadline one millisecond before `until`', [['2026-01-05T00:00:00Z', '2026-01-06T09:00:00.001Z']], '2026-01-07T09:00:00.000Z'],
      ['ignores a pause ending one millisecond before the deadline', [['2026-01-05T00:00:00Z', '2026-01-05T08:59:59.999Z']], '2026-01-05T09:00:00.000Z'],
      ['merges overlapping pauses', [['2026-01-05T00:00:00Z', '2026-01-07T00:00:00Z'], ['2026-01-06T00:00:00Z', '2026-01-09T00:00:00Z']], '2026-01-09T09:00:00.000Z'],
      ['treats touching pauses as one', [['2026-01-05T00:00:00Z', '2026-01-06T09:00:00Z'], ['2026-01-06T09:00:00Z', '2026-01-07T00:00:00Z']], '2026-01-07T09:00:00.000Z'],
      ['accepts pauses in any order', [['2026-01-10T00:00:00Z', '2026-01-12T00:00:00Z'], ['2026-01-05T00:00:00Z', '2026-01-10T00:00:00Z']], '2026-01-12T09:00:00.000Z'],
      ['handles a pause inside another', [['2026-01-05T00:00:00Z', '2026-01-10T00:00:00Z'], ['2026-01-06T00:00:00Z', '2026-01-07T00:00:00Z']], '2026-01-10T09:00:00.000Z'],
      ['fires in the gap between two pauses', [['2026-01-05T00:00:00Z', '2026-01-06T00:00:00Z'], ['2026-01-06T10:00:00Z', '2026-01-09T00:00:00Z']], '2026-01-06T09:00:00.000Z'],
      ['ignores a pause in the past', [['2026-01-01T00:00:00Z', '2026-01-03T00:00:00Z']], '2026-01-05T09:00:00.000Z'],
      ['ignores a pause in the future beyond the next deadline', [['2026-02-01T00:00:00Z', '2026-03-01T00:00:00Z']], '2026-01-05T09:00:00.000Z'],
      ['ignores an inverted pause', [['2026-01-08T00:00:00Z', '2026-01-05T00:00:00Z']], '2026-01-05T09:00:00.000Z'],
      ['ignores an empty pause at the deadline', [['2026-01-05T09:00:00Z', '2026-01-05T09:00:00Z']], '2026-01-05T09:00:00.000Z'],
    ])('%s', (_name, p, expected) => {
      expect(next(rule, after, pauses(...p))).toBe(expected);
    });

    it('treats no pauses and an empty list alike', () => {
      expect(next(rule, after)).toBe('2026-01-05T09:00:00.000Z');
      expect(next(rule, after, [])).toBe('2026-01-05T09:00:00.000Z');
    });

    it('resumes after a pause already in progress', () => {
      expect(next(rule, '2026-01-06T12:00:00Z', pauses(['2026-01-05T00:00:00Z', '2026-01-08T00:00:00Z']))).toBe('2026-01-08T09:00:00.000Z');
    });

    it('combines with the weekday mask: a paused Monday waits for the next Monday', () => {
      const mondays = daily('09:00', 'UTC', [1]);
      expect(next(mondays, '2026-01-06T00:00:00Z', pauses(['2026-01-12T00:00:00Z', '2026-01-13T00:00:00Z']))).toBe('2026-01-19T09:00:00.000Z');
      expect(next(mondays, '2026-01-06T00:00:00Z', pauses(['2026-01-10T00:00:00Z', '2026-01-20T00:00:00Z']))).toBe('2026-01-26T09:00:00.000Z');
    });

    it('skips a run of twenty separate pauses, each covering one deadline', () => {
      const many: [string, string][] = [];
      for (let d = 5; d <= 24; d++) {
        const day = `2026-01-${String(d).padStart(2, '0')}`;
        many.push([`${day}T08:00:00Z`, `${day}T10:00:00Z`]);
      }
      expect(next(rule, after, pauses(...many))).toBe('2026-01-25T09:00:00.000Z');
    });

    it('resumes after a one-year pause', () => {
      expect(next(rule, after, pauses(['2026-01-05T00:00:00Z', '2027-01-05T00:00:00Z']))).toBe('2027-01-05T09:00:00.000Z');
    });

    it('jumps over a long pause instead of walking it day by day', () => {
      // Counting zone-offset lookups measures the work without a flaky wall-clock bound.
      const offsets = jest.spyOn(IANAZone.prototype, 'offset');
      try {
        const zoned = daily('09:00', 'Europe/London');
        expect(next(zoned, after, pauses(['2026-01-05T00:00:00Z', '2036-01-05T00:00:00Z']))).toBe('2036-01-05T09:00:00.000Z');
        expect(offsets.mock.calls.length).toBeLessThan(100); // day by day would be > 3,650 days × several lookups
      } finally {
        offsets.mockRestore();
      }
    });

    it('resumes after a hundred-year pause', () => {
      expect(next(rule, after, pauses(['2026-01-05T00:00:00Z', '2126-01-05T00:00:00Z']))).toBe('2126-01-05T09:00:00.000Z');
    });

    it('returns null rather than looping when a pause runs to the end of representable time', () => {
      expect(next(rule, after, [{ from: new Date('2026-01-05T00:00:00Z'), until: new Date(8.64e15) }])).toBeNull();
    });

    it('resumes exactly at the end of a pause that ends at a DST gap deadline', () => {
      const ny = daily('02:30', 'America/New_York');
      expect(next(ny, '2026-03-06T12:00:00Z', pauses(['2026-03-07T00:00:00Z', '2026-03-08T07:00:00Z']))).toBe('2026-03-08T07:00:00.000Z');
      expect(next(ny, '2026-03-06T12:00:00Z', pauses(['2026-03-07T00:00:00Z', '2026-03-08T07:00:00.001Z']))).toBe('2026-03-09T06:30:00.000Z');
    });

    it('does not fall back to the second 01:30 when a pause covers only the first one', () => {
      const ny = daily('01:30', 'America/New_York');
      expect(next(ny, '2026-11-01T00:00:00Z', pauses(['2026-11-01T05:00:00Z', '2026-11-01T06:00:00Z']))).toBe('2026-11-02T06:30:00.000Z');
    });
  });
});

describe('nextDeadline for a once rule', () => {
  const rule = once('2026-01-06T09:00:00Z');

  it.each([
    ['2026-01-01T00:00:00.000Z', '2026-01-06T09:00:00.000Z'],
    ['2026-01-06T08:59:59.999Z', '2026-01-06T09:00:00.000Z'],
    ['2026-01-06T09:00:00.000Z', null],
    ['2026-01-07T00:00:00.000Z', null],
  ])('after %s is %s', (after, expected) => expect(next(rule, after)).toBe(expected));

  it.each<[string, [string, string][], string | null]>([
    ['is null when the due instant is inside a pause', [['2026-01-05T00:00:00Z', '2026-01-08T00:00:00Z']], null],
    ['is null when a pause starts exactly at the due instant', [['2026-01-06T09:00:00Z', '2026-01-06T10:00:00Z']], null],
    ['is due when a pause ends exactly at the due instant', [['2026-01-05T00:00:00Z', '2026-01-06T09:00:00Z']], '2026-01-06T09:00:00.000Z'],
    ['is due when the pause is over', [['2026-01-01T00:00:00Z', '2026-01-02T00:00:00Z']], '2026-01-06T09:00:00.000Z'],
  ])('%s', (_name, p, expected) => {
    expect(next(rule, '2026-01-04T00:00:00Z', pauses(...p))).toBe(expected);
  });

  it('handles a once rule on the leap day 2028-02-29', () => {
    const leap = once('2028-02-29T12:00:00Z');
    expect(next(leap, '2028-02-28T12:00:00Z')).toBe('2028-02-29T12:00:00.000Z');
    expect(next(leap, '2028-02-29T12:00:00Z')).toBeNull();
    expect(prev(leap, '2028-02-29T12:00:00Z')).toBe('2028-02-29T12:00:00.000Z');
    expect(prev(leap, '2028-02-29T11:59:59.999Z')).toBeNull();
  });

  it('returns a copy, so the caller cannot mutate the rule through it', () => {
    const d = nextDeadline(rule, new Date('2026-01-01T00:00:00Z'))!;
    d.setTime(0);
    expect(rule.dueAt.toISOString()).toBe('2026-01-06T09:00:00.000Z');
  });
});

describe('nextDeadline input checks', () => {
  it.each<[string, DailyRule, RegExp]>([
    ['an unknown zone', daily('09:00', 'Foo/Bar'), /time zone/],
    ['an offset instead of a zone', daily('09:00', 'UTC+2'), /time zone/],
    ['an empty zone', daily('09:00', ''), /time zone/],
    ['hour 24', daily('24:00', 'UTC'), /local time/],
    ['a single-digit hour', daily('9:00', 'UTC'), /local time/],
    ['seconds in the time', daily('09:00:00', 'UTC'), /local time/],
    ['an empty weekday mask', daily('09:00', 'UTC', []), /days/],
    ['weekday 0', daily('09:00', 'UTC', [0]), /weekday/],
    ['weekday 8', daily('09:00', 'UTC', [1, 8]), /weekday/],
    ['a fractional weekday', daily('09:00', 'UTC', [1.5]), /weekday/],
  ])('throws a clear error for %s', (_name, rule, message) => {
    expect(() => nextDeadline(rule, new Date('2026-01-05T00:00:00Z'))).toThrow(message);
    expect(() => previousDeadline(rule, new Date('2026-01-05T00:00:00Z'))).toThrow(message);
  });

  it('throws for an invalid `after` instant', () => {
    expect(() => nextDeadline(daily('09:00', 'UTC'), new Date('nope'))).toThrow(/after/);
    expect(() => previousDeadline(daily('09:00', 'UTC'), new Date('nope'))).toThrow(/at/);
  });

  it('throws for a once rule with an invalid due instant', () => {
    expect(() => nextDeadline({ kind: 'once', dueAt: new Date('nope') }, new Date('2026-01-05T00:00:00Z'))).toThrow(/dueAt/);
  });
});

describe('previousDeadline', () => {
  it.each<[string, DailyRule, string, string]>([
    ['is the deadline itself at the deadline instant', daily('09:00', 'UTC'), '2026-01-05T09:00:00.000Z', '2026-01-05T09:00:00.000Z'],
    ['is the day before just before the deadline', daily('09:00', 'UTC'), '2026-01-05T08:59:59.999Z', '2026-01-04T09:00:00.000Z'],
    ['is today after the deadline', daily('09:00', 'UTC'), '2026-01-05T12:00:00.000Z', '2026-01-05T09:00:00.000Z'],
    ['works west of UTC', daily('08:00', 'America/New_York'), '2026-01-15T12:00:00.000Z', '2026-01-14T13:00:00.000Z'],
    ['works in a +05:45 zone at the deadline', daily('00:10', 'Asia/Kathmandu'), '2026-01-15T18:25:00.000Z', '2026-01-15T18:25:00.000Z'],
    ['works in a +05:45 zone just before the deadline', daily('00:10', 'Asia/Kathmandu'), '2026-01-15T18:24:59.999Z', '2026-01-14T18:25:00.000Z'],
    ['looks back a whole week for a Mondays-only mask', daily('09:00', 'UTC', [1]), '2026-01-11T12:00:00.000Z', '2026-01-05T09:00:00.000Z'],
    ['uses the local weekday east of UTC', daily('07:00', 'Pacific/Auckland', [1]), '2026-01-11T17:59:59.999Z', '2026-01-04T18:00:00.000Z'],
    ['uses the local weekday east of UTC at the deadline', daily('07:00', 'Pacific/Auckland', [1]), '2026-01-11T18:00:00.000Z', '2026-01-11T18:00:00.000Z'],
    ['gives the gap-end instant on a spring-forward day', daily('02:30', 'America/New_York'), '2026-03-08T07:00:00.000Z', '2026-03-08T07:00:00.000Z'],
    ['gives the day before just before the gap end', daily('02:30', 'America/New_York'), '2026-03-08T06:59:59.999Z', '2026-03-07T07:30:00.000Z'],
    ['gives the first occurrence during the second pass of an overlap', daily('01:30', 'America/New_York'), '2026-11-01T06:30:00.000Z', '2026-11-01T05:30:00.000Z'],
    ['gives the day before just before the first occurrence', daily('01:30', 'America/New_York'), '2026-11-01T05:29:59.999Z', '2026-10-31T05:30:00.000Z'],
    ['crosses the leap day', daily('09:00', 'Europe/London'), '2028-03-01T08:00:00.000Z', '2028-02-29T09:00:00.000Z'],
  ])('%s', (_name, rule, at, expected) => {
    expect(prev(rule, at)).toBe(expected);
  });

  it.each([
    ['2026-01-06T08:59:59.999Z', null],
    ['2026-01-06T09:00:00.000Z', '2026-01-06T09:00:00.000Z'],
    ['2026-02-01T00:00:00.000Z', '2026-01-06T09:00:00.000Z'],
  ])('for a once rule at %s is %s', (at, expected) => {
    expect(prev(once('2026-01-06T09:00:00Z'), at)).toBe(expected);
  });
});

describe('alertAt', () => {
  it.each([
    ['2026-01-05T09:00:00.000Z', 30, '2026-01-05T09:30:00.000Z'],
    ['2026-01-05T09:00:00.000Z', 0, '2026-01-05T09:00:00.000Z'],
    ['2026-01-05T09:00:00.000Z', 720, '2026-01-05T21:00:00.000Z'],
    ['2026-01-05T23:00:00.000Z', 90, '2026-01-06T00:30:00.000Z'],
    ['2028-02-28T23:30:00.000Z', 60, '2028-02-29T00:30:00.000Z'],
    // 01:30 EST + 60 min is 03:30 EDT on the wall clock, but exactly one hour later in reality.
    ['2026-03-08T06:30:00.000Z', 60, '2026-03-08T07:30:00.000Z'],
    // 01:30 EDT + 60 min is 01:30 EST again: the wall clock does not move, the instant does.
    ['2026-11-01T05:30:00.000Z', 60, '2026-11-01T06:30:00.000Z'],
  ])('%s plus %i minutes of grace is %s', (deadline, grace, expected) => {
    expect(alertAt(new Date(deadline), grace).toISOString()).toBe(expected);
  });

  it('does not mutate the deadline', () => {
    const d = new Date('2026-01-05T09:00:00Z');
    alertAt(d, 30);
    expect(d.toISOString()).toBe('2026-01-05T09:00:00.000Z');
  });

  it.each([-1, Number.NaN, Number.POSITIVE_INFINITY])('rejects a grace of %p minutes', (grace) => {
    expect(() => alertAt(new Date('2026-01-05T09:00:00Z'), grace)).toThrow(/graceMinutes/);
  });

  it('rejects an invalid deadline', () => {
    expect(() => alertAt(new Date('nope'), 30)).toThrow(/deadline/);
  });
});

describe('the deadline horizon', () => {
  const after = new Date('2199-12-30T00:00:00Z');

  it('gives no daily deadline at or past 2200 less the longest grace, so no alert passes 2200', () => {
    const rule: DailyRule = { kind: 'daily', localTime: '11:00', days: ALL, timeZone: 'UTC' };
    expect(nextDeadline(rule, after)).toEqual(new Date('2199-12-30T11:00:00Z'));
    expect(nextDeadline(rule, new Date('2199-12-31T11:00:00Z'))).toBeNull(); // 2200-01-01T11:00 would be next
    expect(nextDeadline({ ...rule, localTime: '13:00' }, new Date('2199-12-31T00:00:00Z'))).toBeNull(); // 12:00 is the horizon
    expect(new Date(DEADLINE_HORIZON).toISOString()).toBe('2199-12-31T12:00:00.000Z');
  });

  it('gives no once deadline at or past the horizon', () => {
    expect(nextDeadline({ kind: 'once', dueAt: new Date('2199-12-31T11:59:00Z') }, after)).toEqual(new Date('2199-12-31T11:59:00Z'));
    expect(nextDeadline({ kind: 'once', dueAt: new Date('9999-12-31T23:59:00Z') }, after)).toBeNull();
  });
});
